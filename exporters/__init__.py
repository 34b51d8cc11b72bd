"""Where unitcost's spans go: the local SQLite store, and the OpenTelemetry exporters beside it.

Each is a real OpenTelemetry ``SpanExporter``. `EnrichingSpanExporter` wraps any of them (yours too)
to add each LLM call's cost, each task's totals and its outcome; ``unitcost.configure(exporters=[...])``
does that for you.
"""

from .console import ConsoleSpanExporter
from .enrich import EnrichingSpanExporter
from .jsonl import JsonlSpanExporter
from .store import StoreSpanExporter, StoreSpanProcessor

__all__ = [
    "ConsoleSpanExporter",
    "EnrichingSpanExporter",
    "JsonlSpanExporter",
    "StoreSpanExporter",
    "StoreSpanProcessor",
]
