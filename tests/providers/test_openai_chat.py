"""The OpenAI Chat Completions adapter, end to end: the real openai client over an in-memory
transport, through unitcost's span lifecycle and store exporter, to the rows in the store."""

from __future__ import annotations

import asyncio
import gc
from decimal import Decimal

import openai
import pytest
from conftest import (
    GPT4O_MINI,
    O4_MINI,
    PROMPT,
    ChatServer,
    chat_helpers,
    error_response,
    genai_cost,
    mock_http_client,
    openai_http,
    report_json,
    store_rows,
    usage_block,
    usd_json,
)
from openai.types.chat import ChatCompletion

import unitcost
from unitcost.common.money import to_pico

# gpt-4o-mini per million tokens: $0.15 input, $0.075 cached input, $0.60 output (reasoning included).
# 1000 prompt tokens of which 200 cached, 500 completion tokens of which 100 reasoning:
# 800 * 0.15 + 200 * 0.075 + 500 * 0.60 = 435 per million = $0.000435 = 435,000,000 pico-dollars.
HAND_COMPUTED_PICO = 435_000_000
USAGE_4O = usage_block(1000, 500, cached=200, reasoning=100)


def call_row(db):
    (row,) = store_rows(db, "calls")
    return row


def test_hand_computed_price_agrees_with_genai_prices():
    assert genai_cost(GPT4O_MINI, prompt=1000, completion=500, cached=200, reasoning=100) == Decimal("0.000435")


# --- plain calls -----------------------------------------------------------------------------------


def test_sync_call_is_recorded_in_non_overlapping_buckets_with_its_cost(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE_4O))
    with unitcost.task("support_ticket", key="T-1042") as run:
        result = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)

    assert isinstance(result, ChatCompletion)  # the caller gets the SDK's own type back
    assert result.usage.prompt_tokens == 1000
    row = call_row(store_db)
    assert row["run_id"] == run.id
    assert (row["provider"], row["operation"], row["model"], row["response_model"]) == (
        "openai", "chat", "gpt-4o-mini", GPT4O_MINI,
    )
    # Buckets do not overlap: input is uncached only, output is visible only.
    assert row["input_tokens"] == 800
    assert row["cache_read_tokens"] == 200
    assert row["cache_write_tokens"] == 0
    assert row["output_tokens"] == 400
    assert row["reasoning_tokens"] == 100
    assert row["cost_pico"] == HAND_COMPUTED_PICO
    assert row["reasoning_cost_pico"] == 100 * 600_000  # $0.60 per million = 600,000 pico a token
    assert row["price_source"] == "genai-prices"
    assert (row["estimated"], row["streamed"], row["incomplete"], row["error_type"]) == (0, 0, 0, None)


def test_async_call_is_recorded_with_the_genai_prices_cost(store_db, openai_client):
    server = ChatServer(model=O4_MINI, usage=usage_block(2100, 640, cached=1024, reasoning=448))
    client = openai_client(server, is_async=True)

    async def main():
        async with unitcost.task("support_ticket", key="T-7") as run:
            return run, await client.chat.completions.create(model="o4-mini", messages=PROMPT)

    run, result = asyncio.run(main())

    assert isinstance(result, ChatCompletion)
    row = call_row(store_db)
    assert row["run_id"] == run.id
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"], row["reasoning_tokens"]) == (
        2100 - 1024, 1024, 640 - 448, 448,
    )
    expected = genai_cost(O4_MINI, prompt=2100, completion=640, cached=1024, reasoning=448)
    assert expected == Decimal("0.0042812")  # (1076 * 1.10 + 1024 * 0.275 + 640 * 4.40) / 1e6
    assert row["cost_pico"] == to_pico(expected)


def test_unknown_model_is_unpriced_never_zero(store_db, openai_client):
    client = openai_client(ChatServer(model="acme-llm-7b-instruct", usage=usage_block(300, 40)))
    with unitcost.task("support_ticket"):
        client.chat.completions.create(model="acme-llm-7b-instruct", messages=PROMPT)

    row = call_row(store_db)
    assert row["input_tokens"] == 300 and row["output_tokens"] == 40  # tokens are kept all the same
    assert row["cost_pico"] is None
    assert row["price_source"] is None
    (report,) = report_json(store_db)
    assert report["unpriced_calls"] == 1


