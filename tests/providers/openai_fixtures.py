"""Realistic bodies for the OpenAI APIs beyond Chat Completions (which tests/conftest.py has), and one
server that answers all of them over a ``MockTransport`` (of conftest ``openai_http``).

Shapes follow what api.openai.com sends: Responses objects with every usage detail (cache reads,
cache writes split by retention, reasoning), the Responses stream's typed events
(``response.created`` ... ``response.output_text.delta`` ... ``response.completed``) each with its
``sequence_number``, embeddings in base64 when the SDK asks for it (it does by default), and legacy
completions whose stream ends with a usage-only chunk when asked for.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from conftest import CREATED, ChatServer, openai_http, sse_response
from genai_prices import Usage, calc_price

GPT5_MINI = "gpt-5-mini-2025-08-07"
EMBEDDING_MODEL = "text-embedding-3-small"
INSTRUCT = "gpt-3.5-turbo-instruct"
RESPONSE_ID = "resp_68af4c1e2b8c8190a3f5e0d1c2b3a4f5"
ANSWER_PIECES = ("Your order ", "#1042 ", "ships today.")
STRUCTURED_ANSWER = '{"ticket": "T-1042", "status": "shipped"}'


def genai_price(
    provider: str, model: str, *, when: datetime | None = None, context: dict[str, str] | None = None, **usage: int
) -> Decimal:
    """What genai-prices' ``calc_price`` says a call costs (usage in the OpenTelemetry meaning, as
    genai-prices takes it), with an optional price context such as ``{"service_tier": "flex"}``."""
    result = calc_price(
        Usage(**usage), model, provider_id=provider, genai_request_timestamp=when or datetime.now(tz=UTC),
        price_context=context,
    )
    return Decimal(result.total_price)


# --- Responses ------------------------------------------------------------------------------------


def responses_usage(
    input_tokens: int, output_tokens: int, *, cached: int = 0, cache_write: int = 0, ttl_30m: int = 0,
    ttl_12h: int = 0, reasoning: int = 0,
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": cached,
            "cache_write_tokens": cache_write,
            "cache_write_tokens_details": {"ttl_30m_tokens": ttl_30m, "ttl_12h_tokens": ttl_12h},
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


def response_body(
    *, model: str = GPT5_MINI, text: str = "".join(ANSWER_PIECES), usage: dict[str, Any] | None,
    status: str = "completed", service_tier: str = "default", error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": [
            {"id": "rs_68af4c1f0a6c8190b1c2d3e4f5a6b7c8", "type": "reasoning", "summary": []},
            {
                "id": "msg_68af4c20a1b48190c9d8e7f6a5b4c3d2",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            },
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": "medium", "summary": None},
        "service_tier": service_tier,
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def response_events(
    pieces: Sequence[str], *, usage: dict[str, Any] | None, final: str = "response.completed", **body: Any
) -> list[dict[str, Any]]:
    """The typed events of a streamed response, in the order the API sends them."""
    text = "".join(pieces)
    started = response_body(usage=None, status="in_progress", text=text, **body)
    started["output"] = []
    item_id = "msg_68af4c20a1b48190c9d8e7f6a5b4c3d2"
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}},
        {"type": "response.content_part.added", "item_id": item_id, "output_index": 0, "content_index": 0,
         "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}},
    ]
    events += [
        {"type": "response.output_text.delta", "item_id": item_id, "output_index": 0, "content_index": 0,
         "delta": piece, "logprobs": []}
        for piece in pieces
    ]
    events += [
        {"type": "response.output_text.done", "item_id": item_id, "output_index": 0, "content_index": 0,
         "text": text, "logprobs": []},
        {"type": "response.content_part.done", "item_id": item_id, "output_index": 0, "content_index": 0,
         "part": {"type": "output_text", "text": text, "annotations": [], "logprobs": []}},
    ]
    status = {"response.completed": "completed", "response.failed": "failed", "response.incomplete": "incomplete"}
    events.append({"type": final, "response": response_body(usage=usage, status=status[final], text=text, **body)})
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def responses_sse(events: Sequence[dict[str, Any]]) -> Any:
    """Responses streams name each event (``event:`` line) and end without ``[DONE]``."""
    data = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return openai_http.Response(200, content=data.encode(), headers={"content-type": "text/event-stream"})


# --- Embeddings and legacy Completions --------------------------------------------------------------


def embedding_body(request: dict[str, Any], prompt_tokens: int) -> dict[str, Any]:
    vector = [0.0023064255, -0.009327292, 0.015797347, -0.0077780345]
    inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
    if request.get("encoding_format") == "base64":  # what the SDK asks for unless told otherwise
        encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    else:
        encoded = vector
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encoded} for i in range(len(inputs))],
        "model": EMBEDDING_MODEL,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def completion_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_body(pieces: Sequence[str], usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "cmpl-BfX5nQ7rTsU1vW3xY5zA7bC9dE1f",
        "object": "text_completion",
        "created": CREATED,
        "model": INSTRUCT,
        "system_fingerprint": None,
        "choices": [{"text": "".join(pieces), "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": usage,
    }


def completion_chunks(pieces: Sequence[str], usage: dict[str, Any] | None) -> list[dict[str, Any]]:
    def chunk(text: str, finish: str | None) -> dict[str, Any]:
        return {
            "id": "cmpl-BfX5nQ7rTsU1vW3xY5zA7bC9dE1f", "object": "text_completion", "created": CREATED,
            "model": INSTRUCT, "system_fingerprint": None,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
            **({"usage": None} if usage is not None else {}),
        }

    chunks = [chunk(piece, None) for piece in pieces] + [chunk("", "stop")]
    if usage is not None:
        chunks.append({**chunk("", None), "choices": [], "usage": usage})
    return chunks


# --- one server for every API ---------------------------------------------------------------------------


class OpenAIServer:
    """Answers each OpenAI API the way api.openai.com does; keeps every request body it received.

    Chat Completions go to a conftest ``ChatServer``. Responses answer with ``response`` (a usage
    block) and stream ``pieces``; ``final`` picks the stream's last event. Streams of the APIs that
    need asking end with usage only when the request asked (and ``honour_include_usage``).
    """

    def __init__(
        self, *, response_usage: dict[str, Any] | None = None, pieces: Sequence[str] = ANSWER_PIECES,
        chat: ChatServer | None = None, embedding_tokens: int = 1234,
        completion: dict[str, Any] | None = None, final: str = "response.completed",
        honour_include_usage: bool = True, response_fields: dict[str, Any] | None = None,
        response_text: str | None = None,
    ) -> None:
        self.response_usage = response_usage or responses_usage(
            2000, 900, cached=1200, cache_write=300, ttl_30m=200, ttl_12h=100, reasoning=600
        )
        self.pieces = pieces
        self.chat = chat or ChatServer(pieces=pieces)
        self.embedding_tokens = embedding_tokens
        self.completion = completion or completion_usage(42, 7)
        self.final = final
        self.honour_include_usage = honour_include_usage
        self.response_fields = response_fields or {}
        self.response_text = response_text
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: Any) -> Any:
        body = json.loads(request.content)
        path = request.url.path
        self.requests.append((path, body))
        wants_usage = self.honour_include_usage and bool((body.get("stream_options") or {}).get("include_usage"))
        if path.endswith("/chat/completions"):
            return self.chat(request)
        if path.endswith("/responses"):
            if body.get("stream"):
                return responses_sse(
                    response_events(self.pieces, usage=self.response_usage, final=self.final, **self.response_fields)
                )
            text = self.response_text if self.response_text is not None else "".join(self.pieces)
            return openai_http.Response(
                200, json=response_body(usage=self.response_usage, text=text, **self.response_fields)
            )
        if path.endswith("/embeddings"):
            return openai_http.Response(200, json=embedding_body(body, self.embedding_tokens))
        if path.endswith("/completions"):
            if body.get("stream"):
                return sse_response(completion_chunks(self.pieces, self.completion if wants_usage else None))
            return openai_http.Response(200, json=completion_body(self.pieces, self.completion))
        error = {"message": f"no route {path}", "type": "invalid_request_error"}
        return openai_http.Response(404, json={"error": error})
