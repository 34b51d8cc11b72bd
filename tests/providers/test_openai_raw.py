"""``with_raw_response`` and ``with_streaming_response``: usage is read from what the caller reads,
without consuming the body or changing what the caller receives."""

from __future__ import annotations

import asyncio

import openai
import pytest
from conftest import GPT4O_MINI, PROMPT, ChatServer, store_rows, usage_block
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from providers.openai_fixtures import OpenAIServer

CHAT_PICO = 435_000_000  # gpt-4o-mini, 1000 prompt (200 cached) + 500 completion: see test_openai_chat.py
RESPONSES_PICO = 2_030_000_000  # gpt-5-mini, the usage in openai_fixtures: see test_openai_responses.py
USAGE = usage_block(1000, 500, cached=200, reasoning=100)


def call_row(db):
    (row,) = store_rows(db, "calls")
    return row


@pytest.mark.covers("openai", "chat.completions.with_raw_response.create", "sync", "plain")
def test_raw_response_is_priced_before_and_after_parse(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT)

    assert raw.headers["content-type"].startswith("application/json")
    assert raw.http_response.status_code == 200
    assert call_row(store_db)["cost_pico"] == CHAT_PICO  # the body was already read: priced at once
    completion = raw.parse()
    assert type(completion) is ChatCompletion and completion.usage.prompt_tokens == 1000
    assert raw.parse() is completion  # the SDK's own cache, untouched
    assert len(store_rows(store_db, "calls")) == 1


@pytest.mark.covers("openai", "chat.completions.with_raw_response.create", "async", "plain")
def test_raw_response_async(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE), is_async=True)

    async def main():
        raw = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT)
        return raw.parse()

    assert asyncio.run(main()).id.startswith("chatcmpl-")
    assert call_row(store_db)["cost_pico"] == CHAT_PICO


@pytest.mark.covers("openai", "chat.completions.with_raw_response.create", "sync", "stream")
def test_raw_response_stream_is_left_as_the_caller_asked(store_db, openai_client):
    # The caller asked for the raw HTTP response: unitcost does not add stream_options to it, so the
    # server sends no usage and the call is estimated from the text the caller's stream carried.
    server = ChatServer(usage=USAGE)
    client = openai_client(server)
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=PROMPT, stream=True)
    chunks = list(raw.parse())

    assert "stream_options" not in server.requests[0]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Your order ships today."
    row = call_row(store_db)
    assert (row["streamed"], row["estimated"], row["incomplete"]) == (1, 1, 0)


def test_raw_response_stream_with_the_callers_include_usage_is_exact(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE))
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=PROMPT, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    assert chunks[-1].usage.prompt_tokens == 1000  # the caller asked for it: the caller sees it
    row = call_row(store_db)
    assert (row["estimated"], row["cost_pico"]) == (0, CHAT_PICO)


@pytest.mark.covers("openai", "chat.completions.with_streaming_response.create", "sync", "plain")
def test_streaming_response_json(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE))
    with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=PROMPT) as response:
        assert store_rows(store_db, "calls") == []  # nothing read yet: nothing recorded yet
        body = response.json()
    assert body["model"] == GPT4O_MINI
    assert call_row(store_db)["cost_pico"] == CHAT_PICO


def test_streaming_response_parse(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE))
    with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=PROMPT) as response:
        completion = response.parse()
    assert type(completion) is ChatCompletion
    assert call_row(store_db)["cost_pico"] == CHAT_PICO


def test_streaming_response_never_read_is_unpriced_not_free(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE))
    with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=PROMPT) as response:
        assert response.status_code == 200
    row = call_row(store_db)
    assert row["cost_pico"] is None and row["error_type"] is None


