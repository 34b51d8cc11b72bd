"""The provider-neutral lifecycle of one LLM call, and the stream proxies that finish it.

Provider adapters (``unitcost.providers.*``) only map their SDK's objects onto this: `LLMCall.start`
before the request, then `finish` with the response's usage or `fail` with the error. Streams are
wrapped in a proxy that passes everything through, watches chunks go by, and ends the call exactly
once: when the stream is exhausted, closed (the stream itself, or the HTTP response a helper such as
``chat.completions.stream()`` closes), left through ``with``, garbage-collected, or fails, or, for a
stream still open then, when unitcost shuts down (`unitcost.record.open_streams`).

While an SDK request is in flight, the call is the context's `active_call`: the provider SDK's own
retries are counted on it (`note_retries`), and a wrapped SDK method that calls another wrapped
method (a helper calling ``create``) records one call, not two.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from ..common import attributes as A
from ..common.errors import internal_error
from ..common.secrets import scrub
from ..pipeline.config import pipeline
from ..pricing.usage import TokenUsage
from . import content as _content
from .budget import charge_call, check_before_spending
from .context import TaskRun, current_run
from .open_streams import forget, track
from .span_attributes import set_own_attributes

__all__ = [
    "AsyncStreamProxy", "LLMCall", "RETRY_COUNT_HEADER", "StreamWatcher", "SyncStreamProxy", "field_of",
    "in_wrapped_call", "json_field", "mark_wrapped", "note_retries", "note_retry_count", "provider_span_at_shutdown",
    "run_call", "run_call_async", "unmark_wrapped",
]


_LLM_TYPE = {A.SPAN_TYPE: "llm"}


class LLMCall:
    """One LLM call's span. Every method is safe to call in any order; the span ends once."""

    __slots__ = ("span", "started", "first_chunk_at", "retries", "_ended", "run", "provider", "model")

    def __init__(self, span: Any, run: TaskRun | None = None, provider: str = "", model: str = "") -> None:
        self.span = span
        self.started = time.perf_counter()
        self.first_chunk_at: float | None = None
        self.retries = 0
        self._ended = False
        self.run = run  # the task run this call belongs to, for its budget
        self.provider = provider
        self.model = model

    @property
    def ended(self) -> bool:
        return self._ended

    @classmethod
    def start(
        cls,
        *,
        provider: str,
        operation: str,
        model: str,
        server_address: str | None = None,
        server_port: int | None = None,
        stream: bool = False,
        start_time_ns: int | None = None,
        attributes: dict[str, Any] | None = None,
    ) -> LLMCall | None:
        try:
            attrs: dict[str, Any] = {
                A.SPAN_TYPE: "llm",
                A.OPERATION: operation,
                A.PROVIDER: provider,
                A.REQUEST_MODEL: model,
            }
            if server_address:
                attrs[A.SERVER_ADDRESS] = server_address
            if server_port:
                attrs[A.SERVER_PORT] = server_port
            if stream:
                attrs[A.REQUEST_STREAM] = True
            if attributes:
                attrs.update(attributes)
            run = current_run.get()
            if run is not None:
                attrs[A.TASK_ID] = run.id
            # The sampler sees the span's type; the rest is set without OpenTelemetry's per-value checks
            # (unitcost.record.span_attributes), which would cost more than the span itself.
            span = pipeline().tracer.start_span(
                f"{operation} {model}", kind=SpanKind.CLIENT, attributes=_LLM_TYPE, start_time=start_time_ns
            )
            set_own_attributes(span, attrs)
            return cls(span, run, provider, model)
        except Exception as exc:  # noqa: BLE001
            internal_error("llm call start", exc)
            return None

    def set_retries(self, retries: int) -> None:
        """The provider SDK is making attempt ``retries + 1`` of this call."""
        if retries > self.retries and not self._ended:
            self.retries = retries
            try:
                self.span.set_attribute(A.CALL_RETRIES, retries)
            except Exception as exc:  # noqa: BLE001
                internal_error("llm call retries", exc)

    # -- content: off unless the user opted in (unitcost.record.content); one flag test when off ----------
    def capture_input(self, messages: Any, system: Any = None) -> None:
        """The request's messages (and system prompt), recorded only when content capture is on."""
        if _content.enabled:
            _content.capture_input(self.span, messages, system)

    def capture_output(self, texts: Callable[[], Any], finish_reason: str | None = None) -> None:
        """The completion's text, recorded only when content capture is on; ``texts`` (a callable
        returning the texts) is not even called otherwise."""
        if _content.enabled:
            _content.capture_output(self.span, texts, finish_reason)

    def chunk_seen(self) -> None:
        # Set on the span with the response's other attributes when the call finishes: one pass
        # through the span's lock and attribute checks instead of two.
        if self.first_chunk_at is None:
            self.first_chunk_at = time.perf_counter()

    def finish(
        self,
        usage: TokenUsage | None,
        *,
        response_id: str | None = None,
        response_model: str | None = None,
        finish_reasons: list[str] | None = None,
        service_tier: str | None = None,
        incomplete: bool = False,
        error_type: str | None = None,
        end_time_ns: int | None = None,
    ) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            span = self.span
            # Set together: each set_attribute call takes the span's lock and checks it is recording.
            attrs: dict[str, Any] = {}
            if error_type:
                # The response itself says the call failed (a Responses `status: failed`).
                attrs[A.ERROR_TYPE] = error_type
                span.set_status(Status(StatusCode.ERROR, error_type))
            if response_id:
                attrs[A.RESPONSE_ID] = response_id
            if response_model:
                attrs[A.RESPONSE_MODEL] = response_model
            if finish_reasons:
                attrs[A.FINISH_REASONS] = finish_reasons
            if service_tier:
                attrs[A.OPENAI_SERVICE_TIER] = service_tier
            if usage is not None and not error_type and _reports_nothing(usage):
                # A usage block whose counts were all missing, null or unusable is no usage at all: the
                # call is recorded as unpriced (and says so in every report), never as a $0 call.
                usage = None
            if usage is not None:
                attrs.update(usage.span_attributes())
            if incomplete:
                attrs[A.CALL_INCOMPLETE] = True
            if self.first_chunk_at is not None:
                attrs[A.TIME_TO_FIRST_CHUNK] = self.first_chunk_at - self.started
            if attrs:
                set_own_attributes(span, attrs)
            span.end(end_time=end_time_ns)
            run = self.run
            if run is not None and run.budget is not None and usage is not None:
                charge_call(run, span, self.provider, self.model, time.perf_counter() - self.started, end_time_ns)
        except Exception as exc:  # noqa: BLE001
            internal_error("llm call finish", exc)

    def end_stream(
        self,
        usage: TokenUsage | None,
        *,
        error: BaseException | None,
        incomplete: bool,
        texts: list[str] | None = None,
        response_id: str | None = None,
        response_model: str | None = None,
        finish_reasons: list[str] | None = None,
        service_tier: str | None = None,
        error_type: str | None = None,
    ) -> None:
        """How every `StreamWatcher` ends its call, with what the stream said: the text streamed back
        (``texts``, kept by the watcher only when content capture is on) goes on the span with the first
        finish reason; a stream that failed is a failed call, incomplete, with the usage seen before the
        error; any other finishes with ``incomplete`` as the adapter judged it (its provider's rule for
        a stream that ended before its usage or its stop). The time to the first chunk is already kept."""
        if texts is not None:
            self.capture_output(lambda: ["".join(texts)], finish_reasons[0] if finish_reasons else None)
        if error is not None:
            self.fail(error, usage, incomplete=True)
            return
        self.finish(
            usage,
            response_id=response_id,
            response_model=response_model,
            finish_reasons=finish_reasons,
            service_tier=service_tier,
            incomplete=incomplete,
            error_type=error_type,
        )

    def fail(self, error: BaseException, usage: TokenUsage | None = None, incomplete: bool = False) -> None:
        if self._ended:
            return
        try:
            self.span.set_attribute(A.ERROR_TYPE, type(error).__qualname__)
            # An error's text may echo a credential (a proxy repeating the Authorization header).
            self.span.set_status(Status(StatusCode.ERROR, scrub(str(error)[:4096])[:1024]))
            _note_retries_from_error(self, error)
        except Exception as exc:  # noqa: BLE001
            internal_error("llm call fail", exc)
        self.finish(usage, incomplete=incomplete)


