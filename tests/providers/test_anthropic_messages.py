"""The Anthropic adapter end to end: the real anthropic client over an in-memory transport, through
unitcost's lifecycle and store exporter, to the rows in the store.

Every test that makes a call runs three times (`sdk_tracing`): with the anthropic SDK's own
OpenTelemetry span (its default, which unitcost adopts), and with it turned off by
``ANTHROPIC_OPEN_TELEMETRY=false`` and by the client option ``open_telemetry=False`` (unitcost's
own span). The store must hold exactly one row per call, with the same numbers, in every mode.
"""

# ruff: noqa: F811 - the fixtures imported from anthropic_fixtures are test parameters of the same name

from __future__ import annotations

import asyncio
import inspect
from decimal import Decimal

import anthropic
import pytest
from anthropic.types import Message
from conftest import store_rows
from providers.anthropic_fixtures import (
    HAND_COMPUTED_PICO,
    HAND_COMPUTED_REASONING_PICO,
    MESSAGE_ID,
    REQUEST,
    SONNET,
    STREAM_MESSAGE_ID,
    USAGE,
    MessagesServer,
    anthropic_client,  # noqa: F401 - fixture
    assert_counted_once,
    finished_spans,  # noqa: F401 - fixture
    genai_cost,
    llm_spans,
    require,
    sdk_tracing,  # noqa: F401 - fixture
    stream_events,
)
from pydantic import BaseModel

import unitcost
from unitcost.common.money import to_pico

pytestmark = pytest.mark.usefixtures("store_db")


def rows(db):
    return store_rows(db, "calls")


def assert_full_usage(row, *, streamed):
    """The non-overlapping buckets of USAGE, and its exact cost."""
    assert (row["provider"], row["operation"], row["model"]) == ("anthropic", "chat", SONNET)
    assert row["response_model"] == SONNET
    assert row["input_tokens"] == 1200  # Anthropic's input_tokens: already without the cache buckets
    assert row["cache_read_tokens"] == 20_000
    assert row["cache_write_tokens"] == 1000  # 5-minute writes
    assert row["cache_write_1h_tokens"] == 2000
    assert row["output_tokens"] == 500  # visible: 800 output tokens of which 300 thinking
    assert row["reasoning_tokens"] == 300
    assert (row["web_search_requests"], row["web_fetch_requests"]) == (2, 1)
    assert row["cost_pico"] == HAND_COMPUTED_PICO
    assert row["reasoning_cost_pico"] == HAND_COMPUTED_REASONING_PICO
    assert row["price_source"] == "genai-prices"
    assert row["service_tier"] == "standard"
    assert row["price_modifiers"] is None
    assert (row["estimated"], row["streamed"], row["incomplete"], row["error_type"]) == (0, int(streamed), 0, None)


def test_hand_computed_price_agrees_with_genai_prices():
    # genai-prices' own Anthropic usage extractor and price, from the raw usage block.
    assert genai_cost(USAGE) == Decimal("0.05735")
    assert to_pico(genai_cost(USAGE)) == HAND_COMPUTED_PICO


# --- plain calls --------------------------------------------------------------------------------------


@pytest.mark.covers("anthropic", "messages.create", "sync", "plain")
def test_create(store_db, anthropic_client, finished_spans, sdk_tracing):
    server = MessagesServer()
    client = anthropic_client(server)
    with unitcost.task("support_ticket", key="T-1042") as run:
        message = client.messages.create(**REQUEST)

    assert isinstance(message, Message) and message.id == MESSAGE_ID  # the caller's result, untouched
    assert message.usage.input_tokens == 1200
    (row,) = rows(store_db)
    assert row["run_id"] == run.id
    assert_full_usage(row, streamed=False)
    assert_counted_once(finished_spans(), [row], sdk_tracing)


@pytest.mark.covers("anthropic", "messages.create", "async", "plain")
def test_create_async(store_db, anthropic_client, finished_spans, sdk_tracing):
    client = anthropic_client(MessagesServer(), is_async=True)

    async def main():
        async with unitcost.task("support_ticket", key="T-7") as run:
            return run, await client.messages.create(**REQUEST)

    run, message = asyncio.run(main())
    assert isinstance(message, Message)
    (row,) = rows(store_db)
    assert row["run_id"] == run.id
    assert_full_usage(row, streamed=False)
    assert_counted_once(finished_spans(), [row], sdk_tracing)


