"""Costs, task roll-ups and outcomes on the spans unitcost sends to other tools.

`EnrichingSpanExporter` wraps any OpenTelemetry `SpanExporter` (OTLP, JSONL, console, yours). On the
batch processor's thread, never the caller's, it:

- prices each LLM call with the same `PriceBook` and the same rule as the store (`unitcost.pricing.call`), and adds
  ``unitcost.cost_usd`` (``unitcost.cost.unpriced`` when the model is unknown: never $0);
- sums each task's subtree (tokens by bucket, cost, LLM and tool calls, steps) as its spans end
  (children end before their parent) and puts the totals on the task span (``unitcost.task.*``);
- turns an outcome known when the task ends into a ``gen_ai.evaluation.result`` event on the task span,
  and moves a later outcome's span (`unitcost.record_outcome`) into the task's trace, under the task
  span, when it can find the task (recent tasks in memory, else the local store);
- records the metrics of `unitcost.exporters.metrics`, when given them.

Memory is bounded: the sums of tasks whose span never ends, and the places of recent tasks, are kept
for at most ``max_open`` tasks each, oldest dropped first.

Example::

    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from unitcost.exporters import EnrichingSpanExporter, JsonlSpanExporter

    provider.add_span_processor(BatchSpanProcessor(EnrichingSpanExporter(JsonlSpanExporter("spans.jsonl"))))
"""

from __future__ import annotations

import operator
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanContext, TraceFlags

from ..common import attributes as A
from ..common.errors import StoreError, internal_error
from ..common.money import from_pico, parse_usd, to_pico
from ..common.spans import copy_span
from ..pipeline.adopt import merge_or_hold
from ..pricing.book import PriceBook
from ..pricing.call import call_terms, price_call
from ..store.backend import is_url
from ..store.connect import open_backend
from ..store.foreign_spans import as_unitcost_span, with_attributes
from ..store.run_totals import SUMS, call_sums
from .metrics import SpanMetrics
from .store import span_error_type, span_type

__all__ = [
    "ROLLUP_SUMS", "TOTALS", "TOTAL_FIELDS", "EnrichingSpanExporter", "ExportSpanProcessor", "outcome_event",
    "store_task_locator", "totals_attributes", "usd",
]

# Where a task's span is: (trace id, span id, sampled). Given a task id, or a kind and key.
TaskLocator = Callable[[str | None, str | None, str | None], tuple[int, int, bool] | None]

_BUCKETS = ("uncached_input", "cache_read", "cache_write", "cache_write_1h", "visible_output", "reasoning")
# A task's roll-up (its subtree's totals): these per-run sums of its calls, by their names in THE list
# (unitcost.store.run_totals.SUMS; the first six are the token buckets, in _BUCKETS's order), then
# what its tools and steps add.
ROLLUP_SUMS = (
    "input_uncached", "cache_read", "cache_write", "cache_write_1h", "output_visible", "reasoning", "cost_pico",
    "llm_calls", "unpriced_calls",
)
TOTALS = (*ROLLUP_SUMS, "tool_cost_pico", "tool_calls", "step_blocks", "runtime_cost_pico")
_AT = {name: i for i, name in enumerate(TOTALS)}
_LLM_COST, _TOOL_COST, _LLM_CALLS = _AT["cost_pico"], _AT["tool_cost_pico"], _AT["llm_calls"]
_TOOL_CALLS, _STEPS, _UNPRICED = _AT["tool_calls"], _AT["step_blocks"], _AT["unpriced_calls"]
_RUNTIME_COST = _AT["runtime_cost_pico"]  # [[runtime]] charges: the runs' wall time and their session blocks
TOTAL_FIELDS = len(TOTALS)
# Where each of ROLLUP_SUMS is in a call's sums (unitcost.store.run_totals.call_sums).
_FROM_CALL = operator.itemgetter(*(next(i for i, s in enumerate(SUMS) if s.name == n) for n in ROLLUP_SUMS))

# _Totals slots, after the six token buckets.


def usd(pico: int) -> float:
    """Pico-dollars as the double an observability tool sums."""
    return float(from_pico(pico) or 0)


def _add(into: list[int], other: list[int]) -> None:
    for i in range(TOTAL_FIELDS):
        into[i] += other[i]


