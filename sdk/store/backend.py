"""The store seam: everything outside `store/` reaches the database through a `StoreBackend`.

`unitcost.store.connect.open_backend(db)` picks the backend from what ``db`` names: a ``postgresql://`` or ``postgres://``
URL opens `unitcost.store.postgres.PostgresBackend` (imported only then; it needs the extra
``unitcost[postgres]``); anything else is the path of an SQLite file (`unitcost.store.sqlite`).

What a backend does, and who calls it:

- **open and migrate** (`open_backend(db, create=True)`, i.e. ``Backend(db, create=, migrate=)``):
  create the store if missing and apply the named migrations it lacks, in order, each once, safely
  when several processes open a new store at once (a shipped migration is never edited; SQLite's
  are in `unitcost.store.schema`). ``create=False`` (the CLI's readers) raises `StoreError` when there
  is no store. ``migrate=False`` (doctor) only reads: no migration, no setting changed.
- **write a batch** (`write_batch`, the store writer `unitcost.exporters.store` and `unitcost serve`):
  the rows of each table in `TABLES` plus dropped-span counts, in ONE transaction, and the per-run
  sums of the runs whose calls it wrote refreshed in that same transaction
  (`unitcost.store.run_totals`, whose Python rules any backend reuses). The rows arrive as tuples in
  the order of each table's columns, ready to bind: the writer builds them once, no per-row work is
  added here. ``conflict`` says what a row whose primary key (``outcomes``: ``origin``) is already
  stored does: "replace" it, or be "ignore"d.
- **read** (`execute`, the report engines, `unitcost.query`, export/replay, `show`): a query in the
  store's tables, with ``?`` placeholders (the qmark paramstyle); a backend whose driver takes another
  style translates them. The result iterates as tuples and has ``fetchone``, ``fetchall``, ``fetchmany``,
  ``description`` and ``rowcount``. SQL that only SQLite speaks stays behind ``dialect == "sqlite"``
  (`unitcost.report.sql`, the in-database report; the Python engine is the portable reference).
- **change** (`transaction`, prune, outcome import, `unitcost outcome`): statements through `execute`
  inside ``with backend.transaction():``, committed together or not at all.
- **read one task** (`run`): a run's row as a dict, by its id.
- **doctor** (`health`): a JSON-ready dict of facts, read without changing anything: ``path`` (a file
  path, or the URL with its password redacted), sizes, ``schema`` (applied / pending / unknown
  migrations), ``rows``, ``dropped_spans`` and ``dropped_by_reason``, ``problems``, ``warnings``, ``ok``.
- ``migrations()``: the schema migrations the store has, in order (`unitcost migrate` says which it applied).
- ``dropped_spans(since, until)``: the spans dropped instead of stored, which every report shows.
- ``ensure_fresh()``: make the per-run sums agree with the calls when something other than
  `write_batch` wrote calls (reports call it before reading the sums). On a store a newer unitcost
  has migrated (``newer_migrations``) it raises instead, and `write_batch` writes rows only.
- `is_refusal` (the writer: retry the batch later?) and `is_damage` (the CLI: say the store is
  damaged) classify the driver's exceptions, so no caller imports a driver.
- `close`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ..common.errors import StoreError

__all__ = [
    "CALL_COLUMNS", "LOCK_WAIT_S", "NEWER_WARNING", "Batch", "Result", "StoreBackend", "TABLES", "Table", "is_url",
    "redact_url",
]

# How long a process waits for a lock another one holds on the store (a migration or a batch in
# progress) before it gives up: a command says the store is locked, the writer keeps the batch for
# its next try (the writer's own limit, `StoreBackend.limit_waits`, is shorter at flush and exit).
LOCK_WAIT_S = 10.0

CALL_COLUMNS = (
    "span_id", "trace_id", "parent_span_id", "run_id", "started_ns", "ended_ns", "provider", "operation",
    "model", "response_model", "input_tokens", "cache_read_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "output_tokens", "reasoning_tokens", "cost_pico", "reasoning_cost_pico",
    "price_source", "estimated", "streamed", "incomplete", "error_type", "service_tier",
    "web_search_requests", "web_fetch_requests", "price_modifiers",
    "retries", "cache_write_30m_tokens", "cache_write_12h_tokens", "usage_parts",
    # (m014_call_energy) the call's energy and emissions range, NULL when unestimated, and how it was made
    "energy_uwh_min", "energy_uwh_max", "gwp_ug_min", "gwp_ug_max", "energy_source",
)


@dataclass(frozen=True, slots=True)
class Table:
    """A table the writer fills: its name, the columns of its rows in order, and what a row whose key
    is already stored does ("replace" or "ignore")."""

    name: str
    columns: tuple[str, ...]
    conflict: str


# The tables of a `Batch`, in the order of its row lists.
TABLES = (
    Table("runs", (
        "run_id", "trace_id", "parent_span_id", "parent_run_id", "kind", "key", "service", "started_ns",
        "ended_ns", "error_type", "attributes",
        "runtime_cost_pico",  # (m012_runtime_cost) a [[runtime]] charge for the run's wall time, or NULL
    ), "replace"),
    Table("calls", CALL_COLUMNS, "replace"),
    Table("steps", (
        "span_id", "trace_id", "parent_span_id", "run_id", "type", "name", "started_ns", "ended_ns",
        "cost_pico", "error_type",
    ), "replace"),
    # An outcome replayed is not added twice (its `origin`, the span that carried it, is unique).
    Table("outcomes", ("recorded_ns", "run_id", "kind", "key", "label", "success", "value_pico", "source", "origin"),
          "ignore"),
    Table("call_content", ("span_id", "input_messages", "output_messages"), "replace"),
)


# What doctor says of a store a newer unitcost upgraded (`StoreBackend.newer_migrations`).
NEWER_WARNING = (
    "a newer unitcost upgraded this store ({}): this unitcost's programs store rows only (a newer one sums "
    "them) and its reports refuse to read it; upgrade unitcost"
)


@dataclass(slots=True)
class Batch:
    """One transaction's worth of rows: ``rows[i]`` holds tuples for ``TABLES[i]``; ``drops`` counts
    spans that will never be rows, by reason, recorded under ``service``."""

    rows: tuple[list[tuple[Any, ...]], ...]
    drops: Mapping[str, int] = field(default_factory=dict)
    service: str = ""
    # Counts an earlier writer could not store (unitcost.store.losses), moved into the store with this
    # batch: (recorded_ns, reason, count, service) each.
    earlier_drops: Sequence[tuple[int, str, int, str]] = ()
    # Make the touched tasks' rollups again in this transaction (unitcost.store.rollups). The store
    # writer skips it on some batches under load; the tasks stay marked dirty, and the next batch
    # that refreshes, or a reader (`StoreBackend.ensure_fresh`), makes them.
    rollups: bool = True
    # Make the per-run sums of the runs these calls touch in this transaction (unitcost.store.run_totals).
    # The SQLite writer skips it in a process's first batch, whose every statement is a wait for the GIL
    # under a busy program (first row sooner); its runs are then marked stale (unitcost.store.stale_runs)
    # and summed by the next batch that makes rollups, or by a reader. PostgreSQL sums every batch.
    sums: bool = True

    @property
    def calls(self) -> list[tuple[Any, ...]]:
        return self.rows[1]


class Result(Protocol):
    """What `StoreBackend.execute` returns (a DB-API cursor is one)."""

    @property
    def description(self) -> Any: ...
    @property
    def rowcount(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[Any, ...]]: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def fetchmany(self, size: int = ...) -> list[Any]: ...


class StoreBackend(ABC):
    """A unitcost store. See the module's docstring for who calls what."""

    dialect: ClassVar[str]  # "sqlite", "postgresql"
    paramstyle: ClassVar[str] = "qmark"  # what `execute` takes; a backend translates for its driver
    location: str  # a file path, or a URL with its password redacted: safe to show
    # The migrations the store has that this unitcost does not know: a newer unitcost upgraded it (say,
    # mid-way through a fleet's rolling upgrade). Its sums and rollups may then hold columns this
    # unitcost would leave empty, so it writes rows only (the store's triggers mark what they touch, for
    # the newer one to sum) and refuses to read reports (`refuse_if_newer`). Set when the store is opened.
    newer_migrations: tuple[str, ...] = ()

    def refuse_if_newer(self) -> None:
        """Raise StoreError when a newer unitcost upgraded the store: this one cannot read it right."""
        if self.newer_migrations:
            raise StoreError(
                f"the store at {self.location} was upgraded by a newer unitcost (migrations "
                f"{', '.join(self.newer_migrations)}): upgrade unitcost to read it. Programs with this "
                "unitcost still store their spans in it, and leave their sums to the newer one."
            )

    @abstractmethod
    def write_batch(self, batch: Batch, prices: Any) -> None:
        """Write the batch and refresh its runs' sums (priced by ``prices``, a PriceBook) in one transaction."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Run one statement (``?`` placeholders) and return its result."""

    @abstractmethod
    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement (``?`` placeholders) once per row of parameters (writes)."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """A write transaction around `execute` calls: committed on exit, rolled back on an exception."""

    @abstractmethod
    def tables(self) -> set[str]:
        """The names of the store's tables."""

    @abstractmethod
    def columns(self, table: str) -> set[str]:
        """The names of a table's columns (a store from an older unitcost may lack newer ones)."""

    @abstractmethod
    def ensure_fresh(self, prices: Any = None) -> None:
        """Refresh the per-run sums of runs whose calls something other than `write_batch` wrote."""

    @abstractmethod
    def migrations(self) -> list[str]:
        """The names of the schema migrations the store has, in the order they were applied."""

    @abstractmethod
    def dropped_spans(self, since_ns: int | None = None, until_ns: int | None = None) -> int:
        """How many spans were dropped (recorded in [since, until) when given) instead of stored."""

    @abstractmethod
    def health(self, *, full_check: bool = True) -> dict[str, Any]:
        """`unitcost doctor`'s facts (see the module's docstring)."""

    @abstractmethod
    def compact(self) -> None:
        """Give the space of deleted rows back (after a prune)."""

    @abstractmethod
    def is_refusal(self, exc: BaseException) -> bool:
        """True when the store refused a write for its state (locked, full), not for what it held."""

    @abstractmethod
    def is_damage(self, exc: BaseException) -> bool:
        """True when a read failed because the store is damaged or unreadable."""

    @abstractmethod
    def close(self) -> None: ...

    def limit_waits(self, seconds: float) -> None:  # noqa: B027 - optional: a backend that cannot, ignores it
        """Let the next `write_batch` wait at most ``seconds`` for a store another writer holds (the
        store writer bounds flush() and the exit with it)."""

    def use_page_cache(self, mib: int) -> None:  # noqa: B027 - optional: a server keeps its own cache
        """Let this connection keep up to ``mib`` MiB of the store's pages in memory (a writer of its own
        process, which can spare it: each batch's inserts and rollups then read fewer pages again)."""

    def run(self, run_id: str) -> dict[str, Any] | None:
        """One run's row as a dict, or None."""
        cursor = self.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([d[0] for d in cursor.description], row, strict=True))

    def __enter__(self) -> StoreBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_url(db: Any) -> bool:
    """True for a PostgreSQL URL (``postgresql://`` or ``postgres://``)."""
    return isinstance(db, str) and db.split("://", 1)[0].lower() in ("postgresql", "postgres") and "://" in db


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``: safe for logs and `doctor`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.rfind("@", 0, rest.find("/") if "/" in rest else len(rest))
    if at < 0:
        return url
    user, colon, _ = rest[:at].partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}{rest[at:]}"
