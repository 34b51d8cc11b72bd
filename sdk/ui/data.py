"""What the UI's pages show, read through the report package's public functions, the same ones
`unitcost report`, `compare`, `whatif`, `tasks` and `show` call, so every number on a page is the
number the CLI prints for the same options.

Reports over a million calls take a second or two; a page must not. Each result is kept with the
store's version (`store_version`, cheap to read): a page whose store has not changed since is served
from memory, and the live-update stream computes a changed page's data before telling the browser
to fetch it (see `app.events`), so the wait falls outside a page request whenever it can.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unitcost.common.timewindow import parse_time
from unitcost.query import open_store
from unitcost.report import EVERY, add_outcome, report, show_run, store_version, task_page
from unitcost.store.backend import StoreBackend

if TYPE_CHECKING:
    from unitcost.report import Repricer

__all__ = ["Filters", "Reader", "TREND_GROUPS", "TREND_METRICS", "WhatIf", "trend_series"]

TREND_GROUPS = 8  # the overview draws the trends of its first groups only (a page, not a wall of charts)

# The overview's trends: (report field, words), each drawn per time bucket with its change.
TREND_METRICS = (
    ("cost_per_success_usd", "cost per success"),
    ("success_rate", "success rate"),
    ("cost_per_task_p50_usd", "cost per task, p50"),
    ("cost_per_task_p95_usd", "cost per task, p95"),
    ("wasted_usd", "wasted spend"),
    ("reasoning_cost_share", "reasoning share"),
)
_CACHE_SIZE = 48


@dataclass(frozen=True)
class Filters:
    """A report's options as a URL carries them: `report --by/--where/--since/--until/--kind/--every`."""

    by: str = "kind"
    where: tuple[str, ...] = ()
    since: str = ""
    until: str = ""
    kind: str = ""
    every: str = "day"

    @classmethod
    def from_query(cls, query: Any) -> Filters:
        every = query.get("every") or "day"
        return cls(
            by=(query.get("by") or "kind").strip() or "kind",
            where=tuple(w.strip() for w in query.getlist("where") if w.strip()),
            since=(query.get("since") or "").strip(),
            until=(query.get("until") or "").strip(),
            kind=(query.get("kind") or "").strip(),
            every=every if every in EVERY else "day",
        )

    def report_options(self) -> dict[str, Any]:
        """Keyword arguments for `unitcost.report.engine.report` (times parsed as the CLI parses them)."""
        return {
            "by": self.by,
            "where": list(self.where),
            "since_ns": parse_time(self.since) if self.since else None,
            "until_ns": parse_time(self.until) if self.until else None,
            "kind": self.kind or None,
        }

    def query(self, **changes: Any) -> list[tuple[str, str]]:
        """These filters (with `changes`) as URL query pairs, defaults left out."""
        values = {"by": self.by, "where": self.where, "since": self.since, "until": self.until,
                  "kind": self.kind, "every": self.every, **changes}
        pairs: list[tuple[str, str]] = []
        for name, value in values.items():
            if name == "where":
                pairs.extend(("where", w) for w in value)
            elif value and not (name == "by" and value == "kind") and not (name == "every" and value == "day"):
                pairs.append((name, str(value)))
        return pairs


@dataclass(frozen=True)
class WhatIf:
    """A what-if's options, as the what-if page's URL carries them (`unitcost whatif`'s)."""

    model: str | None = None
    from_model: str | None = None
    price_file: str | None = None  # one of the files `unitcost ui --prices` named
    assume_cache: bool = False
    routes: tuple[str, ...] = ()
    batch_kinds: tuple[str, ...] = ()

    def asks(self) -> bool:
        return bool(self.model or self.price_file or self.assume_cache or self.routes or self.batch_kinds)

    def repricer(self) -> Repricer:
        from unitcost.report import Repricer

        return Repricer(model=self.model, from_model=self.from_model, price_file=self.price_file,
                        assume_cache=self.assume_cache, routes=self.routes, batch_kinds=self.batch_kinds)


@dataclass
class _Entry:
    version: str
    value: Any
    computed_at: float
    compute: Callable[[StoreBackend], Any]