def _reports_nothing(usage: TokenUsage) -> bool:
    if usage.counts_reported:  # the provider said zero: zero tokens, priced (an all-zero top level)
        return False
    return not (
        usage.input_tokens or usage.output_tokens or usage.cache_read_tokens or usage.cache_write_tokens
        or usage.reasoning_tokens or usage.web_search_requests or usage.web_fetch_requests
    )


# The call whose SDK request is in flight in this context (not while its stream is being read).
active_call: ContextVar[LLMCall | None] = ContextVar("unitcost_active_call", default=None)
# True while a wrapped SDK method runs in this context: a wrapped method it calls is not recorded again.
_in_wrapped: ContextVar[bool] = ContextVar("unitcost_in_wrapped", default=False)

RETRY_COUNT_HEADER = "x-stainless-retry-count"  # sent by the openai and anthropic SDKs on each attempt


# True inside a wrapped SDK method in this context (the ContextVar's own ``get``: no Python frame per call).
in_wrapped_call: Callable[[], bool] = _in_wrapped.get


def mark_wrapped() -> Token[bool]:
    """Mark this context as inside a wrapped SDK method (see `in_wrapped_call`); give the token to
    `unmark_wrapped` in a ``finally``. (Two calls, not a context manager: every LLM call takes this
    path, and a generator-based one costs a few microseconds.)"""
    return _in_wrapped.set(True)