def test_the_sdk_span_others_export_carries_the_task(store_db, anthropic_client, finished_spans, sdk_tracing):
    if sdk_tracing != "sdk-span":
        pytest.skip("only the SDK's own span is adopted")
    client = anthropic_client(MessagesServer())
    with unitcost.task("support_ticket", key="T-1042") as run:
        client.messages.create(**REQUEST)
    (span,) = llm_spans(finished_spans())
    assert span.name == "anthropic.messages.create"
    assert span.attributes["unitcost.task.id"] == run.id
    assert span.attributes["unitcost.span.type"] == "llm"


def test_count_tokens_is_never_usage(store_db, anthropic_client, finished_spans):
    server = MessagesServer()
    client = anthropic_client(server)
    counted = client.messages.count_tokens(model=SONNET, messages=REQUEST["messages"])
    assert counted.input_tokens == 2095
    client.beta.messages.count_tokens(model=SONNET, messages=REQUEST["messages"])
    assert rows(store_db) == []


# --- streams read to the end ------------------------------------------------------------------------


@pytest.mark.covers("anthropic", "messages.create", "sync", "stream")
def test_stream_true(store_db, anthropic_client, finished_spans, sdk_tracing):
    client = anthropic_client(MessagesServer())
    stream = client.messages.create(**REQUEST, stream=True)
    assert isinstance(stream, anthropic.Stream)
    types = [event.type for event in stream]

    assert types == [e["type"] for e in stream_events() if e["type"] != "ping"]  # every event, as sent
    (row,) = rows(store_db)
    assert_full_usage(row, streamed=True)
    assert_counted_once(finished_spans(), [row], sdk_tracing)


def test_stream_usage_is_cumulative_the_last_delta_wins(store_db, anthropic_client, finished_spans, sdk_tracing):
    # Three message_delta events, each repeating the input counts and reporting the output so far.
    client = anthropic_client(MessagesServer(events=stream_events(deltas=3)))
    for _ in client.messages.create(**REQUEST, stream=True):
        pass
    (row,) = rows(store_db)
    assert_full_usage(row, streamed=True)


@pytest.mark.covers("anthropic", "messages.create", "async", "stream")
def test_stream_true_async(store_db, anthropic_client, finished_spans, sdk_tracing):
    client = anthropic_client(MessagesServer(), is_async=True)

    async def main():
        stream = await client.messages.create(**REQUEST, stream=True)
        assert isinstance(stream, anthropic.AsyncStream)
        return [event.type async for event in stream]

    assert asyncio.run(main())[-1] == "message_stop"
    (row,) = rows(store_db)
    assert_full_usage(row, streamed=True)
    assert_counted_once(finished_spans(), [row], sdk_tracing)


def test_a_stream_of_a_client_instrumented_alone_is_the_sdks_stream(store_db, anthropic_client, sdk_tracing):
    # anthropic 0.x answers isinstance(x, Stream) in a metaclass of its own, blind to proxies.
    unitcost.uninstrument()
    client, async_client = anthropic_client(MessagesServer()), anthropic_client(MessagesServer(), is_async=True)
    unitcost.instrument(client)
    unitcost.instrument(async_client)
    stream = client.messages.create(**REQUEST, stream=True)
    assert isinstance(stream, anthropic.Stream) and not isinstance(object(), anthropic.Stream)
    for _ in stream:
        pass

    async def main():
        stream = await async_client.messages.create(**REQUEST, stream=True)
        assert isinstance(stream, anthropic.AsyncStream)
        async for _ in stream:
            pass

    asyncio.run(main())
    assert [row["streamed"] for row in rows(store_db)] == [1, 1]