@dataclass
class Reader:
    """Reads one store for the UI; results are kept per (what, options) until the store changes."""

    location: str | Path  # an SQLite file or a postgresql:// URL, as `--db` takes them
    _cache: OrderedDict[tuple[Any, ...], _Entry] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _refreshing: threading.Lock = field(default_factory=threading.Lock)
    _pending: dict[tuple[Any, ...], float] = field(default_factory=dict)  # computing on a thread: since when
    _failed: dict[tuple[Any, ...], Exception] = field(default_factory=dict)

    @contextmanager
    def _db(self) -> Iterator[StoreBackend]:
        with open_store(self.location) as db:
            yield db

    def version(self) -> str:
        with self._db() as db:
            return store_version(db)

    def _kept(self, key: tuple[Any, ...], compute: Callable[[StoreBackend], Any]) -> tuple[Any, float]:
        """(the value, when it was computed): from memory when the store has not changed since."""
        with self._db() as db:
            version = store_version(db)
            with self._lock:
                entry = self._cache.get(key)
                if entry is not None and entry.version == version:
                    self._cache.move_to_end(key)
                    return entry.value, entry.computed_at
            value = compute(db)
        computed_at = time.time()
        with self._lock:
            self._cache[key] = _Entry(version, value, computed_at, compute)
            self._cache.move_to_end(key)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return value, computed_at

    def forget(self) -> None:
        """Forget every result kept (the next request for each reads the store again)."""
        with self._lock:
            self._cache.clear()

    def refresh(self, most: int = 6) -> None:
        """Compute again the most recently used results the store has changed under, so that the pages
        the browsers show find theirs ready when told to fetch again (one refresh at a time)."""
        with self._refreshing:
            with self._lock:
                recent = list(self._cache.items())[-most:]
            with self._db() as db:
                version = store_version(db)
                for key, entry in reversed(recent):
                    # (a what-if takes seconds: it is computed again on a thread when next asked for)
                    if entry.version != version and key[0] != "whatif":
                        value = entry.compute(db)
                        with self._lock:
                            self._cache[key] = _Entry(version, value, time.time(), entry.compute)

    # --- what the pages read ------------------------------------------------------------------

    def overview(self, filters: Filters) -> tuple[dict[str, Any], float]:
        """The report rows for these filters, and the same report per time bucket (the trends)."""
        options = filters.report_options()

        def compute(db: StoreBackend) -> dict[str, Any]:
            rows = report(db, **options)
            return {"rows": rows, "buckets": _trend_rows(db, rows, filters.every, options)}

        return self._kept(("overview", filters), compute)

    def task_list(self, **options: Any) -> tuple[tuple[int, list[Any]], float]:
        """(how many tasks match, one page of them) for a list's filters, sort and page (`task_page`:
        one statement over the per-task rollups)."""
        return self._kept(("task_list", tuple(sorted(options.items()))), lambda db: task_page(db, **options))

    def task(self, run_id: str) -> tuple[Any, float]:
        """(`unitcost show`'s detail of the run, each run of its task with its cost), when computed."""

        def compute(db: StoreBackend) -> tuple[Any, list[tuple[str, Any, bool]]]:
            detail = show_run(db, run_id)
            runs = [(rid, detail.tree if rid == detail.run_id else show_run(db, rid).tree)
                    for rid in detail.runs_of_task]
            return detail, [(rid, tree.cost_usd, tree.total("unpriced") > 0) for rid, tree in runs]

        return self._kept(("task", run_id), compute)

    def compare(self, a: str, b: str, by: str, kind: str | None) -> tuple[list[dict[str, Any]], float]:
        from unitcost.report import compare, parse_side

        side_a, side_b = parse_side(a), parse_side(b)
        return self._kept(("compare", a, b, by, kind), lambda db: compare(db, side_a, side_b, by=by, kind=kind))

    def whatif(self, what: WhatIf, filters: Filters) -> tuple[dict[str, Any] | None, float]:
        """`unitcost whatif`'s rows, notes and assumptions: (them, when computed) when kept for the
        store's version, else (None, when started) and computed on a thread of its own. Re-pricing
        every call of a million takes ~30 s of Python: a page request must not wait for it."""
        what.repricer()  # (the options checked now: a bad one is said at once, not after the wait)
        options = filters.report_options()

        def compute(db: StoreBackend) -> dict[str, Any]:
            from unitcost.report import whatif

            repricer = what.repricer()
            rows = whatif(db, repricer, **options)
            return {"rows": rows, "notes": repricer.notes(), "assumes": repricer.assumptions(what.price_file),
                    "routed_calls": repricer.routed_calls, "batched_calls": repricer.batched_calls}

        return self._in_background(("whatif", what, filters), compute)

    def _in_background(self, key: tuple[Any, ...], compute: Callable[[StoreBackend], Any]) -> tuple[Any, float]:
        """(the value, when computed); (None, when its computation started) before there is one. The
        computation runs on a thread (one a key) whenever the value kept is not of the store's
        version; meanwhile the value kept, of an older version, is given (its time says so): a store
        written to all the time would otherwise never show one. An error is raised to the next asker."""
        with self._db() as db:
            version = store_version(db)
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
            if entry is not None and entry.version == version:
                return entry.value, entry.computed_at
            failed = self._failed.pop((key, version), None)
            if failed is not None:
                raise failed
            started = self._pending.get(key)
            if started is None:
                self._pending[key] = started = time.time()
                threading.Thread(target=self._compute_in_background, args=(key, compute, version),
                                 name="unitcost-ui-background", daemon=True).start()
            return (entry.value, entry.computed_at) if entry is not None else (None, started)

    def _compute_in_background(
        self, key: tuple[Any, ...], compute: Callable[[StoreBackend], Any], version: str
    ) -> None:
        try:
            self._kept(key, compute)
        except Exception as exc:  # (said to the page's next request)
            with self._lock:
                self._failed[(key, version)] = exc
        finally:
            with self._lock:
                self._pending.pop(key, None)

    def record_outcome(self, ref: str, label: str, kind: str | None, success: bool | None) -> tuple[str, str | None]:
        """The one write the UI makes, on an explicit action: `unitcost outcome REF LABEL` (same code)."""
        with self._db() as db:
            return add_outcome(db, ref, label, kind=kind, success=success)


