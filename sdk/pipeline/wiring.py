"""`configure()`: where spans go, and the one tracer unitcost creates its spans with.

If the application already set an SDK TracerProvider, unitcost adds its processors to it instead of
replacing it, and keeps the application's sampler for what the application exports. The store must
still see every call (a 10% sampler must not make costs 10x too low), so unitcost's own spans are
started with a sampler that turns the application's "drop" into "record only": recorded spans reach
every processor, the application's exporters skip them because they are not sampled, and the store
processor keeps them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

from ..common.forks import in_child_process
from ..exporters import otlp
from ..exporters.enrich import EnrichingSpanExporter, ExportSpanProcessor, store_task_locator
from ..exporters.metrics import SpanMetrics
from ..exporters.store import StoreSpanProcessor
from ..pricing.book import PriceBook
from ..version import __version__
from .coexist import ensure_coexisting
from .forgotten import CallCounter
from .preload import load_for_writers
from .settings import Settings

__all__ = ["Pipeline", "build_pipeline"]

logger = logging.getLogger("unitcost")

_own_provider: TracerProvider | None = None


class _RecordEverything(Sampler):
    """Keeps the wrapped sampler's decision, except that "drop" becomes "record only"."""

    def __init__(self, inner: Sampler) -> None:
        self._inner = inner

    def should_sample(
        self,
        parent_context: Any,
        trace_id: int,
        name: str,
        kind: Any = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: Any = None,
    ) -> Any:
        extra = () if trace_state is None else (trace_state,)  # as the SDK calls it: samplers may not take it
        result = self._inner.should_sample(parent_context, trace_id, name, kind, attributes, links, *extra)
        if result.decision is Decision.DROP:
            # A span starts with the attributes of its sampling result, and a "drop" result carries
            # none: keep the span's own, or the store could not tell what the span is.
            kept = {**(attributes or {}), **(result.attributes or {})}
            return SamplingResult(Decision.RECORD_ONLY, kept, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"unitcost.RecordEverything({self._inner.get_description()})"


class Pipeline:
    """What one `configure()` call set up: the tracer, the processors it added, and the price book."""

    def __init__(
        self,
        settings: Settings,
        provider: TracerProvider,
        owns_provider: bool,
        processors: list[SpanProcessor],
        prices: PriceBook,
        meter_provider: Any = None,
    ):
        self.settings = settings
        self.meter_provider = meter_provider  # unitcost's own, when metrics are on
        self.provider = provider
        self.owns_provider = owns_provider
        self.processors = processors
        self.prices = prices
        tracer: Any = provider.get_tracer("unitcost", __version__)
        # Our spans only: the application's own tracers keep the application's sampler untouched.
        tracer.sampler = _RecordEverything(provider.sampler)
        self.tracer = tracer

    def flush(self, timeout_millis: int = 30_000) -> bool:
        # Spans first: the export processor records the metrics of the spans it exports.
        flushed = all(p.force_flush(timeout_millis) for p in self.processors)
        if self.meter_provider is not None:
            flushed = self.meter_provider.force_flush(timeout_millis) and flushed
        return flushed

    def take_ended(self, spans: list[ReadableSpan]) -> None:
        """Give unitcost's processors spans that ended outside the TracerProvider: the provider SDK's
        own spans of calls whose streams were still open at shutdown (`unitcost.record.open_streams`)."""
        for span in spans:
            for processor in self.processors:
                processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        if not self.owns_provider:
            # SDK providers cannot remove a processor; a shut-down one ignores further spans.
            return


def build_pipeline(settings: Settings, prices: PriceBook, export: bool = True) -> Pipeline:
    """The pipeline ``settings`` ask for; ``export=False``: nothing exported either (unitcost off)."""
    global _own_provider
    load_for_writers(prices)  # before any writer thread starts: see unitcost.pipeline.preload
    existing = trace.get_tracer_provider()
    owns = existing is _own_provider or not isinstance(existing, TracerProvider)
    if existing is _own_provider and _own_provider is not None:
        provider = _own_provider  # OpenTelemetry sets the global provider once: reuse ours
    elif owns:
        provider = _own_provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: settings.service_name})
        )
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:  # someone else's non-SDK provider is global
            logger.info("unitcost: a non-SDK TracerProvider is global; unitcost keeps its own")
    else:
        provider = existing  # type: ignore[assignment]
    # First: it marks other instrumentations' spans as their processors' on_start and on_end follow.
    ensure_coexisting(provider)
    processors: list[SpanProcessor] = [CallCounter()]
    if settings.db_path is not None:
        processors.append(_store_processor(settings, prices))
    renamed = None
    if owns and provider.resource.attributes.get(SERVICE_NAME) != settings.service_name:
        # configure() again under another name: OpenTelemetry keeps the global provider, and with it
        # the first call's resource, so the exports carry this call's instead (the store has its own).
        renamed = Resource.create({SERVICE_NAME: settings.service_name})
    export_processor, meter_provider = (
        _export_processor(settings, prices, owns, provider.resource, renamed) if export else (None, None)
    )
    if export_processor is not None:
        processors.append(export_processor)
    for processor in processors:
        provider.add_span_processor(processor)
    return Pipeline(settings, provider, owns, processors, prices, meter_provider)


