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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from ..common import attributes as A
from ..common.errors import internal_error
from ..common.money import parse_usd, to_pico
from ..pipeline.adopt import merge_or_hold
from ..pricing.book import PriceBook
from ..pricing.usage import Buckets, clean_count, usage_parts
from ..store.backend import CALL_COLUMNS, Batch, StoreBackend, redact_url
from ..store.connect import open_backend
from ..store.foreign_spans import as_unitcost_span, foreign_span_type

__all__ = ["CALL_COLUMNS", "StoreSpanExporter", "StoreSpanProcessor", "span_error_type", "span_type"]

logger = logging.getLogger("unitcost")

# Rows of batches the store refused (locked past the busy timeout, disk full) are kept, up to this
# many, and written with the next batch (every insert is idempotent); beyond it they are dropped and
# counted.
_RETRY_ROWS = 10_000
_MAX_PICO = 2**63 - 1  # SQLite's largest integer

Rows = tuple[list[tuple[Any, ...]], ...]  # one list per table of unitcost.store.backend.TABLES


class DropCounter:
    """Spans that will never become rows, by reason, until the exporter has saved the count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self.total = 0  # dropped since this counter was made, saved or not

    def add(self, reason: str, count: int = 1) -> None:
        if count <= 0:
            return
        with self._lock:
            self._pending[reason] = self._pending.get(reason, 0) + count
            self.total += count

    def take(self) -> dict[str, int]:
        with self._lock:
            taken, self._pending = self._pending, {}
        return taken

    def put_back(self, taken: dict[str, int]) -> None:
        with self._lock:
            for reason, count in taken.items():
                self._pending[reason] = self._pending.get(reason, 0) + count

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(self._pending.values())


def _utf8_safe(value: Any) -> Any:
    """A row value SQLite can store: text with lone surrogates (undecodable bytes smuggled into a
    str) gets "?" in their place."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def attributes_of(span: ReadableSpan) -> Mapping[str, Any]:
    """A finished span's attributes, to read (never to change).

    `span.attributes` wraps them in a new mappingproxy over OpenTelemetry's BoundedAttributes at
    each read, and every `.get` then goes through two Python-level methods; copying them costs
    ~5 us a span. The plain dict inside (immutable once the span has ended) is read directly when
    this SDK version has one, else the attributes are copied once.
    """
    held = getattr(span, "_attributes", None)
    if type(held) is dict:  # a span unitcost made from another (unitcost.pipeline.adopt, unitcost.store.foreign_spans)
        return held
    inner = getattr(held, "_dict", None)
    if type(inner) is dict:
        return inner
    return dict(span.attributes or {})


def span_type(span: ReadableSpan) -> str | None:
    """What a span is to unitcost: task, step, tool, llm or outcome; None for anything else."""
    attrs = attributes_of(span)
    kind = attrs.get(A.SPAN_TYPE)
    if kind is not None:
        return str(kind)
    return foreign_span_type(attrs)  # another instrumentation's span (unitcost.store.foreign_spans)


# Price modifiers a call reports besides its service tier, by the price-context key genai-prices
# uses for them. Those in _PRICE_CONTEXT_KEYS are priced; the others are recorded only.
_PRICE_MODIFIERS = {"processing": A.PRICE_PROCESSING, "speed": A.PRICE_SPEED, "inference_geo": A.PRICE_INFERENCE_GEO}
_PRICE_CONTEXT_KEYS = {"processing", "speed"}
_DEFAULT_MODIFIERS = {"speed": "standard", "inference_geo": "global"}


_MODIFIER_ATTRIBUTES = frozenset(_PRICE_MODIFIERS.values())


def _parts_json(parts: Any, costs: list[int | None]) -> str:
    """The `calls.usage_parts` column: each part's kind, model, tokens and cost (None: unpriced)."""
    return json.dumps([
        {
            "kind": kind, "model": model, "input_tokens": b.input_total, "cache_read_tokens": b.cache_read,
            "cache_write_tokens": b.cache_write + b.cache_write_1h, "output_tokens": b.output_total, "cost_pico": cost,
        }
        for (kind, model, b), cost in zip(parts, costs, strict=True)
    ])


