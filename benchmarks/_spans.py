"""Synthetic finished spans, shaped as unitcost's own (attributes, ids, kinds, scopes), for the
store benchmarks: they go through the real `StoreSpanExporter`, as a batch processor would hand them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

# (provider, requested model, model that answered, share of calls, reasoning model?)
MODELS = (
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 0.50, False),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06", 0.20, False),
    ("openai", "o4-mini", "o4-mini-2025-04-16", 0.15, True),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", 0.14, False),
    ("openai", "acme-llm-7b-instruct", "acme-llm-7b-instruct", 0.01, False),  # unknown: unpriced
)
END = datetime(2025, 11, 24, tzinfo=UTC)
DAY_NS = 86_400 * 10**9


class SpanFactory:
    def __init__(self, seed: int, bounded: bool = True) -> None:
        """``bounded``: attributes in OpenTelemetry's BoundedAttributes, as the SDK hands them to an
        exporter (slower to read). The 1M-call store is built with plain dicts, which read the same."""
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.rng = random.Random(seed)
        self.bounded = bounded
        self.resource = Resource.create({"service.name": "bench"})
        self.scope = InstrumentationScope("unitcost", "0.1.0")
        self.ok = Status(StatusCode.UNSET)
        self.kinds = SpanKind
        self.weights = [m[3] for m in MODELS]

    def _span(self, name: str, kind: Any, trace_id: int, span_id: int, parent: int | None, start: int, end: int,
              attributes: dict[str, Any]) -> Any:
        from opentelemetry.attributes import BoundedAttributes
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.trace import SpanContext, TraceFlags

        context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(1))
        parent_context = None if parent is None else SpanContext(trace_id, parent, False, TraceFlags(1))
        return ReadableSpan(
            name=name, context=context, parent=parent_context, resource=self.resource,
            attributes=BoundedAttributes(attributes=attributes, immutable=True) if self.bounded else attributes,
            kind=kind,
            status=self.ok, start_time=start, end_time=end, instrumentation_scope=self.scope,
        )

    def llm(self, trace_id: int, parent: int | None, run_id: str | None, start: int) -> Any:
        rng = self.rng
        provider, model, answered, _, reasoning_model = rng.choices(MODELS, self.weights)[0]
        prompt = rng.randint(200, 6000)
        cached = rng.choice((0, 0, prompt // 2))
        completion = rng.randint(20, 900)
        reasoning = completion // 2 if reasoning_model else 0
        attrs: dict[str, Any] = {
            "unitcost.span.type": "llm", "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
            "gen_ai.request.model": model, "server.address": "api.openai.com", "server.port": 443,
            "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(64):016x}", "gen_ai.response.model": answered,
            "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": prompt,
            "gen_ai.usage.output_tokens": completion,
        }
        if run_id is not None:
            attrs["unitcost.task.id"] = run_id
        if cached:
            attrs["gen_ai.usage.cache_read.input_tokens"] = cached
        if reasoning:
            attrs["gen_ai.usage.reasoning.output_tokens"] = reasoning
        span_id = rng.getrandbits(64) or 1
        end = start + rng.randint(300, 9000) * 10**6
        return self._span(f"chat {model}", self.kinds.CLIENT, trace_id, span_id, parent, start, end, attrs)

    def task(self, kind: str, key: str, start: int, end: int, customer: str, outcome: str | None
             ) -> tuple[Any, int, int, str]:
        """(the task span, its trace id, its span id, its run id). The span is made first; children use ids."""
        rng = self.rng
        trace_id, span_id = rng.getrandbits(128) or 1, rng.getrandbits(64) or 1
        run_id = format(span_id, "016x")
        attrs: dict[str, Any] = {
            "unitcost.span.type": "task", "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": kind,
            "unitcost.task.kind": kind, "unitcost.task.key": key, "unitcost.task.id": run_id,
            "unitcost.task.attr.customer": customer,
        }
        if outcome is not None:
            attrs["unitcost.outcome.label"] = outcome
            attrs["unitcost.outcome.success"] = outcome == "resolved"
            if outcome == "resolved":
                attrs["unitcost.outcome.value_usd"] = "12.0"
        span = self._span(f"invoke_agent {kind}", self.kinds.INTERNAL, trace_id, span_id, None, start, end, attrs)
        return span, trace_id, span_id, run_id

    def tool(self, trace_id: int, parent: int, run_id: str, start: int) -> Any:
        attrs = {
            "unitcost.span.type": "tool", "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search_kb",
            "unitcost.tool.cost_usd": "0.002", "unitcost.task.id": run_id,
        }
        span_id = self.rng.getrandbits(64) or 1
        return self._span("execute_tool search_kb", self.kinds.INTERNAL, trace_id, span_id, parent, start,
                          start + 50 * 10**6, attrs)


def llm_spans(count: int, seed: int, days: int = 1) -> list[Any]:
    """LLM-call spans inside tasks, over the last ``days`` days of the window."""
    factory = SpanFactory(seed)
    end_ns = int(END.timestamp()) * 10**9
    spans = []
    for _ in range(count):
        start = end_ns - factory.rng.randrange(days * DAY_NS)
        spans.append(factory.llm(factory.rng.getrandbits(128) or 1, factory.rng.getrandbits(64) or 1,
                                 f"{factory.rng.getrandbits(64):016x}", start))
    return spans


def task_spans(first: int, last: int, total: int, calls_per_task: int, days: int, seed: int) -> Iterator[Any]:
    """Tasks ``first`` to ``last - 1`` of a workload, each with its LLM calls, one tool call and the
    task span (ended last, as a batch processor receives it). Deterministic for a seed."""
    factory = SpanFactory(seed * 1_000_003 + first, bounded=False)
    rng = factory.rng
    end_ns = int(END.timestamp()) * 10**9
    window = days * DAY_NS
    for number in range(first, last):
        start = end_ns - window + (window * number) // total
        outcome = rng.choices(("resolved", "escalated", None), (0.7, 0.2, 0.1))[0]
        task, trace_id, span_id, run_id = factory.task(
            "support_ticket", f"T-{number}", start, start + 30 * 10**9, f"customer-{number % 97}", outcome
        )
        at = start
        for _ in range(calls_per_task):
            yield factory.llm(trace_id, span_id, run_id, at)
            at += 2 * 10**9
        yield factory.tool(trace_id, span_id, run_id, at)
        yield task
