"""A shared store on a PostgreSQL server, behind the store seam (`unitcost.store.backend`).

``UNITCOST_DB=postgresql://user@host:5432/db`` (or ``configure(db=...)``, or any command's ``--db``)
selects it; `unitcost.store.connect.open_backend` imports this module only then. Schema and
migrations are in `unitcost.store.postgres_schema` (the SQLite store's tables and migration names),
batch writes in `unitcost.store.postgres_writer`.

When the server is unreachable or restarting, `write_batch` raises a refusal (`is_refusal`), so the
store writer keeps the batch, bounded, for the next one: reconnecting is tried again after a
back-off that doubles from 0.1 s to 5 s, and until then a batch is refused at once, without
waiting on the network. The writer runs on the exporter's thread, never on the caller's.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from ..common.errors import StoreError
from .backend import LOCK_WAIT_S, NEWER_WARNING, TABLES, Batch, Result, StoreBackend
from .losses import dropped_by_reason, loss_file_for
from .losses import dropped_spans as count_dropped
from .postgres_schema import (
    MIGRATIONS,
    STORE_TABLES,
    MigrationBusy,
    applied_migrations,
    connect,
    migrate,
    redact_url,
    retry_after,
    server_gone,
)
from .postgres_writer import PostgresWriter, lock_runs, refresh_totals
from .rollups import is_dirty
from .rollups import refresh as refresh_rollups
from .run_totals import CALL_FIELDS
from .stale_runs import TAKE_MARKS_SQL

__all__ = ["PostgresBackend", "StoreUnavailable"]

# A writer's batch transaction left idle this long (its process stopped, its host cut off mid-batch) is
# ended by the server, which frees the run locks every other writer needs; otherwise the server holds
# them until its TCP keepalive gives up on the connection, hours by default.
STALLED_BATCH_S = 60
_LOCK_WAIT = "55P03"  # lock_not_available: a lock_timeout ran out
_CALL_COLUMNS = TABLES[1].columns
_TOTALS_AT = tuple(_CALL_COLUMNS.index(c) for c in ("span_id", "started_ns", *CALL_FIELDS))
_totals_fields = operator.itemgetter(*_TOTALS_AT)  # (in C: no Python call per row)
_ALL_TABLES = (*STORE_TABLES, "run_totals", "run_sums", "dropped_spans")


class StoreUnavailable(StoreError):
    """The server cannot be reached now (down, restarting, refusing connections): try the batch later."""


@lru_cache(maxsize=512)
def _pyformat(sql: str) -> str:
    """``?`` placeholders (the seam's) as psycopg's ``%s``, and a literal ``%`` doubled; a ``?`` inside a
    quoted string or identifier, or in a ``--`` comment, stays as it is."""
    out: list[str] = []
    quote = ""
    i = 0
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = len(sql) if end < 0 else end
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        elif ch == "?":
            out.append("%s")
            i += 1
            continue
        out.append("%%" if ch == "%" else ch)
        i += 1
    return "".join(out)


class PostgresBackend(StoreBackend):
    """A unitcost store in a PostgreSQL database (the schema of the connection's search_path)."""

    dialect = "postgresql"
    paramstyle = "qmark"  # translated to psycopg's %s here

    def __init__(self, url: str, *, create: bool = True, migrate: bool = True, connect_timeout: int = 5) -> None:
        self.url = url
        self.location = redact_url(url)
        self._create = create
        self._migrate = migrate
        self._timeout = connect_timeout
        self._conn: Any = None
        self._failures = 0
        self._retry_at = 0.0
        self._why = ""
        self._wait_ms = round(LOCK_WAIT_S * 1000)
        self._waits_set: tuple[Any, int] | None = None  # (the connection, the limit) it was last sent for
        self._writer: PostgresWriter | None = None
        try:
            self._connection()
        except StoreUnavailable:
            if not create:
                raise
            # A writer started while the server is down or restarting: it connects at a later batch.

    # --- the connection ---------------------------------------------------------------------------

    def _connection(self) -> Any:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop_connection()
        now = time.monotonic()
        if now < self._retry_at:
            raise StoreUnavailable(f"{self._why}; next try in {self._retry_at - now:.1f} s")
        try:
            conn = connect(self.url, connect_timeout=self._timeout, autocommit=True)
        except StoreError as exc:
            self._back_off(f"the store at {self.location} is unreachable")
            raise StoreUnavailable(str(exc)) from exc.__cause__
        try:
            applied = applied_migrations(conn)
            if not applied and not self._create:
                raise StoreError(
                    f"no unitcost store at {self.location} (run an instrumented program with this db first)"
                )
            if self._migrate and len(applied) < len(MIGRATIONS):
                migrate(conn)
            known = {name for name, _ in MIGRATIONS}
            self.newer_migrations = tuple(name for name in applied if name not in known)
        except MigrationBusy as exc:
            # (as an unreachable server: the writer keeps its batches and comes back after a backoff)
            conn.close()
            self._back_off(f"the store at {self.location} is being migrated by another process")
            raise StoreUnavailable(str(exc)) from exc
        except BaseException:
            conn.close()
            raise
        self._conn, self._failures, self._retry_at = conn, 0, 0.0
        return conn

    def connection(self) -> Any:
        """The open psycopg connection (autocommit; `unitcost.report.pg_sql` runs the reports on it)."""
        return self._connection()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001, S110 - a connection already gone
                pass

    def _after_failure(self, exc: BaseException) -> None:
        if server_gone(exc) or (self._conn is not None and (self._conn.closed or self._conn.broken)):
            self._drop_connection()
            self._back_off(f"the store at {self.location} is unreachable")

    def _back_off(self, why: str) -> None:
        """No new connection is tried for a while, longer after each failure in a row (said as ``why``)."""
        self._failures += 1
        self._retry_at = time.monotonic() + retry_after(self._failures - 1)
        self._why = why

    # --- the seam ---------------------------------------------------------------------------------

    def limit_waits(self, seconds: float) -> None:
        self._wait_ms = max(1, round(seconds * 1000))  # (0 would be no limit to PostgreSQL)

    def write_batch(self, batch: Batch, prices: Any) -> None:
        conn = self._connection()
        if self._waits_set != (conn, self._wait_ms):
            # Session settings of the writer's connection, sent when the limit changes or the connection
            # is new: a lock another writer holds (a run's slot, the rollups') is waited for at most the
            # limit, then the batch is refused and kept for the next (`is_refusal`).
            conn.execute(
                "SELECT set_config('lock_timeout', %s, false), "
                "set_config('idle_in_transaction_session_timeout', %s, false)",
                (f"{self._wait_ms}ms", f"{STALLED_BATCH_S * 1000}ms"),
            )
            self._waits_set = (conn, self._wait_ms)
        if self._writer is None:
            self._writer = PostgresWriter(prices)
        calls = batch.rows[1]
        written = list(map(_totals_fields, calls)) if calls else []
        tables = [(t.name, t.columns, t.conflict, rows) for t, rows in zip(TABLES, batch.rows, strict=True)]
        # (a store a newer unitcost upgraded: rows only, their runs and tasks left marked for it)
        newer = bool(self.newer_migrations)
        try:
            self._writer.write(conn, tables, [] if newer else written, batch.drops, batch.service, prices,
                               rollups=batch.rollups and not newer, sums=not newer,
                               earlier_drops=batch.earlier_drops)
        except BaseException as exc:
            self._after_failure(exc)
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Result:
        conn = self._connection()
        try:
            if params:
                return conn.execute(_pyformat(sql), tuple(params))  # type: ignore[no-any-return]
            return conn.execute(sql)  # type: ignore[no-any-return]
        except BaseException as exc:
            self._after_failure(exc)
            raise

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                cur.executemany(_pyformat(sql), [tuple(r) for r in rows])
        except BaseException as exc:
            self._after_failure(exc)
            raise

    @contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self._connection()
        with conn.transaction():
            yield

    # (pg_catalog, not information_schema: its views check privileges row by row, 10-70 ms a report)
    def tables(self) -> set[str]:
        return {r[0] for r in self.execute(
            "SELECT relname FROM pg_catalog.pg_class WHERE relnamespace = current_schema()::regnamespace "
            "AND relkind IN ('r', 'p', 'v', 'm', 'f')"
        )}

    def columns(self, table: str) -> set[str]:
        return {r[0] for r in self.execute(
            "SELECT a.attname FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ? AND a.attnum > 0 "
            "AND NOT a.attisdropped", [table],
        )}

    def ensure_fresh(self, prices: Any = None) -> None:
        """As `unitcost.store.run_totals.ensure_fresh`: cheap when the sums agree with the calls."""
        self._connection()  # (what the store's migrations are is read on connecting)
        self.refuse_if_newer()
        self._ensure_sums(prices)
        conn = self._connection()
        if is_dirty(self.execute):  # rows written by something else
            with conn.transaction():
                refresh_rollups(conn.execute, "postgresql")

    def _ensure_sums(self, prices: Any) -> None:
        # The runs something other than the writer wrote calls of are marked (unitcost.store.stale_runs):
        # one row read when there are none.
        if not self.execute("SELECT EXISTS (SELECT 1 FROM run_sums_dirty)").fetchone()[0]:
            return
        if prices is None:
            from ..pricing.book import PriceBook  # start-up time: pydantic, as in unitcost.store.run_totals

            prices = PriceBook()
        conn = self._connection()
        with conn.transaction():
            stale = sorted({r for (r,) in conn.execute(TAKE_MARKS_SQL)})
            lock_runs(conn, stale)  # the writers' locks: one of them may be adding calls to these runs
            refresh_totals(conn, stale, prices)

    def migrations(self) -> list[str]:
        return applied_migrations(self._connection())

    def dropped_spans(self, since_ns: int | None = None, until_ns: int | None = None) -> int:
        # The loss file is the one a writer that could not reach this server kept (in the per-user
        # state directory, named from the URL without its password).
        losses = loss_file_for(self.url)
        return count_dropped(self.execute, "dropped_spans" in self.tables(), losses, since_ns, until_ns)

    def health(self, *, full_check: bool = True) -> dict[str, Any]:
        """`unitcost doctor`: the server, the role, the redacted URL, migrations, sizes, rows and
        dropped spans. Reads only (``full_check`` is SQLite's; PostgreSQL checks its pages itself)."""
        x = self.execute
        applied = applied_migrations(self._connection())
        known = [name for name, _ in MIGRATIONS]
        version, role, database, schema, superuser = x(
            "SELECT current_setting('server_version'), current_user, current_database(), current_schema(), "
            "current_setting('is_superuser')"
        ).fetchone()
        ssl = x("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        present = self.tables()
        sizes = {t: x("SELECT pg_total_relation_size(to_regclass(?))", [t]).fetchone()[0] for t in _ALL_TABLES
                 if t in present}
        rows = {t: x(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in STORE_TABLES if t in present}
        dropped, last_drop_ns = dropped_by_reason(x, "dropped_spans" in present, loss_file_for(self.url))
        warnings: list[str] = []
        if dropped:
            warnings.append(f"{sum(dropped.values())} span(s) were dropped instead of stored: reports are too low")
        pending = [name for name in known if name not in applied]
        if pending:
            warnings.append("schema migrations pending (applied when an instrumented program next opens the store)")
        if newer := [n for n in applied if n not in known]:
            warnings.append(NEWER_WARNING.format(", ".join(newer)))
        if superuser == "on":
            warnings.append(f"the role {role!r} is a superuser: give unitcost a role that owns only its store")
        return {
            "backend": "postgresql",
            "path": self.location,
            "server_version": version,
            "role": role,
            "database": database,
            "schema_name": schema,
            "ssl": bool(ssl and ssl[0]),
            "size_bytes": sum(v or 0 for v in sizes.values()),
            "table_bytes": sizes,
            "database_bytes": x("SELECT pg_database_size(current_database())").fetchone()[0],
            "schema": {"applied": applied, "pending": pending, "unknown": newer},
            "rows": rows,
            "dropped_spans": sum(dropped.values()),
            "dropped_by_reason": dropped,
            "last_drop_ns": last_drop_ns,
            "problems": [],
            "warnings": warnings,
            "ok": True,
        }

    def compact(self) -> None:
        # VACUUM gives a table's dead rows back to PostgreSQL for reuse, and ANALYZE keeps the planner's
        # counts right after a large prune (autocommit: VACUUM cannot run inside a transaction).
        conn = self._connection()
        for table in _ALL_TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")

    def is_refusal(self, exc: BaseException) -> bool:
        # (a lock held past `limit_waits`: another writer mid-batch, or one stalled until the server ends it)
        return isinstance(exc, StoreUnavailable) or server_gone(exc) or getattr(exc, "sqlstate", None) == _LOCK_WAIT


    def is_damage(self, exc: BaseException) -> bool:
        import psycopg  # (already loaded: this backend is in use)

        return isinstance(exc, psycopg.errors.DataCorrupted | psycopg.errors.IndexCorrupted)

    def close(self) -> None:
        self._drop_connection()
