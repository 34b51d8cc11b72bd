"""The SQLite store: one file, opened by `unitcost.store.schema.open_store`, behind the store seam
(`unitcost.store.backend`)."""

from __future__ import annotations

import operator
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.errors import StoreError
from .backend import LOCK_WAIT_S, TABLES, Batch, Result, StoreBackend
from .bulk import insert_rows, nullable_columns
from .rollups import is_dirty
from .rollups import refresh as refresh_rollups
from .run_totals import CALL_FIELDS, ensure_fresh, refresh, sum_again
from .schema import database, dropped_spans, migrations, open_connection, unusable

if TYPE_CHECKING:
    import sqlite_utils
from .stale_runs import writer_begins, writer_ends

__all__ = ["SqliteBackend"]

_VERBS = {"replace": "INSERT OR REPLACE", "ignore": "INSERT OR IGNORE"}
# Where each table's rows go: (table, columns, statement verb), in a Batch's order.
_WRITES = tuple((t.name, t.columns, _VERBS[t.conflict]) for t in TABLES)
_INSERT_DROPS = "INSERT INTO dropped_spans (recorded_ns, reason, count, service) VALUES (?, ?, ?, ?)"
_WRITER_BEGINS, _WRITER_ENDS = writer_begins(), writer_ends()
_CALL_COLUMNS = TABLES[1].columns
_RUN_ID = _CALL_COLUMNS.index("run_id")
# A call row's (span_id, started_ns, *CALL_FIELDS), for the per-run totals.
_TOTALS_AT = tuple(_CALL_COLUMNS.index(c) for c in ("span_id", "started_ns", *CALL_FIELDS))


_totals_fields = operator.itemgetter(*_TOTALS_AT)  # in C: no Python call per row


def _keep_rollups(conn: sqlite3.Connection) -> None:
    """The per-task rollups of the tasks this transaction touched (unitcost.store.rollups), made again
    inside it. Sums past 2**63 (SQLite's integers) leave those tasks marked: the reports then take
    the full SQL path, whose engine gives way to Python's unbounded integers."""
    if not is_dirty(conn.execute):
        return
    conn.execute("SAVEPOINT unitcost_rollups")
    try:
        refresh_rollups(conn.execute, "sqlite")
    except sqlite3.OperationalError as exc:
        conn.execute("ROLLBACK TO unitcost_rollups")
        if "overflow" not in str(exc):
            conn.execute("RELEASE unitcost_rollups")
            raise
    conn.execute("RELEASE unitcost_rollups")


