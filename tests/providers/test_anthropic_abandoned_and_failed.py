"""Anthropic streams the caller abandons, and calls that fail: each still ends its span exactly once,
with what was seen, in all three tracing modes (see `anthropic_fixtures.sdk_tracing`)."""

# ruff: noqa: F811 - the fixtures imported from anthropic_fixtures are test parameters of the same name

from __future__ import annotations

import asyncio
import gc

import anthropic
import pytest
from conftest import store_rows
from providers.anthropic_fixtures import (
    REQUEST,
    SONNET,
    MessagesServer,
    anthropic_client,  # noqa: F401 - fixture
    anthropic_http,
    assert_counted_once,
    error_response,
    finished_spans,  # noqa: F401 - fixture
    sdk_tracing,  # noqa: F401 - fixture
    sse_response,
    stream_events,
)

import unitcost

pytestmark = pytest.mark.usefixtures("store_db")

# What message_start says before the caller walks away: the input side is exact and final.
# claude-sonnet-4-6: 1200 * $3 + 20,000 * $0.30 + 1000 * $3.75 + 2000 * $6 = 25,350 per million.
INPUT_SIDE_PICO = 25_350_000_000
OUTPUT_PICO_PER_TOKEN = 15_000_000


class Stop(Exception):
    """Raised by the caller's own loop body."""


def assert_abandoned(row, *, output, reasoning=0, estimated=True):
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"], row["cache_write_1h_tokens"]) == (
        1200, 20_000, 1000, 2000,
    )
    assert (row["output_tokens"] + row["reasoning_tokens"], row["reasoning_tokens"]) == (output, reasoning)
    assert row["cost_pico"] == INPUT_SIDE_PICO + output * OUTPUT_PICO_PER_TOKEN
    assert (row["streamed"], row["incomplete"], row["estimated"], row["error_type"]) == (1, 1, int(estimated), None)
    assert (row["web_search_requests"], row["service_tier"]) == (0, "standard")


def first_text(stream):
    for event in stream:
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            return event


# The caller reads up to the first text delta: the thinking delta (35 characters, 9 tokens by the
# chars/4 rule) and "Your order " (11 characters): 46 characters, 12 tokens, 9 of them thinking.
SEEN_OUTPUT, SEEN_THINKING = 12, 9


@pytest.mark.covers("anthropic", "messages.create", "sync", "stream")
@pytest.mark.parametrize("leave", ["close", "with", "exception-in-with", "garbage"])
def test_abandoned_stream_true(store_db, anthropic_client, finished_spans, sdk_tracing, leave):
    client = anthropic_client(MessagesServer())
    if leave == "close":
        stream = client.messages.create(**REQUEST, stream=True)
        first_text(stream)
        stream.close()
    elif leave == "with":
        with client.messages.create(**REQUEST, stream=True) as stream:
            first_text(stream)
    elif leave == "exception-in-with":
        with pytest.raises(Stop), client.messages.create(**REQUEST, stream=True) as stream:
            first_text(stream)
            raise Stop
    else:
        stream = client.messages.create(**REQUEST, stream=True)
        first_text(stream)
        del stream
        gc.collect()

    rows = store_rows(store_db, "calls")
    (row,) = rows
    assert_abandoned(row, output=SEEN_OUTPUT, reasoning=SEEN_THINKING)
    assert_counted_once(finished_spans(), rows, sdk_tracing)


@pytest.mark.covers("anthropic", "messages.stream", "sync", "stream")
@pytest.mark.parametrize("leave", ["exit", "close", "exception-in-with", "text_stream-break"])
def test_abandoned_stream_helper(store_db, anthropic_client, finished_spans, sdk_tracing, leave):
    client = anthropic_client(MessagesServer())
    if leave == "exit":
        with client.messages.stream(**REQUEST) as stream:
            first_text(stream)
    elif leave == "close":
        manager = client.messages.stream(**REQUEST)
        stream = manager.__enter__()
        first_text(stream)
        stream.close()
    elif leave == "exception-in-with":
        with pytest.raises(Stop), client.messages.stream(**REQUEST) as stream:
            first_text(stream)
            raise Stop
    else:
        with client.messages.stream(**REQUEST) as stream:
            for text in stream.text_stream:
                assert text == "Your order "
                break

    rows = store_rows(store_db, "calls")
    (row,) = rows
    assert_abandoned(row, output=SEEN_OUTPUT, reasoning=SEEN_THINKING)
    assert_counted_once(finished_spans(), rows, sdk_tracing)


@pytest.mark.covers("anthropic", "messages.stream", "async", "stream")
def test_abandoned_stream_helper_async(store_db, anthropic_client, finished_spans, sdk_tracing):
    client = anthropic_client(MessagesServer(), is_async=True)

    async def main():
        async with client.messages.stream(**REQUEST) as stream:
            async for event in stream:
                if event.type == "text":
                    raise Stop

    with pytest.raises(Stop):
        asyncio.run(main())
    (row,) = store_rows(store_db, "calls")
    assert_abandoned(row, output=SEEN_OUTPUT, reasoning=SEEN_THINKING)


