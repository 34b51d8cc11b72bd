"""The Anthropic adapter: Messages ``create`` (plain and ``stream=True``), the ``messages.stream()``
helper and ``parse``, sync and async, stable and beta. ``count_tokens`` is not inference: not wrapped.

Counting each call once. anthropic 2.x traces itself: every API call gets a CLIENT span of its own
(instrumentation scope ``com.anthropic.sdk.python``) in the global TracerProvider, unless
``ANTHROPIC_OPEN_TELEMETRY=false`` or the client's ``open_telemetry`` option turns it off. unitcost
builds on that span instead of adding a second one (`unitcost.pipeline.adopt`):

- Around each SDK method the adapter opens a `PendingCall`. When the SDK starts its span inside the
  method, unitcost's span processor adopts it: the live span gets ``unitcost.span.type=llm`` and the
  ``unitcost.task.id``, so the application's own exporters see which task the call belongs to.
- The adapter reads the response (or the stream, event by event) exactly as when there is no SDK
  span, and drives the usual `LLMCall` lifecycle on a stand-in span. The store keeps the SDK's span,
  once the SDK has ended it, until the adapter has finished the call, then stores it once with the
  adapter's attributes over the SDK's: the 1-hour cache-write split, web searches and fetches, the
  thinking tokens, the price modifiers, and whether a stream was abandoned.
- When the SDK made no recording span (tracing off, the application's sampler dropped it, or the
  client traces to a TracerProvider of its own), nothing was adopted: the adapter records the call
  on a unitcost span, started at the time the call started, whose sampler never drops it.

So a call is one row in the store in every case, with the same numbers. The SDK's span that other
exporters receive carries the task id but not unitcost's later reading.

Usage (Anthropic's ``input_tokens`` EXCLUDES both cache buckets; see `message_usage`). A stream's
``message_start`` carries the input and cache counts; each ``message_delta`` carries CUMULATIVE
counts, so the last one wins and nothing is summed. A stream that ends before ``message_stop``
(abandoned, closed, failed) is recorded as incomplete with what was seen; if no ``message_delta``
came, its output is estimated from the text streamed (one token per four characters, marked
estimated).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

import wrapt

from ..common import attributes as A
from ..common.errors import internal_error
from ..pipeline.adopt import PendingCall, ensure_installed
from ..pipeline.config import pipeline
from ..pricing.usage import TokenUsage, UsagePart, clean_count
from ..record import content as _content
from ..record.budget import check_before_spending
from ..record.context import current_run
from ..record.estimate import METHOD_CHARS, output_at_least_seen
from ..record.instrument import observer, ungated
from ..record.llm import (
    RETRY_COUNT_HEADER,
    AsyncStreamProxy,
    LLMCall,
    StreamWatcher,
    SyncStreamProxy,
    field_of,
    json_field,
    mark_wrapped,
    unmark_wrapped,
)
from ..record.raw import is_raw_response, wrap_raw_response
from .server import server_of

__all__ = ["MessageStreamWatcher", "message_usage"]

SDK_SCOPE = "com.anthropic.sdk.python"  # platform clients add a suffix: ".bedrock", ".vertex"...
SDK_SPAN_NAME = "anthropic.messages.create"  # also the name of stream() and parse() calls

# Usage fields as they arrive; a later (cumulative) value replaces an earlier one.
_USAGE_FIELDS = (
    "input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation", "output_tokens",
    "output_tokens_details", "server_tool_use", "service_tier", "speed", "inference_geo", "iterations",
)


# Iteration kinds whose tokens the top-level usage already holds: the sampling turns of the answer
# (a fallback model's turn takes a ``message`` turn's place). Every other kind (``compaction``,
# ``advisor_message``, and any kind added later) is billed on top of the top-level usage.
_TOP_LEVEL_ITERATIONS = frozenset({"message", "fallback_message"})


def _counts(usage: Any) -> tuple[int, int, int, int, int, bool]:
    """(uncached input, cache read, cache write, 1-hour cache write, output, any count usable)."""
    uncached = clean_count(field_of(usage, "input_tokens"))
    cache_read = clean_count(field_of(usage, "cache_read_input_tokens"))
    creation = field_of(usage, "cache_creation")
    write_5m = clean_count(field_of(creation, "ephemeral_5m_input_tokens")) or 0
    write_1h = clean_count(field_of(creation, "ephemeral_1h_input_tokens")) or 0
    cache_write = clean_count(field_of(usage, "cache_creation_input_tokens"))
    output = clean_count(field_of(usage, "output_tokens"))
    reported = not (uncached is None and cache_read is None and cache_write is None and output is None)
    if cache_write is None:
        cache_write = write_5m + write_1h
    return uncached or 0, cache_read or 0, cache_write, min(write_1h, cache_write), output or 0, reported


def _iteration_parts(iterations: Any, response_model: Any) -> list[UsagePart]:
    """``usage.iterations`` -> the parts priced apart: every iteration that is not a plain turn of the
    response's own model (a compaction, an advisor's turn on its model, a fallback model's turn)."""
    parts = []
    for item in iterations if isinstance(iterations, (list, tuple)) else ():
        kind = field_of(item, "type")
        model = field_of(item, "model")
        model = str(model) if model else None
        if kind == "message" and (model is None or model == response_model):
            continue
        uncached, read, write, write_1h, output, _ = _counts(item)
        parts.append(UsagePart(str(kind or "iteration"), model, uncached + read + write, read, write, write_1h, output))
    return parts


