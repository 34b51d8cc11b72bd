"""The SQLite store: one file, opened by `unitcost.store.schema.open_store`, behind the store seam
(`unitcost.store.backend`)."""

from __future__ import annotations

import operator
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..common.errors import StoreError
from .backend import TABLES, Batch, Result, StoreBackend
from .bulk import insert_rows, nullable_columns, statement_sizes
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
# (benchmarks/RESULTS.md). So a batch is one INSERT of rows (tag, value, value, ...) into a TEMP table,
# the tag naming the table a row is for (`_TAGS`): the rows of every table, the batch's per-run sums and
# its drops, after a first row that says whether the calls keep their sums (unitcost.store.stale_runs),
# and before a last row whose trigger moves them all, a table at a time, into the store's tables, then
# empties the TEMP table. The values are bound parameters, as a statement per table binds them (SQLite's
# JSON, tried first, took ~1 us a value to take apart: the writer's CPU twice over; a trigger per row, a
# third of that). The rollups' refresh is one INSERT into a TEMP view too. TEMP: the objects live in the
# writer's connection only (made when the writer opens the store, `SqliteBackend.prepare_writer`); nothing
# is added to the store's schema.
_HEADER, _TRAILER, _PADDING = "header", "trailer", -1
_SUMS_TABLES = (("run_totals", COLUMNS, "INSERT OR REPLACE"), ("run_sums", RUN_COLUMNS, "INSERT OR REPLACE"))
_DROPS_TABLE = ("dropped_spans", ("recorded_ns", "reason", "count", "service"), "INSERT")
_TAGS = {name: tag for tag, name in enumerate(
    (_HEADER, *(t for t, _, _ in _WRITES), *(t for t, _, _ in _SUMS_TABLES), _DROPS_TABLE[0], _TRAILER)
)}
_WIDTH = max(len(c) for _, c, _ in (*_WRITES, *_SUMS_TABLES, _DROPS_TABLE))
_VALUES = tuple(f"c{i}" for i in range(_WIDTH))
_ROWS_TABLE = f"CREATE TEMP TABLE unitcost_rows (tag INTEGER NOT NULL, {', '.join(_VALUES)})"  # (no affinity)


def _into(table: str, columns: Sequence[str], verb: str, where: str = "") -> str:
    """The rows of one tag into their table, in the order they came (a later row replaces an earlier one)."""
    return (f"{verb} INTO {table} ({', '.join(columns)}) SELECT {', '.join(_VALUES[: len(columns)])} "
            f"FROM unitcost_rows WHERE tag = {_TAGS[table]}{where} ORDER BY rowid;")


_ROWS_TRIGGER = (
    f"CREATE TEMP TRIGGER unitcost_rows AFTER INSERT ON unitcost_rows WHEN NEW.tag = {_TAGS[_TRAILER]} BEGIN "
    # The header's c0: 1 when the calls keep their sums
    f"INSERT INTO run_sums_writer (writing) SELECT 1 FROM unitcost_rows WHERE tag = {_TAGS[_HEADER]} AND c0; "
    # The runs summed from this batch's calls alone that had sums before are summed again from the store by
    # the next batch that makes rollups, or by a reader (ensure_fresh); the others take these sums.
    f"INSERT OR IGNORE INTO run_sums_dirty (run_id) SELECT c0 FROM unitcost_rows WHERE tag = {_TAGS['run_sums']} "
    "AND c0 IN (SELECT run_id FROM run_sums); "
    + " ".join(_into(table, columns, verb) for table, columns, verb in _WRITES)
    + " ".join(_into(table, columns, verb, " AND c0 NOT IN (SELECT run_id FROM run_sums_dirty)")
               for table, columns, verb in _SUMS_TABLES)
    + _into(*_DROPS_TABLE)
    + " DELETE FROM run_sums_writer; DELETE FROM unitcost_rows; END"
)


@lru_cache(maxsize=64)
def _rows_statement(kept: tuple[int, ...], rows: int) -> str:
    row = f"({', '.join('?' * (len(kept) + 1))})"
    columns = ", ".join(_VALUES[i] for i in kept)
    return f"INSERT INTO temp.unitcost_rows (tag, {columns}) VALUES {', '.join([row] * rows)}"


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
_MOST_ROWS = 16_384  # rows a statement (a batch of 2,048 spans: its rows, a run's two sums rows, drops)
_ZEROS = (0,) * _WIDTH  # what a row binds in the columns its table has not (ints bind cheaply)


