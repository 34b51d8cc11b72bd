"""The console: one short line per span, for development.

::

    09:00:01.204  chat gpt-4o-mini                 120 in (100 cached) / 9 out   $0.000033  0.84s  task 3f2a9c1d
    09:00:01.310  execute_tool search_kb                                         $0.002000  0.10s  task 3f2a9c1d
    09:00:01.320  invoke_agent support_ticket T-1  2 LLM, 1 tool  resolved       $0.002101  1.20s

Costs appear when the exporter is wrapped in `EnrichingSpanExporter` (as ``configure(exporters=[...])``
does); without it the lines show what the span itself carries.

Example::

    unitcost.configure(exporters=[unitcost.exporters.ConsoleSpanExporter()])
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..common import attributes as A
from ..common.errors import internal_error
from .store import span_type

__all__ = ["ConsoleSpanExporter"]


def _tokens(attrs: Any) -> str:
    inp, out = attrs.get(A.INPUT_TOKENS), attrs.get(A.OUTPUT_TOKENS)
    if inp is None and out is None:
        return "usage unknown"
    text = f"{inp or 0:,} in"
    if attrs.get(A.CACHE_READ_TOKENS):
        text += f" ({attrs[A.CACHE_READ_TOKENS]:,} cached)"
    text += f" / {out or 0:,} out"
    if attrs.get(A.REASONING_TOKENS):
        text += f" ({attrs[A.REASONING_TOKENS]:,} reasoning)"
    if attrs.get(A.USAGE_ESTIMATED):
        text = "~" + text
    return text


def format_span(span: ReadableSpan) -> str:
    """One line for a finished span."""
    attrs = span.attributes or {}
    kind = span_type(span)
    started = datetime.fromtimestamp((span.start_time or 0) / 1e9, tz=UTC).strftime("%H:%M:%S.%f")[:-3]
    duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e9
    detail = ""
    cost: Any = attrs.get(A.COST_USD)
    if kind == "llm":
        detail = _tokens(attrs)
        if attrs.get(A.COST_UNPRICED):
            cost = "unpriced"
    elif kind == "task":
        cost = attrs.get(A.TASK_COST_USD)
        parts = []
        if A.TASK_LLM_CALLS in attrs:
            parts.append(f"{attrs[A.TASK_LLM_CALLS]!s} LLM, {attrs.get(A.TASK_TOOL_CALLS, 0)!s} tool")
        if attrs.get(A.OUTCOME_LABEL) is not None:
            parts.append(str(attrs[A.OUTCOME_LABEL]))
        detail = "  ".join(parts)
    elif kind == "outcome":
        target = attrs.get(A.OUTCOME_TASK_ID) or attrs.get(A.OUTCOME_KEY)
        detail = f"outcome {attrs.get(A.OUTCOME_LABEL)!s} for {target!s}"
    name = span.name
    if kind == "task" and attrs.get(A.TASK_KEY) is not None:
        name += f" {attrs[A.TASK_KEY]!s}"
    if isinstance(cost, str) or cost is None:
        money = cost or ""
    else:
        money = f"${cost:.6f}" if cost >= 1e-4 else f"${cost:.8f}"
    task = attrs.get(A.TASK_ID) if kind != "task" else None
    error = f"  error {attrs.get(A.ERROR_TYPE)}" if attrs.get(A.ERROR_TYPE) else ""
    line = f"{started}  {name:<32} {detail:<36} {money:>10}  {duration:.2f}s"
    if task:
        line += f"  task {str(task)[:8]}"
    return line + error


class ConsoleSpanExporter(SpanExporter):
    """Prints one line per span to ``stream`` (default: standard error, so program output stays clean)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            text = "".join(format_span(span) + "\n" for span in spans)
            with self._lock:
                stream = self._stream or sys.stderr
                stream.write(text)
                stream.flush()
        except Exception as exc:  # noqa: BLE001
            internal_error("console exporter", exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        return None
