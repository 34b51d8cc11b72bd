"""A Chat Completions reply as the API streams it, for the framework tests' fake servers."""

from __future__ import annotations

from typing import Any


def as_chunks(reply: dict[str, Any], include_usage: bool) -> list[dict[str, Any]]:
    """A reply as the API streams it: the message in one delta, the finish reason, then (when the
    request asked for it) a last chunk with the usage and no choices."""
    message = reply["choices"][0]["message"]
    delta: dict[str, Any] = {"role": "assistant", "content": message["content"]}
    if message.get("tool_calls"):
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
    base = {k: reply[k] for k in ("id", "created", "model", "system_fingerprint")} | {"object": "chat.completion.chunk"}
    chunks = [
        base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
        base | {"choices": [{"index": 0, "delta": {}, "finish_reason": reply["choices"][0]["finish_reason"]}]},
    ]
    if include_usage:
        chunks.append(base | {"choices": [], "usage": reply["usage"]})
    return chunks
