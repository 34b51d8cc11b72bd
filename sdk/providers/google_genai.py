"""The google-genai adapter: Gemini's ``generate_content``, plain and streamed, sync and async.

``client.models.generate_content`` / ``generate_content_stream``, their ``client.aio`` twins, and
``client.chats`` (``send_message`` / ``send_message_stream`` call those) all reach one private
method per HTTP request: ``Models._generate_content`` / ``_generate_content_stream`` (and
``AsyncModels``'). unitcost wraps those, not the public methods: with automatic function calling
(Python functions as ``tools``) or automatic continuation, one public call makes several billed
requests, and the public method returns only the last one's usage.

Usage (``usage_metadata``, in genai-prices' reading of it): ``prompt_token_count`` already
INCLUDES ``cached_content_token_count`` (the cache reads); ``tool_use_prompt_token_count`` (the
results of server-side tools fed back to the model) is input on top of it; the thoughts
(``thoughts_token_count``) are billed as output on top of ``candidates_token_count``. A stream's
chunks each carry the usage so far: the last one seen wins, nothing is summed.

The provider is ``gcp.gemini`` (the Gemini Developer API) or ``gcp.vertex_ai`` (a client made
with ``vertexai=True``), OpenTelemetry's names; both are priced by genai-prices' ``google``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..common import attributes as A
from ..pricing.usage import TokenUsage, clean_count
from ..record import content as _content
from ..record.estimate import estimate, output_at_least_seen, texts_of
from ..record.llm import (
    AsyncStreamProxy,
    LLMCall,
    StreamWatcher,
    SyncStreamProxy,
    field_of,
    run_call,
    run_call_async,
)

__all__ = ["PATCHES", "request_messages", "usage_of"]


def usage_of(metadata: Any) -> TokenUsage | None:
    """``GenerateContentResponseUsageMetadata`` -> TokenUsage (totals with their parts)."""
    if metadata is None:
        return None
    prompt = clean_count(getattr(metadata, "prompt_token_count", None))
    tool_prompt = clean_count(getattr(metadata, "tool_use_prompt_token_count", None))
    cached = clean_count(getattr(metadata, "cached_content_token_count", None))
    candidates = clean_count(getattr(metadata, "candidates_token_count", None))
    thoughts = clean_count(getattr(metadata, "thoughts_token_count", None))
    input_tokens = (prompt or 0) + (tool_prompt or 0)
    cache_read = min(cached or 0, input_tokens)
    # Audio is billed at its own rates: the AUDIO entries of the by-modality details, each held to
    # the total it is a part of. The cached audio is in the prompt's audio too, as the cache is in the prompt.
    input_audio = min(
        _audio(getattr(metadata, "prompt_tokens_details", None))
        + _audio(getattr(metadata, "tool_use_prompt_tokens_details", None)),
        input_tokens,
    )
    return TokenUsage(
        input_tokens=input_tokens,
        output_tokens=(candidates or 0) + (thoughts or 0),
        cache_read_tokens=cache_read,
        reasoning_tokens=thoughts or 0,
        counts_reported=not (prompt is None and tool_prompt is None and candidates is None and thoughts is None),
        input_audio_tokens=input_audio,
        cache_read_audio_tokens=min(_audio(getattr(metadata, "cache_tokens_details", None)), cache_read, input_audio),
        output_audio_tokens=min(_audio(getattr(metadata, "candidates_tokens_details", None)), candidates or 0),
    )


def _audio(details: Any) -> int:
    """The AUDIO tokens of a list of ``ModalityTokenCount`` (0 when there is no such entry)."""
    total = 0
    for entry in details or ():
        modality = getattr(entry, "modality", None)
        if str(getattr(modality, "value", modality)) == "AUDIO":
            total += clean_count(getattr(entry, "token_count", None)) or 0
    return total


def model_name(model: Any) -> str:
    """The model id without its resource path: ``models/gemini-2.5-flash`` and Vertex AI's
    ``publishers/google/models/gemini-2.5-flash`` are ``gemini-2.5-flash``, as genai-prices names it."""
    if not isinstance(model, str) or not model:
        return "unknown"
    return model.rsplit("/", 1)[-1]


def _finish_reasons(candidates: Any) -> list[str]:
    reasons = []
    for candidate in candidates or ():
        reason = getattr(candidate, "finish_reason", None)
        if reason is not None:
            reasons.append(str(getattr(reason, "value", reason)))
    return reasons


def _candidate_texts(candidates: Any) -> list[str]:
    """The visible text of each candidate (thought summaries left out)."""
    texts = []
    for candidate in candidates or ():
        parts = getattr(getattr(candidate, "content", None), "parts", None) or ()
        texts.append("".join(
            p.text for p in parts if isinstance(getattr(p, "text", None), str) and not getattr(p, "thought", None)
        ))
    return texts


# The last base URL seen and its (host, port): a client makes call after call with one URL.
_last_url: tuple[Any, tuple[str | None, int | None]] = (None, (None, None))


def _client_of(models: Any) -> tuple[str, str | None, int | None]:
    """(provider, host, port) of the client behind ``client.models`` / ``client.aio.models``."""
    global _last_url
    api_client = getattr(models, "_api_client", None)
    provider = "gcp.vertex_ai" if getattr(api_client, "vertexai", False) else "gcp.gemini"
    url = getattr(getattr(api_client, "_http_options", None), "base_url", None)
    if not isinstance(url, str):
        return provider, None, None
    last, server = _last_url
    if url is not last:
        parts = urlsplit(url)
        server = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        _last_url = (url, server)
    return provider, server[0], server[1]


def _start(instance: Any, kwargs: dict[str, Any], stream: bool) -> LLMCall | None:
    provider, host, port = _client_of(instance)
    call = LLMCall.start(
        provider=provider,
        operation=A.OP_GENERATE_CONTENT,
        model=model_name(kwargs.get("model")),
        server_address=host,
        server_port=port,
        stream=stream,
    )
    if call is not None and _content.enabled:
        config = kwargs.get("config")
        system = config.get("system_instruction") if isinstance(config, dict) else getattr(
            config, "system_instruction", None
        )
        call.capture_input(request_messages(kwargs.get("contents")), _part_texts(system))
    return call


def _part_texts(value: Any) -> list[str]:
    """The text of a ``Content``, a ``Part``, a string, or a list of them (content capture only)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [t for item in value for t in _part_texts(item)]
    parts = field_of(value, "parts")
    if parts is not None:
        return _part_texts(list(parts))
    text = field_of(value, "text")
    return [text] if isinstance(text, str) and not field_of(value, "thought") else []