def totals_attributes(totals: list[int]) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        A.TASK_COST_USD: usd(totals[_LLM_COST] + totals[_TOOL_COST] + totals[_RUNTIME_COST]),
        A.TASK_LLM_COST_USD: usd(totals[_LLM_COST]),
        A.TASK_TOOL_COST_USD: usd(totals[_TOOL_COST]),
        A.TASK_RUNTIME_COST_USD: usd(totals[_RUNTIME_COST]),
        A.TASK_LLM_CALLS: totals[_LLM_CALLS],
        A.TASK_TOOL_CALLS: totals[_TOOL_CALLS],
        A.TASK_STEPS: totals[_LLM_CALLS] + totals[_TOOL_CALLS] + totals[_STEPS],
        A.TASK_UNPRICED_CALLS: totals[_UNPRICED],
    }
    for i, bucket in enumerate(_BUCKETS):
        attrs[A.TASK_TOKENS_PREFIX + bucket] = totals[i]
    return attrs


def outcome_event(attrs: Any, fallback_ns: int | None) -> Event:
    """The ``gen_ai.evaluation.result`` event for the outcome in ``attrs`` (unitcost.outcome.*)."""
    event: dict[str, Any] = {
        A.EVALUATION_NAME: "outcome",
        A.EVALUATION_LABEL: str(attrs.get(A.OUTCOME_LABEL)),
        A.EVALUATION_SCORE: 1.0 if attrs.get(A.OUTCOME_SUCCESS) else 0.0,
    }
    if attrs.get(A.OUTCOME_VALUE) is not None:
        event[A.OUTCOME_VALUE] = str(attrs[A.OUTCOME_VALUE])
    when = attrs.get(A.OUTCOME_TIME)
    return Event(A.EVALUATION_EVENT, event, timestamp=int(when) if when else fallback_ns)


