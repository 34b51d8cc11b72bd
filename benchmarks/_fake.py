"""Canned provider answers over an in-memory transport: the real SDK clients, no network.

Bodies follow what the APIs send (ids, usage blocks with cache and reasoning details); each is
encoded once, so the transport costs the same for every configuration being compared.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

CREATED = 1764061200  # 2025-11-25T09:00:00Z
GPT = "gpt-4o-mini"
GPT_SNAPSHOT = "gpt-4o-mini-2024-07-18"
CLAUDE = "claude-sonnet-4-5"
CLAUDE_SNAPSHOT = "claude-sonnet-4-5-20250929"

MESSAGES = [
    {"role": "system", "content": "You are the support assistant of Acme Cloud."},
    {"role": "user", "content": "Where is my order #1042? It was due on Monday."},
]

_CHAT_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 90,
    "total_tokens": 1290,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0,
    },
}


def chat_body() -> bytes:
    return json.dumps({
        "id": "chatcmpl-BfX2kq9TnYw3Lr7ZpA1cD4eF5gH6",
        "object": "chat.completion",
        "created": CREATED,
        "model": GPT_SNAPSHOT,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Your order ships today.", "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": _CHAT_USAGE,
        "service_tier": "default",
        "system_fingerprint": "fp_560af6e559",
    }).encode()


def chat_stream_body(chunks: int) -> bytes:
    """An SSE stream of ``chunks`` chunks in all, as sent when the request set include_usage: a role
    chunk, text chunks, a finish chunk, then the usage-only chunk (``choices: []``)."""

    def chunk(choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-BfX3mR8sUvW2xY4zA6bC8dE0fG1h", "object": "chat.completion.chunk", "created": CREATED,
            "model": GPT_SNAPSHOT, "service_tier": "default", "system_fingerprint": "fp_560af6e559",
            "choices": choices, "usage": usage,
        }

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    body = [chunk(choice({"role": "assistant", "content": "", "refusal": None}))]
    body += [chunk(choice({"content": f"word{i} "})) for i in range(chunks - 3)]
    body += [chunk(choice({}, "stop")), chunk([], _CHAT_USAGE)]
    return ("".join(f"data: {json.dumps(c)}\n\n" for c in body) + "data: [DONE]\n\n").encode()


def responses_body() -> bytes:
    return json.dumps({
        "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": GPT_SNAPSHOT,
        "output": [{
            "type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b", "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Your order ships today.", "annotations": []}],
        }],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1024},
            "output_tokens": 90, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 1290,
        },
        "user": None,
        "metadata": {},
    }).encode()


def anthropic_body() -> bytes:
    return json.dumps({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": CLAUDE_SNAPSHOT,
        "content": [{"type": "text", "text": "Your order ships today."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 176, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 1024,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "output_tokens": 90, "service_tier": "standard",
        },
    }).encode()


def anthropic_stream_body(deltas: int) -> bytes:
    """A Messages SSE stream as the API sends it: message_start (input usage), a text block of
    ``deltas`` deltas, message_delta (output usage), message_stop."""
    usage = json.loads(anthropic_body())["usage"]
    start_usage = {**usage, "output_tokens": 1}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_01KpM9CGnGh6cH9Zk8Qf2bUu", "type": "message", "role": "assistant", "model": CLAUDE_SNAPSHOT,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
    ]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": f"word{i} "}}) for i in range(deltas)]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": usage["output_tokens"]}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


def _handler(body: bytes, content_type: str) -> Callable[[Any], Any]:
    import httpx2

    headers = {"content-type": content_type, "x-request-id": "req_0123456789abcdef"}

    def handle(request: Any) -> Any:
        return httpx2.Response(200, content=body, headers=headers)

    return handle


def openai_client(body: bytes, content_type: str = "application/json") -> Any:
    import httpx2
    import openai

    transport = httpx2.MockTransport(_handler(body, content_type))
    return openai.OpenAI(api_key="sk-bench", http_client=httpx2.Client(transport=transport), max_retries=0)


def anthropic_client(body: bytes, content_type: str = "application/json") -> Any:
    import anthropic
    import httpx2

    transport = httpx2.MockTransport(_handler(body, content_type))
    return anthropic.Anthropic(api_key="sk-ant-bench", http_client=httpx2.Client(transport=transport), max_retries=0)


_hollow_clients: list[Any] = []
HOLLOW_MESSAGES = [dict(m) for m in MESSAGES]  # its identity marks the calls whose transform is skipped


def hollow_chat_client() -> Any:
    """An openai client whose ``chat.completions.create`` still runs (and so does whatever patched it),
    but skips the SDK's request building, HTTP and parsing: it returns one ChatCompletion parsed up
    front. About 10 us a call instead of milliseconds, so an instrumentation's own cost stands out
    and 200,000 calls fit in the memory benchmark's time."""
    import openai.resources.chat.completions.completions as module
    from openai.types.chat import ChatCompletion

    if not _hollow_clients:  # the params transform is a module global: skip it for hollow clients only
        transform = module.maybe_transform

        def maybe_transform(data: Any, expected_type: Any) -> Any:
            return data if data.get("messages") is HOLLOW_MESSAGES else transform(data, expected_type)

        module.maybe_transform = maybe_transform
    client = openai_client(chat_body())
    parsed = ChatCompletion.model_validate(json.loads(chat_body()))
    client.chat.completions._post = lambda *args, **kwargs: parsed
    _hollow_clients.append(client)
    return client


