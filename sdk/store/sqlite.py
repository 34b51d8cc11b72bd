"""The SQLite store: one file, opened by `unitcost.store.schema.open_store`, behind the store seam
(`unitcost.store.backend`)."""

from __future__ import annotations

import json
import operator
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.errors import StoreError
from .backend import TABLES, Batch, Result, StoreBackend
from .bulk import insert_rows, json_rows_sql, nullable_columns
from .rollups import is_dirty, refresh_statements
from .rollups import refresh as refresh_rollups
from .run_totals import CALL_FIELDS, COLUMNS, RUN_COLUMNS, ensure_fresh, fresh_sums, refresh, sum_again
from .schema import database, dropped_spans, open_connection

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

# --- One statement a batch ---------------------------------------------------------------------------
# Each statement the writer runs releases the GIL (Python's sqlite3 drops it around every step), and
# beside threads that never wait, taking it back costs 5 ms switch intervals, 50-100 ms a statement
# (benchmarks/RESULTS.md). So a batch's rows, its per-run sums and its drops go in as JSON text, in one
# INSERT into a TEMP view whose INSTEAD OF trigger fans them out into every table; the rollups' refresh
# is one INSERT into another. TEMP: the objects live in the writer's connection only (made when the
# writer opens the store, `SqliteBackend.prepare_writer`), nothing is added to the store's schema, and
# a store written by an older unitcost, or read by anyone, is unchanged. A batch whose values JSON cannot
# carry as the row-by-table statements do (see `_batch_params`) is written those ways instead.
_BATCH_SOURCES = ("sums", *(t.name for t in TABLES), "summed", "run_totals", "run_sums", "drops")
_BATCH_VIEW = (
    f"CREATE TEMP VIEW unitcost_batch ({', '.join(_BATCH_SOURCES)}) AS SELECT "
    + ", ".join(["NULL"] * len(_BATCH_SOURCES))
)
_IN_DIRTY = "json_extract(value, '$[0]') NOT IN (SELECT run_id FROM run_sums_dirty)"
_BATCH_TRIGGER = (
    "CREATE TEMP TRIGGER unitcost_batch INSTEAD OF INSERT ON unitcost_batch BEGIN "
    # (see unitcost.store.stale_runs: the calls below keep their sums; a batch without them marks its runs)
    "INSERT INTO run_sums_writer (writing) SELECT 1 WHERE NEW.sums; "
    + "".join(f"{json_rows_sql(verb, table, columns, f'NEW.{table}')}; " for table, columns, verb in _WRITES)
    # The runs that had sums before this batch are summed again from the store by the next batch that
    # makes rollups, or by a reader (ensure_fresh); the others' sums are those of this batch's calls.
    + "INSERT OR IGNORE INTO run_sums_dirty (run_id) SELECT value FROM json_each(NEW.summed) "
    "WHERE value IN (SELECT run_id FROM run_sums); "
    f"{json_rows_sql('INSERT OR REPLACE', 'run_totals', COLUMNS, 'NEW.run_totals', _IN_DIRTY)}; "
    f"{json_rows_sql('INSERT OR REPLACE', 'run_sums', RUN_COLUMNS, 'NEW.run_sums', _IN_DIRTY)}; "
    f"{json_rows_sql('INSERT', 'dropped_spans', ('recorded_ns', 'reason', 'count', 'service'), 'NEW.drops')}; "
    "DELETE FROM run_sums_writer; END"
)
_WRITE_BATCH = f"INSERT INTO temp.unitcost_batch VALUES ({', '.join('?' * len(_BATCH_SOURCES))})"


def _in_trigger(statement: str) -> str:
    """A refresh statement as a trigger's body takes it: SQLite refuses a leading WITH there, and takes
    ``WITH ... INSERT INTO t (columns) SELECT ...`` written as ``INSERT INTO t (columns) WITH ... SELECT ...``."""
    if not statement.startswith("WITH "):
        return statement
    depth = 0
    for at, char in enumerate(statement):
        depth += (char == "(") - (char == ")")
        if depth == 0 and statement.startswith("INSERT INTO ", at):
            columns_end = statement.index(")", at)  # (a column list holds no parentheses)
            insert, cte, rest = statement[at : columns_end + 1], statement[:at].rstrip(), statement[columns_end + 1 :]
            return f"{insert} {cte} {rest.lstrip()}"
    raise ValueError(f"no INSERT after the WITH of {statement[:60]!r}")