class _Bounded(OrderedDict[Any, Any]):
    """A dict that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class EnrichingSpanExporter(SpanExporter):
    """Adds costs, task totals and outcome events to spans, then hands the sampled ones to ``exporters``
    (with ``resource``, when given, in place of each span's own)."""

    def __init__(
        self,
        exporters: SpanExporter | Sequence[SpanExporter] = (),
        prices: PriceBook | None = None,
        *,
        metrics: SpanMetrics | None = None,
        locate_task: TaskLocator | None = None,
        max_open: int = 16_384,
        resource: Resource | None = None,
    ) -> None:
        self.exporters = [exporters] if isinstance(exporters, SpanExporter) else list(exporters)
        self.resource = resource  # when given, every span goes out with it in place of its own
        self.metrics = metrics
        self._prices = prices or PriceBook()
        self._rate_cache: dict[Any, Any] = {}
        self._locate_task = locate_task
        self._pending = _Bounded(max_open)  # span id -> totals of its ended descendants
        self._nested = _Bounded(max_open)  # task span id -> the part of its totals from tasks nested in it
        self._tasks = _Bounded(max_open)  # task id -> (trace id, span id, sampled)
        self._keys = _Bounded(max_open)  # (kind, key) -> the latest task id
        self._lock = threading.Lock()

    # -- SpanExporter --------------------------------------------------------------------------
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        out: list[ReadableSpan] = []
        with self._lock:
            for span in spans:
                try:
                    enriched, sampled = self._enrich(span)
                except Exception as exc:  # noqa: BLE001 - a span we cannot enrich still goes out as it is
                    internal_error("enriching a span for export", exc)
                    enriched, sampled = span, span.context.trace_flags.sampled
                if sampled:
                    out.append(enriched)
        result = SpanExportResult.SUCCESS
        if not out:
            return result
        if self.resource is not None:
            out = [copy_span(span, resource=self.resource) for span in out]
        for exporter in self.exporters:
            try:
                if exporter.export(out) is not SpanExportResult.SUCCESS:
                    result = SpanExportResult.FAILURE
            except Exception as exc:  # noqa: BLE001 - one failing exporter must not stop the others
                internal_error(f"exporter {type(exporter).__name__}", exc)
                result = SpanExportResult.FAILURE
        return result

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        flushed = True
        for exporter in self.exporters:
            try:
                flushed = exporter.force_flush(timeout_millis) and flushed
            except Exception as exc:  # noqa: BLE001 - a user's exporter must not break flush()
                internal_error(f"exporter {type(exporter).__name__} flush", exc)
                flushed = False
        return flushed

    def shutdown(self) -> None:
        for exporter in self.exporters:
            try:
                exporter.shutdown()
            except Exception as exc:  # noqa: BLE001 - nor configure() or the exit
                internal_error(f"exporter {type(exporter).__name__} shutdown", exc)

    # -- enrichment ----------------------------------------------------------------------------
    def _enrich(self, span: ReadableSpan) -> tuple[ReadableSpan, bool]:
        sampled = span.context.trace_flags.sampled
        kind = span_type(span)
        if kind is None:
            self._propagate(span, None, None)
            return span, sampled
        attrs = span.attributes or {}
        read = span if A.SPAN_TYPE in attrs else as_unitcost_span(span, kind)
        if kind == "task":
            return self._task(span, read.attributes or {}), sampled
        if kind == "outcome":
            return self._late_outcome(span)
        own = [0] * TOTAL_FIELDS
        extra: dict[str, Any] = {}
        if kind == "llm":
            extra = self._call(read, own)
        elif kind == "tool":
            cost = (read.attributes or {}).get(A.TOOL_COST)
            own[_TOOL_CALLS] = 1
            if cost is not None:
                own[_TOOL_COST] = to_pico(parse_usd(cost))
                extra[A.COST_USD] = usd(own[_TOOL_COST])
            if self.metrics is not None:
                self.metrics.record_tool(read.attributes or {}, usd(own[_TOOL_COST]))
        elif kind == "step":
            own[_STEPS] = 1
        elif kind == "session":  # priced by the store writer's rule ([[runtime]] session = ...)
            read_attrs = read.attributes or {}
            task_kind, name = read_attrs.get(A.TASK_KIND), read_attrs.get(A.STEP_NAME)
            start = read.start_time or 0
            cost = self._prices.runtime_cost_pico(
                None if task_kind is None else str(task_kind), str(name or read.name), start, read.end_time or start
            )
            if cost is not None:
                own[_RUNTIME_COST] = cost
                extra[A.COST_USD] = usd(cost)
        self._propagate(span, (read.attributes or {}).get(A.TASK_ID), own)
        return (with_attributes(span, {**attrs, **extra}) if extra else span), sampled

    def _call(self, read: ReadableSpan, own: list[int]) -> dict[str, Any]:
        attrs = read.attributes or {}
        error_type = span_error_type(read, attrs)
        buckets, provider, model, response_model, tier, _, context, usage_known, parts = call_terms(attrs, error_type)
        started = read.start_time or 0
        cost, reasoning, source, _ = price_call(
            self._prices, provider, model, started, read.end_time or started, buckets, parts,
            response_model=response_model, tier=tier, context=context, usage_known=usage_known,
        )
        # The call's part of its task's roll-up: its sums, by the store's rule (no re-send: not exported).
        call = (
            None, provider, model, buckets.uncached_input, buckets.cache_read, buckets.cache_write,
            buckets.cache_write_1h, buckets.visible_output, buckets.reasoning, cost, reasoning, 0, 0,
            None, None, None, None,  # energy: not in the exported roll-up
        )
        own[: len(ROLLUP_SUMS)] = _FROM_CALL(call_sums(call, 0, self._prices, self._rate_cache))
        extra: dict[str, Any]
        if cost is None:
            extra = {A.COST_UNPRICED: True}
        else:
            extra = {A.COST_USD: usd(cost), A.PRICE_SOURCE: source}
            if reasoning:
                extra[A.COST_REASONING_USD] = usd(reasoning)
        if self.metrics is not None:
            start, end = read.start_time or 0, read.end_time or read.start_time or 0
            self.metrics.record_call(
                attrs, (end - start) / 1e9, None if cost is None else usd(cost), error_type
            )
        return extra

    def _propagate(self, span: ReadableSpan, task_id: Any, own: list[int] | None) -> None:
        """Hand this span's subtree totals up: to its task (unitcost's spans know it), else its parent."""
        below = self._pending.pop(span.context.span_id, None)
        if below is not None and own is not None:
            _add(below, own)
        totals = below if below is not None else own
        if totals is None or not any(totals):
            return
        if task_id:
            target = int(task_id, 16)
        elif span.parent is not None and not span.parent.is_remote:
            target = span.parent.span_id
        else:
            return
        current = self._pending.get(target)
        if current is None:
            self._pending.put(target, list(totals))
        else:
            _add(current, totals)

    def _task(self, span: ReadableSpan, attrs: Any) -> ReadableSpan:
        totals = self._pending.pop(span.context.span_id, None) or [0] * TOTAL_FIELDS
        start = span.start_time or 0  # a [[runtime]] charge for the run's wall time
        runtime = self._prices.runtime_cost_pico(str(attrs.get(A.TASK_KIND)), None, start, span.end_time or start)
        if runtime:
            totals[_RUNTIME_COST] += runtime
        task_id = str(attrs.get(A.TASK_ID) or format(span.context.span_id, "016x"))
        self._tasks.put(task_id, (span.context.trace_id, span.context.span_id, span.context.trace_flags.sampled))
        if attrs.get(A.TASK_KEY) is not None:
            self._keys.put((attrs.get(A.TASK_KIND), str(attrs[A.TASK_KEY])), task_id)
            self._keys.put((None, str(attrs[A.TASK_KEY])), task_id)
        parent = attrs.get(A.TASK_PARENT_ID)
        if parent and any(totals):  # a nested task counts in its parent task's subtree
            for table in (self._pending, self._nested):
                current = table.get(int(parent, 16))
                if current is None:
                    table.put(int(parent, 16), list(totals))
                else:
                    _add(current, totals)
        # The task's own cost leaves out the tasks nested in it, so summing tasks counts each call once.
        nested = self._nested.pop(span.context.span_id, None) or [0] * TOTAL_FIELDS
        own_cost = usd(sum(totals[i] - nested[i] for i in (_LLM_COST, _TOOL_COST, _RUNTIME_COST)))
        if self.metrics is not None:
            self.metrics.record_task(attrs, own_cost)
        events = None
        if attrs.get(A.OUTCOME_LABEL) is not None:
            events = (*span.events, outcome_event(attrs, span.end_time))
        extra = {**totals_attributes(totals), A.TASK_OWN_COST_USD: own_cost}
        return with_attributes(span, {**(span.attributes or {}), **extra}, events)

    def _late_outcome(self, span: ReadableSpan) -> tuple[ReadableSpan, bool]:
        """An outcome recorded after its task: the same small span, moved into the task's trace."""
        attrs = span.attributes or {}
        events = span.events
        if not any(e.name == A.EVALUATION_EVENT for e in events):
            events = (*events, outcome_event(attrs, span.end_time))
        place = self._place(attrs.get(A.OUTCOME_TASK_ID), attrs.get(A.OUTCOME_KIND), attrs.get(A.OUTCOME_KEY))
        if place is None:  # a task this process has not seen and no store knows: its own trace
            return with_attributes(span, attrs, events), True
        trace_id, task_span_id, sampled = place
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        moved = copy_span(
            span, context=SpanContext(trace_id, span.context.span_id, is_remote=False, trace_flags=flags),
            parent=SpanContext(trace_id, task_span_id, is_remote=False, trace_flags=flags),
            attributes={**attrs, A.TASK_ID: format(task_span_id, "016x")}, events=events,
        )
        return moved, sampled

    def _place(self, task_id: Any, kind: Any, key: Any) -> tuple[int, int, bool] | None:
        if task_id is None and key is not None:
            task_id = self._keys.get((kind, str(key)))
        if task_id is not None and task_id in self._tasks:
            return self._tasks[task_id]  # type: ignore[no-any-return]
        if self._locate_task is None:
            return None
        return self._locate_task(
            None if task_id is None else str(task_id), None if kind is None else str(kind),
            None if key is None else str(key),
        )


class ExportSpanProcessor(BatchSpanProcessor):
    """Batches spans for an `EnrichingSpanExporter` on a background thread.

    Sampled spans are exported as the standard processor would; unitcost's spans that the sampler
    dropped are queued too, so task totals and metrics count every call (the enriching exporter
    exports only the sampled ones).
    """

    def on_end(self, span: ReadableSpan) -> None:
        if not span.context.trace_flags.sampled and span_type(span) is None:
            return
        # The SDK's own span of a call unitcost adopted waits for the adapter (unitcost.pipeline.adopt).
        ready = merge_or_hold(span, self._batch_processor.emit)
        if ready is not None:
            self._batch_processor.emit(ready)


def store_task_locator(db_path: str | os.PathLike[str]) -> TaskLocator:
    """A `TaskLocator` that finds a task's span in the store (read-only): for outcomes recorded
    in another process, or after this one forgot the task."""
    def locate(task_id: str | None, kind: str | None, key: str | None) -> tuple[int, int, bool] | None:
        if not is_url(db_path) and not os.path.exists(db_path):
            return None
        params: list[Any]
        if task_id is not None:
            sql, params = "SELECT trace_id, run_id FROM runs WHERE run_id = ?", [task_id]
        elif kind is not None:
            sql = "SELECT trace_id, run_id FROM runs WHERE kind = ? AND key = ? ORDER BY started_ns DESC LIMIT 1"
            params = [kind, key]
        else:
            sql, params = "SELECT trace_id, run_id FROM runs WHERE key = ? ORDER BY started_ns DESC LIMIT 1", [key]
        try:
            store = open_backend(db_path, create=False, migrate=False)  # read-only
        except StoreError:
            return None
        try:
            row = store.execute(sql, params).fetchone()
        except Exception as exc:
            if store.is_damage(exc):  # no runs table yet, or an unreadable store: not found
                return None
            raise
        finally:
            store.close()
        return None if row is None else (int(row[0], 16), int(row[1], 16), True)

    return locate