@pytest.mark.covers("anthropic", "messages.create", "async", "stream")
def test_abandoned_stream_true_async(store_db, anthropic_client, finished_spans, sdk_tracing):
    client = anthropic_client(MessagesServer(), is_async=True)

    async def main():
        stream = await client.messages.create(**REQUEST, stream=True)
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                break
        await stream.close()

    asyncio.run(main())
    (row,) = store_rows(store_db, "calls")
    assert_abandoned(row, output=SEEN_OUTPUT, reasoning=SEEN_THINKING)


def test_abandoned_after_message_delta_keeps_the_reported_usage(store_db, anthropic_client, sdk_tracing):
    # Everything but message_stop was read: the usage is the server's own, not an estimate.
    client = anthropic_client(MessagesServer())
    with client.messages.create(**REQUEST, stream=True) as stream:
        for event in stream:
            if event.type == "message_delta":
                break
    (row,) = store_rows(store_db, "calls")
    assert (row["output_tokens"], row["reasoning_tokens"], row["web_search_requests"]) == (500, 300, 2)
    assert (row["incomplete"], row["estimated"]) == (1, 0)


def test_a_stream_cut_short_by_the_server(store_db, anthropic_client, finished_spans, sdk_tracing):
    # The body ends after the first text delta, without message_delta or message_stop.
    events = stream_events()[:8]
    client = anthropic_client(lambda request: sse_response(events))
    assert [e.type for e in client.messages.create(**REQUEST, stream=True)][-1] == "content_block_delta"
    rows = store_rows(store_db, "calls")
    (row,) = rows
    assert_abandoned(row, output=SEEN_OUTPUT, reasoning=SEEN_THINKING)
    assert_counted_once(finished_spans(), rows, sdk_tracing)


def test_a_stream_cut_short_in_a_tool_call_estimates_the_tool_input_seen(store_db, anthropic_client):
    # The body ends inside a tool_use block: the tool's input streamed so far is output too. Thinking
    # (35 characters) and the input JSON (38): 73 characters, 19 tokens, 9 of them thinking.
    tool_input = '{"order_id": "1042", "carrier": "UPS"}'
    events = stream_events()[:6] + [
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "track", "input": {}}},
    ] + [
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": part}}
        for part in (tool_input[:20], tool_input[20:])
    ]
    client = anthropic_client(lambda request: sse_response(events))
    assert [e.type for e in client.messages.create(**REQUEST, stream=True)][-1] == "content_block_delta"
    (row,) = store_rows(store_db, "calls")
    assert_abandoned(row, output=19, reasoning=9)


# --- failures ------------------------------------------------------------------------------------------


def raises(exc):
    def handler(request):
        raise exc

    return handler


FAILURES = [
    # error type None: the SDK's own class for a 529, recorded as it is. An OverloadedError (the sync
    # client's from anthropic 0.47, the async client's later), else an InternalServerError.
    pytest.param(lambda r: error_response(529, "overloaded_error", "Overloaded"), anthropic.APIStatusError,
                 None, id="529-overloaded"),
    pytest.param(lambda r: error_response(500, "api_error", "Internal server error"), anthropic.InternalServerError,
                 "InternalServerError", id="500"),
    pytest.param(lambda r: error_response(429, "rate_limit_error", "Number of request tokens has exceeded your rate"),
                 anthropic.RateLimitError, "RateLimitError", id="429"),
    pytest.param(lambda r: error_response(400, "invalid_request_error", "max_tokens: Field required"),
                 anthropic.BadRequestError, "BadRequestError", id="400"),
    pytest.param(raises(anthropic_http.ReadTimeout("timed out")), anthropic.APITimeoutError, "APITimeoutError",
                 id="timeout"),
    pytest.param(raises(anthropic_http.ConnectError("connection refused")), anthropic.APIConnectionError,
                 "APIConnectionError", id="connection"),
]


def raised_type(caught, error_type):
    """The error type the row must carry: ``error_type``, or (None) the class the SDK raised for a 529."""
    name = type(caught.value).__qualname__
    assert name == (error_type or name) and name in (error_type, "OverloadedError", "InternalServerError")
    return name


def assert_failed(row, error_type, *, streamed):
    assert row["error_type"] == error_type
    assert row["model"] == SONNET and row["streamed"] == int(streamed)
    tokens = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens",
              "reasoning_tokens", "web_search_requests")
    assert [row[t] for t in tokens] == [0] * len(tokens)
    assert row["cost_pico"] in (0, None)  # never a made-up cost


