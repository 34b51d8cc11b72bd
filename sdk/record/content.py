"""Prompt and completion text: never recorded unless the user opts in, and redacted first when they do.

Off by default. ``configure(capture_content=True)``, or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
(``true``, or the newer ``span_only`` / ``span_and_event``) when ``capture_content`` is not given,
turns it on. Then each LLM call's request messages and completion text go on its span as
``gen_ai.input.messages`` / ``gen_ai.output.messages`` (the GenAI conventions' shape, text parts
only) and into the store's ``call_content`` table, after ``redact`` has seen every piece of text:

    unitcost.configure(capture_content=True, redact=lambda text: EMAIL.sub("<email>", text))

If ``redact`` raises, that call's content is left out (never recorded unredacted).

Provider adapters call `capture_input` / `capture_output` from the lifecycle (`unitcost.record.llm`); with
capture off each is one flag test, and nothing is built.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from ..common import attributes as A
from ..common.errors import internal_error
from .estimate import texts_of

__all__ = ["capture_input", "capture_output", "enabled", "set_capture"]

Redact = Callable[[str], str]

ENV_SWITCH = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_ON_VALUES = {"true", "1", "yes", "on", "span_only", "span_and_event"}

enabled = False  # read on the hot path: a module global, not a call
_redact: Redact | None = None


def from_environment() -> bool:
    return os.environ.get(ENV_SWITCH, "").strip().lower() in _ON_VALUES


def set_capture(capture: bool | None, redact: Redact | None) -> None:
    """Called by `configure()` (which has validated the arguments)."""
    global enabled, _redact
    _redact = redact
    enabled = from_environment() if capture is None else bool(capture)


def _text(text: str) -> str:
    return text if _redact is None else str(_redact(text))


def _parts(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "content": _text(t)} for t in texts_of(content) if t]


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def input_messages(messages: Any, system: Any = None) -> list[dict[str, Any]]:
    """Request messages (OpenAI chat messages, Responses input items, Anthropic messages, a prompt
    string or a list of them) in the conventions' shape: ``[{"role", "parts": [{"type": "text",
    "content"}]}]``."""
    out: list[dict[str, Any]] = []
    system_parts = _parts(system) if isinstance(system, str | list | tuple) else []
    if system_parts:
        out.append({"role": "system", "parts": system_parts})
    if isinstance(messages, str):
        messages = [messages]
    elif not isinstance(messages, list | tuple):
        return out  # None, or an iterator the SDK has yet to read: never consumed here
    for message in messages:
        if isinstance(message, str):
            out.append({"role": "user", "parts": _parts(message)})
            continue
        role = _get(message, "role")
        content = _get(message, "content")
        if content is None and isinstance(message, dict):
            content = message  # a Responses item such as a function call output: its text fields
        out.append({"role": str(role or "user"), "parts": _parts(content)})
    return out


def output_messages(texts: Iterable[str | None], finish_reason: str | None = None) -> list[dict[str, Any]]:
    parts = [{"type": "text", "content": _text(t)} for t in texts if t]
    message: dict[str, Any] = {"role": "assistant", "parts": parts}
    if finish_reason:
        message["finish_reason"] = finish_reason
    return [message]


def capture_input(span: Any, messages: Any, system: Any = None) -> None:
    """Put the request's messages on the span (redacted), when capture is on."""
    if not enabled or span is None:
        return
    try:
        value = json.dumps(input_messages(messages, system), ensure_ascii=False)
    except Exception as exc:  # noqa: BLE001 - includes a redact hook that raised: content left out
        internal_error("content capture", exc)
        return
    span.set_attributes({A.INPUT_MESSAGES: value, A.CONTENT_CAPTURED: True})


def capture_output(span: Any, texts: Callable[[], Iterable[str | None]], finish_reason: str | None = None) -> None:
    """Put the completion's text on the span (redacted), when capture is on. ``texts`` is called only
    then, so an adapter builds nothing when capture is off."""
    if not enabled or span is None:
        return
    try:
        value = json.dumps(output_messages(texts(), finish_reason), ensure_ascii=False)
    except Exception as exc:  # noqa: BLE001
        internal_error("content capture", exc)
        return
    span.set_attributes({A.OUTPUT_MESSAGES: value, A.CONTENT_CAPTURED: True})