def message_usage(usage: Any, response_model: Any = None) -> TokenUsage | None:
    """A Messages ``usage`` block -> TokenUsage (OpenTelemetry meaning: totals with their parts).

    Anthropic's ``input_tokens`` is the UNCACHED input only: all input is that plus the cache reads
    and the cache writes. Cache writes are split by how long they are kept (5 minutes, 1 hour),
    priced apart. ``output_tokens`` includes the thinking tokens.

    ``usage.iterations`` lists each sampling step of the request. A ``compaction`` or an advisor's
    step is billed but NOT in the top-level counts (which may then be all zeros): its tokens are
    added to the call's, and each such step becomes a `UsagePart` priced by its own model (the
    response's when it names none). A step of another model that the top level holds (a fallback
    model's turn) is a part too, so its tokens are priced by that model.
    """
    if usage is None:
        return None
    uncached, cache_read, cache_write, write_1h, output, reported = _counts(usage)
    thinking = clean_count(field_of(field_of(usage, "output_tokens_details"), "thinking_tokens")) or 0
    tools = field_of(usage, "server_tool_use")
    parts = _iteration_parts(field_of(usage, "iterations"), response_model)
    for part in parts:
        if part.kind not in _TOP_LEVEL_ITERATIONS:  # billed on top of the top-level counts
            uncached += part.input_tokens - part.cache_read_tokens - part.cache_write_tokens
            cache_read += part.cache_read_tokens
            cache_write += part.cache_write_tokens
            write_1h += part.cache_write_1h_tokens
            output += part.output_tokens
            reported = True
    return TokenUsage(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=min(write_1h, cache_write),
        reasoning_tokens=min(thinking, output),
        web_search_requests=clean_count(field_of(tools, "web_search_requests")) or 0,
        web_fetch_requests=clean_count(field_of(tools, "web_fetch_requests")) or 0,
        counts_reported=reported,
        parts=tuple(parts),
    )


def price_attributes(usage: Any) -> dict[str, Any]:
    """The price modifiers a response reports. genai-prices prices batch processing and fast mode;
    the priority tier and the inference region are recorded (it has no rates for them)."""
    attrs: dict[str, Any] = {}
    tier = field_of(usage, "service_tier")
    if isinstance(tier, str) and tier:
        attrs[A.ANTHROPIC_SERVICE_TIER] = tier
        if tier == "batch":
            attrs[A.PRICE_PROCESSING] = "batch"
    speed = field_of(usage, "speed")
    if isinstance(speed, str) and speed:
        attrs[A.PRICE_SPEED] = speed
    geo = field_of(usage, "inference_geo")
    if isinstance(geo, str) and geo:
        attrs[A.PRICE_INFERENCE_GEO] = geo
    return attrs