def _trend_rows(db: StoreBackend, rows: list[dict[str, Any]], every: str, options: dict[str, Any]) -> list[Any]:
    """The same report per time bucket, for the groups whose trends the overview draws.

    By a task attribute of many values (a customer), the report of every group per day is thousands
    of rows the page never draws (8,730 by customer on the 1,000,000-call store, ~500 ms): then each
    drawn group's own report is asked for instead, with `--where` naming its values, which keeps the
    same tasks, so the same numbers. Groups that `--where` cannot name (by model or provider, a
    group without a value, a value `--where` would read otherwise) take the one report, of the drawn
    groups only (`only_groups`: by model and outcome by day, 1,350 groups ranked for 720 drawn)."""
    drawn = rows[:TREND_GROUPS]
    if len(rows) <= TREND_GROUPS:
        return report(db, every=every, **options)
    if not all(_nameable(row["group"]) for row in drawn):
        # (by model and outcome: the drawn groups' rows of the one report, the others' costs not ranked)
        return report(db, every=every, only_groups=[tuple(row["group"].values()) for row in drawn], **options)
    buckets: list[dict[str, Any]] = []
    for row in drawn:
        where = [*options["where"], *(f"{name}={value}" for name, value in row["group"].items())]
        buckets += report(db, every=every, **{**options, "where": where})
    return buckets


def _nameable(group: dict[str, Any]) -> bool:
    # (`--where` strips a value's spaces, reads `key` as the task key, and cannot select by model or provider)
    return all(
        name not in ("model", "provider", "key") and isinstance(value, str) and value == value.strip()
        and value != "" for name, value in group.items()
    )


def trend_series(
    bucket_rows: Sequence[dict[str, Any]], group: dict[str, Any], every: str
) -> tuple[list[str], dict[str, list[Any]]]:
    """For one group of a report, its buckets (oldest first) and each trend metric's value per bucket."""
    mine = [r for r in bucket_rows if all(r["group"].get(k) == v for k, v in group.items())]
    mine.sort(key=lambda r: r["group"][every] or "")
    buckets = [r["group"][every] for r in mine]
    return buckets, {name: [r[name] for r in mine] for name, _ in TREND_METRICS}