def _store_processor(settings: Settings, prices: PriceBook) -> StoreSpanProcessor:
    """The store's processor, its exporter on a thread of this process or feeding a writer process.
    A child process of the program (a pool's worker) writes with a thread: one writer process per
    configured program, not one per worker."""
    assert settings.db_path is not None
    exporter = None
    if settings.store_writer == "process" and not in_child_process():
        # Here, for start-up time: only a program that asks for a writer process needs its module.
        from ..exporters.store_process import ProcessStoreExporter, WriterRecipe

        recipe = WriterRecipe(settings.db_path, settings.price_file, settings.energy, settings.service_name)
        exporter = ProcessStoreExporter(settings.db_path, prices, settings.service_name, recipe)
    return StoreSpanProcessor(settings.db_path, prices, settings.service_name, exporter=exporter)


def _export_processor(
    settings: Settings, prices: PriceBook, owns: bool, resource: Resource, renamed: Resource | None
) -> tuple[SpanProcessor | None, Any]:
    """The processor that sends spans, with costs and task totals, to OTLP and the other exporters,
    and the MeterProvider of the metrics it records; (None, None) when nothing is exported.

    Spans and metrics go out with ``resource``, the provider's, or ``renamed`` when given (each
    exported span is then copied with it).

    OTLP goes to ``settings.otlp_endpoint``, else (only when unitcost owns the TracerProvider: an
    application that set its own exports by itself) to the one the standard variables name.
    """
    exporters = list(settings.exporters)
    headers = dict(settings.otlp_headers) or None
    endpoint = settings.otlp_endpoint
    use_otlp = bool(endpoint) or (owns and bool(otlp.env_endpoint()))
    if use_otlp:
        protocol = otlp.resolve_protocol(settings.otlp_protocol)
        exporters.insert(0, otlp.span_exporter(protocol, endpoint, headers, settings.otlp_timeout))
    metrics_on = settings.metrics
    if metrics_on is None:
        metrics_on = use_otlp and os.environ.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() != "none"
    meter_provider = None
    span_metrics = None
    if metrics_on:
        # Here: the metrics SDK only when metrics are on (start-up time).
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        if isinstance(metrics_on, tuple):
            readers = list(metrics_on)
        else:
            protocol = otlp.resolve_protocol(settings.otlp_protocol, "METRICS")
            exporter = otlp.metric_exporter(protocol, endpoint, headers, settings.otlp_timeout)
            readers = [PeriodicExportingMetricReader(exporter)]
        # unitcost's own exit handler flushes and shuts it down, after the spans whose metrics it records.
        meter_provider = MeterProvider(metric_readers=readers, resource=renamed or resource, shutdown_on_exit=False)
        span_metrics = SpanMetrics(meter_provider)
    if not exporters and span_metrics is None:
        return None, None
    locate = store_task_locator(settings.db_path) if settings.db_path is not None else None
    enriching = EnrichingSpanExporter(
        exporters, prices, metrics=span_metrics, locate_task=locate,
        resource=renamed,
    )
    return ExportSpanProcessor(enriching), meter_provider