class _Call:
    """One Messages call, from before the request until unitcost has recorded it."""

    __slots__ = (
        "provider", "model", "host", "port", "stream", "run", "started_ns", "started", "pending", "retries", "request",
    )

    def __init__(self, instance: Any, kwargs: dict[str, Any], stream: bool) -> None:
        client = getattr(instance, "_client", None)
        self.provider = str(getattr(client, "_gen_ai_provider_name", None) or "anthropic")
        self.model = str(kwargs.get("model") or "unknown")
        self.host, self.port = server_of(instance)
        self.stream = stream
        self.run = current_run.get()
        self.started_ns = time.time_ns()
        self.started = time.perf_counter()
        live: dict[str, Any] = {A.SPAN_TYPE: "llm"}
        if self.run is not None:
            live[A.TASK_ID] = self.run.id
        self.pending = PendingCall(SDK_SCOPE, SDK_SPAN_NAME, live)
        self.retries = 0  # the SDK's retries so far, from each attempt's x-stainless-retry-count
        # The request's messages and system prompt, kept only when content capture is on.
        self.request = (kwargs.get("messages"), kwargs.get("system")) if _content.enabled else None
        # Before the request: the SDK's span can only be adopted by a processor already in place.
        ensure_installed(pipeline().provider)

    @classmethod
    def begin(cls, instance: Any, kwargs: dict[str, Any], stream: bool) -> _Call | None:
        try:
            return cls(instance, kwargs, stream)
        except Exception as exc:  # noqa: BLE001
            internal_error("anthropic call start", exc)
            return None

    def llm_call(self) -> LLMCall | None:
        """The lifecycle to record on: the SDK's adopted span, else a unitcost span of its own."""
        try:
            if self.pending.adopted:
                call = LLMCall(self.pending.recorder(), self.run, self.provider, self.model)
            else:
                started = LLMCall.start(
                    provider=self.provider,
                    operation=A.OP_CHAT,
                    model=self.model,
                    server_address=self.host,
                    server_port=self.port,
                    stream=self.stream,
                    start_time_ns=self.started_ns,
                )
                if started is None:
                    return None
                call = started
            call.started = self.started
            if self.retries:
                call.set_retries(self.retries)
            if self.request is not None:
                call.capture_input(*self.request)
            return call
        except Exception as exc:  # noqa: BLE001
            internal_error("anthropic call", exc)
            return None

    def failed(self, error: BaseException) -> None:
        call = self.llm_call()
        if call is not None:
            call.fail(error)

    def finished(self, result: Any, is_async: bool) -> Any:
        """Record a plain response now, or watch a stream; the result itself goes back unchanged."""
        call = self.llm_call()
        if call is None:
            return result
        try:
            return self._on_result(call, result, is_async)
        except Exception as exc:  # noqa: BLE001
            internal_error("anthropic response", exc)
            call.finish(None)
            return result

    def _on_result(self, call: LLMCall, result: Any, is_async: bool) -> Any:
        if is_raw_response(result):
            # with_raw_response / with_streaming_response: read from what the caller reads.
            watcher = MessageStreamWatcher() if self.stream else None
            return wrap_raw_response(result, call, lambda c, r: self._on_result(c, r, is_async), watcher)
        if self.stream:
            proxy = AsyncStreamProxy if is_async else SyncStreamProxy
            return proxy(result, call, MessageStreamWatcher())
        usage = field_of(result, "usage")  # a Message, or the JSON body of a raw response
        call.span.set_attributes(price_attributes(usage))
        stop = field_of(result, "stop_reason")
        if _content.enabled:
            call.capture_output(lambda: _block_texts(field_of(result, "content")), str(stop) if stop else None)
        model = field_of(result, "model")
        call.finish(
            message_usage(usage, model or self.model),
            response_id=field_of(result, "id"),
            response_model=field_of(result, "model"),
            finish_reasons=[str(stop)] if stop else None,
        )
        return result


def _block_texts(blocks: Any) -> list[Any]:
    return [field_of(block, "text") for block in blocks or () if field_of(block, "type") == "text"]


# The fields a content_block_delta's text may be in, and the one it is in, by delta type: reading a
# field an SDK object lacks goes through pydantic's __getattr__ (~3 us). Another type: each is tried.
_TEXT_FIELDS = ("text", "thinking", "partial_json")
_TEXT_FIELD_OF: dict[Any, tuple[str, ...]] = {
    "text_delta": ("text",), "thinking_delta": ("thinking",), "input_json_delta": ("partial_json",),
    "signature_delta": (), "citations_delta": (),
}


