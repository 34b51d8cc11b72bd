"""LiteLLM against a local fake OpenAI server: ``completion``/``acompletion`` (plain and streamed),
``responses``, ``text_completion`` and ``embedding`` each stored once, in the task, with the provider and model LiteLLM
resolved and exact tokens priced by the underlying provider, with no code change but
``unitcost.instrument()``; once only when LiteLLM goes through an openai client method unitcost
patches (its text_completion does); nothing with ``litellm=False``."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import chat_body, genai_cost, store_rows, stream_chunks, usage_block
from frameworks.real_parts import require
from providers.openai_fixtures import EMBEDDING_MODEL, embedding_body, genai_price, response_body, responses_usage

import unitcost

MODEL = "gpt-4o-mini"
RESPONSES_MODEL = "gpt-5-mini"
CHAT_USAGE = usage_block(150, 20, cached=64, reasoning=5)
RESPONSES_USAGE = responses_usage(300, 40, cached=128, reasoning=16)
EMBEDDING_TOKENS = 8
BAD_MODEL = "gpt-4o-mini-nonexistent"
INSTRUCT = "gpt-3.5-turbo-instruct"
INSTRUCT_USAGE = {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


def completion_body(request: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": "cmpl-9Xk2Lm4Np6Qr8St0", "object": "text_completion", "created": 1756300000,
            "model": request["model"], "usage": usage,
            "choices": [{"text": "Sunny", "index": 0, "logprobs": None, "finish_reason": "stop"}]}


class FakeOpenAI(BaseHTTPRequestHandler):
    """Chat Completions (JSON, or SSE with a usage chunk when asked for), Responses, Embeddings."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        if body.get("model") == BAD_MODEL:
            error = {"error": {"message": f"The model `{BAD_MODEL}` does not exist", "type": "invalid_request_error",
                               "param": "model", "code": "model_not_found"}}
            self._send(json.dumps(error).encode(), status=404)
        elif self.path.endswith("/chat/completions") and body.get("stream"):
            usage = CHAT_USAGE if (body.get("stream_options") or {}).get("include_usage") else None
            chunks = stream_chunks(["Sunny ", "in Paris."], model=MODEL, usage=usage)
            data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            self._send(data.encode(), "text/event-stream")
        elif self.path.endswith("/chat/completions"):
            self._send(json.dumps(chat_body(model=MODEL, content="Sunny in Paris.", usage=CHAT_USAGE)).encode())
        elif self.path.endswith("/responses"):
            self._send(json.dumps(response_body(model=RESPONSES_MODEL, text="Sunny.", usage=RESPONSES_USAGE)).encode())
        elif self.path.endswith("/completions"):  # legacy Completions (text_completion)
            self._send(json.dumps(completion_body(body, INSTRUCT_USAGE)).encode())
        elif self.path.endswith("/embeddings"):
            self._send(json.dumps(embedding_body(body, EMBEDDING_TOKENS)).encode())
        else:
            self.send_error(404)

    def _send(self, data: bytes, content_type: str = "application/json", status: int = 200) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api_base(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # LiteLLM reads its model price map from its package, not from the network, and sends no telemetry.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def litellm_module() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return require("litellm")


def chat_cost() -> int:
    return int(genai_cost(MODEL, prompt=150, completion=20, cached=64, reasoning=5) * 10**12)


def calls_of(store_db: Any) -> list[dict[str, Any]]:
    unitcost.flush()
    return store_rows(store_db, "SELECT * FROM calls ORDER BY started_ns")


def assert_chat_call(call: dict[str, Any], run: Any) -> None:
    assert (call["run_id"], call["provider"], call["model"]) == (run.id, "openai", MODEL)
    assert (call["input_tokens"] + call["cache_read_tokens"], call["cache_read_tokens"]) == (150, 64)
    assert (call["output_tokens"] + call["reasoning_tokens"], call["reasoning_tokens"]) == (20, 5)
    assert call["cost_pico"] == chat_cost()


@pytest.mark.covers("LiteLLM", "completion", "sync", "plain")
@pytest.mark.covers("LiteLLM", "completion", "sync", "stream")
def test_completion_plain_and_streamed(make_store, api_base):
    store_db = make_store()
    litellm = litellm_module()
    with unitcost.task("weather_question") as run:
        reply = litellm.completion(model=f"openai/{MODEL}", api_base=api_base, api_key="sk-test",
                                   messages=[{"role": "user", "content": "Weather in Paris?"}])
        stream = litellm.completion(model=f"openai/{MODEL}", api_base=api_base, api_key="sk-test", stream=True,
                                    stream_options={"include_usage": True},
                                    messages=[{"role": "user", "content": "Weather in Paris?"}])
        pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert reply.choices[0].message.content == "Sunny in Paris."
    assert "".join(pieces) == "Sunny in Paris."
    for _ in range(100):  # LiteLLM's sync success hook runs on a thread of its own: wait for it, bounded
        if len(calls_of(store_db)) >= 2:
            break
        threading.Event().wait(0.05)
    calls = calls_of(store_db)
    assert len(calls) == 2
    for call in calls:
        assert_chat_call(call, run)


@pytest.mark.covers("LiteLLM", "acompletion", "async", "plain")
@pytest.mark.covers("LiteLLM", "acompletion", "async", "stream")
def test_acompletion_plain_and_streamed(make_store, api_base):
    store_db = make_store()
    litellm = litellm_module()

    async def main() -> Any:
        with unitcost.task("weather_question") as run:
            await litellm.acompletion(model=f"openai/{MODEL}", api_base=api_base, api_key="sk-test",
                                      messages=[{"role": "user", "content": "Weather in Paris?"}])
            stream = await litellm.acompletion(model=f"openai/{MODEL}", api_base=api_base, api_key="sk-test",
                                               stream=True, stream_options={"include_usage": True},
                                               messages=[{"role": "user", "content": "Weather in Paris?"}])
            async for _chunk in stream:
                pass
            await asyncio.sleep(0.2)  # LiteLLM's async success hook is a task of its own
        return run

    run = asyncio.run(main())
    calls = calls_of(store_db)
    assert len(calls) == 2
    for call in calls:
        assert_chat_call(call, run)


@pytest.mark.covers("LiteLLM", "responses", "sync", "plain")
@pytest.mark.covers("LiteLLM", "responses", "async", "plain")
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_responses(make_store, api_base, mode):
    store_db = make_store()
    litellm = litellm_module()
    arguments = {"model": f"openai/{RESPONSES_MODEL}", "api_base": api_base, "api_key": "sk-test", "input": "Weather?"}

    async def main() -> Any:
        with unitcost.task("weather_question") as run:
            await litellm.aresponses(**arguments)
            await asyncio.sleep(0.2)  # LiteLLM's async success hook is a task of its own
        return run

    if mode == "async":
        run = asyncio.run(main())
    else:
        with unitcost.task("weather_question") as run:
            litellm.responses(**arguments)
    for _ in range(100):
        if calls_of(store_db):
            break
        threading.Event().wait(0.05)
    [call] = calls_of(store_db)
    assert (call["run_id"], call["provider"], call["model"]) == (run.id, "openai", RESPONSES_MODEL)
    assert (call["input_tokens"] + call["cache_read_tokens"], call["cache_read_tokens"]) == (300, 128)
    assert (call["output_tokens"] + call["reasoning_tokens"], call["reasoning_tokens"]) == (40, 16)
    expected = genai_price("openai", RESPONSES_MODEL, input_tokens=300, cache_read_tokens=128, output_tokens=40)
    assert call["cost_pico"] == int(expected * 10**12)


@pytest.mark.covers("LiteLLM", "text_completion (via the patched openai client)", "sync", "plain")
def test_text_completion_through_a_patched_openai_method_is_one_call(make_store, api_base):
    # LiteLLM's text_completion calls openai's Completions.create, which unitcost patches: one record.
    store_db = make_store()
    litellm = litellm_module()
    with unitcost.task("complete") as run:
        litellm.text_completion(model=f"openai/{INSTRUCT}", api_base=api_base, api_key="sk-test", prompt="Weather?")
    for _ in range(100):
        if calls_of(store_db):
            break
        threading.Event().wait(0.05)
    threading.Event().wait(0.3)  # a second record, if there were one, would have come by now
    calls = calls_of(store_db)
    found = [(c["run_id"], c["model"], c["input_tokens"], c["output_tokens"]) for c in calls]
    assert found == [(run.id, INSTRUCT, 7, 2)]


@pytest.mark.covers("LiteLLM", "embedding", "sync", "plain")
def test_embedding(make_store, api_base):
    store_db = make_store()
    litellm = litellm_module()
    with unitcost.task("index") as run:
        litellm.embedding(model=f"openai/{EMBEDDING_MODEL}", api_base=api_base, api_key="sk-test", input=["Paris"])
    for _ in range(100):
        if calls_of(store_db):
            break
        threading.Event().wait(0.05)
    threading.Event().wait(0.3)  # a second record, if there were one, would have come by now
    calls = calls_of(store_db)
    assert [(c["run_id"], c["input_tokens"]) for c in calls] == [(run.id, EMBEDDING_TOKENS)]


def test_a_failed_call_is_recorded_and_its_error_passes_through(make_store, api_base):
    store_db = make_store()
    litellm = litellm_module()
    with pytest.raises(litellm.NotFoundError) as raised, unitcost.task("weather_question") as run:
        litellm.completion(model=f"openai/{BAD_MODEL}", api_base=api_base, api_key="sk-test", num_retries=0,
                           messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert BAD_MODEL in str(raised.value)
    for _ in range(100):
        if calls_of(store_db):
            break
        threading.Event().wait(0.05)
    [call] = calls_of(store_db)
    assert (call["run_id"], call["model"], call["error_type"], call["cost_pico"]) == (
        run.id, BAD_MODEL, "NotFoundError", None)


def test_switched_off(make_store, api_base):
    store_db = make_store()
    unitcost.instrument(litellm=False)
    litellm = litellm_module()
    with unitcost.task("weather_question"):
        litellm.completion(model=f"openai/{MODEL}", api_base=api_base, api_key="sk-test",
                           messages=[{"role": "user", "content": "Weather in Paris?"}])
    threading.Event().wait(0.3)
    assert calls_of(store_db) == []
