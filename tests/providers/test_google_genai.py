"""The google-genai adapter end to end: the real ``google-genai`` client over real HTTP to a local
server answering as generativelanguage.googleapis.com does, through unitcost's lifecycle and store
exporter, to the rows in the store.

Usage blocks carry every count Gemini sends: a prompt with cached tokens inside it, tool-use prompt
tokens, thoughts and candidates. Prices are worked out by hand and checked against genai-prices'
own reading of the same wire JSON.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from conftest import import_or_fail, store_rows
from genai_prices import calc_price, extract_usage
from providers.local_server import LocalServer

import unitcost
from unitcost.common.money import to_pico

genai = import_or_fail("google.genai")
from google.genai import errors, types  # noqa: E402 - after the import check

pytestmark = pytest.mark.usefixtures("store_db")

MODEL = "gemini-2.5-flash"  # $0.30/M input, $0.03/M cache read, $2.50/M output (thoughts included)
USAGE = {
    "promptTokenCount": 1200,
    "cachedContentTokenCount": 1024,
    "toolUsePromptTokenCount": 17,
    "candidatesTokenCount": 45,
    "thoughtsTokenCount": 300,
    "totalTokenCount": 1562,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1200}],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 1024}],
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 45}],
    "toolUsePromptTokensDetails": [{"modality": "TEXT", "tokenCount": 17}],
    "trafficType": "ON_DEMAND",
}
# By hand: input 1200 + 17 = 1217, of which 1024 cache reads: 193 * $0.30 + 1024 * $0.03, plus output
# 45 + 300 thoughts = 345 * $2.50, per million = $0.00095112.
HAND_COMPUTED_PICO = 951_120_000
HAND_COMPUTED_REASONING_PICO = 300 * 2_500_000
RESPONSE_ID = "Zy5DaeDhBfGbz7IPqYKt8Qk"
QUESTION = "Where is my order #1042? It was due on Monday."


def body(usage: dict[str, Any] | None = USAGE, *, parts: list[dict[str, Any]] | None = None,
         finish: str | None = "STOP", response_id: str = RESPONSE_ID) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": parts if parts is not None else [
            {"text": "The customer asks about order 1042.", "thought": True},
            {"text": "Your order ships today."},
        ]},
        "index": 0,
    }
    if finish:
        candidate["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [candidate], "modelVersion": MODEL, "responseId": response_id}
    if usage is not None:
        out["usageMetadata"] = usage
    return out


def sse(chunks: list[dict[str, Any]]) -> tuple[int, dict[str, str], list[bytes]]:
    events = [b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks]
    return 200, {"Content-Type": "text/event-stream"}, events


def stream_chunks(first_usage: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Two chunks as Gemini streams them: each with the usage so far; the last one is complete."""
    so_far = first_usage if first_usage is not None else {
        "promptTokenCount": 1200, "cachedContentTokenCount": 1024, "toolUsePromptTokenCount": 17,
        "candidatesTokenCount": 20, "thoughtsTokenCount": 300, "totalTokenCount": 1537,
    }
    return [
        body(so_far, parts=[{"text": "Your order "}], finish=None),
        body(USAGE, parts=[{"text": "ships today."}]),
    ]


class GeminiServer:
    """Answers generateContent and streamGenerateContent as the Gemini API does."""

    def __init__(self, *, stream: list[dict[str, Any]] | None = None) -> None:
        self.stream = stream if stream is not None else stream_chunks()

    def __call__(self, method: str, path: str, request: Any) -> tuple[int, dict[str, str], Any]:
        if ":streamGenerateContent" in path:
            return sse(self.stream)
        if ":generateContent" in path:
            tools = (request or {}).get("tools")
            answered = any("functionResponse" in p for c in request.get("contents", []) for p in c.get("parts", []))
            if tools and not answered:  # automatic function calling: first the function call
                declaration = tools[0]["functionDeclarations"][0]
                small = {"promptTokenCount": 100, "candidatesTokenCount": 11, "totalTokenCount": 111}
                call = {"functionCall": {"name": declaration["name"], "args": {"order_id": "1042"}}}
                return 200, {"Content-Type": "application/json"}, body(small, parts=[call], response_id="afc-1")
            return 200, {"Content-Type": "application/json"}, body()
        missing = {"error": {"code": 404, "message": path, "status": "NOT_FOUND"}}
        return 404, {"Content-Type": "application/json"}, missing


def error_server(method: str, path: str, request: Any) -> tuple[int, dict[str, str], Any]:
    error = {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                       "status": "INVALID_ARGUMENT"}}
    return 400, {"Content-Type": "application/json"}, error


