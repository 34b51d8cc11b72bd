"""OpenAI Embeddings and legacy Completions, sync and async (legacy Completions also streamed).

text-embedding-3-small: $0.02 per million input tokens; 1234 tokens -> $0.00002468 = 24,680,000 pico.
gpt-3.5-turbo-instruct: $1.50 input, $2.00 output per million; 42 + 7 tokens ->
(42 * 1.5 + 7 * 2) / 1e6 = $0.000077 = 77,000,000 pico.
"""

from __future__ import annotations

import asyncio

import pytest
from conftest import store_rows
from openai.types import CreateEmbeddingResponse
from providers.openai_fixtures import EMBEDDING_MODEL, INSTRUCT, OpenAIServer, genai_price

from unitcost.common.money import to_pico

EMBEDDING_PICO = 24_680_000
INSTRUCT_PICO = 77_000_000
PROMPT_TEXT = "Summarise: order #1042 was due on Monday and has not shipped."


def call_row(db):
    (row,) = store_rows(db, "calls")
    return row


def test_hand_computed_prices_agree_with_genai_prices():
    assert to_pico(genai_price("openai", EMBEDDING_MODEL, input_tokens=1234)) == EMBEDDING_PICO
    assert to_pico(genai_price("openai", INSTRUCT, input_tokens=42, output_tokens=7)) == INSTRUCT_PICO


def assert_embedding_row(row):
    assert (row["provider"], row["operation"], row["model"], row["response_model"]) == (
        "openai", "embeddings", EMBEDDING_MODEL, EMBEDDING_MODEL,
    )
    assert (row["input_tokens"], row["output_tokens"]) == (1234, 0)
    assert row["cost_pico"] == EMBEDDING_PICO


@pytest.mark.covers("openai", "embeddings.create", "sync", "plain")
def test_embeddings(store_db, openai_client):
    client = openai_client(OpenAIServer())
    result = client.embeddings.create(model=EMBEDDING_MODEL, input=["order #1042", "refund policy"])

    assert isinstance(result, CreateEmbeddingResponse) and len(result.data) == 2
    assert result.data[0].embedding[0] == pytest.approx(0.0023064255)  # decoded from base64 as usual
    assert_embedding_row(call_row(store_db))


@pytest.mark.covers("openai", "embeddings.create", "async", "plain")
def test_embeddings_async(store_db, openai_client):
    client = openai_client(OpenAIServer(), is_async=True)
    asyncio.run(client.embeddings.create(model=EMBEDDING_MODEL, input="order #1042"))
    assert_embedding_row(call_row(store_db))


def assert_completion_row(row, *, streamed=0):
    assert (row["provider"], row["operation"], row["model"], row["response_model"]) == (
        "openai", "text_completion", INSTRUCT, INSTRUCT,
    )
    assert (row["input_tokens"], row["output_tokens"]) == (42, 7)
    assert row["cost_pico"] == INSTRUCT_PICO
    assert (row["streamed"], row["estimated"], row["incomplete"]) == (streamed, 0, 0)


@pytest.mark.covers("openai", "completions.create", "sync", "plain")
def test_legacy_completion(store_db, openai_client):
    client = openai_client(OpenAIServer())
    result = client.completions.create(model=INSTRUCT, prompt=PROMPT_TEXT)
    assert result.choices[0].text == "Your order #1042 ships today."
    assert_completion_row(call_row(store_db))


@pytest.mark.covers("openai", "completions.create", "async", "plain")
def test_legacy_completion_async(store_db, openai_client):
    client = openai_client(OpenAIServer(), is_async=True)
    asyncio.run(client.completions.create(model=INSTRUCT, prompt=PROMPT_TEXT))
    assert_completion_row(call_row(store_db))


@pytest.mark.covers("openai", "completions.create", "sync", "stream")
def test_legacy_completion_stream_asks_for_usage_and_hides_it(store_db, openai_client):
    server = OpenAIServer()
    client = openai_client(server)
    chunks = list(client.completions.create(model=INSTRUCT, prompt=PROMPT_TEXT, stream=True))

    assert server.requests[0][1]["stream_options"] == {"include_usage": True}
    assert all(chunk.choices for chunk in chunks)  # the usage-only chunk is not the caller's
    assert "".join(chunk.choices[0].text for chunk in chunks) == "Your order #1042 ships today."
    assert_completion_row(call_row(store_db), streamed=1)


@pytest.mark.covers("openai", "completions.create", "async", "stream")
def test_legacy_completion_stream_async(store_db, openai_client):
    client = openai_client(OpenAIServer(), is_async=True)

    async def main():
        stream = await client.completions.create(model=INSTRUCT, prompt=PROMPT_TEXT, stream=True)
        return [chunk async for chunk in stream]

    assert all(chunk.choices for chunk in asyncio.run(main()))
    assert_completion_row(call_row(store_db), streamed=1)


def test_legacy_completion_stream_without_usage_is_estimated(store_db, openai_client):
    client = openai_client(OpenAIServer(honour_include_usage=False))
    list(client.completions.create(model=INSTRUCT, prompt=PROMPT_TEXT, stream=True))
    row = call_row(store_db)
    assert (row["estimated"], row["incomplete"]) == (1, 0)
    assert row["input_tokens"] > 0 and row["output_tokens"] > 0