class SqliteBackend(StoreBackend):
    """A store in one SQLite file (WAL mode; one writer at a time, readers never wait)."""

    dialect = "sqlite"
    paramstyle = "qmark"

    def __init__(
        self, db: sqlite_utils.Database | sqlite3.Connection, location: str, *, owned: bool = True
    ) -> None:
        # sqlite-utils' view of the connection is made when first asked for (`db`): reads need the
        # connection alone, and importing sqlite-utils is ~50 ms of a command's start-up.
        self._db = None if isinstance(db, sqlite3.Connection) else db
        self.conn: sqlite3.Connection = db if isinstance(db, sqlite3.Connection) else db.conn
        self.location = location
        self._owned = owned
        self._busy_ms = 10_000  # what unitcost.store.schema.open_store sets
        # Per table of _WRITES, the columns an INSERT may leave out when all its rows hold None there
        # (unitcost.store.bulk): read from the schema at the first batch.
        self._nullable: tuple[frozenset[int], ...] | None = None
        try:
            self.newer_migrations = migrations.unknown(self.conn)
        except sqlite3.DatabaseError:  # a damaged file: what reads it next says so (doctor, the CLI)
            self.newer_migrations = ()

    @classmethod
    def open(cls, path: Path, *, create: bool = True, migrate: bool = True) -> SqliteBackend:
        """``migrate=False``: read-only, and nothing set on the file (doctor)."""
        if migrate:
            backend = cls(open_connection(path, create=create), str(path))
            # Read here, at configure() on the caller's thread: in the writer's first batch each row of
            # the schema read was a wait for the GIL under a busy program (the first row came ~1 s later)
            backend._nullable = backend._nullable_columns()
            return backend
        if not path.exists():
            raise StoreError(f"no unitcost store at {path} (run an instrumented program first, or pass --db)")
        try:
            conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=LOCK_WAIT_S)
        except sqlite3.DatabaseError as exc:
            raise unusable(path, exc) from exc
        return cls(conn, str(path))

    @property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils' view of the connection (for the migrations)."""
        if self._db is None:
            self._db = database(self.conn)
        return self._db

    @classmethod
    def wrap(cls, db: sqlite_utils.Database) -> SqliteBackend:
        """An open database someone else closes."""
        return cls(db, str(getattr(db.conn, "path", "") or "sqlite"), owned=False)

    def write_batch(self, batch: Batch, prices: Any) -> None:
        conn = self.conn
        if self.newer_migrations:  # rows only: the triggers mark their runs and tasks for the newer unitcost
            batch = replace(batch, sums=False, rollups=False)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if batch.sums:
                conn.execute(_WRITER_BEGINS)  # the calls below keep their sums here: they mark no run stale
            nullable = self._nullable
            if nullable is None:  # (a store opened by `wrap`)
                nullable = self._nullable = self._nullable_columns()
            for (table, columns, verb), rows, optional in zip(_WRITES, batch.rows, nullable, strict=True):
                if rows:  # few statements: see unitcost.store.bulk
                    insert_rows(conn, table, columns, rows, verb, optional)
            calls = batch.rows[1]
            if calls and batch.sums:  # refresh the per-run totals that reports read
                refresh(conn, {row[_RUN_ID] for row in calls}, prices, map(_totals_fields, calls))
            if batch.rollups:
                self._refresh_marked(prices)  # (a batch written without its sums: rollups are made of them)
                _keep_rollups(conn)
            if batch.drops:
                now = time.time_ns()
                conn.executemany(_INSERT_DROPS, [(now, reason, n, batch.service) for reason, n in batch.drops.items()])
            if batch.earlier_drops:
                conn.executemany(_INSERT_DROPS, batch.earlier_drops)
            if batch.sums:
                conn.execute(_WRITER_ENDS)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _nullable_columns(self) -> tuple[frozenset[int], ...]:
        """Per table of _WRITES, the columns an INSERT may leave out (unitcost.store.bulk). unitcost's
        own columns keep their nullability across migrations, so this is read once per connection."""
        return tuple(nullable_columns(self.conn, name, columns) for name, columns, _ in _WRITES)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        return self.conn.execute(sql, params)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def columns(self, table: str) -> set[str]:
        return {r[1] for r in self.conn.execute("SELECT * FROM pragma_table_info(?)", [table])}

    def ensure_fresh(self, prices: Any = None) -> None:
        self.refuse_if_newer()
        conn = self.conn
        tables = self.tables()
        if "run_sums_dirty" in tables:
            self._refresh_marked(prices)
        else:  # a store opened without migrating it (doctor): the calls counted
            ensure_fresh(conn, prices)
        if "rollup_dirty" not in tables:
            return
        if conn.in_transaction:
            _keep_rollups(conn)
            return
        if not is_dirty(conn.execute):  # (no write lock for a reader when every task's rows are made)
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # a read-only store: the reports read without the rollups
            return
        try:
            _keep_rollups(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _refresh_marked(self, prices: Any) -> None:
        """Sum again the runs marked stale (unitcost.store.stale_runs): one row read when there are none."""
        conn = self.conn
        if not conn.execute("SELECT EXISTS (SELECT 1 FROM run_sums_dirty)").fetchone()[0]:
            return

        def taken() -> list[str]:
            # (read, then emptied: this transaction is the store's only writer; DELETE ... RETURNING
            # needs SQLite 3.35, newer than some systems' Python links)
            stale = [r for (r,) in conn.execute("SELECT run_id FROM run_sums_dirty").fetchall()]
            conn.execute("DELETE FROM run_sums_dirty")
            return stale

        sum_again(conn, prices, taken)

    def migrations(self) -> list[str]:
        try:
            return migrations.names_applied(self.conn)
        except sqlite3.DatabaseError as exc:  # (a damaged file: said as open_connection says it)
            raise unusable(self.location, exc) from exc

    def dropped_spans(self, since_ns: int | None = None, until_ns: int | None = None) -> int:
        return dropped_spans(self.conn, since_ns, until_ns)

    def health(self, *, full_check: bool = True) -> dict[str, Any]:
        from .doctor import store_health  # here: only `unitcost doctor` needs it

        return store_health(Path(self.location), full_check=full_check)  # on a read-only connection of its own

    def compact(self) -> None:
        self.conn.execute("VACUUM")

    def is_refusal(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError)

    def is_damage(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.DatabaseError)

    def limit_waits(self, seconds: float) -> None:
        ms = int(seconds * 1000)
        if ms != self._busy_ms:  # one PRAGMA when the limit changes, not one per batch
            self.conn.execute(f"PRAGMA busy_timeout = {ms}")
            self._busy_ms = ms

    def use_page_cache(self, mib: int) -> None:
        self.conn.execute(f"PRAGMA cache_size = {-int(mib) * 1024}")  # (negative: in KiB, not pages)

    def close(self) -> None:
        if self._owned:
            self.conn.close()
