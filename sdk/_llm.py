"""The provider-neutral lifecycle of one LLM call, and the stream proxies that finish it.

Provider adapters (``unitcost.providers.*``) only map their SDK's objects onto this: `LLMCall.start`
before the request, then `finish` with the response's usage or `fail` with the error. Streams are
wrapped in a proxy that passes everything through, watches chunks go by, and ends the call exactly
once: when the stream is exhausted, closed, left through ``with``, garbage-collected, or fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import wrapt
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _attributes as A
from ._config import pipeline
from ._context import current_run
from ._errors import internal_error
from ._usage import TokenUsage


class LLMCall:
    """One LLM call's span. Every method is safe to call in any order; the span ends once."""

    __slots__ = ("span", "started", "first_chunk_at", "_ended")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.started = time.perf_counter()
        self.first_chunk_at: float | None = None
        self._ended = False

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
            run = current_run.get()
            if run is not None:
                attrs[A.TASK_ID] = run.id
            span = pipeline().tracer.start_span(f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attrs)
            return cls(span)
        except Exception as exc:  # noqa: BLE001
            internal_error("llm call start", exc)
            return None

    def chunk_seen(self) -> None:
        if self.first_chunk_at is None:
            self.first_chunk_at = time.perf_counter()
            self.span.set_attribute(A.TIME_TO_FIRST_CHUNK, self.first_chunk_at - self.started)

    def finish(
        self,
        usage: TokenUsage | None,
        *,
        response_id: str | None = None,
        response_model: str | None = None,
        finish_reasons: list[str] | None = None,
        service_tier: str | None = None,
        incomplete: bool = False,
    ) -> None:
        if self._ended:
            return
        self._ended = True
        try:
            span = self.span
            if response_id:
                span.set_attribute(A.RESPONSE_ID, response_id)
            if response_model:
                span.set_attribute(A.RESPONSE_MODEL, response_model)
            if finish_reasons:
                span.set_attribute(A.FINISH_REASONS, finish_reasons)
            if service_tier:
                span.set_attribute(A.OPENAI_SERVICE_TIER, service_tier)
            if usage is not None:
                span.set_attributes(usage.span_attributes())
            if incomplete:
                span.set_attribute(A.CALL_INCOMPLETE, True)
            span.end()
        except Exception as exc:  # noqa: BLE001
            internal_error("llm call finish", exc)

    def fail(self, error: BaseException, usage: TokenUsage | None = None, incomplete: bool = False) -> None:
        if self._ended:
            return
        try:
            self.span.set_attribute(A.ERROR_TYPE, type(error).__qualname__)
            self.span.set_status(Status(StatusCode.ERROR, str(error)[:1024]))
        except Exception as exc:  # noqa: BLE001
            internal_error("llm call fail", exc)
        self.finish(usage, incomplete=incomplete)


class StreamWatcher:
    """What a provider adapter supplies for a stream: it sees each chunk and says how it ended.

    ``on_chunk`` returns False for a chunk the caller must not see (the usage-only chunk unitcost
    asked for on the caller's behalf); ``finish`` is called exactly once.
    """

    def on_chunk(self, chunk: Any) -> bool:
        return True

    def finish(self, call: LLMCall, *, incomplete: bool, error: BaseException | None) -> None:
        raise NotImplementedError


class _StreamProxyBase(wrapt.ObjectProxy):  # type: ignore[misc]
    def __init__(self, wrapped: Any, call: LLMCall, watcher: StreamWatcher) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_watcher = watcher
        self._self_done = False

    def _self_see(self, chunk: Any) -> bool:
        try:
            self._self_call.chunk_seen()
            return self._self_watcher.on_chunk(chunk)
        except Exception as exc:  # noqa: BLE001
            internal_error("stream chunk", exc)
            return True

    def _self_end(self, *, incomplete: bool, error: BaseException | None = None) -> None:
        if self._self_done:
            return
        self._self_done = True
        try:
            self._self_watcher.finish(self._self_call, incomplete=incomplete, error=error)
        except Exception as exc:  # noqa: BLE001
            internal_error("stream finish", exc)

    def __del__(self) -> None:
        # A stream the caller abandoned without closing still records what it saw.
        if not self._self_done:
            self._self_end(incomplete=True)


class SyncStreamProxy(_StreamProxyBase):
    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                chunk = next(self.__wrapped__)
            except StopIteration:
                self._self_end(incomplete=False)
                raise
            except BaseException as exc:
                self._self_end(incomplete=True, error=exc)
                raise
            if self._self_see(chunk):
                return chunk

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
    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                chunk = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                self._self_end(incomplete=False)
                raise
            except BaseException as exc:
                self._self_end(incomplete=True, error=exc)
                raise
            if self._self_see(chunk):
                return chunk

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


def run_call(
    call: LLMCall | None,
    invoke: Callable[[], Any],
    on_result: Callable[[LLMCall, Any], Any],
) -> Any:
    """Invoke the SDK method; record its error or hand its result to the adapter. Result unchanged."""
    if call is None:
        return invoke()
    try:
        result = invoke()
    except BaseException as exc:
        call.fail(exc)
        raise
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
) -> Any:
    if call is None:
        return await invoke()
    try:
        result = await invoke()
    except BaseException as exc:
        call.fail(exc)
        raise
    try:
        return on_result(call, result)
    except Exception as exc:  # noqa: BLE001
        internal_error("llm call result", exc)
        call.finish(None)
        return result