def _price_modifiers(attrs: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, attribute in _PRICE_MODIFIERS.items():
        value = attrs.get(attribute)
        if isinstance(value, str) and value and value != _DEFAULT_MODIFIERS.get(key):
            found[key] = value
    return found


def _hex_span(span_id: int | None) -> str | None:
    return None if span_id is None else format(span_id, "016x")


def span_error_type(span: ReadableSpan, attrs: Any = None) -> str | None:
    if attrs is None:
        attrs = span.attributes or {}
    if A.ERROR_TYPE in attrs:
        return str(attrs[A.ERROR_TYPE])
    if span.status.status_code is StatusCode.ERROR:
        return "error"
    return None


class StoreSpanExporter(SpanExporter):
    """A real OpenTelemetry `SpanExporter` that writes unitcost's spans into the SQLite store."""

    def __init__(self, db_path: str | os.PathLike[str], prices: PriceBook | None = None, service: str = ""):
        # A path, or a URL (unitcost.store.backend.open_backend): opened at open() or the first batch.
        self._db_path = db_path if isinstance(db_path, str) and "://" in db_path else Path(db_path)
        self._prices = prices or PriceBook()
        self._service = service
        self._db: StoreBackend | None = None
        self._lock = threading.Lock()
        self.drops = DropCounter()  # also counted into by StoreSpanProcessor when its queue is full
        self._retry: Rows = ([], [], [], [], [])
        self._retry_spans = 0
        self._closed = False

    def open(self) -> None:
        """Open (and migrate) the store now, on the thread that configures unitcost, so the writer
        thread's first batch neither imports nor migrates anything (see unitcost.pipeline.preload)."""
        with self._lock:
            if self._db is None and not self._closed:
                self._db = open_backend(self._db_path)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write one batch in one transaction, with the drops counted since the last one.

        Nothing here may lose a span silently: a span that cannot be read is dropped and counted; a
        batch the store refuses (locked, full) is kept for the next export (up to `_RETRY_ROWS` rows),
        then counted; a batch refused for what it holds is counted at once.
        """
        rows = self._rows(spans)
        with self._lock:
            if self._closed:
                return SpanExportResult.FAILURE
            pending = self._retry
            if any(pending):
                rows = tuple(old + new for old, new in zip(pending, rows, strict=True))
            spans_in_rows = self._retry_spans + len(spans)
            self._retry, self._retry_spans = ([], [], [], [], []), 0
            drops = self.drops.take()
            if not any(rows) and not drops:
                return SpanExportResult.SUCCESS
            try:
                try:
                    self._write(rows, drops)
                except UnicodeEncodeError:
                    self._write(tuple([tuple(_utf8_safe(v) for v in row) for row in t] for t in rows), drops)
            except Exception as exc:  # noqa: BLE001 - telemetry must not break the program it observes
                self.drops.put_back(drops)
                # Only a store that refused the batch (locked, full, unwritable) is worth retrying: rows
                # it could not take for what they hold would fail again, and block every later batch.
                refused = self._db is not None and self._db.is_refusal(exc)
                retry = refused and sum(map(len, rows)) <= _RETRY_ROWS
                if retry:
                    self._retry, self._retry_spans = rows, spans_in_rows
                else:
                    self.drops.add("export_failed", spans_in_rows)
                internal_error("store exporter", exc)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _write(self, rows: Rows, drops: dict[str, int]) -> None:
        if self._db is None:
            self._db = open_backend(self._db_path)
        self._db.write_batch(Batch(rows, drops, self._service), self._prices)  # one transaction

    def _rows(self, spans: Sequence[ReadableSpan]) -> Rows:
        runs: list[tuple[Any, ...]] = []
        calls: list[tuple[Any, ...]] = []
        steps: list[tuple[Any, ...]] = []
        outcomes: list[tuple[Any, ...]] = []
        content: list[tuple[Any, ...]] = []
        for span in spans:
            try:
                attrs = attributes_of(span)
                found = attrs.get(A.SPAN_TYPE)
                if found is not None:
                    kind: str | None = str(found)
                else:
                    kind = foreign_span_type(attrs)  # another instrumentation's span (unitcost.store.foreign_spans)
                    if kind is not None:
                        span = as_unitcost_span(span, kind)  # read in unitcost's names, as `unitcost serve` does
                        attrs = attributes_of(span)
                if kind == "llm":
                    calls.append(self._call_row(span, attrs))
                    if attrs.get(A.CONTENT_CAPTURED):
                        content.append((calls[-1][0], attrs.get(A.INPUT_MESSAGES), attrs.get(A.OUTPUT_MESSAGES)))
                elif kind == "task":
                    runs.append(self._run_row(span, attrs))
                    outcome = self._outcome_row(span, "inline", attrs)
                    if outcome:
                        outcomes.append(outcome)
                elif kind in ("tool", "step"):
                    steps.append(self._step_row(span, kind, attrs))
                elif kind == "outcome":
                    outcome = self._outcome_row(span, "late", attrs)
                    if outcome:
                        outcomes.append(outcome)
            except Exception as exc:  # noqa: BLE001 - one unreadable span must not cost the batch
                self.drops.add("unreadable")
                internal_error("store exporter span", exc)
        return runs, calls, steps, outcomes, content

    def _call_row(self, span: ReadableSpan, attrs: Any = None) -> tuple[Any, ...]:
        # The exporter's hot path (one call per stored LLM call): each attribute is read once.
        if attrs is None:
            attrs = attributes_of(span)
        get = attrs.get
        buckets = Buckets.from_span_attributes(attrs)
        provider = str(get(A.PROVIDER) or get("gen_ai.system") or "unknown")
        response_model = get(A.RESPONSE_MODEL)
        model = str(get(A.REQUEST_MODEL) or response_model or "unknown")
        tier = get(A.OPENAI_SERVICE_TIER) or get(A.ANTHROPIC_SERVICE_TIER)
        modifiers = _price_modifiers(attrs) if _MODIFIER_ATTRIBUTES.intersection(attrs) else None
        context = {k: v for k, v in modifiers.items() if k in _PRICE_CONTEXT_KEYS} if modifiers else None
        error_type = span_error_type(span, attrs)
        started = span.start_time or 0
        ended = span.end_time or started
        cost = reasoning = source = None
        parts = usage_parts(attrs) if A.USAGE_PART_KINDS in attrs else ()
        part_costs: list[int | None] = [None] * len(parts)
        # A call that ended without an error and without any usage (a raw response whose body was
        # never read) is unpriced, not free; a failed call with no usage is priced at zero tokens.
        usage_known = A.INPUT_TOKENS in attrs or A.OUTPUT_TOKENS in attrs or error_type is not None
        try:
            # Price by the model the provider says answered (a dated snapshot) when it is known.
            priced = self._prices.call_cost_pico(
                provider, str(response_model or model), started, ended, buckets, parts,
                str(tier) if tier else None, context, usage_known=usage_known, also_known_as=model,
            )
            if priced is not None:
                if priced[0] > _MAX_PICO:  # absurd token counts: unpriced rather than an unstorable cost
                    raise OverflowError(f"a cost of {priced[0]} pico-dollars cannot be stored")
                cost, reasoning, source, each = priced
                part_costs = list(each)
        except Exception as exc:  # noqa: BLE001 - a pricing failure still keeps the token counts
            internal_error("pricing", exc)
        parent = span.parent
        return (
            format(span.context.span_id, "016x"), format(span.context.trace_id, "032x"),
            None if parent is None else format(parent.span_id, "016x"), get(A.TASK_ID),
            started, ended, provider, str(get(A.OPERATION) or "chat"), model,
            None if response_model is None else str(response_model),
            buckets.uncached_input, buckets.cache_read, buckets.cache_write, buckets.cache_write_1h,
            buckets.visible_output, buckets.reasoning, cost, reasoning, source,
            int(bool(get(A.USAGE_ESTIMATED))), int(bool(get(A.REQUEST_STREAM))),
            int(bool(get(A.CALL_INCOMPLETE))), error_type, None if tier is None else str(tier),
            buckets.web_search_requests, buckets.web_fetch_requests,
            json.dumps(modifiers, sort_keys=True) if modifiers else None,
            clean_count(get(A.CALL_RETRIES)) or 0,
            clean_count(get(A.CACHE_WRITE_30M_TOKENS)) or 0,
            clean_count(get(A.CACHE_WRITE_12H_TOKENS)) or 0,
            _parts_json(parts, part_costs) if parts else None,
        )

    def _run_row(self, span: ReadableSpan, attrs: Any = None) -> tuple[Any, ...]:
        if attrs is None:
            attrs = attributes_of(span)
        prefix = len(A.TASK_ATTR_PREFIX)
        task_attrs = {k[prefix:]: v for k, v in attrs.items() if k.startswith(A.TASK_ATTR_PREFIX)}
        started = span.start_time or 0
        return (
            _hex_span(span.context.span_id), format(span.context.trace_id, "032x"),
            _hex_span(span.parent.span_id if span.parent else None), attrs.get(A.TASK_PARENT_ID),
            str(attrs.get(A.TASK_KIND)), attrs.get(A.TASK_KEY), str(attrs.get(A.SERVICE) or self._service),
            started, span.end_time or started, span_error_type(span, attrs),
            json.dumps(task_attrs, ensure_ascii=False, sort_keys=True, default=str) if task_attrs else "{}",
        )

    def _step_row(self, span: ReadableSpan, kind: str, attrs: Any = None) -> tuple[Any, ...]:
        if attrs is None:
            attrs = span.attributes or {}
        cost = attrs.get(A.TOOL_COST)
        name = attrs.get(A.TOOL_NAME) if kind == "tool" else attrs.get(A.STEP_NAME)
        started = span.start_time or 0
        return (
            _hex_span(span.context.span_id), format(span.context.trace_id, "032x"),
            _hex_span(span.parent.span_id if span.parent else None), attrs.get(A.TASK_ID), kind,
            str(name or span.name), started, span.end_time or started,
            None if cost is None else to_pico(parse_usd(cost)), span_error_type(span, attrs),
        )

    def _outcome_row(self, span: ReadableSpan, source: str, attrs: Any = None) -> tuple[Any, ...] | None:
        if attrs is None:
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

    def save_pending(self) -> bool:
        """Write the drops counted and the rows kept since the last batch, if any. True when none are left."""
        if self.drops.pending or self._retry_spans:
            self.export(())
        return not (self.drops.pending or self._retry_spans)

    def shutdown(self) -> None:
        try:
            saved = self.save_pending()
        except Exception as exc:  # noqa: BLE001
            internal_error("store exporter shutdown", exc)
            saved = False
        if not saved:
            # The store refuses to take them: say so rather than lose them without a word.
            logger.warning(
                "unitcost: %d span(s) could not be written to %s and are lost", self.drops.pending + self._retry_spans,
                redact_url(str(self._db_path)),
            )
        with self._lock:
            self._closed = True
            if self._db is not None:
                self._db.close()
                self._db = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.save_pending()


class StoreSpanProcessor(BatchSpanProcessor):
    """Batches unitcost's spans for the store on a background thread, sampled or not.

    The standard batch processor skips spans the sampler did not sample; the store must not (see
    `unitcost.pipeline.config`), so `on_end` keeps every recording span that unitcost can use, and drops the
    rest (HTTP server spans and the like) before they are queued.
    """

    # Spans waiting for the exporter (~2.5 KB each, so ~40 MB at most); beyond it they are dropped and
    # counted. The exporter keeps up with a caller making calls flat out (4,000-odd queued at most).
    max_queue_size = 16_384
    # The exporter wakes once this many spans wait: early enough that the queue (and the memory it
    # holds) stays small while the exporter keeps up, late enough that a batch is worth a transaction.
    export_batch_size = 2048

    def __init__(self, db_path: str | os.PathLike[str], prices: PriceBook | None = None, service: str = ""):
        exporter = StoreSpanExporter(db_path, prices, service)
        super().__init__(
            exporter,
            max_queue_size=self.max_queue_size,
            schedule_delay_millis=500,
            max_export_batch_size=min(self.export_batch_size, self.max_queue_size),
        )
        self._exporter = exporter
        self.drops = exporter.drops
        try:
            exporter.open()
        except Exception as exc:  # noqa: BLE001 - the writer tries again at its first batch
            internal_error("store open", exc)
        self._emit_lock = threading.Lock()
        # The batch processor's own deque (the SDK keeps it private): its length says when it is full.
        self._queue: Any = getattr(self._batch_processor, "_queue", None)

    def _emit(self, span: ReadableSpan) -> None:
        """Queue a span for the store without ever waiting for the exporter. The queue is bounded: when
        it is full, this span is dropped and counted. (Dropped here rather than by the batch
        processor, which would drop the oldest span uncounted: under this lock no other span enters
        the queue and the exporter only takes from it, so a span that enters is never pushed out.)"""
        queue = self._queue
        with self._emit_lock:
            if queue is not None and len(queue) >= self.max_queue_size:
                if not self.drops.total:
                    logger.warning(
                        "unitcost: the store's exporter cannot keep up; spans are dropped (and counted: see "
                        "`unitcost doctor`) rather than making your program wait"
                    )
                self.drops.add("queue_full")
                return
            self._batch_processor.emit(span)

    def on_end(self, span: ReadableSpan) -> None:
        if span_type(span) is None:
            return
        # The SDK's own span of a call unitcost adopted waits for the adapter (unitcost.pipeline.adopt).
        ready = merge_or_hold(span, self._emit)
        if ready is not None:
            self._emit(ready)

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        flushed = super().force_flush(timeout_millis)
        return self._exporter.save_pending() and flushed
