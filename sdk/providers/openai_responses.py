"""OpenAI Responses -> unitcost's usage record.

``input_tokens`` includes cached tokens and cache writes; ``output_tokens`` includes reasoning.
Cache writes are split by retention (``ttl_30m_tokens`` / ``ttl_12h_tokens``): genai-prices has no
per-retention OpenAI rate, so both are priced as cache writes and recorded apart on the span.
Streams always end with their usage (``response.completed``, ``.incomplete`` or ``.failed``): there
is no usage chunk to ask for.
"""

from __future__ import annotations

from typing import Any

from ..common import attributes as A
from ..pricing.usage import TokenUsage, clean_count
from ..record import content as _content
from ..record.estimate import texts_of
from ..record.llm import LLMCall, json_field
from .openai_common import API, TextStreamWatcher, get, given, usage_in_error

__all__ = ["RESPONSES", "responses_usage"]


def responses_usage(usage: Any) -> TokenUsage | None:
    if usage is None:
        return None
    details = get(usage, "input_tokens_details")
    retention = get(details, "cache_write_tokens_details")
    return TokenUsage(
        input_tokens=clean_count(get(usage, "input_tokens")) or 0,
        output_tokens=clean_count(get(usage, "output_tokens")) or 0,
        cache_read_tokens=clean_count(get(details, "cached_tokens")) or 0,
        cache_write_tokens=clean_count(get(details, "cache_write_tokens")) or 0,
        cache_write_30m_tokens=clean_count(get(retention, "ttl_30m_tokens")) or 0,
        cache_write_12h_tokens=clean_count(get(retention, "ttl_12h_tokens")) or 0,
        reasoning_tokens=clean_count(get(get(usage, "output_tokens_details"), "reasoning_tokens")) or 0,
    )


def _outcome(response: Any) -> tuple[list[str], str | None]:
    """(finish reasons, error type) from a response's status."""
    status = get(response, "status")
    if status == "failed":
        code = get(get(response, "error"), "code")
        return ["failed"], str(code or "response.failed")
    if status == "incomplete":
        reason = get(get(response, "incomplete_details"), "reason")
        return [str(reason or "incomplete")], None
    return ([str(status)] if status else []), None


def _output_texts(response: Any) -> list[Any]:
    """The text of a response's message items (``output_text`` and ``refusal`` parts)."""
    texts = []
    for item in get(response, "output") or ():
        if get(item, "type") == "message":
            for part in get(item, "content") or ():
                texts.append(get(part, "text") or get(part, "refusal"))
    return texts


def finish_response(call: LLMCall, response: Any) -> None:
    reasons, error_type = _outcome(response)
    if _content.enabled:
        call.capture_output(lambda: _output_texts(response), reasons[0] if reasons else None)
    call.finish(
        responses_usage(get(response, "usage")),
        response_id=get(response, "id"),
        response_model=get(response, "model"),
        finish_reasons=reasons,
        service_tier=get(response, "service_tier"),
        error_type=error_type,
    )


def _input_texts(kwargs: dict[str, Any]) -> tuple[list[str], int]:
    request = kwargs.get("input")
    texts = texts_of(request) if given(request) else []
    messages = len(request) if isinstance(request, list) else int(bool(texts))
    instructions = kwargs.get("instructions")
    if given(instructions) and isinstance(instructions, str):
        texts.append(instructions)
        messages += 1
    return texts, messages


# Events whose ``delta`` is text the model produced (and was billed for as output).
_TEXT_DELTAS = {
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
}
_FINAL = {"response.completed", "response.incomplete", "response.failed"}


class ResponseStreamWatcher(TextStreamWatcher):
    def __init__(self, kwargs: dict[str, Any], hide_usage_chunk: bool = False) -> None:
        texts, messages = _input_texts(kwargs)
        super().__init__(kwargs.get("model"), texts, messages)

    def on_chunk(self, event: Any) -> bool:
        # Every event comes here: read with getattr itself, a raw response's JSON events alike.
        field = json_field if isinstance(event, dict) else getattr
        kind = field(event, "type", None)
        if kind in _TEXT_DELTAS:
            self.seen_text(field(event, "delta", None))
        elif kind in _FINAL or kind in ("response.created", "response.in_progress", "response.queued"):
            response = field(event, "response", None)
            self.response_id = get(response, "id") or self.response_id
            self.model = get(response, "model") or self.model
            if (tier := get(response, "service_tier")) is not None:
                self.service_tier = str(tier)
            if kind in _FINAL:
                self.finish_reasons, self.error_type = _outcome(response)
                self.seen_usage(responses_usage(get(response, "usage")))
        elif kind == "error":
            self.error_type = str(field(event, "code", None) or "error")
        return True


RESPONSES = API(
    operation=A.OP_CHAT,
    finish=finish_response,
    error_usage=lambda error: usage_in_error(error, responses_usage),
    watcher=ResponseStreamWatcher,
    request_field="input",
    system_field="instructions",
)
