"""Every Chat Completions path, sync and async: create, create(stream=True), the ``.stream()`` helper and
``.parse``; streams abandoned on each path; the include-usage switch.

gpt-4o-mini per million tokens: $0.15 input, $0.075 cached input, $0.60 output; no cache-write rate,
so cache writes cost the input rate. The usage here: 1000 prompt tokens of which 200 cached and 100
written to the cache, 500 completion tokens of which 100 reasoning:

    (700 * 0.15 + 200 * 0.075 + 100 * 0.15 + 500 * 0.60) / 1e6 = $0.000435 = 435,000,000 pico-dollars
"""

from __future__ import annotations

import asyncio
import gc

import pytest
from conftest import GPT4O_MINI, PROMPT, ChatServer, chat_helpers, store_rows, usage_block
from openai.types.chat import ParsedChatCompletion
from providers.openai_fixtures import STRUCTURED_ANSWER, genai_price
from pydantic import BaseModel

from unitcost.common.money import to_pico

HAND_COMPUTED_PICO = 435_000_000
USAGE = usage_block(1000, 500, cached=200, reasoning=100)
USAGE["prompt_tokens_details"]["cache_write_tokens"] = 100


class TicketStatus(BaseModel):
    ticket: str
    status: str


def call_row(db):
    (row,) = store_rows(db, "calls")
    return row


def assert_full_usage(row, *, streamed=0):
    assert (row["provider"], row["operation"], row["response_model"]) == ("openai", "chat", GPT4O_MINI)
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"]) == (700, 200, 100)
    assert (row["output_tokens"], row["reasoning_tokens"]) == (400, 100)
    assert row["cost_pico"] == HAND_COMPUTED_PICO
    assert (row["estimated"], row["incomplete"], row["streamed"]) == (0, 0, streamed)


def test_hand_computed_price_agrees_with_genai_prices():
    usage = dict(input_tokens=1000, cache_read_tokens=200, cache_write_tokens=100, output_tokens=500,
                 output_reasoning_tokens=100)
    assert to_pico(genai_price("openai", GPT4O_MINI, **usage)) == HAND_COMPUTED_PICO


@pytest.mark.covers("openai", "chat.completions.create", "sync", "plain")
def test_create(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE))
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert_full_usage(call_row(store_db))


@pytest.mark.covers("openai", "chat.completions.create", "async", "plain")
def test_create_async(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE), is_async=True)
    asyncio.run(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT))
    assert_full_usage(call_row(store_db))


@pytest.mark.covers("openai", "chat.completions.create", "sync", "stream")
def test_create_stream(store_db, openai_client):
    server = ChatServer(usage=USAGE)
    client = openai_client(server)
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True))

    assert all(chunk.choices for chunk in chunks)  # the usage chunk unitcost asked for stays hidden
    assert server.requests[0]["stream_options"] == {"include_usage": True}
    assert_full_usage(call_row(store_db), streamed=1)


@pytest.mark.covers("openai", "chat.completions.create", "async", "stream")
def test_create_stream_async(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE), is_async=True)

    async def main():
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)
        return [chunk async for chunk in stream]

    assert all(chunk.choices for chunk in asyncio.run(main()))
    assert_full_usage(call_row(store_db), streamed=1)


@pytest.mark.covers("openai", "chat.completions.stream", "sync", "stream")
def test_stream_helper(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE))
    with chat_helpers(client).stream(model="gpt-4o-mini", messages=PROMPT) as stream:
        text = "".join(event.delta for event in stream if event.type == "content.delta")
    assert text == "Your order ships today."
    assert_full_usage(call_row(store_db), streamed=1)


@pytest.mark.covers("openai", "chat.completions.stream", "async", "stream")
def test_stream_helper_async(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE), is_async=True)

    async def main():
        async with chat_helpers(client).stream(model="gpt-4o-mini", messages=PROMPT) as stream:
            async for _ in stream:
                pass
            return await stream.get_final_completion()

    assert asyncio.run(main()).choices[0].message.content == "Your order ships today."
    assert_full_usage(call_row(store_db), streamed=1)