def unmark_wrapped(token: Token[bool]) -> None:
    _in_wrapped.reset(token)


def note_retries(headers: Any) -> None:
    """Count the SDK's retries on the active call from an outgoing request's headers."""
    call = active_call.get()
    if call is None:
        return
    try:
        value = headers.get(RETRY_COUNT_HEADER)
        if value is not None:
            call.set_retries(int(value))
    except (AttributeError, TypeError, ValueError):
        pass


def note_retry_count(retries: int) -> None:
    """The SDK is making attempt ``retries + 1`` of the active call (`note_retries` when the count is
    known without reading the request's headers)."""
    call = active_call.get()
    if call is not None:
        call.set_retries(retries)


def _note_retries_from_error(call: LLMCall, error: BaseException) -> None:
    # An SDK error keeps the request of its last attempt, which carries the attempt's retry count.
    request = getattr(error, "request", None)
    if request is None:
        request = getattr(getattr(error, "response", None), "request", None)
    if request is not None:
        headers = getattr(request, "headers", None)
        if headers is not None:
            value = headers.get(RETRY_COUNT_HEADER)
            if value is not None and str(value).isdigit():
                call.set_retries(int(value))


class StreamWatcher:
    """What a provider adapter supplies for a stream: it sees each chunk and says how it ended.

    ``on_chunk`` returns False for a chunk the caller must not see (the usage-only chunk unitcost
    asked for on the caller's behalf); ``finish`` is called exactly once, and ends the call with
    `LLMCall.end_stream`.
    """

    def on_chunk(self, chunk: Any) -> bool:
        return True

    def finish(self, call: LLMCall, *, incomplete: bool, error: BaseException | None) -> None:
        raise NotImplementedError