@pytest.mark.covers("anthropic", "messages.create", "sync", "plain")
@pytest.mark.parametrize(("handler", "error", "error_type"), FAILURES)
def test_failed_call(store_db, anthropic_client, finished_spans, sdk_tracing, handler, error, error_type):
    client = anthropic_client(handler)
    with pytest.raises(error) as caught:
        client.messages.create(**REQUEST)
    error_type = raised_type(caught, error_type)  # the SDK's own exception, unchanged
    rows = store_rows(store_db, "calls")
    (row,) = rows
    assert_failed(row, error_type, streamed=False)
    assert row["retries"] == 0
    assert_counted_once(finished_spans(), rows, sdk_tracing)


def test_failed_after_retries(store_db, anthropic_client, finished_spans, sdk_tracing):
    def overloaded(request):
        response = error_response(529, "overloaded_error", "Overloaded")
        response.headers["retry-after-ms"] = "1"
        return response

    client = anthropic_client(overloaded, max_retries=2)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(**REQUEST)
    rows = store_rows(store_db, "calls")
    (row,) = rows
    assert (row["error_type"], row["retries"]) == (raised_type(caught, None), 2)
    assert_counted_once(finished_spans(), rows, sdk_tracing)


@pytest.mark.covers("anthropic", "messages.create", "async", "plain")
@pytest.mark.parametrize(("handler", "error", "error_type"), FAILURES[:1] + FAILURES[-2:])
def test_failed_call_async(store_db, anthropic_client, finished_spans, sdk_tracing, handler, error, error_type):
    client = anthropic_client(handler, is_async=True)
    with pytest.raises(error) as caught:
        asyncio.run(client.messages.create(**REQUEST, stream=True))
    (row,) = store_rows(store_db, "calls")
    assert_failed(row, raised_type(caught, error_type), streamed=True)


@pytest.mark.parametrize(("handler", "error", "error_type"), FAILURES[:1])
def test_failed_stream_helper(store_db, anthropic_client, finished_spans, sdk_tracing, handler, error, error_type):
    client = anthropic_client(handler)
    with pytest.raises(error) as caught, client.messages.stream(**REQUEST):
        pass
    rows = store_rows(store_db, "calls")
    (row,) = rows
    assert_failed(row, raised_type(caught, error_type), streamed=True)
    assert_counted_once(finished_spans(), rows, sdk_tracing)


def test_overloaded_mid_stream_keeps_the_input_it_reported(store_db, anthropic_client, finished_spans, sdk_tracing):
    # The server accepted the request (message_start, with its usage), then sent an error event.
    events = stream_events()[:8]
    body = sse_response(events).content + (
        b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}\n\n'
    )
    client = anthropic_client(lambda request: anthropic_http.Response(200, content=body,
                                                                      headers={"content-type": "text/event-stream"}))
    seen = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        for event in client.messages.create(**REQUEST, stream=True):
            seen.append(event.type)
    assert seen[0] == "message_start" and caught.value.body["error"]["type"] == "overloaded_error"
    rows = store_rows(store_db, "calls")
    (row,) = rows
    assert row["error_type"] == "APIStatusError"  # the class the caller caught
    assert (row["input_tokens"], row["cache_read_tokens"], row["incomplete"]) == (1200, 20_000, 1)
    assert row["cost_pico"] == INPUT_SIDE_PICO + SEEN_OUTPUT * OUTPUT_PICO_PER_TOKEN
    assert_counted_once(finished_spans(), rows, sdk_tracing)


def test_retried_call_is_one_call(store_db, anthropic_client, finished_spans, sdk_tracing):
    # 529 then success: the SDK retries inside one API call; the store has one row, with the usage.
    answers = [error_response(529, "overloaded_error", "Overloaded")]
    server = MessagesServer()

    def handler(request):
        if answers:
            response = answers.pop()
            response.headers["retry-after-ms"] = "1"
            return response
        return server(request)

    client = anthropic_client(handler, max_retries=2)
    client.messages.create(**REQUEST)
    rows = store_rows(store_db, "calls")
    (row,) = rows
    assert (row["error_type"], row["input_tokens"], row["cost_pico"]) == (None, 1200, 57_350_000_000)
    assert row["retries"] == 1
    assert_counted_once(finished_spans(), rows, sdk_tracing)


def test_budget_stops_the_next_call(store_db, anthropic_client, sdk_tracing):
    # Budgets see Anthropic calls as they see any other: the call over budget is paid for, the next
    # one is refused before it is sent.
    server = MessagesServer()
    client = anthropic_client(server)
    with pytest.warns(unitcost.BudgetWarning), unitcost.task("support_ticket", budget_usd=0.05, on_budget="raise"):
        client.messages.create(**REQUEST)  # $0.05735
        with pytest.raises(unitcost.BudgetExceeded):
            client.messages.create(**REQUEST)
    assert len(server.requests) == 1
    rows = store_rows(store_db, "calls")
    assert [(r["error_type"], r["cost_pico"]) for r in rows] == [(None, 57_350_000_000), ("BudgetExceeded", 0)]