@pytest.mark.covers("openai", "responses.with_streaming_response.create", "sync", "stream")
def test_streaming_response_sse_lines(store_db, openai_client):
    client = openai_client(OpenAIServer())
    with client.responses.with_streaming_response.create(model="gpt-5-mini", input="Where?", stream=True) as resp:
        lines = list(resp.iter_lines())
    assert lines[0] == "event: response.created"  # the caller reads the raw server-sent events
    row = call_row(store_db)
    assert (row["cost_pico"], row["estimated"], row["incomplete"]) == (RESPONSES_PICO, 0, 0)


@pytest.mark.covers("openai", "responses.with_streaming_response.create", "async", "stream")
def test_streaming_response_sse_bytes_async(store_db, openai_client):
    client = openai_client(OpenAIServer(), is_async=True)

    async def main():
        async with client.responses.with_streaming_response.create(
            model="gpt-5-mini", input="Where?", stream=True
        ) as response:
            return b"".join([chunk async for chunk in response.iter_bytes()])

    assert b"response.completed" in asyncio.run(main())
    assert call_row(store_db)["cost_pico"] == RESPONSES_PICO


@pytest.mark.covers("openai", "responses.with_streaming_response.create", "async", "plain")
def test_streaming_response_async_parse(store_db, openai_client):
    client = openai_client(OpenAIServer(), is_async=True)

    async def main():
        async with client.responses.with_streaming_response.create(model="gpt-5-mini", input="Where?") as response:
            return await response.parse()

    assert type(asyncio.run(main())) is Response
    assert call_row(store_db)["cost_pico"] == RESPONSES_PICO


@pytest.mark.covers("openai", "responses.with_raw_response.create", "sync", "stream")
def test_raw_response_stream_left_early_is_incomplete(store_db, openai_client):
    client = openai_client(OpenAIServer())
    raw = client.responses.with_raw_response.create(model="gpt-5-mini", input="Where?", stream=True)
    stream = raw.parse()
    assert isinstance(stream, openai.Stream)
    for _ in stream:
        break
    stream.close()
    row = call_row(store_db)
    assert (row["incomplete"], row["estimated"]) == (1, 1)


@pytest.mark.covers("openai", "chat.completions.with_raw_response.create", "async", "stream")
def test_raw_response_async_stream(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE), is_async=True)

    async def main():
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=PROMPT, stream=True, stream_options={"include_usage": True}
        )
        return [chunk async for chunk in raw.parse()]

    assert asyncio.run(main())[-1].usage.prompt_tokens == 1000
    row = call_row(store_db)
    assert (row["streamed"], row["estimated"], row["cost_pico"]) == (1, 0, CHAT_PICO)


@pytest.mark.covers("openai", "chat.completions.with_streaming_response.create", "sync", "stream")
def test_streaming_response_chat_sse_lines_left_early(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE))
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=PROMPT, stream=True
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data:"):
                break  # one event read, then the caller leaves
    row = call_row(store_db)
    assert (row["streamed"], row["incomplete"], row["estimated"]) == (1, 1, 1)


@pytest.mark.covers("openai", "chat.completions.with_streaming_response.create", "async", "plain")
def test_streaming_response_chat_async_text(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE), is_async=True)

    async def main():
        async with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=PROMPT
        ) as response:
            return await response.text()

    assert GPT4O_MINI in asyncio.run(main())
    assert call_row(store_db)["cost_pico"] == CHAT_PICO


@pytest.mark.covers("openai", "chat.completions.with_streaming_response.create", "async", "stream")
def test_streaming_response_chat_async_stream_with_the_callers_include_usage(store_db, openai_client):
    client = openai_client(ChatServer(usage=USAGE), is_async=True)

    async def main():
        async with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=PROMPT, stream=True, stream_options={"include_usage": True}
        ) as response:
            return [line async for line in response.iter_lines()]

    lines = asyncio.run(main())
    assert "data: [DONE]" in lines  # the raw server-sent events, as sent
    row = call_row(store_db)
    assert (row["estimated"], row["incomplete"], row["cost_pico"]) == (0, 0, CHAT_PICO)