class MessageStreamWatcher(StreamWatcher):
    """Reads a Messages stream's raw events as they go by."""

    def __init__(self) -> None:
        self.usage: dict[str, Any] = {}
        self.message_id: str | None = None
        self.model: str | None = None
        self.stop_reason: str | None = None
        self.delta_seen = False
        self.stopped = False
        self.output_chars = 0
        self.thinking_chars = 0
        self.texts: list[str] | None = [] if _content.enabled else None  # text deltas, for content capture

    def _take_usage(self, usage: Any) -> None:
        for field in _USAGE_FIELDS:
            value = field_of(usage, field)
            if value is not None:
                self.usage[field] = value

    def on_chunk(self, chunk: Any) -> bool:
        # Every event comes here: read with getattr itself, a raw response's JSON events alike.
        field = json_field if isinstance(chunk, dict) else getattr
        kind = field(chunk, "type", None)
        if kind == "content_block_delta":
            delta = field(chunk, "delta", None)
            for name in _TEXT_FIELD_OF.get(field(delta, "type", None), _TEXT_FIELDS):
                text = field(delta, name, None)
                if isinstance(text, str):
                    self.output_chars += len(text)
                    if name == "thinking":
                        self.thinking_chars += len(text)
                    elif name == "text" and self.texts is not None:
                        self.texts.append(text)
                    break
        elif kind == "message_start":
            message = field_of(chunk, "message")
            self.message_id = field_of(message, "id")
            self.model = field_of(message, "model")
            self._take_usage(field_of(message, "usage"))
        elif kind == "message_delta":
            self.delta_seen = True
            self._take_usage(field_of(chunk, "usage"))  # cumulative: replaces, never adds
            self.stop_reason = field_of(field_of(chunk, "delta"), "stop_reason") or self.stop_reason
        elif kind == "message_stop":
            self.stopped = True
        return True

    def finish(self, call: LLMCall, *, incomplete: bool, error: BaseException | None) -> None:
        usage = message_usage(self.usage, self.model or call.model) if self.usage else None
        if usage is not None and not self.delta_seen:
            # message_start's output count is a placeholder; the text seen is a floor for the real one.
            # Either way the output was never reported: the count is an estimate, and says so.
            output_at_least_seen(usage, self.output_chars, self.thinking_chars)
            usage.estimated = True
            usage.estimate_method = METHOD_CHARS
        call.span.set_attributes(price_attributes(self.usage))
        call.end_stream(
            usage,
            error=error,
            incomplete=incomplete or not self.stopped,
            texts=self.texts,
            response_id=self.message_id,
            response_model=self.model,
            finish_reasons=[self.stop_reason] if self.stop_reason else None,
        )


# --- the wrappers -----------------------------------------------------------------------------------

# The call whose SDK request is being made in this context (not while its stream is read).
_in_flight: ContextVar[_Call | None] = ContextVar("unitcost_anthropic_in_flight", default=None)


@observer
def wrap_build_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Count the SDK's retries: each attempt's request says how many came before it."""
    request = wrapped(*args, **kwargs)
    call = _in_flight.get()
    if call is not None:
        try:
            count = clean_count(request.headers.get(RETRY_COUNT_HEADER))
            if count:
                call.retries = max(call.retries, count)
        except Exception as exc:  # noqa: BLE001
            internal_error("anthropic retries", exc)
    return request


def _making(call: _Call) -> tuple[Any, ...]:
    """Mark this context as making ``call``'s request: its span may be adopted, its retries are
    counted, and a wrapped method it calls is not recorded again. Give the tokens to `_made`.
    (A pair of functions, not a context manager: this runs twice for every call.) A run over its
    budget that asked to stop raises `BudgetExceeded` here, before anything is marked."""
    check_before_spending(call.run)
    return call.pending.entered(), _in_flight.set(call), mark_wrapped()


def _made(tokens: tuple[Any, ...]) -> None:
    pending, in_flight, wrapped = tokens
    unmark_wrapped(wrapped)
    _in_flight.reset(in_flight)
    PendingCall.left(pending)


def wrap_create(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``create`` (plain or ``stream=True``) and ``parse``."""
    call = _Call.begin(instance, kwargs, stream=bool(kwargs.get("stream")))
    if call is None:
        return wrapped(*args, **kwargs)
    try:
        tokens = _making(call)
        try:
            result = wrapped(*args, **kwargs)
        finally:
            _made(tokens)
    except BaseException as exc:
        call.failed(exc)
        raise
    return call.finished(result, is_async=False)


async def wrap_create_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = _Call.begin(instance, kwargs, stream=bool(kwargs.get("stream")))
    if call is None:
        return await wrapped(*args, **kwargs)
    try:
        tokens = _making(call)
        try:
            result = await wrapped(*args, **kwargs)
        finally:
            _made(tokens)
    except BaseException as exc:
        call.failed(exc)
        raise
    return call.finished(result, is_async=True)


