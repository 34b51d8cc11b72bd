"""Where unitcost's spans go: the local SQLite store, and the OpenTelemetry exporters beside it."""

from .store import StoreSpanExporter, StoreSpanProcessor

__all__ = ["StoreSpanExporter", "StoreSpanProcessor"]
