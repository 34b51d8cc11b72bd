"""Metrics from finished spans: the GenAI client metrics, and unitcost's cost and task counters.

They are recorded by `unitcost.exporters.enrich.EnrichingSpanExporter` on its background thread, from
the spans it prices (so the caller's thread still only sets span attributes), through the
OpenTelemetry metrics SDK: any `MetricReader` exports them (OTLP by default, see `unitcost.configure`).

=================================== ============ ===================================================
metric                              unit         attributes
=================================== ============ ===================================================
``gen_ai.client.token.usage``       ``{token}``  operation, provider, request and response model,
                                                 server address and port, ``gen_ai.token.type``
``gen_ai.client.operation.duration`` ``s``       the same without the token type, with ``error.type``
``unitcost.cost``                   ``USD``      per LLM call: operation, provider, request model;
                                                 per tool call: ``gen_ai.tool.name``
``unitcost.tasks``                  ``{task}``   ``unitcost.task.kind``, ``unitcost.outcome.label``
                                                 and ``unitcost.outcome.success`` (when known)
``unitcost.task.cost``              ``USD``      the same as ``unitcost.tasks``: what each task
                                                 cost itself (tasks nested in it left out)
=================================== ============ ===================================================

Histogram buckets are the GenAI conventions' (tokens: 1, 4, 16, ... 4**13; seconds: 0.01 doubling to
81.92). Unlike the spans an application's sampler may drop, every call is counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..common import attributes as A
from ..pricing.usage import clean_count
from ..version import __version__

__all__ = ["SpanMetrics"]

TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))  # 1 ... 67108864
DURATION_BUCKETS = tuple(0.01 * 2**i for i in range(14))  # 0.01 ... 81.92
TASK_COST_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0, 100.0)

_CALL_KEYS = (A.OPERATION, A.PROVIDER, A.REQUEST_MODEL, A.RESPONSE_MODEL, A.SERVER_ADDRESS, A.SERVER_PORT)


class SpanMetrics:
    """The instruments, created once on a `MeterProvider`, and how a span is recorded on them."""

    def __init__(self, meter_provider: Any) -> None:
        self.meter_provider = meter_provider
        meter = meter_provider.get_meter("unitcost", __version__)
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._cost = meter.create_counter(
            "unitcost.cost", unit="USD", description="What LLM and tool calls cost (priced calls only)."
        )
        self._tasks = meter.create_counter(
            "unitcost.tasks", unit="{task}", description="Task runs, by kind and outcome."
        )
        self._task_cost = meter.create_histogram(
            "unitcost.task.cost", unit="USD", description="What each task run cost, tasks nested in it left out.",
            explicit_bucket_boundaries_advisory=TASK_COST_BUCKETS,
        )

    def record_call(
        self, attrs: Mapping[str, Any], duration_s: float, cost_usd: float | None, error_type: str | None
    ) -> None:
        """One LLM call; ``attrs`` in unitcost's names (a foreign span already translated)."""
        common = {k: attrs[k] for k in _CALL_KEYS if attrs.get(k) is not None}
        self._duration.record(duration_s, {**common, A.ERROR_TYPE: error_type} if error_type else common)
        for key, kind in ((A.INPUT_TOKENS, "input"), (A.OUTPUT_TOKENS, "output")):
            count = clean_count(attrs.get(key))
            if count is not None:  # usage unknown (or junk): no token record rather than a zero
                self._tokens.record(count, {**common, A.TOKEN_TYPE: kind})
        if cost_usd:
            self._cost.add(cost_usd, {k: common[k] for k in (A.OPERATION, A.PROVIDER, A.REQUEST_MODEL) if k in common})

    def record_tool(self, attrs: Mapping[str, Any], cost_usd: float) -> None:
        if cost_usd:
            self._cost.add(cost_usd, {A.OPERATION: A.OP_EXECUTE_TOOL, A.TOOL_NAME: str(attrs.get(A.TOOL_NAME, ""))})

    def record_task(self, attrs: Mapping[str, Any], cost_usd: float) -> None:
        labels: dict[str, Any] = {A.TASK_KIND: str(attrs.get(A.TASK_KIND, ""))}
        if attrs.get(A.OUTCOME_LABEL) is not None:
            labels[A.OUTCOME_LABEL] = str(attrs[A.OUTCOME_LABEL])
            labels[A.OUTCOME_SUCCESS] = bool(attrs.get(A.OUTCOME_SUCCESS))
        self._tasks.add(1, labels)
        self._task_cost.record(cost_usd, labels)