@pytest.fixture
def gemini():
    """``gemini(handler=GeminiServer())`` -> a real google-genai client talking to a local server."""
    servers: list[LocalServer] = []
    clients: list[Any] = []  # kept: a Client closes its HTTP client when it is garbage-collected

    def make(handler: Any = None, **client_kwargs: Any) -> Any:
        server = LocalServer(handler or GeminiServer()).__enter__()
        servers.append(server)
        options = types.HttpOptions(base_url=server.url)
        clients.append(genai.Client(api_key="AIza-test-key", http_options=options, **client_kwargs))
        return clients[-1]

    yield make
    for server in servers:
        server.__exit__(None, None, None)


def rows(db):
    return store_rows(db, "calls")


def assert_full_usage(row, *, streamed=False, provider="gcp.gemini"):
    assert (row["provider"], row["operation"], row["model"]) == (provider, "generate_content", MODEL)
    assert row["response_model"] == MODEL
    assert row["input_tokens"] == 193  # 1200 prompt + 17 tool-use prompt, less the 1024 cache reads
    assert row["cache_read_tokens"] == 1024
    assert row["cache_write_tokens"] == 0
    assert row["output_tokens"] == 45  # the candidates
    assert row["reasoning_tokens"] == 300  # the thoughts, billed as output
    assert row["cost_pico"] == HAND_COMPUTED_PICO
    assert row["reasoning_cost_pico"] == HAND_COMPUTED_REASONING_PICO
    assert row["price_source"] == "genai-prices"
    assert (row["estimated"], row["streamed"], row["incomplete"], row["error_type"]) == (0, int(streamed), 0, None)


def test_hand_computed_price_agrees_with_genai_prices():
    # genai-prices' own Gemini usage extractor and price, from the raw response JSON.
    extracted = extract_usage(body(), provider_id="google")
    assert extracted.model.id == MODEL
    assert calc_price(extracted.usage, MODEL, provider_id="google").total_price == Decimal("0.00095112")
    assert to_pico(Decimal("0.00095112")) == HAND_COMPUTED_PICO


@pytest.mark.covers("google-genai", "models.generate_content", "sync", "plain")
def test_generate_content(store_db, gemini):
    client = gemini()
    with unitcost.task("support_ticket", key="T-1042") as run:
        response = client.models.generate_content(model=MODEL, contents=QUESTION)

    assert isinstance(response, types.GenerateContentResponse)  # the caller's result, untouched
    assert response.text == "Your order ships today."
    assert response.usage_metadata.prompt_token_count == 1200
    (row,) = rows(store_db)
    assert row["run_id"] == run.id
    assert_full_usage(row)


def test_model_named_with_its_resource_path(store_db, gemini):
    gemini().models.generate_content(model=f"models/{MODEL}", contents=QUESTION)
    (row,) = rows(store_db)
    assert row["model"] == MODEL
    assert row["cost_pico"] == HAND_COMPUTED_PICO


@pytest.mark.covers("google-genai", "models.generate_content", "async", "plain")
def test_generate_content_async(store_db, gemini):
    client = gemini()

    async def main():
        async with unitcost.task("support_ticket", key="T-7") as run:
            return run, await client.aio.models.generate_content(model=MODEL, contents=QUESTION)

    run, response = asyncio.run(main())
    assert response.text == "Your order ships today."
    (row,) = rows(store_db)
    assert row["run_id"] == run.id
    assert_full_usage(row)


@pytest.mark.covers("google-genai", "models.generate_content_stream", "sync", "stream")
def test_stream_usage_is_the_last_chunks_not_a_sum(store_db, gemini):
    client = gemini()
    with unitcost.task("support_ticket") as run:
        texts = [chunk.text for chunk in client.models.generate_content_stream(model=MODEL, contents=QUESTION)]

    assert texts == ["Your order ", "ships today."]  # every chunk, as sent
    (row,) = rows(store_db)
    assert row["run_id"] == run.id
    assert_full_usage(row, streamed=True)  # 45 candidates, not 20 + 45


@pytest.mark.covers("google-genai", "models.generate_content_stream", "async", "stream")
def test_stream_async(store_db, gemini):
    client = gemini()

    async def main():
        with unitcost.task("support_ticket"):
            stream = await client.aio.models.generate_content_stream(model=MODEL, contents=QUESTION)
            return [chunk.text async for chunk in stream]

    assert asyncio.run(main()) == ["Your order ", "ships today."]
    (row,) = rows(store_db)
    assert_full_usage(row, streamed=True)


def test_abandoned_stream_keeps_the_usage_so_far(store_db, gemini):
    client = gemini()
    for chunk in client.models.generate_content_stream(model=MODEL, contents=QUESTION):
        assert chunk.text == "Your order "
        break

    (row,) = rows(store_db)
    assert row["incomplete"] == 1 and row["streamed"] == 1 and row["estimated"] == 0
    assert (row["input_tokens"], row["cache_read_tokens"]) == (193, 1024)
    assert (row["output_tokens"], row["reasoning_tokens"]) == (20, 300)  # what the first chunk reported
    assert row["cost_pico"] == 193 * 300_000 + 1024 * 30_000 + 320 * 2_500_000