def request_messages(contents: Any) -> list[dict[str, Any]]:
    """``contents`` (a string, ``Content``s, ``Part``s, their dicts) as chat messages with a role and
    their text, for content capture; Gemini's ``model`` role is the assistant."""
    items = contents if isinstance(contents, list | tuple) else [contents]
    messages = []
    for item in items:
        role = field_of(item, "role") if not isinstance(item, str) else None
        messages.append({"role": "assistant" if role == "model" else str(role or "user"), "content": _part_texts(item)})
    return messages


def _finish(call: LLMCall, response: Any) -> Any:
    candidates = getattr(response, "candidates", None)
    reasons = _finish_reasons(candidates)
    if _content.enabled:
        call.capture_output(lambda: _candidate_texts(candidates), reasons[0] if reasons else None)
    call.finish(
        usage_of(getattr(response, "usage_metadata", None)),
        response_id=getattr(response, "response_id", None),
        response_model=getattr(response, "model_version", None),
        finish_reasons=reasons,
    )
    return response


class ContentStreamWatcher(StreamWatcher):
    """A ``generate_content_stream``: each chunk is a whole ``GenerateContentResponse`` whose usage
    is the usage so far (the last one wins). A stream that ends before a finish reason (abandoned,
    closed, failed) is incomplete; when its last usage counts fewer output tokens than the text
    seen, the output is the text's (one token per four characters), marked estimated. A stream
    that reported no usage at all is estimated from the request's and the answer's text."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.request_model = model_name(kwargs.get("model"))
        self.input_texts = texts_of(kwargs.get("contents"))  # the caller's strings, not copies
        self.metadata: Any = None
        self.response_id: str | None = None
        self.model: str | None = None
        self.finish_reasons: list[str] = []
        self.output_chars = 0
        self.output_texts: list[str] = []  # kept only until a usage is seen, for an estimate
        self.texts: list[str] | None = [] if _content.enabled else None

    def on_chunk(self, chunk: Any) -> bool:
        metadata = getattr(chunk, "usage_metadata", None)
        if metadata is not None:
            self.metadata = metadata
            self.output_texts = []
        if self.response_id is None:
            self.response_id = getattr(chunk, "response_id", None)
            self.model = getattr(chunk, "model_version", None)
        candidates = getattr(chunk, "candidates", None)
        if candidates:
            for candidate in candidates:
                content = getattr(candidate, "content", None)
                for part in getattr(content, "parts", None) or ():
                    text = getattr(part, "text", None)
                    if isinstance(text, str):
                        self.output_chars += len(text)
                        if self.metadata is None:
                            self.output_texts.append(text)
                        if self.texts is not None and not getattr(part, "thought", None):
                            self.texts.append(text)
            reasons = _finish_reasons(candidates)
            if reasons:
                self.finish_reasons = reasons
        return True

    def usage(self) -> TokenUsage | None:
        usage = usage_of(self.metadata)
        if usage is None:
            if self.output_texts or self.input_texts:
                return estimate(self.model or self.request_model, self.input_texts, 1, self.output_texts)
            return None
        if not self.finish_reasons:
            output_at_least_seen(usage, self.output_chars)
        return usage

    def finish(self, call: LLMCall, *, incomplete: bool, error: BaseException | None) -> None:
        usage = self.usage()
        self.output_texts = []
        call.end_stream(
            usage,
            error=error,
            incomplete=incomplete or not self.finish_reasons,
            texts=self.texts,
            response_id=self.response_id,
            response_model=self.model,
            finish_reasons=self.finish_reasons,
        )


def wrap_generate(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Models._generate_content``: one request, one response."""
    return run_call(_start(instance, kwargs, False), lambda: wrapped(*args, **kwargs), _finish)