@pytest.mark.covers("anthropic", "messages.stream", "sync", "stream")
@pytest.mark.parametrize("read", ["get_final_message", "text_stream", "until_done", "iterate", "get_final_text"])
def test_stream_helper(store_db, anthropic_client, finished_spans, sdk_tracing, read):
    client = anthropic_client(MessagesServer())
    with client.messages.stream(**REQUEST) as stream:
        assert isinstance(stream, anthropic.lib.streaming.MessageStream)
        if read == "get_final_message":
            message = stream.get_final_message()
            assert message.usage.output_tokens == 800 and message.id == STREAM_MESSAGE_ID
        elif read == "text_stream":
            assert "".join(stream.text_stream) == "Your order ships today."
        elif read == "until_done":
            stream.until_done()
        elif read == "iterate":
            assert [e.type for e in stream][-1] == "message_stop"
        else:
            assert stream.get_final_text() == "Your order ships today."
    (row,) = rows(store_db)
    assert_full_usage(row, streamed=True)
    assert_counted_once(finished_spans(), [row], sdk_tracing)


@pytest.mark.covers("anthropic", "messages.stream", "async", "stream")
def test_stream_helper_async(store_db, anthropic_client, finished_spans, sdk_tracing):
    client = anthropic_client(MessagesServer(), is_async=True)

    async def main():
        async with client.messages.stream(**REQUEST) as stream:
            text = [t async for t in stream.text_stream]
            return text, await stream.get_final_message()

    text, message = asyncio.run(main())
    assert "".join(text) == "Your order ships today." and message.usage.output_tokens == 800
    (row,) = rows(store_db)
    assert_full_usage(row, streamed=True)
    assert_counted_once(finished_spans(), [row], sdk_tracing)


# --- parse and the beta classes -----------------------------------------------------------------------


class Order(BaseModel):
    order: int
    status: str


def assert_recorded(found, streamed, spans=None):
    """``found`` rows, one per call, each with USAGE; with ``spans``: each row is one of the LLM spans."""
    assert [r["streamed"] for r in found] == streamed
    for row in found:
        assert_full_usage(row, streamed=bool(row["streamed"]))
    if spans is not None:
        assert sorted(format(s.context.span_id, "016x") for s in llm_spans(spans)) == sorted(
            r["span_id"] for r in found
        )


@pytest.mark.covers("anthropic", "messages.parse", "sync", "plain")
@pytest.mark.covers("anthropic", "beta.messages.parse", "sync", "plain")
def test_parse(store_db, anthropic_client, finished_spans, sdk_tracing):
    client = anthropic_client(MessagesServer(text='{"order": 1042, "status": "shipped"}'))
    require(client, "messages.parse")
    require(client, "beta.messages.parse")
    parsed = client.messages.parse(**REQUEST, output_format=Order)
    assert parsed.parsed_output == Order(order=1042, status="shipped")
    beta_parsed = client.beta.messages.parse(**REQUEST, output_format=Order)
    assert beta_parsed.parsed_output.order == 1042
    assert_recorded(rows(store_db), [0, 0], finished_spans())


@pytest.mark.covers("anthropic", "beta.messages.create", "sync", "plain")
@pytest.mark.covers("anthropic", "beta.messages.create", "sync", "stream")
def test_beta_create(store_db, anthropic_client, finished_spans, sdk_tracing):
    client = anthropic_client(MessagesServer())
    beta = client.beta.messages.create(**REQUEST)
    assert isinstance(beta, anthropic.types.beta.BetaMessage)
    for _ in client.beta.messages.create(**REQUEST, stream=True):
        pass
    assert_recorded(rows(store_db), [0, 1], finished_spans())


@pytest.mark.covers("anthropic", "beta.messages.stream", "sync", "stream")
def test_beta_stream_helper(store_db, anthropic_client, finished_spans, sdk_tracing):
    client = anthropic_client(MessagesServer())
    require(client, "beta.messages.stream")
    with client.beta.messages.stream(**REQUEST) as stream:
        stream.until_done()
    assert_recorded(rows(store_db), [1], finished_spans())


@pytest.mark.covers("anthropic", "messages.parse", "async", "plain")
@pytest.mark.covers("anthropic", "beta.messages.parse", "async", "plain")
def test_parse_async(store_db, anthropic_client, sdk_tracing):
    client = anthropic_client(MessagesServer(text='{"order": 1042, "status": "shipped"}'), is_async=True)
    require(client, "messages.parse")
    require(client, "beta.messages.parse")

    async def main():
        await client.messages.parse(**REQUEST, output_format=Order)
        return await client.beta.messages.parse(**REQUEST, output_format=Order)

    assert asyncio.run(main()).parsed_output.order == 1042
    assert_recorded(rows(store_db), [0, 0])