def test_abandoned_stream_without_output_counts_is_estimated_from_its_text(store_db, gemini):
    client = gemini(GeminiServer(stream=stream_chunks({"promptTokenCount": 1200, "totalTokenCount": 1200})))
    stream = client.models.generate_content_stream(model=MODEL, contents=QUESTION)
    assert next(stream).text == "Your order "
    stream.close()

    (row,) = rows(store_db)
    assert row["incomplete"] == 1 and row["estimated"] == 1
    assert row["input_tokens"] == 1200  # exact: the prompt count came with the first chunk
    assert row["output_tokens"] == 3  # "Your order " is 11 characters: 3 tokens at 4 characters a token


@pytest.mark.covers("google-genai", "chats.send_message", "sync", "plain")
def test_chat_send_message(store_db, gemini):
    chat = gemini().chats.create(model=MODEL)
    with unitcost.task("support_ticket") as run:
        assert chat.send_message(QUESTION).text == "Your order ships today."
        assert chat.send_message("And the tracking number?").text == "Your order ships today."

    first, second = rows(store_db)
    assert first["run_id"] == second["run_id"] == run.id
    assert_full_usage(first)
    assert_full_usage(second)


@pytest.mark.covers("google-genai", "chats.send_message_stream", "sync", "stream")
def test_chat_send_message_stream(store_db, gemini):
    chat = gemini().chats.create(model=MODEL)
    assert [c.text for c in chat.send_message_stream(QUESTION)] == ["Your order ", "ships today."]
    (row,) = rows(store_db)
    assert_full_usage(row, streamed=True)


@pytest.mark.covers("google-genai", "chats.send_message", "async", "plain")
@pytest.mark.covers("google-genai", "chats.send_message_stream", "async", "stream")
def test_chat_async(store_db, gemini):
    chat = gemini().aio.chats.create(model=MODEL)

    async def main():
        plain = await chat.send_message(QUESTION)
        streamed = [c.text async for c in await chat.send_message_stream("And the tracking number?")]
        return plain.text, streamed

    assert asyncio.run(main()) == ("Your order ships today.", ["Your order ", "ships today."])
    plain, streamed = rows(store_db)
    assert_full_usage(plain)
    assert_full_usage(streamed, streamed=True)


def test_automatic_function_calling_records_every_request(store_db, gemini):
    """One ``generate_content`` with a Python function as a tool makes two billed requests; the
    response it returns carries only the last one's usage. Both are recorded, in the task."""
    looked_up = []

    def order_status(order_id: str) -> str:
        """The shipping status of an order."""
        looked_up.append(order_id)
        return "ships today"

    order_status.__annotations__ = {"order_id": str, "return": str}  # not strings: older SDKs read types only

    client = gemini()
    config = types.GenerateContentConfig(tools=[order_status])
    with unitcost.task("support_ticket") as run:
        response = client.models.generate_content(model=MODEL, contents=QUESTION, config=config)

    assert looked_up == ["1042"] and response.usage_metadata.total_token_count == 1562
    first, second = rows(store_db)
    assert first["run_id"] == second["run_id"] == run.id
    assert (first["input_tokens"], first["output_tokens"], first["reasoning_tokens"]) == (100, 11, 0)
    assert first["cost_pico"] == 100 * 300_000 + 11 * 2_500_000
    assert_full_usage(second)


def test_vertex_ai_client_is_named_vertex(store_db, gemini):
    client = gemini(vertexai=True)
    client.models.generate_content(model=MODEL, contents=QUESTION)
    (row,) = rows(store_db)
    assert_full_usage(row, provider="gcp.vertex_ai")


def test_error_passes_through_unchanged_and_is_recorded(store_db, gemini):
    client = gemini(error_server)
    with pytest.raises(errors.ClientError) as raised, unitcost.task("support_ticket") as run:
        client.models.generate_content(model=MODEL, contents=QUESTION)

    assert raised.value.code == 400 and "API key not valid" in str(raised.value)
    (row,) = rows(store_db)
    assert row["run_id"] == run.id
    assert row["error_type"] == "ClientError"
    assert (row["input_tokens"], row["output_tokens"], row["cost_pico"]) == (0, 0, 0)


def test_stream_error_passes_through_unchanged(store_db, gemini):
    client = gemini(error_server)
    with pytest.raises(errors.ClientError):
        for _ in client.models.generate_content_stream(model=MODEL, contents=QUESTION):
            pass
    (row,) = rows(store_db)
    assert row["error_type"] == "ClientError" and row["streamed"] == 1