def hollow_stream_client(chunks: int) -> Any:
    """`hollow_chat_client` for streams: ``create(stream=True)`` returns a real `openai.Stream` over
    ``chunks`` ChatCompletionChunks parsed up front (no HTTP, no SSE parsing), so what an
    instrumentation adds per chunk is not lost in the SDK's ~150 us of parsing each."""
    import httpx2
    import openai
    from openai.types.chat import ChatCompletionChunk

    class HollowStream(openai.Stream):  # type: ignore[type-arg]
        def __init__(self, items: list[Any]) -> None:  # the SDK's own __init__ would read a response
            self._iterator = iter(items)
            self.response = httpx2.Response(200)

    lines = chat_stream_body(chunks).decode().split("\n\n")
    parsed = [ChatCompletionChunk.model_validate_json(line[6:]) for line in lines if line[6:] not in ("", "[DONE]")]
    hollow_chat_client()  # installs the params shortcut for HOLLOW_MESSAGES
    client = openai_client(b"", "text/event-stream")
    client.chat.completions._post = lambda *args, **kwargs: HollowStream(parsed)
    return client


class Workloads:
    """One call of each workload, by name, on clients made once."""

    STREAM_SHORT = 25
    STREAM_LONG = 125
    NAMES = ("openai_chat", "openai_stream", "openai_stream_long", "openai_responses", "anthropic_messages",
             "openai_chat_hollow", "openai_stream_hollow", "openai_stream_long_hollow")

    def __init__(self) -> None:
        self._chat = openai_client(chat_body())
        self._stream = openai_client(chat_stream_body(self.STREAM_SHORT), "text/event-stream")
        self._stream_long = openai_client(chat_stream_body(self.STREAM_LONG), "text/event-stream")
        self._responses = openai_client(responses_body())
        self._anthropic: Any = None
        self._anthropic_stream: Any = None
        self._hollow: Any = None
        self._hollow_streams: dict[int, Any] = {}

    def openai_chat_hollow(self) -> None:
        """Chat Completions with the SDK's own work taken out (see `hollow_chat_client`)."""
        if self._hollow is None:
            self._hollow = hollow_chat_client()
        self._hollow.chat.completions.create(model=GPT, messages=HOLLOW_MESSAGES)

    def _drain_hollow(self, chunks: int) -> None:
        client = self._hollow_streams.get(chunks)
        if client is None:
            client = self._hollow_streams[chunks] = hollow_stream_client(chunks)
        for _ in client.chat.completions.create(model=GPT, messages=HOLLOW_MESSAGES, stream=True,
                                                stream_options={"include_usage": True}):
            pass

    def openai_stream_hollow(self) -> None:
        """A 25-chunk stream with the SDK's HTTP and parsing taken out (see `hollow_stream_client`)."""
        self._drain_hollow(self.STREAM_SHORT)

    def openai_stream_long_hollow(self) -> None:
        self._drain_hollow(self.STREAM_LONG)

    def openai_chat(self) -> None:
        self._chat.chat.completions.create(model=GPT, messages=MESSAGES)

    def _drain(self, client: Any) -> None:
        stream = client.chat.completions.create(
            model=GPT, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        for _ in stream:
            pass

    def openai_stream(self) -> None:
        self._drain(self._stream)

    def openai_stream_long(self) -> None:
        self._drain(self._stream_long)

    def openai_responses(self) -> None:
        self._responses.responses.create(model=GPT, input="Where is my order #1042? It was due on Monday.")

    def anthropic_messages(self) -> None:
        if self._anthropic is None:  # made on first use: after the configuration set its providers
            self._anthropic = anthropic_client(anthropic_body())
        self._anthropic.messages.create(
            model=CLAUDE, max_tokens=1024, messages=MESSAGES[1:], system=MESSAGES[0]["content"]
        )

    def anthropic_stream(self) -> None:
        """A Messages stream of 25 text deltas (``stream=True``), read to the end."""
        if self._anthropic_stream is None:
            self._anthropic_stream = anthropic_client(anthropic_stream_body(self.STREAM_SHORT - 5), "text/event-stream")
        for _ in self._anthropic_stream.messages.create(
            model=CLAUDE, max_tokens=1024, messages=MESSAGES[1:], system=MESSAGES[0]["content"], stream=True
        ):
            pass

    def get(self, name: str) -> Callable[[], None]:
        return getattr(self, name)  # type: ignore[no-any-return]
