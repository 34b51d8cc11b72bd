"""The application side of the sampling tests: its own TracerProvider, sampling 10% of traces.

Imported by the subprocess scripts of tests/pipeline/test_sampler.py and tests/providers/test_anthropic_sampled.py,
which must set the global provider themselves, before unitcost is configured.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased


class EveryTenthSampled(IdGenerator):
    """TraceIdRatioBased(0.1) samples a trace when its low 64 bits are below 10% of 2**64: every
    tenth trace gets a low id and the others a high one, so exactly one in ten is sampled."""

    def __init__(self) -> None:
        self.count = 0
        self.spans = RandomIdGenerator()

    def generate_span_id(self) -> int:
        return self.spans.generate_span_id()

    def generate_trace_id(self) -> int:
        self.count += 1
        low = 1 if self.count % 10 == 1 else 2**63
        return (self.count << 64) | low


def install_app_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """Set the application's provider as the global one; returns it and what it exported."""
    exported = InMemorySpanExporter()
    provider = TracerProvider(sampler=TraceIdRatioBased(0.1), id_generator=EveryTenthSampled())
    provider.add_span_processor(SimpleSpanProcessor(exported))
    trace.set_tracer_provider(provider)
    return provider, exported
