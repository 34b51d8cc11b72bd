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
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from ..common import attributes as A
from ..common.errors import internal_error
from ..common.forks import after_fork_in_child, around_fork, in_child_process
from ..common.money import parse_usd, to_pico
from ..pipeline.adopt import merge_or_hold
from ..pricing.book import PriceBook
from ..pricing.call import call_terms, price_call
from ..pricing.usage import clean_count
from ..store.backend import CALL_COLUMNS, NEWER_WARNING, Batch, StoreBackend, redact_url
from ..store.connect import open_backend
from ..store.foreign_spans import as_unitcost_span, foreign_span_type
from ..store.losses import loss_file_for

__all__ = [
    "CALL_COLUMNS", "EXIT_WAIT_SECONDS", "StoreSpanExporter", "StoreSpanProcessor", "attributes_of", "span_error_type",
    "span_type",
]

logger = logging.getLogger("unitcost")

# Rows of batches the store refused (locked past the busy timeout, disk full) are kept, up to this
# many, and written with the next batch (every insert is idempotent); beyond it they are dropped and
# counted.
_RETRY_ROWS = 10_000

# How long the writer waits for a locked store: per batch while the program runs (several processes
# may share one store), and in all at exit, so that a store another process keeps locked delays the
# exit by these few seconds at most; what is not written by then is counted in the store's side
# file (unitcost.store.losses), never only printed.
BUSY_WAIT_SECONDS = 10.0
EXIT_WAIT_SECONDS = 3.0
# In a forked or multiprocessing child, each top-level task (or call outside a task) is written
# before it returns, waiting at most this long: such children often end without running `atexit`.
CHILD_FLUSH_SECONDS = 5.0
# How long a fork waits for the writer's batch in progress (see StoreSpanExporter._before_fork).
FORK_WAIT_SECONDS = 2.0
# Sharing the GIL with a program that never waits. CPython gives the GIL to a waiting thread only
# after 5 ms (the switch interval) in which no other thread took it; a program calling flat out with
# no real I/O (an in-memory transport, a cache, a local model) still drops and retakes it for a
# microsecond at each call (openai's client reads os.urandom for every request), and each drop wakes
# the waiting writer too late to take it and restarts its 5 ms. Measured on a quiet 2-core machine:
# each of the writer's statements, and its wake-up, waited 100-290 ms for the GIL, a batch 1.2-1.5 s,
# and the store fell seconds behind. So when the writer is late (a batch in its hands for longer than
# WRITER_LATE_SECONDS, or spans queued that long past its schedule), a thread that ends a span (queued
# or dropped: a full queue is when the writer is latest) sleeps
# YIELD_SECONDS (long enough for the writer to wake and take the GIL), at most once every
# YIELD_EVERY_SECONDS across threads: at most a 10% pause, only while the writer is late, and none at
# all in a program that does real I/O (the writer runs while it waits). (A pace per thread, tried:
# the first row of 8 real-client threads came sooner, but with 8 threads of a client that does no
# I/O at all the writer stored 35% less, each pause handing the GIL to another caller.)
WRITER_LATE_SECONDS = 0.05
YIELD_EVERY_SECONDS = 0.005
YIELD_SECONDS = 0.0005
# The processor exports at least this often. (0.5 s, tried: with one thread calling flat out the store
# was then 1.0-1.2 s behind at p99, against 0.57 s at 0.1 s, with no fewer calls made; a busy program
# fills a batch sooner than either.)
SCHEDULE_SECONDS = 0.1
# The per-task rollups (unitcost.store.rollups) are made again at most this often, and at every flush
# and at exit: their refresh is ~15 statements, each a GIL hand-off that a busy program makes costly
# (see unitcost.store.bulk), whatever the number of tasks it covers. Between refreshes the tasks stay
# marked dirty and a reader makes them before it reads (StoreBackend.ensure_fresh): reports are exact
# either way.
ROLLUP_EVERY_SECONDS = 1.0
_inherited: list[Any] = []  # connections copied by fork: never used, never closed, in the child

Rows = tuple[list[tuple[Any, ...]], ...]  # one list per table of unitcost.store.backend.TABLES
_NO_ENERGY = (None, None, None, None, None)  # a call's energy columns when it is unestimated
_TASK_ATTR_PREFIX = A.TASK_ATTR_PREFIX
_TOOL_COSTS_KEPT = 1024  # distinct tool costs kept parsed (see StoreSpanExporter._tool_cost)

