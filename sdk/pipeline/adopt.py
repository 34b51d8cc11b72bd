"""Calls that the provider SDK traces itself: unitcost builds on the SDK's span instead of adding one.

anthropic 2.x starts a CLIENT span of its own for each API call, in the global TracerProvider. If
unitcost added a span of its own for the same call, the store would count the call twice. So:

1. The adapter opens a `PendingCall` around the SDK method (`entered`), before the SDK starts its
   span, and keeps it until it has finished the call.
2. The SDK starts its span on the caller's thread, inside the method. `AdoptingProcessor.on_start`
   (a span processor unitcost adds to the TracerProvider) sees it there and adopts it: it marks the
   still-live span as unitcost's LLM call (``unitcost.span.type``, ``unitcost.task.id``), so every
   exporter the application has sees the task the call belongs to.
3. What only the adapter learns after the SDK may have ended its span (usage details the SDK does
   not record, web searches, an abandoned stream) is gathered by `PendingCall.recorder()`, a stand-in
   span the adapter drives through the ordinary `LLMCall` lifecycle. The store processor calls
   `merge_or_hold` with the SDK's ended span: it is held until the adapter has finished, then stored
   once, with the adapter's attributes over the SDK's.
4. A call the SDK made no recording span for (its tracing is off, the application's sampler dropped
   the span, or the client traces to another TracerProvider) was not adopted: the adapter records it
   on a unitcost span of its own, whose sampler never drops it (see `unitcost.pipeline.wiring`).

Either way the store sees one span per call. A held span whose call is never finished (a bug, or a
stream object kept alive forever) is stored as the SDK made it when its `PendingCall` is collected.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import Status, StatusCode

from ..common import attributes as A
from ..common.errors import internal_error
from ..common.forks import after_fork_in_child
from ..common.spans import copy_span

__all__ = ["PendingCall", "ensure_installed", "merge_or_hold"]

Emit = Callable[[ReadableSpan], None]

_pending: ContextVar[PendingCall | None] = ContextVar("unitcost_pending_call", default=None)
_by_span_id: weakref.WeakValueDictionary[int, PendingCall] = weakref.WeakValueDictionary()
# The live SDK span keeps its PendingCall alive until the span has ended and been handed on.
_by_live_span: weakref.WeakKeyDictionary[Any, PendingCall] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def _new_lock_after_fork() -> None:
    # A child of fork gets this lock as it was: possibly held by a thread the child does not have.
    global _registry_lock
    _registry_lock = threading.Lock()


after_fork_in_child(_new_lock_after_fork)

# Attributes that say how a call ended: the adapter's reading replaces the SDK's, so a call is
# recorded the same way whether the SDK traced it or not.
_ENDING_KEYS = (A.ERROR_TYPE,)


class PendingCall:
    """One call the adapter is making, that the SDK may trace with a span of its own."""

    __slots__ = (
        "scope_prefix", "span_name", "live_attributes", "span", "_lock", "_finished", "_attributes", "_status",
        "_held", "__weakref__",
    )

    def __init__(self, scope_prefix: str, span_name: str, live_attributes: Mapping[str, Any]) -> None:
        self.scope_prefix = scope_prefix
        self.span_name = span_name
        self.live_attributes = dict(live_attributes)
        self.span: Any = None  # the SDK's live span, once adopted
        self._lock = threading.Lock()
        self._finished = False
        self._attributes: dict[str, Any] = {}
        self._status: Status | None = None
        self._held: list[tuple[ReadableSpan, Emit]] = []

    @property
    def adopted(self) -> bool:
        return self.span is not None

    def entered(self) -> Token[PendingCall | None]:
        """Make this the call whose SDK span is expected in this context; give the token to `left`."""
        return _pending.set(self)

    @staticmethod
    def left(token: Token[PendingCall | None]) -> None:
        _pending.reset(token)

    def recorder(self) -> Recorder:
        """A stand-in span for `LLMCall`: what it records is merged into the SDK's span."""
        return Recorder(self)

    def _adopt(self, span: Any) -> None:
        self.span = span
        span.set_attributes(self.live_attributes)
        with _registry_lock:
            _by_live_span[span] = self
            _by_span_id[span.get_span_context().span_id] = self

    def _finish(self, attributes: dict[str, Any], status: Status | None) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
            self._attributes = attributes
            self._status = status
            held, self._held = self._held, []
        for span, emit in held:
            emit(self._merged(span))

    def _merge_or_hold(self, span: ReadableSpan, emit: Emit) -> ReadableSpan | None:
        with self._lock:
            if not self._finished:
                self._held.append((span, emit))
                return None
        return self._merged(span)

    def _merged(self, span: ReadableSpan) -> ReadableSpan:
        attributes = {k: v for k, v in (span.attributes or {}).items() if k not in _ENDING_KEYS}
        attributes.update(self._attributes)
        status = self._status
        if status is None:
            sdk_status = span.status
            status = sdk_status if sdk_status.status_code is StatusCode.OK else Status(StatusCode.UNSET)
        return copy_span(span, attributes=attributes, status=status)

    def __del__(self) -> None:
        # Never finished (it cannot happen on purpose): store what the SDK recorded rather than nothing.
        held, self._held = self._held, []
        for span, emit in held:
            try:
                emit(span)
            except Exception:  # noqa: BLE001, S110 - nothing can be reported from a finaliser
                pass