@pytest.mark.covers("openai", "chat.completions.parse", "sync", "plain")
def test_parse(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE, pieces=(STRUCTURED_ANSWER,)))
    parsed = chat_helpers(client).parse(model="gpt-4o-mini", messages=PROMPT, response_format=TicketStatus)

    assert isinstance(parsed, ParsedChatCompletion)
    assert parsed.choices[0].message.parsed == TicketStatus(ticket="T-1042", status="shipped")
    assert_full_usage(call_row(store_db))


@pytest.mark.covers("openai", "chat.completions.parse", "async", "plain")
def test_parse_async(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE, pieces=(STRUCTURED_ANSWER,)), is_async=True)
    parsed = asyncio.run(
        chat_helpers(client).parse(model="gpt-4o-mini", messages=PROMPT, response_format=TicketStatus)
    )
    assert parsed.choices[0].message.parsed.status == "shipped"
    assert_full_usage(call_row(store_db))


# --- streams left early, on every path -------------------------------------------------------------------


def test_stream_helper_left_early_is_recorded_once_incomplete(store_db, openai_client):
    # ChatCompletionStream.close() closes the HTTP response, not the raw stream unitcost watches.
    client = openai_client(ChatServer(usage=USAGE))
    with chat_helpers(client).stream(model="gpt-4o-mini", messages=PROMPT) as stream:
        for _ in stream:
            break
        held = stream  # still referenced: the call must not wait for garbage collection
    row = call_row(store_db)
    assert (row["incomplete"], row["estimated"]) == (1, 1)
    assert held is stream


def test_async_stream_helper_left_early_is_recorded_once_incomplete(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE), is_async=True)

    async def main():
        async with chat_helpers(client).stream(model="gpt-4o-mini", messages=PROMPT) as stream:
            async for _ in stream:
                break
        return stream

    held = asyncio.run(main())
    row = call_row(store_db)
    assert (row["incomplete"], row["estimated"]) == (1, 1)
    assert held is not None


def test_exception_in_the_loop_body_passes_through_and_ends_the_call(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE))
    mine = KeyError("the caller's own bug")
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)
    with pytest.raises(KeyError) as raised, stream:
        for _ in stream:
            raise mine
    assert raised.value is mine
    row = call_row(store_db)
    assert (row["incomplete"], row["estimated"]) == (1, 1)


def test_stream_left_to_the_garbage_collector(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE))

    def read_one():
        for _ in client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True):
            return

    read_one()
    gc.collect()
    assert call_row(store_db)["incomplete"] == 1


# --- include_usage --------------------------------------------------------------------------------------------


def test_include_usage_off_sends_the_request_unchanged_and_estimates(make_store, openai_client):
    db = make_store(openai_include_usage=False)
    server = ChatServer(usage=USAGE)
    client = openai_client(server)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True))

    assert "stream_options" not in server.requests[0]
    row = call_row(db)
    assert (row["estimated"], row["incomplete"]) == (1, 0)


def test_other_stream_options_are_kept_and_include_usage_added(store_db, openai_client):
    server = ChatServer(usage=USAGE)
    client = openai_client(server)
    options = {"include_obfuscation": False}
    chunks = list(
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True, stream_options=options)
    )
    assert server.requests[0]["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert options == {"include_obfuscation": False}  # the caller's dict is not changed
    assert all(chunk.choices for chunk in chunks)
    assert call_row(store_db)["cost_pico"] == HAND_COMPUTED_PICO


def test_the_streams_http_response_is_the_same_object_each_time(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)
    assert stream.response is stream.response
    assert stream.response.status_code == 200
    list(stream)
    assert call_row(store_db)["cost_pico"] == HAND_COMPUTED_PICO



def test_a_stream_helper_never_closed_ends_its_call_when_collected(store_db, openai_client):
    # ChatCompletionStream keeps a generator of itself (a cycle): it goes with the cyclic collector.
    client = openai_client(ChatServer(usage=USAGE))
    stream = chat_helpers(client).stream(model="gpt-4o-mini", messages=PROMPT).__enter__()
    next(iter(stream))
    del stream
    gc.collect()
    assert call_row(store_db)["incomplete"] == 1