def field_of(obj: Any, name: str) -> Any:
    """A field of an SDK object or of its JSON (dict) form (a raw response's body); None when absent.
    How adapters read a response, whichever form the caller asked for."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def json_field(obj: Any, name: str, default: Any = None) -> Any:
    """``getattr(obj, name, default)`` for JSON: a field of a JSON object, ``default`` when absent or
    when ``obj`` is not an object. A watcher reads every chunk, so it reads the SDK's chunks with
    getattr itself (no call of unitcost's per field) and a raw response's JSON events with this."""
    return obj.get(name, default) if isinstance(obj, dict) else default


class _Watch:
    """The reading and the ending of a watched stream, apart from its proxy.

    ``for`` / ``async for`` over the proxy iterate this object: its per-chunk work reads plain
    slots, where each attribute read on a wrapt proxy costs ~0.2 us. It ends the call once: at the
    stream's end or error, on close, or when it is garbage-collected, i.e. when the proxy and every
    loop over it are gone (a stream the caller abandoned still records what it saw), or when unitcost
    shuts down while the stream is still open (`unitcost.record.open_streams` lists it until then).
    """

    __slots__ = ("stream", "call", "watcher", "on_chunk", "done", "__weakref__")

    def __init__(self, stream: Any, call: LLMCall, watcher: StreamWatcher) -> None:
        self.stream = stream
        self.call = call
        self.watcher = watcher
        self.on_chunk: Callable[[Any], bool] | None = None  # the watcher's, from the first chunk on
        self.done = False
        track(self)

    def first_chunk(self) -> Callable[[Any], bool]:
        """At the first chunk: the time to the first token. The watcher sees it and every later one."""
        self.call.chunk_seen()
        on_chunk = self.on_chunk = self.watcher.on_chunk
        return on_chunk

    def passes(self, chunk: Any) -> bool:
        """Show the watcher a chunk: False for one the caller must not see (the usage-only chunk
        unitcost asked for on the caller's behalf)."""
        try:
            on_chunk = self.on_chunk
            if on_chunk is None:
                on_chunk = self.first_chunk()
            return on_chunk(chunk)
        except Exception as exc:  # noqa: BLE001
            internal_error("stream chunk", exc)
            return True

    def end(self, *, incomplete: bool, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        forget(self)
        try:
            self.watcher.finish(self.call, incomplete=incomplete, error=error)
        except Exception as exc:  # noqa: BLE001
            internal_error("stream finish", exc)

    def end_at_shutdown(self) -> Any:
        """unitcost is shutting down and the stream is still open: record what was seen, now.

        Returns the provider SDK's own span of the call, as if ended now, when the SDK made one
        (anthropic 2.x, see `unitcost.pipeline.adopt`) and has not ended it: the call is stored when
        that span reaches unitcost's processors, which `unitcost.shutdown()` hands it to."""
        self.end(incomplete=True)
        return provider_span_at_shutdown(self.call)

    def disown(self) -> None:
        """A forked child's copy of its parent's open stream: the parent records the call, not us."""
        self.done = True

    def __del__(self) -> None:
        if not self.done:
            self.end(incomplete=True)


class _SyncWatch(_Watch):
    __slots__ = ()

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                chunk = next(self.stream)
            except StopIteration:
                self.end(incomplete=False)
                raise
            except BaseException as exc:
                self.end(incomplete=True, error=exc)
                raise
            if self.passes(chunk):
                return chunk


class _AsyncWatch(_Watch):
    __slots__ = ()

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                chunk = await self.stream.__anext__()
            except StopAsyncIteration:
                self.end(incomplete=False)
                raise
            except BaseException as exc:
                self.end(incomplete=True, error=exc)
                raise
            if self.passes(chunk):
                return chunk


class _StreamProxyBase(wrapt.ObjectProxy):  # type: ignore[misc]
    _watch_type: type[_Watch] = _Watch

    def __init__(self, wrapped: Any, call: LLMCall, watcher: StreamWatcher, chunks: Any = None) -> None:
        """``chunks``: the iterator to read when the stream object is iterable but not itself an
        iterator (botocore's ``EventStream``: ``iter(stream)``); by default the stream itself."""
        super().__init__(wrapped)
        self._self_watch = self._watch_type(wrapped if chunks is None else chunks, call, watcher)
        self._self_response: Any = None

    def _self_end(self, *, incomplete: bool, error: BaseException | None = None) -> None:
        self._self_watch.end(incomplete=incomplete, error=error)

    @property
    def response(self) -> Any:
        # Stream helpers (chat.completions.stream(), responses.stream(), anthropic's message
        # streams) close the HTTP response, not the stream: closing it ends the call too.
        cached = self._self_response
        if cached is None:
            cached = _ClosingResponse(self.__wrapped__.response, self._self_watch)
            self._self_response = cached
        return cached


class _ClosingResponse(wrapt.ObjectProxy):  # type: ignore[misc]
    """The HTTP response of a watched stream: closing it ends the stream's call (as incomplete
    unless the stream already ended)."""

    def __init__(self, wrapped: Any, watch: _Watch) -> None:
        super().__init__(wrapped)
        # A weak reference: the stream keeps this response, and a cycle would hold the stream (and
        # its unfinished call) until the cyclic garbage collector runs.
        self._self_watch = weakref.ref(watch)

    def _self_end_stream(self) -> None:
        watch = self._self_watch()
        if watch is not None:
            watch.end(incomplete=True)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end_stream()

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            self._self_end_stream()


class SyncStreamProxy(_StreamProxyBase):
    _watch_type = _SyncWatch
    _self_watch: _SyncWatch

    def __iter__(self) -> Any:
        return self._self_watch

    def __next__(self) -> Any:
        return next(self._self_watch)

    def close(self) -> None:
        try:
            self.__wrapped__.close()
        finally:
            self._self_end(incomplete=True)

    def __enter__(self) -> Any:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_end(incomplete=True)


class AsyncStreamProxy(_StreamProxyBase):
    _watch_type = _AsyncWatch
    _self_watch: _AsyncWatch

    def __aiter__(self) -> Any:
        return self._self_watch

    def __anext__(self) -> Any:
        return self._self_watch.__anext__()

    async def close(self) -> None:
        try:
            await self.__wrapped__.close()
        finally:
            self._self_end(incomplete=True)

    async def __aenter__(self) -> Any:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_end(incomplete=True)


def provider_span_at_shutdown(call: LLMCall) -> Any:
    """For a call recorded on a stand-in for the provider SDK's own span (`unitcost.pipeline.adopt`'s
    recorder): the SDK's span as if it ended now, while the SDK has not ended it; else None."""
    snapshot = getattr(call.span, "provider_span_at_shutdown", None)
    return snapshot() if snapshot is not None and call.ended else None


ErrorUsage = Callable[[BaseException], "TokenUsage | None"]


def _failed(call: LLMCall, exc: BaseException, on_error: ErrorUsage | None) -> None:
    usage = None
    if on_error is not None:
        try:
            usage = on_error(exc)
        except Exception as inner:  # noqa: BLE001
            internal_error("llm call error usage", inner)
    call.fail(exc, usage)


def run_call(
    call: LLMCall | None,
    invoke: Callable[[], Any],
    on_result: Callable[[LLMCall, Any], Any],
    on_error: ErrorUsage | None = None,
) -> Any:
    """Invoke the SDK method; record its error (with the usage ``on_error`` finds in it, if any) or
    hand its result to the adapter. The result and the exception reach the caller unchanged."""
    if call is None:
        inside = mark_wrapped()
        try:
            return invoke()
        finally:
            unmark_wrapped(inside)
    token = active_call.set(call)
    try:
        if call.run is not None:
            check_before_spending(call.run)  # raises BudgetExceeded when the run asked to stop
        inside = _in_wrapped.set(True)  # (mark_wrapped, without a call of its own on every LLM call)
        # The call is the current span while the SDK method runs: another instrumentation's span for
        # the same request starts under it (unitcost.pipeline.coexist), and so does an HTTP span.
        current = otel_context.attach(set_span_in_context(call.span))
        try:
            result = invoke()
        finally:
            otel_context.detach(current)
            _in_wrapped.reset(inside)
    except BaseException as exc:
        _failed(call, exc, on_error)
        raise
    finally:
        active_call.reset(token)
    try:
        return on_result(call, result)
    except Exception as exc:  # noqa: BLE001
        internal_error("llm call result", exc)
        call.finish(None)
        return result


async def run_call_async(
    call: LLMCall | None,
    invoke: Callable[[], Any],
    on_result: Callable[[LLMCall, Any], Any],
    on_error: ErrorUsage | None = None,
) -> Any:
    if call is None:
        inside = mark_wrapped()
        try:
            return await invoke()
        finally:
            unmark_wrapped(inside)
    token = active_call.set(call)
    try:
        if call.run is not None:
            check_before_spending(call.run)
        inside = _in_wrapped.set(True)  # (mark_wrapped, without a call of its own on every LLM call)
        current = otel_context.attach(set_span_in_context(call.span))
        try:
            result = await invoke()
        finally:
            otel_context.detach(current)
            _in_wrapped.reset(inside)
    except BaseException as exc:
        _failed(call, exc, on_error)
        raise
    finally:
        active_call.reset(token)
    try:
        return on_result(call, result)
    except Exception as exc:  # noqa: BLE001
        internal_error("llm call result", exc)
        call.finish(None)
        return result