def _watch_message_stream(call: _Call, message_stream: Any, is_async: bool) -> None:
    """Watch the raw event stream under a `MessageStream`: every way of reading the helper
    (iterating, ``text_stream``, ``until_done()``, ``get_final_message()``) and of leaving it
    (``close()``, ``__exit__``) goes through it. The helper object itself is left as it is."""
    try:
        proxied = call.finished(message_stream._raw_stream, is_async=is_async)
        message_stream._raw_stream = proxied
        if "response" in vars(message_stream):
            # anthropic < 1: the helper keeps the HTTP response itself, and its close() closes that one,
            # not the raw stream: it gets the watched stream's response, whose closing ends the call.
            message_stream.response = proxied.response
    except Exception as exc:  # noqa: BLE001
        internal_error("anthropic message stream", exc)


class MessageStreamManagerProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """What ``messages.stream()`` returns: the SDK's manager, whose ``with`` block makes the call."""

    def __init__(self, wrapped: Any, instance: Any, kwargs: dict[str, Any]) -> None:
        super().__init__(wrapped)
        self._self_instance = instance
        self._self_kwargs = kwargs

    def _self_begin(self) -> _Call | None:
        return _Call.begin(self._self_instance, self._self_kwargs, stream=True)

    def __enter__(self) -> Any:
        call = self._self_begin()
        if call is None:
            return self.__wrapped__.__enter__()
        try:
            tokens = _making(call)
            try:
                message_stream = self.__wrapped__.__enter__()
            finally:
                _made(tokens)
        except BaseException as exc:
            call.failed(exc)
            raise
        _watch_message_stream(call, message_stream, is_async=False)
        return message_stream

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return self.__wrapped__.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> Any:
        call = self._self_begin()
        if call is None:
            return await self.__wrapped__.__aenter__()
        try:
            tokens = _making(call)
            try:
                message_stream = await self.__wrapped__.__aenter__()
            finally:
                _made(tokens)
        except BaseException as exc:
            call.failed(exc)
            raise
        _watch_message_stream(call, message_stream, is_async=True)
        return message_stream

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return await self.__wrapped__.__aexit__(exc_type, exc, tb)


def wrap_stream(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``messages.stream()`` (sync and async: both return a manager; the call happens on entering it)."""
    manager = wrapped(*args, **kwargs)
    try:
        return MessageStreamManagerProxy(manager, instance, dict(kwargs))
    except Exception as exc:  # noqa: BLE001
        internal_error("anthropic stream manager", exc)
        return manager


@ungated
def see_through_stream_proxies(wrapped: Any, cls: Any, args: Any, kwargs: Any) -> Any:
    """anthropic < 1 answers ``isinstance(x, Stream)`` (and ``AsyncStream``) in a metaclass that
    never looks at ``x.__class__``: the stream unitcost watches would not be a ``Stream``. It is one
    when the stream it wraps is."""
    if len(args) == 1 and isinstance(args[0], (SyncStreamProxy, AsyncStreamProxy)):
        return isinstance(args[0].__wrapped__, cls)
    return wrapped(*args, **kwargs)


_MESSAGES = "anthropic.resources.messages.messages"
_BETA = "anthropic.resources.beta.messages.messages"

# What `unitcost.instrument()` patches: (module, "Class.method", wrapper). An entry whose module or
# method this anthropic version lacks is skipped (`unitcost.record.instrument`): the stream metaclasses
# exist before anthropic 1.0 only, ``beta.messages.stream`` from 0.43, ``parse`` from 0.78.
PATCHES = (
    ("anthropic._base_client", "BaseClient._build_request", wrap_build_request),
    ("anthropic._streaming", "_SyncStreamMeta.__instancecheck__", see_through_stream_proxies),
    ("anthropic._streaming", "_AsyncStreamMeta.__instancecheck__", see_through_stream_proxies),
) + tuple(
    (module, f"{cls}.{method}", wrapper)
    for module in (_MESSAGES, _BETA)
    for cls, method, wrapper in (
        ("Messages", "create", wrap_create),
        ("Messages", "parse", wrap_create),
        ("Messages", "stream", wrap_stream),
        ("AsyncMessages", "create", wrap_create_async),
        ("AsyncMessages", "parse", wrap_create_async),
        ("AsyncMessages", "stream", wrap_stream),
    )
)