def test_not_instrumented_records_nothing(store_db, gemini):
    unitcost.uninstrument()
    gemini().models.generate_content(model=MODEL, contents=QUESTION)
    assert rows(store_db) == []


def test_content_is_captured_only_when_asked(make_store, gemini):
    db = make_store(capture_content=True)
    chat = gemini().chats.create(
        model=MODEL, config=types.GenerateContentConfig(system_instruction="You are Acme's support assistant.")
    )
    chat.send_message(QUESTION)
    chat.send_message("And the tracking number?")
    captured = store_rows(db, "SELECT k.input_messages, k.output_messages FROM calls c JOIN call_content k "
                              "USING (span_id) ORDER BY c.started_ns")
    second_in = json.loads(captured[1]["input_messages"])
    assert [m["role"] for m in second_in] == ["system", "user", "assistant", "user"]
    assert second_in[1]["parts"] == [{"type": "text", "content": QUESTION}]
    # The answer without the thought summary, in the history and in the output.
    assert second_in[2]["parts"] == [{"type": "text", "content": "Your order ships today."}]
    output = json.loads(captured[0]["output_messages"])
    assert output == [{"role": "assistant", "parts": [{"type": "text", "content": "Your order ships today."}],
                       "finish_reason": "STOP"}]


# A voice note (25 s: Gemini counts 32 audio tokens a second, 800 tokens) asked about next to a cached
# context holding a 60 s recording (1,920 audio tokens) and 200 tokens of text; 40 new text tokens.
# The by-modality details split each count; the cache is inside the prompt, as for text.
AUDIO_USAGE = {
    "promptTokenCount": 2960,
    "cachedContentTokenCount": 2120,
    "candidatesTokenCount": 58,
    "thoughtsTokenCount": 120,
    "totalTokenCount": 3138,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 240}, {"modality": "AUDIO", "tokenCount": 2720}],
    "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 200}, {"modality": "AUDIO", "tokenCount": 1920}],
    "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 58}],
    "trafficType": "ON_DEMAND",
}
# By hand, gemini-2.5-flash per million tokens: text input $0.30, text cache read $0.03, audio input
# $1.00, audio cache read $0.10, output $2.50 (thoughts included):
#   40 text * 0.30 = 12; 200 cached text * 0.03 = 6; 800 audio * 1.00 = 800; 1920 cached audio * 0.10 = 192;
#   (58 + 120) output * 2.50 = 445; in all 1,455 per million = $0.001455. Priced as text, it was $0.0007606.
AUDIO_PICO = 1_455_000_000
AUDIO_REASONING_PICO = 120 * 2_500_000
VOICE_NOTE = [types.Part.from_bytes(data=b"RIFF\x24\x00\x00\x00WAVEfmt ", mime_type="audio/wav"), "Answer the caller."]


def assert_audio_priced(row):
    # The store keeps audio in the bucket of its kind; the cost prices it at the audio rates.
    assert (row["input_tokens"], row["cache_read_tokens"]) == (840, 2120)  # 40 + 800 uncached; 200 + 1920 cached
    assert (row["output_tokens"], row["reasoning_tokens"]) == (58, 120)
    assert (row["cost_pico"], row["reasoning_cost_pico"]) == (AUDIO_PICO, AUDIO_REASONING_PICO)


def test_audio_hand_price_agrees_with_genai_prices():
    extracted = extract_usage(body(AUDIO_USAGE), provider_id="google")
    assert (extracted.usage.input_audio_tokens, extracted.usage.cache_audio_read_tokens) == (2720, 1920)
    assert calc_price(extracted.usage, MODEL, provider_id="google").total_price == Decimal("0.001455")
    assert to_pico(Decimal("0.001455")) == AUDIO_PICO


def test_audio_tokens_are_priced_at_the_audio_rates(store_db, gemini):
    answer = body(AUDIO_USAGE)
    client = gemini(lambda method, path, request: (200, {"Content-Type": "application/json"}, answer))
    response = client.models.generate_content(model=MODEL, contents=VOICE_NOTE)

    assert response.usage_metadata.prompt_tokens_details[1].token_count == 2720  # the caller's, untouched
    (row,) = rows(store_db)
    assert_audio_priced(row)


def test_audio_tokens_of_a_stream_are_the_last_chunks(store_db, gemini):
    first = {**AUDIO_USAGE, "candidatesTokenCount": 20,
             "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 20}]}
    chunks = [body(first, parts=[{"text": "Your order "}], finish=None), body(AUDIO_USAGE, parts=[{"text": "ships."}])]
    client = gemini(GeminiServer(stream=chunks))
    assert [c.text for c in client.models.generate_content_stream(model=MODEL, contents=VOICE_NOTE)] == [
        "Your order ", "ships."]

    (row,) = rows(store_db)
    assert row["streamed"] == 1 and row["incomplete"] == 0
    assert_audio_priced(row)