def test_calls_outside_any_task_have_no_run_and_get_a_null_group_in_the_report(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE_4O))
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)

    assert call_row(store_db)["run_id"] is None
    (row,) = report_json(store_db)
    assert row["group"] == {"kind": None}
    assert (row["tasks"], row["runs"], row["llm_calls"]) == (0, 0, 1)
    assert row["cost_usd"] == usd_json(Decimal("0.000435"))
    assert row["cost_per_task_usd"] is None

    (row,) = report_json(store_db, "--by", "kind,model")
    assert row["group"] == {"kind": None, "model": None}


# --- errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class", "stream"),
    [
        (500, openai.InternalServerError, False),
        (400, openai.BadRequestError, False),
        (500, openai.InternalServerError, True),
    ],
)
def test_api_error_passes_through_unchanged_and_is_recorded(store_db, openai_client, status, error_class, stream):
    def handler(request):
        return error_response(status, "The server had an error processing your request.", "server_error")

    client = openai_client(handler, max_retries=0)
    with unitcost.task("support_ticket"), pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=stream)

    assert type(raised.value) is error_class  # not wrapped, not replaced
    assert raised.value.status_code == status
    assert raised.value.body["message"] == "The server had an error processing your request."
    row = call_row(store_db)
    assert row["error_type"] == error_class.__name__
    assert row["input_tokens"] == row["output_tokens"] == 0
    assert row["cost_pico"] == 0  # a known model with no tokens: priced, and free


def test_async_api_error_passes_through_and_is_recorded(store_db, openai_client):
    def handler(request):
        return error_response(429, "Rate limit reached for gpt-4o-mini.", "requests", "rate_limit_exceeded")

    client = openai_client(handler, is_async=True, max_retries=0)
    with pytest.raises(openai.RateLimitError) as raised:
        asyncio.run(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT))

    assert raised.value.code == "rate_limit_exceeded"
    assert call_row(store_db)["error_type"] == "RateLimitError"


# --- streams ---------------------------------------------------------------------------------------


def test_stream_with_the_callers_include_usage_shows_the_usage_chunk(store_db, openai_client):
    server = ChatServer(usage=USAGE_4O)
    client = openai_client(server)
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=PROMPT, stream=True, stream_options={"include_usage": True}
    )
    assert isinstance(stream, openai.Stream)
    chunks = list(stream)

    assert server.requests[0]["stream_options"] == {"include_usage": True}
    # The caller asked for the usage chunk, so the caller sees it.
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 1000
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == "Your order ships today."
    row = call_row(store_db)
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"], row["reasoning_tokens"]) == (
        800, 200, 400, 100,
    )
    assert row["cost_pico"] == HAND_COMPUTED_PICO
    assert (row["streamed"], row["estimated"], row["incomplete"]) == (1, 0, 0)


def test_stream_without_stream_options_asks_for_usage_and_hides_the_extra_chunk(store_db, openai_client):
    server = ChatServer(usage=USAGE_4O)
    client = openai_client(server)

    instrumented = [c.model_dump() for c in client.chat.completions.create(
        model="gpt-4o-mini", messages=PROMPT, stream=True
    )]
    unitcost.uninstrument()
    bare = [c.model_dump() for c in client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)]

    # unitcost asked the server for usage on the caller's behalf...
    assert server.requests[0]["stream_options"] == {"include_usage": True}
    assert "stream_options" not in server.requests[1]
    # ...and the caller iterates exactly what an uninstrumented client yields: no usage-only chunk.
    assert instrumented == bare
    assert all(c["choices"] for c in instrumented)
    row = call_row(store_db)  # the uninstrumented call is not recorded
    assert row["cost_pico"] == HAND_COMPUTED_PICO
    assert (row["streamed"], row["estimated"], row["incomplete"]) == (1, 0, 0)


