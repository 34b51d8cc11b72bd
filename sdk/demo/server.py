"""A local HTTP server that speaks enough of the OpenAI Chat Completions API for the demo.

It answers on 127.0.0.1 with fixed, realistic responses (usage blocks with cached and reasoning
tokens, SSE streams chunk by chunk), so the demo runs the real ``openai`` client with no network and
no API key. The numbers below are the demo's ground truth: ``tests/demo/test_demo.py`` recomputes the
report from them by hand.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAIServer"]

# What each kind of request costs in tokens. The agent marks each request with its step in the
# system prompt ("step: classify"), the way real agents keep one prompt per step.
CLASSIFY_PROMPT_TOKENS = 1310
CLASSIFY_CACHED_TOKENS = 1152  # the shared system prompt, cached after the first classify call
CLASSIFY_COMPLETION_TOKENS = 12
DRAFT_PROMPT_TOKENS = 2100
DRAFT_COMPLETION_TOKENS = 640
DRAFT_REASONING_TOKENS = 448
SUMMARY_PROMPT_TOKENS = 900
SUMMARY_COMPLETION_TOKENS = 150

DRAFT_TEXT = (
    "Hi, thanks for reaching out. I have looked into your request and here is what to do next: "
    "open Settings, choose Billing, and follow the steps shown. Let me know if anything is unclear."
)


def _category(text: str) -> str:
    lowered = text.lower()
    for word, category in (("outage", "outage"), ("lawyer", "legal"), ("refund", "billing"), ("invoice", "billing")):
        if word in lowered:
            return category
    return "how-to"


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.classify_calls = 0
        self.counter = 0

    def next_id(self) -> str:
        with self.lock:
            self.counter += 1
            return f"chatcmpl-demo{self.counter:04d}"


def _completion(model: str, response_id: str, content: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
             "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_demo",
    }


def _usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    state: _State

    def log_message(self, format: str, *args: Any) -> None:  # keep the demo's output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        messages = body.get("messages") or []
        system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
        user = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        model = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "o4-mini": "o4-mini-2025-04-16"}.get(
            body.get("model"), body.get("model")
        )
        response_id = self.state.next_id()
        if "step: classify" in system:
            with self.state.lock:
                cached = CLASSIFY_CACHED_TOKENS if self.state.classify_calls else 0
                self.state.classify_calls += 1
            usage = _usage(CLASSIFY_PROMPT_TOKENS, CLASSIFY_COMPLETION_TOKENS, cached=cached)
            self._json(200, _completion(model, response_id, f"category: {_category(user)}", usage))
        elif "step: summarize" in system:
            usage = _usage(SUMMARY_PROMPT_TOKENS, SUMMARY_COMPLETION_TOKENS)
            self._json(200, _completion(model, response_id, "Summary for the on-call engineer: ...", usage))
        elif "step: draft" in system:
            if "crash" in user.lower():
                self._json(500, {"error": {"message": "The server had an error while processing your request.",
                                           "type": "server_error", "code": None}})
                return
            usage = _usage(DRAFT_PROMPT_TOKENS, DRAFT_COMPLETION_TOKENS, reasoning=DRAFT_REASONING_TOKENS)
            if body.get("stream"):
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                self._stream(model, response_id, DRAFT_TEXT, usage if include_usage else None)
            else:
                self._json(200, _completion(model, response_id, DRAFT_TEXT, usage))
        else:
            self._json(400, {"error": {"message": "unknown step", "type": "invalid_request_error"}})

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, model: str, response_id: str, text: str, usage: dict[str, Any] | None) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        base = {"id": response_id, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model, "service_tier": "default", "system_fingerprint": "fp_demo"}
        words = text.split(" ")
        pieces = [" ".join(words[i : i + 4]) + " " for i in range(0, len(words), 4)]
        chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                        "finish_reason": None}]}]
        chunks += [{**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
                   for p in pieces]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage is not None:
            chunks.append({**base, "choices": [], "usage": usage})
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class FakeOpenAIServer:
    """``with FakeOpenAIServer() as server: OpenAI(base_url=server.base_url, api_key="demo")``"""

    def __init__(self) -> None:
        handler = type("DemoHandler", (_Handler,), {"state": _State()})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="unitcost-demo-server", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
