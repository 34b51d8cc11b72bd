"""Finished spans copied with some of their fields changed (OpenTelemetry's `ReadableSpan` is
immutable): the exporters' enriched spans, an adopted SDK span, another instrumentation's span read
in unitcost's words. Loaded only by what handles spans (never by `import unitcost`)."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["copy_span"]


def copy_span(span: ReadableSpan, **changes: Any) -> ReadableSpan:
    """A copy of ``span`` with ``changes`` (any of `ReadableSpan`'s arguments) in place of its own."""
    fields: dict[str, Any] = {
        "name": span.name, "context": span.context, "parent": span.parent, "resource": span.resource,
        "attributes": span.attributes, "events": span.events, "links": span.links, "kind": span.kind,
        "status": span.status, "start_time": span.start_time, "end_time": span.end_time,
        "instrumentation_scope": span.instrumentation_scope,
    }
    fields.update(changes)
    return ReadableSpan(**fields)
