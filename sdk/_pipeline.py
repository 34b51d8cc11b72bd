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
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

from ._config import Settings
from ._pricing import PriceBook
from .version import __version__

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
            return SamplingResult(
                Decision.RECORD_ONLY, {**(attributes or {}), **(result.attributes or {})}, result.trace_state
            )
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
    ):
        self.settings = settings
        self.provider = provider
        self.owns_provider = owns_provider
        self.processors = processors
        self.prices = prices
        tracer: Any = provider.get_tracer("unitcost", __version__)
        # Our spans only: the application's own tracers keep the application's sampler untouched.
        tracer.sampler = _RecordEverything(provider.sampler)
        self.tracer = tracer

    def flush(self, timeout_millis: int = 30_000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self.processors)

    def shutdown(self) -> None:
        for processor in self.processors:
            processor.shutdown()
        if not self.owns_provider:
            # SDK providers cannot remove a processor; a shut-down one ignores further spans.
            return


def build_pipeline(settings: Settings, prices: PriceBook) -> Pipeline:
    from .exporters.store import StoreSpanProcessor

    global _own_provider
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
    processors: list[SpanProcessor] = []
    if settings.db_path is not None:
        processors.append(StoreSpanProcessor(settings.db_path, prices, settings.service_name))
    endpoint = settings.otlp_endpoint
    if endpoint is None and owns:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
    if endpoint:
        processors.append(BatchSpanProcessor(_otlp_exporter(endpoint, explicit=settings.otlp_endpoint)))
    for processor in processors:
        provider.add_span_processor(processor)
    return Pipeline(settings, provider, owns, processors, prices)


def _otlp_exporter(endpoint: str, explicit: str | None) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if explicit is None:
        return OTLPSpanExporter()  # reads the OTEL_EXPORTER_OTLP_* variables itself
    url = explicit.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    return OTLPSpanExporter(endpoint=url)


