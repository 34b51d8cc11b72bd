"""The store exporter: turns finished spans into rows of the local SQLite store.

It runs on the batch processor's background thread, so pricing, serialisation and I/O never happen
on the thread that made the LLM call. Each batch is one transaction; the processor exports at least
once a second.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from .. import _attributes as A
from .._adopt import merge_or_hold
from .._errors import internal_error
from .._money import parse_usd, to_pico
from .._pricing import PriceBook, utc_from_ns
from .._run_totals import refresh as refresh_run_totals
from .._store import open_store
from .._usage import Buckets, clean_count
from ._formats import as_unitcost_span, foreign_span_type

logger = logging.getLogger("unitcost")

_NS_PER_S = Decimal(1_000_000_000)

_CALL_COLUMNS = (
    "span_id", "trace_id", "parent_span_id", "run_id", "started_ns", "ended_ns", "provider", "operation",
    "model", "response_model", "input_tokens", "cache_read_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "output_tokens", "reasoning_tokens", "cost_pico", "reasoning_cost_pico",
    "price_source", "estimated", "streamed", "incomplete", "error_type", "service_tier",
    "web_search_requests", "web_fetch_requests", "price_modifiers",
    "retries", "cache_write_30m_tokens", "cache_write_12h_tokens",
)
_RUN_COLUMNS = (
    "run_id", "trace_id", "parent_span_id", "parent_run_id", "kind", "key", "service", "started_ns",
    "ended_ns", "error_type", "attributes",
)
_STEP_COLUMNS = (
    "span_id", "trace_id", "parent_span_id", "run_id", "type", "name", "started_ns", "ended_ns",
    "cost_pico", "error_type",
)
_OUTCOME_COLUMNS = ("recorded_ns", "run_id", "kind", "key", "label", "success", "value_pico", "source", "origin")


def _insert_sql(table: str, columns: Sequence[str], verb: str = "INSERT OR REPLACE") -> str:
    return f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


_INSERT_CALL = _insert_sql("calls", _CALL_COLUMNS)
_INSERT_RUN = _insert_sql("runs", _RUN_COLUMNS)
_INSERT_STEP = _insert_sql("steps", _STEP_COLUMNS)
_INSERT_OUTCOME = _insert_sql("outcomes", _OUTCOME_COLUMNS, "INSERT OR IGNORE")


def span_type(span: ReadableSpan) -> str | None:
    """What a span is to unitcost: task, step, tool, llm or outcome; None for anything else."""
    attrs = span.attributes or {}
    kind = attrs.get(A.SPAN_TYPE)
    if kind is not None:
        return str(kind)
    return foreign_span_type(attrs)  # another instrumentation's span (unitcost.exporters._formats)


# Price modifiers a call reports besides its service tier, by the price-context key genai-prices
# uses for them. Those in _PRICE_CONTEXT_KEYS are priced; the others are recorded only.
_PRICE_MODIFIERS = {"processing": A.PRICE_PROCESSING, "speed": A.PRICE_SPEED, "inference_geo": A.PRICE_INFERENCE_GEO}
_PRICE_CONTEXT_KEYS = {"processing", "speed"}
_DEFAULT_MODIFIERS = {"speed": "standard", "inference_geo": "global"}


def _price_modifiers(attrs: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, attribute in _PRICE_MODIFIERS.items():
        value = attrs.get(attribute)
        if isinstance(value, str) and value and value != _DEFAULT_MODIFIERS.get(key):
            found[key] = value
    return found


def _hex_span(span_id: int | None) -> str | None:
    return None if span_id is None else format(span_id, "016x")


def _error_type(span: ReadableSpan) -> str | None:
    attrs = span.attributes or {}
    if A.ERROR_TYPE in attrs:
        return str(attrs[A.ERROR_TYPE])
    if span.status.status_code is StatusCode.ERROR:
        return "error"
    return None


class StoreSpanExporter(SpanExporter):
    """A real OpenTelemetry `SpanExporter` that writes unitcost's spans into the SQLite store."""

    def __init__(self, db_path: str | os.PathLike[str], prices: PriceBook | None = None, service: str = ""):
        self._db_path = Path(db_path)
        self._prices = prices or PriceBook()
        self._service = service
        self._db: Any = None
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            rows = self._rows(spans)
            with self._lock:
                if self._db is None:
                    self._db = open_store(self._db_path)
                conn = self._db.conn
                conn.execute("BEGIN IMMEDIATE")
                try:
                    statements = (_INSERT_RUN, _INSERT_CALL, _INSERT_STEP, _INSERT_OUTCOME)
                    for sql, batch in zip(statements, rows, strict=True):
                        if batch:
                            conn.executemany(sql, batch)
                    if rows[1]:  # calls: refresh the per-run totals that reports read
                        refresh_run_totals(conn, {row[3] for row in rows[1]}, self._prices)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except Exception as exc:  # noqa: BLE001 - telemetry must not break the program it observes
            internal_error("store exporter", exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _rows(self, spans: Sequence[ReadableSpan]) -> tuple[list[tuple[Any, ...]], ...]:
        runs: list[tuple[Any, ...]] = []
        calls: list[tuple[Any, ...]] = []
        steps: list[tuple[Any, ...]] = []
        outcomes: list[tuple[Any, ...]] = []
        for span in spans:
            kind = span_type(span)
            if kind is not None and A.SPAN_TYPE not in (span.attributes or {}):
                span = as_unitcost_span(span, kind)  # read in unitcost's names, as `unitcost serve` does
            if kind == "llm":
                calls.append(self._call_row(span))
            elif kind == "task":
                runs.append(self._run_row(span))
                outcome = self._outcome_row(span, "inline")
                if outcome:
                    outcomes.append(outcome)
            elif kind in ("tool", "step"):
                steps.append(self._step_row(span, kind))
            elif kind == "outcome":
                outcome = self._outcome_row(span, "late")
                if outcome:
                    outcomes.append(outcome)
        return runs, calls, steps, outcomes

    def _call_row(self, span: ReadableSpan) -> tuple[Any, ...]:
        attrs = span.attributes or {}
        buckets = Buckets.from_span_attributes(attrs)
        provider = str(attrs.get(A.PROVIDER) or attrs.get("gen_ai.system") or "unknown")
        model = str(attrs.get(A.REQUEST_MODEL) or attrs.get(A.RESPONSE_MODEL) or "unknown")
        response_model = attrs.get(A.RESPONSE_MODEL)
        tier = attrs.get(A.OPENAI_SERVICE_TIER) or attrs.get(A.ANTHROPIC_SERVICE_TIER)
        modifiers = _price_modifiers(attrs)
        context = {k: v for k, v in modifiers.items() if k in _PRICE_CONTEXT_KEYS}
        started = span.start_time or 0
        ended = span.end_time or started
        cost = reasoning = source = None
        # A call that ended without an error and without any usage (a raw response whose body was
        # never read) is unpriced, not free; a failed call with no usage is priced at zero tokens.
        usage_known = A.INPUT_TOKENS in attrs or A.OUTPUT_TOKENS in attrs or _error_type(span) is not None
        timing: dict[str, Any] = {"duration_s": Decimal(ended - started) / _NS_PER_S, "usage_known": usage_known}
        try:
            # Price by the model the provider says answered (a dated snapshot) when it is known.
            priced = self._prices.cost(
                provider, str(response_model or model), utc_from_ns(started), buckets, str(tier) if tier else None,
                context, also_known_as=model, **timing,
            )
            if priced is not None:
                cost, reasoning, source = to_pico(priced.total), to_pico(priced.reasoning), priced.source
        except Exception as exc:  # noqa: BLE001 - a pricing failure still keeps the token counts
            internal_error("pricing", exc)
        return (
            _hex_span(span.context.span_id), format(span.context.trace_id, "032x"),
            _hex_span(span.parent.span_id if span.parent else None), attrs.get(A.TASK_ID),
            started, ended, provider, str(attrs.get(A.OPERATION) or "chat"), model,
            None if response_model is None else str(response_model),
            buckets.uncached_input, buckets.cache_read, buckets.cache_write, buckets.cache_write_1h,
            buckets.visible_output, buckets.reasoning, cost, reasoning, source,
            int(bool(attrs.get(A.USAGE_ESTIMATED))), int(bool(attrs.get(A.REQUEST_STREAM))),
            int(bool(attrs.get(A.CALL_INCOMPLETE))), _error_type(span), None if tier is None else str(tier),
            buckets.web_search_requests, buckets.web_fetch_requests,
            json.dumps(modifiers, sort_keys=True) if modifiers else None,
            clean_count(attrs.get(A.CALL_RETRIES)) or 0,
            clean_count(attrs.get(A.CACHE_WRITE_30M_TOKENS)) or 0,
            clean_count(attrs.get(A.CACHE_WRITE_12H_TOKENS)) or 0,
        )

    def _run_row(self, span: ReadableSpan) -> tuple[Any, ...]:
        attrs = span.attributes or {}
        prefix = len(A.TASK_ATTR_PREFIX)
        task_attrs = {k[prefix:]: v for k, v in attrs.items() if k.startswith(A.TASK_ATTR_PREFIX)}
        started = span.start_time or 0
        return (
            _hex_span(span.context.span_id), format(span.context.trace_id, "032x"),
            _hex_span(span.parent.span_id if span.parent else None), attrs.get(A.TASK_PARENT_ID),
            str(attrs.get(A.TASK_KIND)), attrs.get(A.TASK_KEY), str(attrs.get(A.SERVICE) or self._service),
            started, span.end_time or started, _error_type(span),
            json.dumps(task_attrs, ensure_ascii=False, sort_keys=True, default=str),
        )

    def _step_row(self, span: ReadableSpan, kind: str) -> tuple[Any, ...]:
        attrs = span.attributes or {}
        cost = attrs.get(A.TOOL_COST)
        name = attrs.get(A.TOOL_NAME) if kind == "tool" else attrs.get(A.STEP_NAME)
        started = span.start_time or 0
        return (
            _hex_span(span.context.span_id), format(span.context.trace_id, "032x"),
            _hex_span(span.parent.span_id if span.parent else None), attrs.get(A.TASK_ID), kind,
            str(name or span.name), started, span.end_time or started,
            None if cost is None else to_pico(parse_usd(cost)), _error_type(span),
        )

    def _outcome_row(self, span: ReadableSpan, source: str) -> tuple[Any, ...] | None:
        attrs = span.attributes or {}
        label = attrs.get(A.OUTCOME_LABEL)
        if label is None:
            return None
        value = attrs.get(A.OUTCOME_VALUE)
        run_id: Any
        if source == "inline":
            run_id, kind, key = _hex_span(span.context.span_id), attrs.get(A.TASK_KIND), attrs.get(A.TASK_KEY)
        else:
            run_id, kind, key = attrs.get(A.OUTCOME_TASK_ID), attrs.get(A.OUTCOME_KIND), attrs.get(A.OUTCOME_KEY)
        recorded: Any = attrs.get(A.OUTCOME_TIME) or span.end_time or 0
        return (
            int(recorded), run_id, kind, key, str(label),
            int(bool(attrs.get(A.OUTCOME_SUCCESS))), None if value is None else to_pico(parse_usd(value)),
            source, _hex_span(span.context.span_id),
        )

    def shutdown(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.conn.close()
                self._db = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class StoreSpanProcessor(BatchSpanProcessor):
    """Batches unitcost's spans for the store on a background thread, sampled or not.

    The standard batch processor skips spans the sampler did not sample; the store must not (see
    `unitcost._config`), so `on_end` keeps every recording span that unitcost can use, and drops the
    rest (HTTP server spans and the like) before they are queued.
    """

    def __init__(self, db_path: str | os.PathLike[str], prices: PriceBook | None = None, service: str = ""):
        super().__init__(
            StoreSpanExporter(db_path, prices, service),
            max_queue_size=65_536,
            schedule_delay_millis=500,
            max_export_batch_size=4096,
        )

    def on_end(self, span: ReadableSpan) -> None:
        if span_type(span) is None:
            return
        # The SDK's own span of a call unitcost adopted waits for the adapter (unitcost._adopt).
        ready = merge_or_hold(span, self._batch_processor.emit)
        if ready is not None:
            self._batch_processor.emit(ready)