@pytest.mark.covers("anthropic", "beta.messages.create", "async", "plain")
@pytest.mark.covers("anthropic", "beta.messages.create", "async", "stream")
def test_beta_create_async(store_db, anthropic_client, sdk_tracing):
    client = anthropic_client(MessagesServer(), is_async=True)

    async def main():
        await client.beta.messages.create(**REQUEST)
        async for _ in await client.beta.messages.create(**REQUEST, stream=True):
            pass

    asyncio.run(main())
    assert_recorded(rows(store_db), [0, 1])


@pytest.mark.covers("anthropic", "beta.messages.stream", "async", "stream")
def test_beta_stream_helper_async(store_db, anthropic_client, sdk_tracing):
    client = anthropic_client(MessagesServer(), is_async=True)
    require(client, "beta.messages.stream")

    async def main():
        async with client.beta.messages.stream(**REQUEST) as stream:
            await stream.until_done()

    asyncio.run(main())
    assert_recorded(rows(store_db), [1])


# --- raw responses ------------------------------------------------------------------------------------


@pytest.mark.covers("anthropic", "messages.with_raw_response.create", "sync", "plain")
@pytest.mark.covers("anthropic", "messages.with_raw_response.create", "sync", "stream")
@pytest.mark.covers("anthropic", "messages.with_streaming_response.create", "sync", "stream")
def test_raw_responses(store_db, anthropic_client, finished_spans, sdk_tracing):
    client = anthropic_client(MessagesServer())
    raw = client.messages.with_raw_response.create(**REQUEST)
    assert raw.parse().id == MESSAGE_ID
    raw = client.messages.with_raw_response.create(**REQUEST, stream=True)
    assert [e.type for e in raw.parse()][-1] == "message_stop"
    with client.messages.with_streaming_response.create(**REQUEST, stream=True) as response:
        lines = list(response.iter_lines())
    assert "event: message_stop" in lines

    found = rows(store_db)
    assert len(found) == 3
    for row in found:
        assert_full_usage(row, streamed=bool(row["streamed"]))
    spans = llm_spans(finished_spans())
    assert sorted(format(s.context.span_id, "016x") for s in spans) == sorted(r["span_id"] for r in found)


async def parse_raw(raw):
    """``raw.parse()`` of an async client's raw response: awaited in anthropic >= 1 (an AsyncAPIResponse),
    not before (a LegacyAPIResponse, which parses synchronously)."""
    parsed = raw.parse()
    return await parsed if inspect.isawaitable(parsed) else parsed


@pytest.mark.covers("anthropic", "messages.with_raw_response.create", "async", "plain")
@pytest.mark.covers("anthropic", "messages.with_raw_response.create", "async", "stream")
@pytest.mark.covers("anthropic", "messages.with_streaming_response.create", "async", "plain")
@pytest.mark.covers("anthropic", "messages.with_streaming_response.create", "async", "stream")
@pytest.mark.covers("anthropic", "messages.with_streaming_response.create", "sync", "plain")
def test_raw_responses_async_and_plain_streaming(store_db, anthropic_client, sdk_tracing):
    server = MessagesServer()
    with anthropic_client(server).messages.with_streaming_response.create(**REQUEST) as response:
        assert response.parse().id == MESSAGE_ID
    client = anthropic_client(server, is_async=True)

    async def main():
        raw = await client.messages.with_raw_response.create(**REQUEST)
        assert (await parse_raw(raw)).id == MESSAGE_ID
        raw = await client.messages.with_raw_response.create(**REQUEST, stream=True)
        assert [e.type async for e in await parse_raw(raw)][-1] == "message_stop"
        async with client.messages.with_streaming_response.create(**REQUEST) as response:
            assert (await response.parse()).id == MESSAGE_ID
        async with client.messages.with_streaming_response.create(**REQUEST, stream=True) as response:
            assert "event: message_stop" in [line async for line in response.iter_lines()]

    asyncio.run(main())
    found = rows(store_db)
    assert len(found) == 5
    for row in found:
        assert_full_usage(row, streamed=bool(row["streamed"]))
