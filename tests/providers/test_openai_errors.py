"""Failed calls and the SDK's own retries: HTTP errors, timeouts and connection errors are calls with
``error.type`` (zero tokens unless the error carries usage); retries are counted on the call."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from conftest import PROMPT, ChatServer, error_response, openai_http, store_rows, usage_block

import unitcost

CHAT_PICO = 435_000_000  # gpt-4o-mini, 1000 prompt (200 cached) + 500 completion tokens (100 reasoning)
USAGE = usage_block(1000, 500, cached=200, reasoning=100)


def call_row(db):
    (row,) = store_rows(db, "calls")
    return row


class Flaky:
    """Fails ``failures`` times with ``status`` (asking the SDK to retry at once), then answers."""

    def __init__(self, failures: int, status: int = 500) -> None:
        self.failures = failures
        self.status = status
        self.retry_counts: list[str] = []
        self.server = ChatServer(usage=USAGE)

    def __call__(self, request: Any) -> Any:
        self.retry_counts.append(request.headers["x-stainless-retry-count"])
        if len(self.retry_counts) <= self.failures:
            response = error_response(self.status, "The server had an error processing your request.", "server_error")
            response.headers["retry-after-ms"] = "1"
            return response
        return self.server(request)


def test_retries_before_success_are_counted_on_the_call(store_db, openai_client):
    handler = Flaky(failures=2)
    client = openai_client(handler, max_retries=2)
    with unitcost.task("support_ticket") as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)

    assert handler.retry_counts == ["0", "1", "2"]
    row = call_row(store_db)  # one call, three attempts
    assert (row["retries"], row["error_type"], row["cost_pico"], row["run_id"]) == (2, None, CHAT_PICO, run.id)


def test_retries_of_a_stream_are_counted(store_db, openai_client):
    client = openai_client(Flaky(failures=1, status=429), max_retries=3)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True))
    row = call_row(store_db)
    assert (row["retries"], row["streamed"], row["cost_pico"]) == (1, 1, CHAT_PICO)


def test_async_retries_that_end_in_failure(store_db, openai_client):
    client = openai_client(Flaky(failures=10), is_async=True, max_retries=2)
    with pytest.raises(openai.InternalServerError):
        asyncio.run(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT))
    row = call_row(store_db)
    assert (row["retries"], row["error_type"]) == (2, "InternalServerError")
    assert (row["input_tokens"], row["output_tokens"], row["cost_pico"]) == (0, 0, 0)  # failed, priced at nothing


@pytest.mark.parametrize(
    ("extra_headers", "sent", "retries"),
    [
        # The request's own retry-count header wins over the SDK's count, and is what is recorded.
        ({"X-Stainless-Retry-Count": "7"}, ["7", "7"], 7),
        # Other headers of the request's own: the count is still the SDK's, read from the header.
        ({"x-request-tag": "a"}, ["0", "1"], 1),
    ],
)
def test_retries_read_from_the_header_the_request_sends(store_db, openai_client, extra_headers, sent, retries):
    handler = Flaky(failures=1)
    client = openai_client(handler, max_retries=1)
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, extra_headers=extra_headers)
    assert handler.retry_counts == sent
    assert call_row(store_db)["retries"] == retries


def test_a_call_without_retries_records_zero(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE))
    client.responses  # noqa: B018 - another resource of the same client, untouched
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert call_row(store_db)["retries"] == 0


@pytest.mark.parametrize(
    ("raised", "error_class"),
    [
        (openai_http.ReadTimeout("timed out"), openai.APITimeoutError),
        (openai_http.ConnectError("refused"), openai.APIConnectionError),
    ],
)
def test_timeouts_and_connection_errors_are_failed_calls(store_db, openai_client, raised, error_class):
    def handler(request):
        raise raised

    client = openai_client(handler, max_retries=0)
    with pytest.raises(error_class):
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    row = call_row(store_db)
    assert row["error_type"] == error_class.__name__
    assert (row["cost_pico"], row["retries"]) == (0, 0)


def test_a_failed_embeddings_call_is_recorded_too(store_db, openai_client):
    def handler(request):
        return error_response(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")

    client = openai_client(handler)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.embeddings.create(model="text-embedding-3-small", input="order #1042")
    assert raised.value.code == "invalid_api_key"
    row = call_row(store_db)
    assert (row["operation"], row["error_type"], row["cost_pico"]) == ("embeddings", "AuthenticationError", 0)