def test_async_stream_hides_the_usage_chunk_it_asked_for(store_db, openai_client):
    server = ChatServer(model=O4_MINI, usage=usage_block(2100, 640, cached=1024, reasoning=448))
    client = openai_client(server, is_async=True)

    async def main():
        stream = await client.chat.completions.create(model="o4-mini", messages=PROMPT, stream=True)
        assert isinstance(stream, openai.AsyncStream)
        return [chunk async for chunk in stream]

    chunks = asyncio.run(main())

    assert server.requests[0]["stream_options"] == {"include_usage": True}
    assert all(c.choices for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    row = call_row(store_db)
    assert row["reasoning_tokens"] == 448
    assert row["cost_pico"] == to_pico(genai_cost(O4_MINI, prompt=2100, completion=640, cached=1024, reasoning=448))


def test_stream_helper_gets_the_real_usage(store_db, openai_client):
    # `chat.completions.stream()` goes through `create` with stream_options=openai.omit (not None):
    # that is "the caller did not set stream_options", so unitcost should ask for the usage chunk.
    server = ChatServer(usage=USAGE_4O)
    client = openai_client(server)
    with chat_helpers(client).stream(model="gpt-4o-mini", messages=PROMPT) as stream:
        for _ in stream:
            pass
        assert stream.get_final_completion().choices[0].message.content == "Your order ships today."

    assert server.requests[0].get("stream_options") == {"include_usage": True}
    row = call_row(store_db)
    assert row["estimated"] == 0
    assert row["cost_pico"] == HAND_COMPUTED_PICO


def test_stream_without_a_usage_chunk_is_estimated_never_zero(store_db, openai_client):
    # Some OpenAI-compatible servers ignore include_usage.
    client = openai_client(ChatServer(usage=USAGE_4O, honour_include_usage=False))
    with unitcost.task("support_ticket"):
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True))

    assert all(c.usage is None for c in chunks)
    row = call_row(store_db)
    assert row["estimated"] == 1
    assert row["incomplete"] == 0  # the stream ran to its end; only the counts are guessed
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
    assert row["cost_pico"] > 0
    (report,) = report_json(store_db)
    assert report["estimated_calls"] == 1


def _abandon_by_del(stream):
    for _ in stream:
        break
    del stream
    gc.collect()


def _abandon_by_close(stream):
    for _ in stream:
        break
    stream.close()
    stream.close()  # closing twice still records once


def _abandon_inside_with(stream):
    with stream as s:
        for _ in s:
            break


@pytest.mark.parametrize("abandon", [_abandon_by_del, _abandon_by_close, _abandon_inside_with])
def test_abandoned_stream_is_recorded_once_as_incomplete(store_db, openai_client, abandon):
    client = openai_client(ChatServer(usage=USAGE_4O))
    with unitcost.task("support_ticket") as run:
        abandon(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True))
    gc.collect()

    row = call_row(store_db)  # exactly one row
    assert row["run_id"] == run.id
    assert row["incomplete"] == 1
    # The usage chunk never came: what was seen is estimated, not recorded as zero.
    assert row["estimated"] == 1 and row["input_tokens"] > 0


def test_abandoned_async_stream_is_recorded_once_as_incomplete(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE_4O), is_async=True)

    async def main():
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)
        async for _ in stream:
            break
        await stream.close()

    asyncio.run(main())
    gc.collect()

    row = call_row(store_db)
    assert (row["incomplete"], row["estimated"]) == (1, 1)


# --- patching --------------------------------------------------------------------------------------


def test_instrument_is_idempotent_and_uninstrument_restores_the_sdk(store_db, openai_client):
    from openai.resources.chat.completions.completions import Completions

    client = openai_client(ChatServer())
    patched = Completions.__dict__["create"]
    unitcost.instrument()  # a second time: still one span per call
    assert Completions.__dict__["create"] is patched
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert len(store_rows(store_db, "calls")) == 1

    unitcost.uninstrument()
    assert Completions.__dict__["create"] is patched.__wrapped__  # the SDK's own function again
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert len(store_rows(store_db, "calls")) == 1


def test_provider_is_named_after_the_host(store_db):
    def handler(request):
        assert request.url.host == "api.groq.com"
        return openai_http.Response(200, json=ChatServer(model="llama-3.3-70b-versatile")(request).json())

    client = openai.OpenAI(
        api_key="gsk-test", base_url="https://api.groq.com/openai/v1",
        http_client=mock_http_client("openai", handler),
    )
    client.chat.completions.create(model="llama-3.3-70b-versatile", messages=PROMPT)
    client.close()
    assert call_row(store_db)["provider"] == "groq"
