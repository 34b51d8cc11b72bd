"""`UnitcostInstrumentor`: unitcost for ``opentelemetry-instrument python app.py``.

unitcost registers it under the ``opentelemetry_instrumentor`` entry point group, so OpenTelemetry's
auto-instrumentation loads it like any other instrumentor: it calls ``UnitcostInstrumentor()`` and
then ``.instrument(**kwargs)``. It has the surface of opentelemetry-instrumentation's
``BaseInstrumentor`` (``instrument``, ``uninstrument``, ``instrumentation_dependencies``,
``is_instrumented_by_opentelemetry``) without depending on that package. unitcost adds its own
processors to the TracerProvider the auto-instrumentation set up (see `unitcost.configure`).

Example::

    from unitcost.otel import UnitcostInstrumentor
    UnitcostInstrumentor().instrument()
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .record.instrument import instrument, is_instrumented, uninstrument

__all__ = ["UnitcostInstrumentor"]


class UnitcostInstrumentor:
    """Instruments the provider SDKs unitcost knows (openai, anthropic). One instance per process."""

    _instance: UnitcostInstrumentor | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> UnitcostInstrumentor:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # the SDKs are optional: each is patched when (and if) the application imports it

    @property
    def is_instrumented_by_opentelemetry(self) -> bool:
        return is_instrumented()

    def instrument(self, **kwargs: Any) -> None:
        """Turn unitcost's recording on (``tracer_provider`` and other options are not used: unitcost
        adds its processors to the global provider itself). The framework switches of
        `unitcost.instrument` (``agents``, ``langchain``, ``litellm``) are passed on."""
        instrument(**{name: bool(kwargs[name]) for name in ("agents", "langchain", "litellm") if name in kwargs})

    def uninstrument(self, **kwargs: Any) -> None:
        uninstrument()