def _batch_rows(batch: Batch, prices: Any) -> tuple[tuple[int, ...], list[tuple[Any, ...]]]:
    """The batch as rows of `unitcost_rows`, each (tag, *values), and the value columns they fill. A
    column in which no table's rows hold a value is left out (its NULL is what a bound None would be, and
    binding a None costs Python's sqlite3 ~5 times an integer: see unitcost.store.bulk); a table's row
    binds zeros in the columns past its own."""
    rows = batch.rows
    sums: tuple[list[tuple[Any, ...]], ...] = ([], [])
    calls = rows[1]
    if calls and batch.sums:
        _, totals, per_run = fresh_sums(map(_totals_fields, calls), prices)
        sums = (totals, per_run)
    drops: list[tuple[Any, ...]] = list(batch.earlier_drops)
    if batch.drops:
        now = time.time_ns()
        drops[:0] = [(now, reason, n, batch.service) for reason, n in batch.drops.items()]
    groups: list[tuple[tuple[int], Sequence[tuple[Any, ...]]]] = [((_TAGS[_HEADER],), [(1 if batch.sums else 0,)])]
    for (table, _, _), table_rows in zip((*_WRITES, *_SUMS_TABLES, _DROPS_TABLE), (*rows, *sums, drops), strict=True):
        if table_rows:
            groups.append(((_TAGS[table],), [tuple(row) for row in table_rows] if type(table_rows[0]) is not tuple
                           else table_rows))
    groups.append(((_TAGS[_TRAILER],), [()]))
    empty: set[int] = set(range(_WIDTH))  # the columns no row has a value in, so far
    for _, group in groups:
        if empty and group[0]:
            nones = (None,) * len(group)
            empty.intersection_update(
                [i for i, column in enumerate(zip(*group, strict=True)) if column == nones]  # in C
                + list(range(len(group[0]), _WIDTH))
            )
    kept = tuple(i for i in range(_WIDTH) if i not in empty)
    pick = operator.itemgetter(0, *[i + 1 for i in kept]) if empty else None
    out: list[tuple[Any, ...]] = []
    for tag, group in groups:
        pad = _ZEROS[len(group[0]) :]
        if pick is None:
            out += [tag + row + pad for row in group]
        else:
            out += [pick(tag + row + pad) for row in group]
    return kept, out


def _write_rows(conn: sqlite3.Connection, kept: tuple[int, ...], rows: list[tuple[Any, ...]], parameters: int) -> None:
    """`_batch_rows` in as few statements as SQLite's limit on ``parameters`` allows (one, most often),
    padded up to one of a few row counts (`statement_sizes`), so that few statements are compiled; the
    padding rows come before the last (whose trigger empties the table)."""
    width = len(kept) + 1
    sizes = statement_sizes(width, parameters, _MOST_ROWS)
    most = sizes[-1]
    padding = (_PADDING, *_ZEROS[: width - 1])
    for start in range(0, len(rows), most):
        chunk = rows[start : start + most]
        size = next(s for s in sizes if s >= len(chunk))
        params = list(chain.from_iterable(chunk[:-1]))
        if size > len(chunk):
            params += padding * (size - len(chunk))
        params += chunk[-1]
        conn.execute(_rows_statement(kept, size), params)


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
        self._most_parameters = 999  # SQLite's limit on a statement's parameters (read by prepare_writer)

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
        one (see `_ROWS_TRIGGER`): made once per connection, when the writer opens the store (at
        configure(), on the caller's thread). An SQLite that refuses them (too old for a CTE in a
        trigger) leaves the writer to a statement per table."""
        if self._one_statement:
            return
        try:
            for sql in (_ROWS_TABLE, _ROWS_TRIGGER, _ROLLUPS_VIEW, _ROLLUPS_TRIGGER):
                self.conn.execute(sql)
            self._most_parameters = self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        except sqlite3.Error:
            self.conn.execute("DROP TABLE IF EXISTS temp.unitcost_rows")  # (its trigger goes with it)
            self.conn.execute("DROP VIEW IF EXISTS temp.unitcost_rollups")
            return
        self._one_statement = True

    def write_batch(self, batch: Batch, prices: Any) -> None:
        if self._one_statement:
            self._write_in_one(batch, prices)
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

    def _write_in_one(self, batch: Batch, prices: Any) -> None:
        """A batch in one statement (`_batch_rows`), and when it makes rollups, the runs marked to sum
        again (a row read when there are none) and the refresh (one statement in a savepoint)."""
        kept, rows = _batch_rows(batch, prices)  # (before the transaction: no lock held for Python's work)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            _write_rows(conn, kept, rows, self._most_parameters)
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