class Recorder:
    """Takes what `LLMCall` would set on its span, and finishes the `PendingCall` when it "ends"."""

    __slots__ = ("_call", "attributes", "status")

    def __init__(self, call: PendingCall) -> None:
        self._call = call
        self.attributes: dict[str, Any] = {}
        self.status: Status | None = None

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self.attributes.update(attributes)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self.status = status if isinstance(status, Status) else Status(status, description)

    def is_recording(self) -> bool:
        return True

    def end(self, end_time: int | None = None) -> None:
        # The SDK's span keeps its own end time: it ends when the SDK is done with the response.
        self._call._finish(self.attributes, self.status)

    def provider_span_at_shutdown(self) -> ReadableSpan | None:
        """The SDK's own span, as if it ended now, while the SDK has not ended it: unitcost is
        shutting down with the call's stream still open, and the SDK ends its span only when the
        stream is read or closed, after unitcost's processors have stopped. The caller hands the copy
        to unitcost's own processors; the SDK's live span is left alone (the program may still read
        the stream, and the SDK end its span then, for the application's own exporters)."""
        span = self._call.span
        if span is None or not span.is_recording():
            return None
        return copy_span(span, end_time=time.time_ns())


class AdoptingProcessor(SpanProcessor):
    """Adopts the SDK's span of a pending call when it starts (see the module docstring)."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        call = _pending.get()
        if call is None or call.span is not None:
            return
        try:
            scope = span.instrumentation_scope
            if span.name == call.span_name and scope is not None and scope.name.startswith(call.scope_prefix):
                call._adopt(span)
        except Exception as exc:  # noqa: BLE001 - the SDK must still get its span
            internal_error("adopting the SDK's span", exc)


_installed: weakref.WeakSet[Any] = weakref.WeakSet()


def ensure_installed(provider: Any) -> None:
    """Add an `AdoptingProcessor` to this TracerProvider, once."""
    if provider in _installed:
        return
    with _registry_lock:
        if provider in _installed:
            return
        provider.add_span_processor(AdoptingProcessor())
        _installed.add(provider)


def merge_or_hold(span: ReadableSpan, emit: Emit) -> ReadableSpan | None:
    """The span to store for this ended span: itself, or the SDK's span of an adopted call merged
    with the adapter's attributes. None while the adapter has not finished the call: ``emit`` then
    receives the merged span when it has."""
    call = _by_span_id.get(span.context.span_id) if span.context is not None else None
    if call is None:
        return span
    return call._merge_or_hold(span, emit)