async def wrap_generate_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return await run_call_async(_start(instance, kwargs, False), lambda: wrapped(*args, **kwargs), _finish)


def wrap_generate_stream(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Models._generate_content_stream``: a generator; its request is made at the first chunk,
    so a failed request ends the call from inside the watched stream."""
    return run_call(
        _start(instance, kwargs, True),
        lambda: wrapped(*args, **kwargs),
        lambda call, chunks: SyncStreamProxy(chunks, call, ContentStreamWatcher(kwargs)),
    )


async def wrap_generate_stream_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``AsyncModels._generate_content_stream``: the request is made when it is awaited; the async
    generator it returns is watched."""
    return await run_call_async(
        _start(instance, kwargs, True),
        lambda: wrapped(*args, **kwargs),
        lambda call, chunks: AsyncStreamProxy(chunks, call, ContentStreamWatcher(kwargs)),
    )


_MODELS = "google.genai.models"

# What `unitcost.instrument()` patches: (module, "Class.method", wrapper). The public methods and
# `chats` go through these private ones, once per HTTP request.
PATCHES = (
    (_MODELS, "Models._generate_content", wrap_generate),
    (_MODELS, "Models._generate_content_stream", wrap_generate_stream),
    (_MODELS, "AsyncModels._generate_content", wrap_generate_async),
    (_MODELS, "AsyncModels._generate_content_stream", wrap_generate_stream_async),
)
