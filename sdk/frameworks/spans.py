"""A span opened by a framework's start hook and closed by its end hook.

A framework reports a run's start and end through two callbacks, not a ``with`` block, so the span
is made current here by hand: attached in the start hook, so that the LLM calls and tools the run
makes nest under it, and detached in the end hook only where that is sound (the context it was
attached in, while it is still that context's current span). A framework that ends a run in another
context, or out of order, leaves that context as it was instead of unitcost restoring a stale one.

Steps are unitcost's own step spans. Tools are OpenTelemetry GenAI ``execute_tool`` spans, as other
instrumentations write them: `unitcost.pipeline.coexist` then gives them their task, and a function
that is also decorated with ``@unitcost.tool`` is stored as one tool (the decorator's span, with its
cost), not two.
"""

from __future__ import annotations

from contextvars import Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..common import attributes as A
from ..common.errors import internal_error
from ..common.secrets import scrub
from ..pipeline.config import pipeline
from ..record.context import current_run

__all__ = ["FRAMEWORK", "FrameworkSpan"]

FRAMEWORK = "unitcost.framework"  # which framework's hook made the span: "openai-agents", "langchain"
_MAX_NAME = 256


class FrameworkSpan:
    """One framework run as a unitcost step (``kind="step"``) or tool (``kind="tool"``)."""

    __slots__ = ("span", "_context", "_token", "_closed")

    def __init__(self, kind: str, name: str, framework: str, attach: bool = True) -> None:
        self.span: Any = None
        self._context: Any = None
        self._token: Any = None
        self._closed = False
        try:
            name = (name or kind)[:_MAX_NAME]
            attrs: dict[str, Any] = {FRAMEWORK: framework}
            if kind == "tool":
                attrs.update({A.OPERATION: A.OP_EXECUTE_TOOL, A.TOOL_NAME: name})
                span_name = f"execute_tool {name}"
            else:
                attrs.update({A.SPAN_TYPE: "step", A.STEP_NAME: name})
                span_name = name
            run = current_run.get()
            if run is not None:
                attrs[A.TASK_ID] = run.id
            self.span = pipeline().tracer.start_span(span_name, kind=SpanKind.INTERNAL, attributes=attrs)
            if attach:
                self._context = trace.set_span_in_context(self.span)
                self._token = otel_context.attach(self._context)
        except Exception as exc:  # noqa: BLE001 - the framework's run goes on without its step
            internal_error(f"{framework} {kind} start", exc)

    def close(self, error: Any = None, rename: str | None = None) -> None:
        """End the span (once); ``error`` is an exception or a framework's error text, ``rename`` a
        step's name known only at its end (the agent a handoff went to)."""
        if self._closed or self.span is None:
            return
        self._closed = True
        token, self._token = self._token, None
        try:
            if token is not None and otel_context.get_current() is self._context and isinstance(token, Token):
                try:
                    token.var.reset(token)  # OpenTelemetry's detach, without its error log on a foreign context
                except (ValueError, RuntimeError):
                    pass  # attached in another context (a copy of this one): it ends with its task
            if rename:
                self.span.update_name(rename[:_MAX_NAME])
                self.span.set_attribute(A.STEP_NAME, rename[:_MAX_NAME])
            if error is not None:
                kind = type(error).__qualname__ if isinstance(error, BaseException) else "error"
                self.span.set_attribute(A.ERROR_TYPE, kind)
                self.span.set_status(Status(StatusCode.ERROR, scrub(str(error)[:1024])))
            self.span.end()
        except Exception as exc:  # noqa: BLE001
            internal_error("framework span end", exc)