# json.dumps with any argument makes a new encoder at each call (a third of its cost for a small dict).
_task_attributes_json = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str).encode
_modifiers_json = json.JSONEncoder(sort_keys=True).encode


class DropCounter:
    """Spans that will never become rows, by reason, until the exporter has saved the count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self.total = 0  # dropped since this counter was made, saved or not
        after_fork_in_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        # The parent saves what it counted; the child starts afresh (its lock may have been held).
        self._lock = threading.Lock()
        self._pending = {}

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


def _parts_json(parts: Any, costs: Sequence[int | None]) -> str:
    """The `calls.usage_parts` column: each part's kind, model, tokens and cost (None: unpriced)."""
    return json.dumps([
        {
            "kind": kind, "model": model, "input_tokens": b.input_total, "cache_read_tokens": b.cache_read,
            "cache_write_tokens": b.cache_write + b.cache_write_1h, "output_tokens": b.output_total, "cost_pico": cost,
        }
        for (kind, model, b), cost in zip(parts, costs, strict=True)
    ])


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
        self._losses = loss_file_for(self._db_path)
        self._merge_losses = True  # the side file's counts are moved into the store by the first batch
        self._inode: int | None = None  # the store file this connection writes, to notice it replaced
        self._deadline: float | None = None  # time.monotonic(): no wait on a locked store past it
        self._forking = False  # this thread holds the lock across a fork (see _before_fork)
        self._unsafe_in_child = False  # forked mid-batch: SQLite must not be used in this child
        self.busy_since: float | None = None  # time.monotonic() when the batch in hand began, or None
        self.idle_since = time.monotonic()  # when the last batch ended (see StoreSpanProcessor._make_way)
        # The last batch that refreshed the rollups (time.monotonic()), or None before the first batch,
        # which leaves them to the next: the first rows are the ones a crash or a reader waits for.
        self._rollups_at: float | None = None
        self._rollups_owed = False  # a batch since then skipped the refresh
        self._rollups_now = False  # the next batch refreshes whatever the pace (a flush, exit)
        self._tool_costs: dict[tuple[type, Any], int] = {}  # see _tool_cost
        self._page_cache_mib = 0  # 0: the store's default (see use_page_cache)
        around_fork(self._before_fork, self._after_fork_in_parent, self._after_fork_in_child)

    def _before_fork(self) -> None:
        """SQLite must not be used in a child through a connection (or SQLite state) copied by fork:
        wait for the batch in progress (bounded) and close the connection, so the child starts clean.
        The parent opens it again at its next batch."""
        self._forking = self._lock.acquire(timeout=FORK_WAIT_SECONDS)
        if self._forking and self._db is not None:
            try:
                self._db.close()
            except Exception as exc:  # noqa: BLE001 - the parent opens a new one at its next batch
                internal_error("store close before fork", exc)
            self._db = None

    def _after_fork_in_parent(self) -> None:
        if self._forking:
            self._forking = False
            self._lock.release()

    def _after_fork_in_child(self) -> None:
        """In a forked child: a new lock, a connection of its own, and none of the parent's pending
        rows or counts, which the parent writes: nothing is written twice."""
        self._unsafe_in_child = not self._forking and self._db is not None
        if self._db is not None:
            _inherited.append(self._db)  # copied mid-batch: never used, never closed here
        self._forking = False
        self._lock = threading.Lock()
        self._db = None
        self._retry, self._retry_spans = ([], [], [], [], []), 0
        self._deadline = None
        # The parent's batch in hand is not this child's: its writer has not been late yet.
        self.busy_since, self.idle_since = None, time.monotonic()

    def open(self) -> None:
        """Open (and migrate) the store now, on the thread that configures unitcost, so the writer
        thread's first batch neither imports nor migrates anything (see unitcost.pipeline.preload)."""
        with self._lock:
            if self._db is None and not self._closed:
                self._connect()

    def use_page_cache(self, mib: int) -> None:
        """Keep up to ``mib`` MiB of the store's pages in memory, on every connection this exporter opens
        (the writer process's: see unitcost.exporters.store_process)."""
        self._page_cache_mib = mib
        with self._lock:
            if self._db is not None:
                self._db.use_page_cache(mib)

    def _connect(self) -> None:
        self._db = open_backend(self._db_path)
        if self._page_cache_mib:
            self._db.use_page_cache(self._page_cache_mib)
        if self._db.newer_migrations:
            logger.warning("unitcost: %s", NEWER_WARNING.format(", ".join(self._db.newer_migrations)))
        self._inode = _inode(self._db_path)
        self._merge_losses = True

    @contextmanager
    def waits_until(self, deadline: float) -> Iterator[None]:
        """Within this block, no write waits for a locked store past ``deadline`` (time.monotonic())."""
        before, self._deadline = self._deadline, deadline
        try:
            yield
        finally:
            self._deadline = before

    def wait_at_most_until(self, deadline: float) -> None:
        """From now on (the program is ending), no write waits for a locked store past ``deadline``."""
        self._deadline = deadline

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write one batch in one transaction, with the drops counted since the last one.

        Nothing here may lose a span silently: a span that cannot be read is dropped and counted; a
        batch the store refuses (locked, full) is kept for the next export (up to `_RETRY_ROWS` rows),
        then counted; a batch refused for what it holds is counted at once.
        """
        if self._unsafe_in_child:
            # Forked while the writer was mid-batch (for longer than FORK_WAIT_SECONDS): SQLite's state
            # in this child is a copy of a half-done call, so this child counts its spans, writes none.
            self.count_lost({"forked_mid_batch": len(spans) + self._retry_spans}, quiet=True)
            return SpanExportResult.FAILURE
        self.busy_since = time.monotonic()
        try:
            return self._export(spans)
        finally:
            self.busy_since = None
            self.idle_since = time.monotonic()

    def _export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows = self._rows(spans)
        with self._lock:
            if self._closed:
                # A batch still in the writer's hands after shutdown: counted, never silently lost.
                self.count_lost({"exit_timeout": len(spans)})
                return SpanExportResult.FAILURE
            pending = self._retry
            if any(pending):
                rows = tuple(old + new for old, new in zip(pending, rows, strict=True))
            spans_in_rows = self._retry_spans + len(spans)
            self._retry, self._retry_spans = ([], [], [], [], []), 0
            drops = self.drops.take()
            if not any(rows) and not drops and not self._rollups_owed and not (
                self._merge_losses and self._losses.exists()
            ):
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
        if self._db is not None and self._inode is not None and _inode(self._db_path) != self._inode:
            # Deleted (or replaced) under us: SQLite would go on writing the unlinked file, and every
            # row after this would be lost without a word. Start a new store there instead.
            logger.warning(
                "unitcost: the store %s was deleted or replaced while in use; writing a new one", self._db_path
            )
            _inherited.append(self._db)  # closing it would checkpoint into a file no one can read
            self._db = None
        if self._db is None:
            self._connect()
        db = self._db
        assert db is not None  # _connect raises when it cannot open the store
        busy = BUSY_WAIT_SECONDS
        if self._deadline is not None:
            busy = max(0.0, min(busy, self._deadline - time.monotonic()))
        db.limit_waits(busy)
        losses, loss_files = self._losses.take() if self._merge_losses else ([], [])
        now = time.monotonic()
        rollups_at = self._rollups_at
        first = rollups_at is None
        if rollups_at is None:
            rollups_at = self._rollups_at = now
        rollups = self._rollups_now or now - rollups_at >= ROLLUP_EVERY_SECONDS
        # The first batch goes with the fewest statements (see Batch.sums): in a busy program each is
        # a wait for the GIL, and a crash before it is written loses every task ended so far
        db.write_batch(
            Batch(rows, drops, self._service, earlier_drops=losses, rollups=rollups, sums=not first or rollups),
            self._prices,
        )
        if rollups:
            self._rollups_at, self._rollups_owed = now, False
        else:
            self._rollups_owed = True
        self._losses.done(loss_files)
        self._merge_losses = False

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
                elif kind in ("tool", "step", "session"):
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
        # The exporter's hot path (one call per stored LLM call): each attribute is read once, and the
        # helpers the other rows use (span_error_type, _hex_span) are inlined.
        if attrs is None:
            attrs = attributes_of(span)
        get = attrs.get
        if A.ERROR_TYPE in attrs:
            error_type: str | None = str(attrs[A.ERROR_TYPE])
        else:
            error_type = "error" if span.status.status_code is StatusCode.ERROR else None
        buckets, provider, model, response_model, tier, modifiers, context, usage_known, parts = call_terms(
            attrs, error_type
        )
        started = span.start_time or 0
        ended = span.end_time or started
        cost, reasoning, source, part_costs = price_call(
            self._prices, provider, model, started, ended, buckets, parts, response_model=response_model, tier=tier,
            context=context, usage_known=usage_known,
        )
        energy: tuple[Any, ...] = _NO_ENERGY
        energy_book = self._prices.energy
        if energy_book.active:
            try:
                seconds = (ended - started) / 1e9
                output = buckets.output_total
                estimate = energy_book.estimate(provider, str(response_model or model), output, seconds)
                if estimate is None and response_model is not None and response_model != model:
                    estimate = energy_book.estimate(provider, model, buckets.output_total, seconds)
                if estimate is not None:
                    energy = estimate
            except Exception as exc:  # noqa: BLE001 - an estimate that fails leaves the call unestimated
                internal_error("energy estimate", exc)
        context_ids = span.context
        parent = span.parent
        retries, write_30m = get(A.CALL_RETRIES), get(A.CACHE_WRITE_30M_TOKENS)
        write_12h = get(A.CACHE_WRITE_12H_TOKENS)
        return (
            f"{context_ids.span_id:016x}", f"{context_ids.trace_id:032x}",
            None if parent is None else f"{parent.span_id:016x}", get(A.TASK_ID),
            started, ended, provider, str(get(A.OPERATION) or "chat"), model, response_model,
            buckets.uncached_input, buckets.cache_read, buckets.cache_write, buckets.cache_write_1h,
            buckets.visible_output, buckets.reasoning, cost, reasoning, source,
            1 if get(A.USAGE_ESTIMATED) else 0, 1 if get(A.REQUEST_STREAM) else 0,
            1 if get(A.CALL_INCOMPLETE) else 0, error_type, tier,
            buckets.web_search_requests, buckets.web_fetch_requests,
            _modifiers_json(modifiers) if modifiers else None,
            0 if retries is None else clean_count(retries) or 0,
            0 if write_30m is None else clean_count(write_30m) or 0,
            0 if write_12h is None else clean_count(write_12h) or 0,
            _parts_json(parts, part_costs or [None] * len(parts)) if parts else None,
            *energy,
        )

    def _run_row(self, span: ReadableSpan, attrs: Any = None) -> tuple[Any, ...]:
        if attrs is None:
            attrs = attributes_of(span)
        prefix = _TASK_ATTR_PREFIX
        cut = len(prefix)
        task_attrs = {k[cut:]: v for k, v in attrs.items() if k.startswith(prefix)}
        started = span.start_time or 0
        ended = span.end_time or started
        get = attrs.get
        kind = str(get(A.TASK_KIND))
        ids, parent = span.context, span.parent
        return (
            f"{ids.span_id:016x}", f"{ids.trace_id:032x}",
            None if parent is None else f"{parent.span_id:016x}", get(A.TASK_PARENT_ID),
            kind, get(A.TASK_KEY), str(get(A.SERVICE) or self._service),
            started, ended, span_error_type(span, attrs),
            _task_attributes_json(task_attrs) if task_attrs else "{}",
            self.runtime_cost(kind, None, started, ended) if self._prices.prices_runs else None,
        )

    def runtime_cost(self, kind: str | None, session: str | None, started: int, ended: int) -> int | None:
        """A [[runtime]] entry's charge for this run or session block; None when none prices it."""
        try:
            cost = self._prices.runtime_cost_pico(kind, session, started, ended)
            if cost is not None and cost > 2**63 - 1:  # SQLite's largest integer
                raise OverflowError(f"a runtime cost of {cost} pico-dollars cannot be stored")
            return cost
        except Exception as exc:  # noqa: BLE001 - a pricing failure still keeps the run
            internal_error("runtime pricing", exc)
            return None

    def _step_row(self, span: ReadableSpan, kind: str, attrs: Any = None) -> tuple[Any, ...]:
        if attrs is None:
            attrs = span.attributes or {}
        cost = attrs.get(A.TOOL_COST)
        name = str((attrs.get(A.TOOL_NAME) if kind == "tool" else attrs.get(A.STEP_NAME)) or span.name)
        started = span.start_time or 0
        ended = span.end_time or started
        if kind == "session":  # priced by time, as its runtime bills it
            task_kind = attrs.get(A.TASK_KIND)
            pico = self.runtime_cost(None if task_kind is None else str(task_kind), name, started, ended)
        else:
            pico = None if cost is None else self._tool_cost(cost)
        ids, parent = span.context, span.parent
        return (
            f"{ids.span_id:016x}", f"{ids.trace_id:032x}",
            None if parent is None else f"{parent.span_id:016x}", attrs.get(A.TASK_ID), kind,
            name, started, ended, pico, span_error_type(span, attrs),
        )

    def _tool_cost(self, cost: Any) -> int:
        """A tool's own cost in pico-dollars: the same few amounts recur (a tool's price per call), and
        parsing one as a Decimal costs more than the rest of its row."""
        key = (type(cost), cost)
        try:
            return self._tool_costs[key]
        except KeyError:
            pass
        except TypeError:  # an amount that cannot be a key (unhashable): parsed every time
            return to_pico(parse_usd(cost))
        pico = to_pico(parse_usd(cost))  # raises for what is not an amount: never kept
        if len(self._tool_costs) >= _TOOL_COSTS_KEPT:
            self._tool_costs.clear()
        self._tool_costs[key] = pico
        return pico

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
        """Write the drops counted and the rows kept since the last batch, if any, and the rollups a batch
        left to make. True when none are left."""
        if self.drops.pending or self._retry_spans or self._rollups_owed or (
            self._merge_losses and self._losses.exists()
        ):
            self._rollups_now = True
            try:
                self.export(())
            finally:
                self._rollups_now = False
        return not (self.drops.pending or self._retry_spans)

    def count_lost(self, counts: dict[str, int], quiet: bool = False) -> None:
        """Count spans that will never be written in the store's side file, where the next writer,
        `unitcost doctor` and reports find them (the store itself refuses them)."""
        counts = {reason: n for reason, n in counts.items() if n > 0}
        if not counts:
            return
        total = sum(counts.values())
        try:
            self._losses.add(counts, self._service)
        except OSError as exc:
            logger.warning("unitcost: %d span(s) could not be written to %s, nor counted in %s (%s)",
                           total, redact_url(str(self._db_path)), self._losses.path, exc)
            return
        if not quiet:
            logger.warning("unitcost: %d span(s) could not be written to %s; counted in %s (`unitcost doctor` and "
                           "reports show them)", total, redact_url(str(self._db_path)), self._losses.path)

    def shutdown(self) -> None:
        try:
            saved = self.save_pending()
        except Exception as exc:  # noqa: BLE001
            internal_error("store exporter shutdown", exc)
            saved = False
        with self._lock:
            if not saved:
                # The store refuses to take them: count them where the next writer and doctor look.
                lost = self.drops.take()
                lost["export_failed"] = lost.get("export_failed", 0) + self._retry_spans
                self._retry, self._retry_spans = ([], [], [], [], []), 0
                self.count_lost(lost)
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

    def __init__(
        self, db_path: str | os.PathLike[str], prices: PriceBook | None = None, service: str = "",
        exporter: StoreSpanExporter | None = None,
    ):
        if exporter is None:
            exporter = StoreSpanExporter(db_path, prices, service)
        super().__init__(
            exporter,
            max_queue_size=self.max_queue_size,
            schedule_delay_millis=int(SCHEDULE_SECONDS * 1000),
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
        self._each_task = in_child_process()  # write each finished task before it returns (see _emit)
        self._last_yield = 0.0  # time.monotonic() of the last pause for the writer (see _make_way)
        self._queued_since = 0.0  # when a span last entered an empty queue
        # Registered after the batch processor's own hook, which restarts its worker in the child.
        after_fork_in_child(self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        self._emit_lock = threading.Lock()
        self._queue = getattr(self._batch_processor, "_queue", None)
        self._each_task = True

    def _emit(self, span: ReadableSpan) -> None:
        """Queue a span for the store without ever waiting for the exporter. The queue is bounded: when
        it is full, this span is dropped and counted. (Dropped here rather than by the batch
        processor, which would drop the oldest span uncounted: under this lock no other span enters
        the queue and the exporter only takes from it, so a span that enters is never pushed out.)"""
        queue = self._queue
        was_empty = False
        with self._emit_lock:
            full = queue is not None and len(queue) >= self.max_queue_size
            if full:
                if not self.drops.total:
                    logger.warning(
                        "unitcost: the store's exporter cannot keep up; spans are dropped (and counted: see "
                        "`unitcost doctor`) rather than making your program wait"
                    )
                self.drops.add("queue_full")
            else:
                was_empty = queue is not None and not queue
                self._batch_processor.emit(span)
        # A dropped span makes way as a queued one does: the writer is then at its latest. (Without it the
        # pauses stopped once drops began, 5-23 a second against 125-150 before, and the writer, waiting
        # for the GIL after each statement, took up to 8-11 s over one batch: the queue stayed full.)
        self._make_way(was_empty)
        if full:
            return
        # Asked at each span, not once: multiprocessing says a process is its child only after it has
        # unpickled the work (a spawn worker's import of the module that configures unitcost).
        if (self._each_task or in_child_process()) and _top_level(span):
            # A forked or multiprocessing child may end by os._exit or SIGTERM (multiprocessing's
            # workers, `with Pool()`), without `atexit`: the task is written before it returns, so
            # before its result reaches the parent. Bounded; no signal handler is needed.
            self.force_flush(int(CHILD_FLUSH_SECONDS * 1000))

    def _make_way(self, was_empty: bool) -> None:
        """Pause this thread briefly when the writer is late for want of the GIL (see YIELD_SECONDS)."""
        now = time.monotonic()
        if was_empty:
            self._queued_since = now
            return
        exporter = self._exporter
        busy = exporter.busy_since
        if busy is not None:
            late = now - busy > WRITER_LATE_SECONDS
        else:  # queued, and the writer has not woken on schedule
            late = now - max(self._queued_since, exporter.idle_since) > SCHEDULE_SECONDS + WRITER_LATE_SECONDS
        if not late or now - self._last_yield < YIELD_EVERY_SECONDS:
            return
        if threading.current_thread() is getattr(self._batch_processor, "_worker_thread", None):
            return  # the writer itself
        self._last_yield = now
        time.sleep(YIELD_SECONDS)

    def on_end(self, span: ReadableSpan) -> None:
        if span_type(span) is None:
            return
        # The SDK's own span of a call unitcost adopted waits for the adapter (unitcost.pipeline.adopt).
        ready = merge_or_hold(span, self._emit)
        if ready is not None:
            self._emit(ready)

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        """Write what is queued, on this thread, returning by ``timeout_millis`` (default 30 s) even when
        the store is locked: what is left stays queued, or kept for the next batch. True when all of it
        went. (The SDK's own force_flush ignores its timeout and waits for the writer's lock.)"""
        deadline = time.monotonic() + (30.0 if timeout_millis is None else timeout_millis / 1000)
        processor: Any = self._batch_processor
        lock = getattr(processor, "_export_lock", None)
        queue = self._queue
        if getattr(processor, "_shutdown", False):
            return False
        if lock is None or queue is None:  # another SDK version: its own flush, then ours
            return bool(super().force_flush(timeout_millis)) and self._exporter.save_pending()
        if not lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False  # the writer is in a batch that waits for the store: it is bounded too
        try:
            with self._exporter.waits_until(deadline):
                while queue and time.monotonic() < deadline:
                    count = min(self.export_batch_size, len(queue))
                    self._exporter.export([queue.pop() for _ in range(count)])  # oldest at the right
                return not queue and self._exporter.save_pending()
        finally:
            lock.release()

    def shutdown(self) -> None:
        """Write what is left and stop. Waits at most `EXIT_WAIT_SECONDS` in all for a locked store;
        whatever could not be written is counted in the store's side file."""
        self._exporter.wait_at_most_until(time.monotonic() + EXIT_WAIT_SECONDS)
        processor: Any = self._batch_processor
        processor.shutdown(timeout_millis=30_000)  # a store that takes the rows is given time to
        left = len(self._queue) if self._queue is not None else 0
        if left:  # never exported: the writer stopped at its time limit
            self._exporter.count_lost({"exit_timeout": left})


def _inode(path: str | os.PathLike[str]) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _top_level(span: ReadableSpan) -> bool:
    """A task with no task above it, or anything outside any task: what a child writes at once."""
    attrs = attributes_of(span)
    kind = attrs.get(A.SPAN_TYPE)
    if kind == "task":
        return A.TASK_PARENT_ID not in attrs
    return kind == "outcome" or A.TASK_ID not in attrs
