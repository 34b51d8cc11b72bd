"""The settings `configure()` resolved, as the pipeline is built from them.

A module of its own so that `config` (which builds them) and `wiring` (which reads them) need not
import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Settings"]


@dataclass(frozen=True)
class Settings:
    service_name: str
    db_path: Path | None  # None: no local store
    otlp_endpoint: str | None
    openai_include_usage: bool
    otlp_protocol: str | None = None  # None: OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL, else http/protobuf
    otlp_headers: tuple[tuple[str, str], ...] = ()
    otlp_timeout: float | None = None  # seconds
    exporters: tuple[Any, ...] = ()  # SpanExporters, each given costs and task totals
    metrics: bool | tuple[Any, ...] | None = None  # None: on with OTLP export; or MetricReaders
    # "thread" (default) or "process": who writes the store (unitcost.exporters.store_process); a writer
    # process makes its own price book from the price file in force (None: none) and the energy switch.
    store_writer: str = "thread"
    price_file: Path | None = None
    energy: bool = False
