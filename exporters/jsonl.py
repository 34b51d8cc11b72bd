"""JSON Lines: one finished span per line, for pipelines (jq, a log shipper, a warehouse loader).

Each line is one object::

    {"trace_id": "4bf9...", "span_id": "00f0...", "parent_span_id": null, "name": "chat gpt-4o-mini",
     "kind": "CLIENT", "start_time_unix_nano": 1764061200000000000, "end_time_unix_nano": ...,
     "status": {"code": "UNSET"}, "attributes": {"gen_ai.usage.input_tokens": 120, ...},
     "events": [{"name": ..., "time_unix_nano": ..., "attributes": {...}}], "links": [],
     "resource": {"service.name": "support-bot"}, "scope": {"name": "unitcost", "version": "0.1.0"}}

Ids are lower-case hex as in OTLP/JSON; attribute values keep their JSON types (arrays for sequences).

Example::

    unitcost.configure(exporters=[unitcost.exporters.JsonlSpanExporter("spans.jsonl")])
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import IO, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..common.errors import internal_error

__all__ = ["JsonlSpanExporter"]


def _value(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _value(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_value(v) for v in value]
    return str(value)


def _attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: _value(value) for key, value in (attributes or {}).items()}


def span_to_dict(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as one JSON-able object (the line format above)."""
    context = span.context
    status: dict[str, Any] = {"code": span.status.status_code.name}
    if span.status.description:
        status["message"] = span.status.description
    scope = span.instrumentation_scope
    return {
        "trace_id": format(context.trace_id, "032x") if context else None,
        "span_id": format(context.span_id, "016x") if context else None,
        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "start_time_unix_nano": span.start_time,
        "end_time_unix_nano": span.end_time,
        "status": status,
        "attributes": _attributes(span.attributes),
        "events": [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": _attributes(e.attributes)}
            for e in span.events
        ],
        "links": [
            {
                "trace_id": format(link.context.trace_id, "032x"),
                "span_id": format(link.context.span_id, "016x"),
                "attributes": _attributes(link.attributes),
            }
            for link in span.links
        ],
        "resource": _attributes(span.resource.attributes) if span.resource else {},
        "scope": {"name": scope.name, "version": scope.version} if scope else None,
    }


class JsonlSpanExporter(SpanExporter):
    """Writes each span as one JSON line to a file (appended to) or a text stream.

    ``destination`` is a path, ``"-"`` for standard output, or an open text stream (left open).
    """

    def __init__(self, destination: str | os.PathLike[str] | IO[str] = "-") -> None:
        self._destination = destination
        self._stream: IO[str] | None = None
        self._owns_stream = False
        self._lock = threading.Lock()

    def _open(self) -> IO[str]:
        if self._stream is None:
            target = self._destination
            if target == "-":
                self._stream = sys.stdout
            elif isinstance(target, (str, os.PathLike)):
                # Created readable by its owner only, as the store is: spans say what the agents did.
                fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                self._stream = open(fd, "a", encoding="utf-8")  # noqa: SIM115 - closed by shutdown()
                self._owns_stream = True
            else:
                self._stream = target
        return self._stream

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            lines = "".join(
                json.dumps(span_to_dict(span), ensure_ascii=False, separators=(",", ":")) + "\n" for span in spans
            )
            with self._lock:
                stream = self._open()
                stream.write(lines)
                stream.flush()
        except Exception as exc:  # noqa: BLE001 - telemetry must not break the program it observes
            internal_error("JSONL exporter", exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        with self._lock:
            if self._stream is not None:
                self._stream.flush()
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._stream is not None and self._owns_stream:
                self._stream.close()
            self._stream = None
            self._owns_stream = False
