"""OpenAI Chat Completions, legacy Completions and Embeddings -> unitcost's usage record.

The three share one usage shape (``prompt_tokens`` with cached tokens included, ``completion_tokens``
with reasoning included) and, for the two that stream, the same trailing usage-only chunk when the
request asked for ``stream_options={"include_usage": True}``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..common import attributes as A
from ..pricing.usage import TokenUsage, clean_count
from ..record import content as _content
from ..record.estimate import texts_of
from ..record.llm import LLMCall, json_field
from .openai_common import API, TextStreamWatcher, get, usage_in_error

__all__ = ["CHAT", "COMPLETIONS", "EMBEDDINGS", "chat_usage"]


def chat_usage(usage: Any) -> TokenUsage | None:
    """Chat Completions ``usage`` -> TokenUsage. ``prompt_tokens`` already includes cached tokens."""
    if usage is None:
        return None
    # getattr itself on an SDK object (no call of unitcost's per field: this runs for every call).
    field = json_field if isinstance(usage, dict) else getattr
    prompt = field(usage, "prompt_tokens_details", None)
    completion = field(usage, "completion_tokens_details", None)
    return TokenUsage(
        input_tokens=clean_count(field(usage, "prompt_tokens", None)) or 0,
        output_tokens=clean_count(field(usage, "completion_tokens", None)) or 0,
        cache_read_tokens=clean_count(get(prompt, "cached_tokens")) or 0,
        cache_write_tokens=clean_count(get(prompt, "cache_write_tokens")) or 0,
        reasoning_tokens=clean_count(get(completion, "reasoning_tokens")) or 0,
    )


def _finish_reasons(choices: Any) -> list[str]:
    return [str(r) for c in choices or () if (r := get(c, "finish_reason"))]


def _choice_texts(choices: Any) -> list[Any]:
    """The text of each choice: a chat message's content (or refusal), or a legacy completion's text."""
    texts = []
    for choice in choices or ():
        message = get(choice, "message")
        texts.append(get(choice, "text") if message is None else get(message, "content") or get(message, "refusal"))
    return texts


def finish_completion(call: LLMCall, result: Any) -> None:
    """A chat completion or a legacy completion (object or JSON body)."""
    field = json_field if isinstance(result, dict) else getattr  # as in chat_usage
    choices = field(result, "choices", None)
    reasons = _finish_reasons(choices)
    if _content.enabled:
        call.capture_output(lambda: _choice_texts(choices), reasons[0] if reasons else None)
    call.finish(
        chat_usage(field(result, "usage", None)),
        response_id=field(result, "id", None),
        response_model=field(result, "model", None),
        finish_reasons=reasons,
        service_tier=field(result, "service_tier", None),
    )


def finish_embeddings(call: LLMCall, result: Any) -> None:
    usage = get(result, "usage")
    call.finish(
        None if usage is None else TokenUsage(input_tokens=clean_count(get(usage, "prompt_tokens")) or 0),
        response_model=get(result, "model"),
    )


class CompletionStreamWatcher(TextStreamWatcher):
    """A Chat Completions (``delta``) or legacy Completions (``text``) stream, chunk by chunk."""

    def __init__(self, kwargs: dict[str, Any], hide_usage_chunk: bool, *, chat: bool) -> None:
        request = kwargs.get("messages") if chat else kwargs.get("prompt")
        texts = texts_of(request)
        messages = len(request) if chat and isinstance(request, list) else 1
        super().__init__(kwargs.get("model"), texts, messages)
        self.hide_usage_chunk = hide_usage_chunk
        self.chat = chat
        self._reasons: dict[int, str] = {}

    def on_chunk(self, chunk: Any) -> bool:
        # Every chunk comes here: each field is read once, and what cannot change only until known.
        field = json_field if isinstance(chunk, dict) else getattr  # a raw response's events are JSON
        if self.response_id is None:
            self.response_id = field(chunk, "id", None)
            self.model = field(chunk, "model", None)
        if self.service_tier is None and (tier := field(chunk, "service_tier", None)) is not None:
            self.service_tier = str(tier)
        choices = field(chunk, "choices", None) or ()
        for choice in choices:
            if self.chat:
                delta = field(choice, "delta", None)
                if (text := field(delta, "content", None)) is not None:
                    self.seen_text(text)
                if (text := field(delta, "refusal", None)) is not None:
                    self.seen_text(text)
                for tool_call in field(delta, "tool_calls", None) or ():
                    self.seen_text(field(field(tool_call, "function", None), "arguments", None))
            elif (text := field(choice, "text", None)) is not None:
                self.seen_text(text)
            if (reason := field(choice, "finish_reason", None)) is not None:
                self._reasons[field(choice, "index", None) or 0] = str(reason)
                self.finish_reasons = [self._reasons[i] for i in sorted(self._reasons)]
        usage = field(chunk, "usage", None)
        if usage is not None:
            self.seen_usage(chat_usage(usage))
            # The usage-only chunk unitcost asked for: the caller never asked, so never sees it.
            if self.hide_usage_chunk and not choices:
                return False
        return True


def _error_usage(error: BaseException) -> TokenUsage | None:
    return usage_in_error(error, chat_usage)


CHAT = API(
    operation=A.OP_CHAT,
    finish=finish_completion,
    error_usage=_error_usage,
    watcher=partial(CompletionStreamWatcher, chat=True),
    asks_for_usage=True,
)
COMPLETIONS = API(
    operation=A.OP_TEXT_COMPLETION,
    finish=finish_completion,
    error_usage=_error_usage,
    watcher=partial(CompletionStreamWatcher, chat=False),
    asks_for_usage=True,
    request_field="prompt",
)
EMBEDDINGS = API(operation=A.OP_EMBEDDINGS, finish=finish_embeddings, error_usage=_error_usage, request_field="input")