_ROLLUPS_VIEW = "CREATE TEMP VIEW unitcost_rollups (now) AS SELECT NULL"
_ROLLUPS_TRIGGER = (
    "CREATE TEMP TRIGGER unitcost_rollups INSTEAD OF INSERT ON unitcost_rollups "
    "WHEN EXISTS (SELECT 1 FROM rollup_dirty) BEGIN "
    + "".join(f"{_in_trigger(sql)}; " for sql in refresh_statements("sqlite")) + "END"
)
_REFRESH_ROLLUPS = "INSERT INTO temp.unitcost_rollups VALUES (1)"
_MIN_INT, _MAX_INT = -(2**63), 2**63 - 1  # SQLite's integers
# Compact, and refusing what SQLite's JSON would read otherwise (NaN) or what is not JSON (bytes).
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")).encode
_STEP_COST, _OUTCOME_VALUE = TABLES[2].columns.index("cost_pico"), TABLES[3].columns.index("value_pico")


def _as_json(rows: Sequence[Sequence[Any]]) -> str | None:
    return _encode(rows) if rows else None


def _batch_params(batch: Batch, prices: Any) -> list[Any] | None:
    """The parameters of `_WRITE_BATCH` for this batch; None when its values must go the row-by-table
    ways, for they would not be stored the same through JSON: a text holding a NUL (SQLite's JSON ends
    the text there), an integer beyond SQLite's (JSON makes it a REAL, a bound parameter refuses the
    batch), a value JSON cannot hold (bytes, NaN)."""
    rows = batch.rows
    for table, at in ((rows[2], _STEP_COST), (rows[3], _OUTCOME_VALUE)):  # (amounts the program gave)
        for row in table:
            value = row[at]
            if value is not None and not _MIN_INT <= value <= _MAX_INT:
                return None
    summed: list[str] = []
    totals: list[tuple[Any, ...]] = []
    per_run: list[tuple[Any, ...]] = []
    calls = rows[1]
    if calls and batch.sums:
        summed, totals, per_run = fresh_sums(map(_totals_fields, calls), prices)
    drops = list(batch.earlier_drops)
    if batch.drops:
        now = time.time_ns()
        drops[:0] = [(now, reason, n, batch.service) for reason, n in batch.drops.items()]
    try:
        params = [
            1 if batch.sums else 0, *map(_as_json, rows), _as_json(summed), _as_json(totals), _as_json(per_run),
            _as_json(drops),
        ]
    except (TypeError, ValueError):
        return None
    if any(p is not None and type(p) is str and "\\u0000" in p for p in params):
        return None
    return params


def _keep_rollups(conn: sqlite3.Connection, one_statement: bool = False) -> None:
    """The per-task rollups of the tasks this transaction touched (unitcost.store.rollups), made again
    inside it. Sums past 2**63 (SQLite's integers) leave those tasks marked: the reports then take
    the full SQL path, whose engine gives way to Python's unbounded integers. ``one_statement``: the
    refresh is the writer's TEMP trigger (`_ROLLUPS_TRIGGER`), which asks whether any task is marked
    itself. (The savepoint stays: a statement that fails inside a trigger keeps what the trigger's
    earlier statements did.)"""
    if not one_statement and not is_dirty(conn.execute):
        return
    conn.execute("SAVEPOINT unitcost_rollups")
    try:
        if one_statement:
            conn.execute(_REFRESH_ROLLUPS)
        else:
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
        self._one_statement = False  # a batch in one statement (see prepare_writer)

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
            conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10.0)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path} is not a usable unitcost store ({exc}); unitcost has not changed it") from exc
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

    def prepare_writer(self) -> None:
        """The TEMP view and trigger that write a batch in one statement, and the rollups' refresh in
        one (see `_BATCH_TRIGGER`): made once per connection, when the writer opens the store (at
        configure(), on the caller's thread). An SQLite that refuses them (too old for a CTE in a
        trigger) leaves the writer to a statement per table."""
        if self._one_statement:
            return
        try:
            for sql in (_BATCH_VIEW, _BATCH_TRIGGER, _ROLLUPS_VIEW, _ROLLUPS_TRIGGER):
                self.conn.execute(sql)
        except sqlite3.Error:
            for name in ("unitcost_batch", "unitcost_rollups"):
                self.conn.execute(f"DROP VIEW IF EXISTS temp.{name}")  # (its trigger goes with it)
            return
        self._one_statement = True

    def write_batch(self, batch: Batch, prices: Any) -> None:
        params = _batch_params(batch, prices) if self._one_statement else None
        if params is not None:
            self._write_in_one(batch, params, prices)
            return
        conn = self.conn
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

    def _write_in_one(self, batch: Batch, params: list[Any], prices: Any) -> None:
        """A batch in one statement (`_WRITE_BATCH`), and when it makes rollups, the runs marked to sum
        again (a row read when there are none) and the refresh (one statement in a savepoint)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_WRITE_BATCH, params)
            if batch.rollups:
                self._refresh_marked(prices)
                _keep_rollups(conn, one_statement=True)
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

    def close(self) -> None:
        if self._owned:
            self.conn.close()
