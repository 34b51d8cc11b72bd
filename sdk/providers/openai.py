"""The OpenAI adapter: Chat Completions, sync and async, plain and streamed.

Maps the ``openai`` SDK's objects onto `unitcost._llm.LLMCall`; nothing else lives here.
"""

from __future__ import annotations

from typing import Any

from .._config import pipeline
from .._estimate import estimate_usage, messages_chars
from .._llm import AsyncStreamProxy, LLMCall, StreamWatcher, SyncStreamProxy, run_call, run_call_async
from .._usage import TokenUsage, clean_count


# Hosts of OpenAI-compatible services, named as gen_ai.provider.name and genai-prices know them.
_HOSTS = {
    "api.openai.com": "openai",
    "api.groq.com": "groq",
    "api.together.xyz": "together",
    "openrouter.ai": "openrouter",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "x-ai",
    "api.mistral.ai": "mistral",
    "api.fireworks.ai": "fireworks",
}


def provider_for_host(host: str | None) -> str:
    if not host:
        return "openai"
    if host.endswith(".openai.azure.com"):
        return "azure.ai.openai"
    # Unknown hosts (a local proxy, a test server) speak the OpenAI API: price them as OpenAI.
    return _HOSTS.get(host, "openai")


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def chat_usage(usage: Any) -> TokenUsage | None:
    """Chat Completions ``usage`` -> TokenUsage. ``prompt_tokens`` already includes cached tokens."""
    if usage is None:
        return None
    prompt = _get(usage, "prompt_tokens_details")
    completion = _get(usage, "completion_tokens_details")
    return TokenUsage(
        input_tokens=clean_count(_get(usage, "prompt_tokens")) or 0,
        output_tokens=clean_count(_get(usage, "completion_tokens")) or 0,
        cache_read_tokens=clean_count(_get(prompt, "cached_tokens")) or 0,
        cache_write_tokens=clean_count(_get(prompt, "cache_write_tokens")) or 0,
        reasoning_tokens=clean_count(_get(completion, "reasoning_tokens")) or 0,
    )


def _finish_reasons(choices: Any) -> list[str]:
    return [str(r) for c in choices or () if (r := _get(c, "finish_reason"))]


def _server(instance: Any) -> tuple[str | None, int | None]:
    try:
        url = instance._client.base_url
        return url.host, url.port
    except AttributeError:
        return None, None


class ChatStreamWatcher(StreamWatcher):
    """Accumulates what a Chat Completions stream says about itself."""

    def __init__(self, hide_usage_chunk: bool, input_chars: int, input_messages: int) -> None:
        self.hide_usage_chunk = hide_usage_chunk
        self.input_chars = input_chars
        self.input_messages = input_messages
        self.output_chars = 0
        self.usage: TokenUsage | None = None
        self.response_id: str | None = None
        self.model: str | None = None
        self.service_tier: str | None = None
        self.finish_reasons: dict[int, str] = {}

    def on_chunk(self, chunk: Any) -> bool:
        if self.response_id is None:
            self.response_id = _get(chunk, "id")
            self.model = _get(chunk, "model")
        if (tier := _get(chunk, "service_tier")) is not None:
            self.service_tier = str(tier)
        choices = _get(chunk, "choices") or ()
        for choice in choices:
            delta = _get(choice, "delta")
            content = _get(delta, "content")
            if isinstance(content, str):
                self.output_chars += len(content)
            if (reason := _get(choice, "finish_reason")) is not None:
                self.finish_reasons[_get(choice, "index") or 0] = str(reason)
        usage = _get(chunk, "usage")
        if usage is not None:
            self.usage = chat_usage(usage)
            # The usage-only chunk unitcost asked for: the caller never asked, so never sees it.
            if self.hide_usage_chunk and not choices:
                return False
        return True

    def finish(self, call: LLMCall, *, incomplete: bool, error: BaseException | None) -> None:
        usage = self.usage
        if usage is None and (self.output_chars or self.input_chars):
            usage = estimate_usage(self.input_chars, self.input_messages, self.output_chars)
        kwargs: dict[str, Any] = dict(
            response_id=self.response_id,
            response_model=self.model,
            finish_reasons=[self.finish_reasons[i] for i in sorted(self.finish_reasons)],
            service_tier=self.service_tier,
        )
        if error is not None:
            call.fail(error, usage, incomplete=True)
        else:
            call.finish(usage, incomplete=incomplete and self.usage is None, **kwargs)


def _start(instance: Any, kwargs: dict[str, Any]) -> tuple[LLMCall | None, ChatStreamWatcher | None]:
    stream = bool(kwargs.get("stream"))
    host, port = _server(instance)
    call = LLMCall.start(
        provider=provider_for_host(host),
        operation="chat",
        model=str(kwargs.get("model") or "unknown"),
        server_address=host,
        server_port=port,
        stream=stream,
    )
    if call is None or not stream:
        return call, None
    hide = False
    if kwargs.get("stream_options") is None and pipeline().settings.openai_include_usage:
        kwargs["stream_options"] = {"include_usage": True}
        hide = True
    chars, count = messages_chars(kwargs.get("messages"))
    return call, ChatStreamWatcher(hide, chars, count)


def _on_response(call: LLMCall, result: Any, watcher: ChatStreamWatcher | None, is_async: bool) -> Any:
    if watcher is not None:
        proxy = AsyncStreamProxy if is_async else SyncStreamProxy
        return proxy(result, call, watcher)
    call.finish(
        chat_usage(_get(result, "usage")),
        response_id=_get(result, "id"),
        response_model=_get(result, "model"),
        finish_reasons=_finish_reasons(_get(result, "choices")),
        service_tier=_get(result, "service_tier"),
    )
    return result


def wrap_create(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call, watcher = _start(instance, kwargs)
    return run_call(call, lambda: wrapped(*args, **kwargs), lambda c, r: _on_response(c, r, watcher, False))


async def wrap_create_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call, watcher = _start(instance, kwargs)
    return await run_call_async(
        call, lambda: wrapped(*args, **kwargs), lambda c, r: _on_response(c, r, watcher, True)
    )


# What `unitcost.instrument()` patches: (module, "Class.method", wrapper). wrapt wrappers receive
# (wrapped, instance, args, kwargs).
PATCHES = (
    ("openai.resources.chat.completions.completions", "Completions.create", wrap_create),
    ("openai.resources.chat.completions.completions", "AsyncCompletions.create", wrap_create_async),
)
