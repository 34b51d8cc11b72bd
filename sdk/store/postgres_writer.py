"""Writing batches of rows into a PostgreSQL store: one transaction a batch, idempotent on span id.

Each table's rows go by binary COPY into a temporary table (the fastest way into PostgreSQL), then
``INSERT ... SELECT ... ON CONFLICT`` moves them into place: a span written twice (a batch resent
after the server went away mid-commit, a replay, two `unitcost serve` processes behind one
collector) is one row, the later version winning as with SQLite's INSERT OR REPLACE; an outcome
already stored (same origin span) is not added again.

The per-run sums are kept exactly as the SQLite writer keeps them (`unitcost.store.run_totals`): the
runs a batch touches are summed again. Many writers may hold calls of one run at once (processes on
many hosts behind one collector), so a batch first takes a transaction-level advisory lock on each
run it touches, in one order (no deadlock): the second writer then sees the first one's calls. The
locks are on `RUN_LOCK_SLOTS` slots of the run ids' hash, not on each run: the server keeps every
advisory lock in a shared table (max_locks_per_transaction x max_connections slots, 6,400 by
default), which a few writers each holding a lock per run of a 2,048-span batch would fill ("out of
shared memory"). Two batches whose runs share a slot wait for each other, briefly.
"""

from __future__ import annotations

import itertools
import json
import operator
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .rollups import refresh as refresh_rollups
from .run_totals import CALL_FIELDS, COLUMNS, add_up
from .stale_runs import KEEPS_SUMS

__all__ = ["CONFLICT_KEYS", "PostgresWriter", "TableRows", "lock_runs", "refresh_totals"]

# A table -> the column that says two rows are the same row.
CONFLICT_KEYS = {"runs": "run_id", "calls": "span_id", "steps": "span_id", "call_content": "span_id",
                 "outcomes": "origin"}
_RUN_COLUMNS = ("run_id", *COLUMNS[3:])

# (table, columns, conflict, rows): conflict is "replace" (the later row wins) or "ignore" (the stored
# row stays), as `unitcost.store.backend.TABLES` names them.
TableRows = tuple[str, Sequence[str], str, Sequence[Sequence[Any]]]


def _clean(value: Any) -> Any:
    """Text PostgreSQL accepts: no NUL character, no lone surrogate (SQLite takes both)."""
    if isinstance(value, str):
        return value.replace("\x00", "?").encode("utf-8", "replace").decode("utf-8")
    return value


class PostgresWriter:
    """Writes batches on one connection (the backend's, which reconnects it). Not thread-safe: the store
    writer's thread owns it."""

    def __init__(self, prices: Any) -> None:
        self._prices = prices
        self._types: dict[str, dict[str, str]] = {}  # table -> column -> PostgreSQL type name
        self._staged: set[str] = set()  # temporary tables made on the current connection
        self._conn: Any = None

    def write(
        self, conn: Any, tables: Sequence[TableRows], written_calls: Sequence[tuple[Any, ...]],
        drops: Mapping[str, int], service: str = "", prices: Any = None, *, rollups: bool = True,
        sums: bool = True, earlier_drops: Sequence[tuple[int, str, int, str]] = (),
    ) -> None:
        """One batch in one transaction: the rows, the per-run sums of the runs ``written_calls`` touch
        (as (span_id, started_ns, *CALL_FIELDS) tuples), and the drops counted since the last batch.
        ``rollups``: make the touched tasks' rollups again now (else they stay marked: `Batch.rollups`);
        ``sums``: this transaction keeps its calls' sums (else the store's triggers mark their runs stale);
        ``earlier_drops``: counts an earlier writer kept beside the store (`Batch.earlier_drops`), moved in."""
        if conn is not self._conn:  # a new connection: its temporary tables are still to make
            self._conn, self._staged = conn, set()
        prices = prices if prices is not None else self._prices
        try:
            self._write(tables, written_calls, drops, service, prices, rollups, sums, earlier_drops)
        except Exception as exc:
            # Text PostgreSQL cannot hold (a NUL, a lone surrogate) fails the whole batch: once more, cleaned.
            if conn.broken or conn.closed or not (
                isinstance(exc, _Unclean | UnicodeError) or type(exc).__name__ in _UNCLEAN_ERRORS
            ):
                raise
            self._write(clean_rows(tables), written_calls, drops, service, prices, rollups, sums, earlier_drops)

    def _write(
        self, tables: Sequence[TableRows], written_calls: Sequence[tuple[Any, ...]], drops: Mapping[str, int],
        service: str, prices: Any, rollups: bool, sums: bool, earlier_drops: Sequence[tuple[int, str, int, str]],
    ) -> None:
        conn = self._conn
        try:
            with conn.transaction():
                runs = sorted({c[2] for c in written_calls if c[2] is not None}) if sums else []
                if sums:
                    lock_runs(conn, runs, writer=True)
                for table, columns, verb, rows in tables:
                    if rows and not self._copy_in(table, tuple(columns), rows):
                        self._upsert(table, tuple(columns), verb, rows)
                if runs:
                    refresh_totals(conn, runs, prices, written_calls)
                if rollups:
                    refresh_rollups(conn.execute, "postgresql")  # the tasks the rows touched (unitcost.store.rollups)
                now = time.time_ns()
                counted = [*((now, reason, n, service) for reason, n in drops.items()), *earlier_drops]
                if counted:
                    with conn.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO dropped_spans (recorded_ns, reason, count, service) VALUES (%s, %s, %s, %s)",
                            counted,
                        )
        except BaseException:
            self._staged.clear()  # (a temporary table made in the failed transaction went with it)
            raise

    def _column_types(self, table: str) -> dict[str, str]:
        if table not in self._types:
            self._types[table] = dict(self._conn.execute(
                "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped", (table,)
            ).fetchall())
        return self._types[table]

    def _copy_in(self, table: str, columns: tuple[str, ...], rows: Sequence[Sequence[Any]]) -> bool:
        """COPY the rows straight into the table when none of them is already there: True when done.

        Nearly every batch holds only new rows, and a plain COPY is the least PostgreSQL can do for
        them (the stage's COPY plus ``INSERT ... SELECT ... ON CONFLICT`` cost ~2x as much, measured).
        A row whose key is stored already (a batch resent after the server went away mid-commit, a
        replay, two `serve` processes behind one collector) fails the COPY: it is undone to its
        savepoint and the batch's rows of this table take the upsert (False). Rows repeating a key
        within the batch go to the upsert at once (the later one wins there)."""
        key_at = columns.index(CONFLICT_KEYS[table])
        if len({row[key_at] for row in rows}) != len(rows):
            return False
        conn = self._conn
        types = self._column_types(table)
        try:
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types([types[c] for c in columns])
                write_row = copy.write_row
                try:
                    for row in rows:
                        write_row(row)
                except UnicodeEncodeError:
                    raise _Unclean() from None
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
                raise
            return False
        return True

    def _upsert(self, table: str, columns: tuple[str, ...], verb: str, rows: Sequence[Sequence[Any]]) -> None:
        conn = self._conn
        stage = f"uc_stage_{table}"
        if stage not in self._staged:
            conn.execute(
                # (PRESERVE ROWS and a DELETE after use: ON COMMIT DELETE ROWS truncates every such
                # table at every commit, a file operation each)
                f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT PRESERVE ROWS AS "
                f"SELECT 0::bigint AS uc_order, {', '.join(columns)} FROM {table} WITH NO DATA"
            )
            self._staged.add(stage)
        types = self._column_types(table)
        listed = ", ".join(columns)
        with conn.cursor() as cur:
            with cur.copy(f"COPY {stage} (uc_order, {listed}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", *(types[c] for c in columns)])
                try:
                    for i, row in enumerate(rows):
                        copy.write_row((i, *row))
                except UnicodeEncodeError:
                    raise _Unclean() from None
            key = CONFLICT_KEYS[table]
            if verb in ("ignore", "INSERT OR IGNORE"):
                cur.execute(
                    f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {stage} ORDER BY uc_order "
                    f"ON CONFLICT ({key}) DO NOTHING"
                )
            else:
                updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c != key)
                cur.execute(
                    f"INSERT INTO {table} ({listed}) SELECT DISTINCT ON ({key}) {listed} FROM {stage} "
                    f"ORDER BY {key}, uc_order DESC ON CONFLICT ({key}) DO UPDATE SET {updates}"
                )
            cur.execute(f"DELETE FROM {stage}")  # (in the batch's transaction: a failed batch leaves none)


_UNIQUE_VIOLATION = "23505"
# psycopg's errors for text PostgreSQL refuses (by name: psycopg is imported only when it is used).
_UNCLEAN_ERRORS = {"DataError", "CharacterNotInRepertoire", "UntranslatableCharacter"}


class _Unclean(ValueError):
    """A row holds text PostgreSQL cannot store as it is (see `clean_rows`)."""


def clean_rows(tables: Sequence[TableRows]) -> list[TableRows]:
    """The same rows with text PostgreSQL can store (NUL and lone surrogates replaced)."""
    return [(t, c, v, [tuple(_clean(x) for x in row) for row in rows]) for t, c, v, rows in tables]


RUN_LOCK_SLOTS = 64
_RUN_LOCK_BASE = 0x756E697472756E00  # "unitrun\0": slot n is this + n, clear of other advisory locks


def lock_runs(conn: Any, runs: Sequence[str], *, writer: bool = False) -> None:
    """Lock these runs' slots until the transaction ends (the writer's batches, `ensure_fresh`). ``writer``:
    this transaction also writes calls and keeps their sums (`unitcost.store.stale_runs`): one round trip."""
    # (the locks are taken in slot order by every writer, so two batches never wait on each other in a circle)
    locks = (
        "(SELECT COUNT(pg_advisory_xact_lock(%s + k)) FROM (SELECT DISTINCT abs(hashtextextended(r, 0) %% %s) "
        f"AS k FROM {_IDS} AS r ORDER BY k) AS keys)"
    )
    params = (_RUN_LOCK_BASE, RUN_LOCK_SLOTS, _ids(runs))
    if writer:
        conn.execute(f"SELECT set_config(%s, 'on', true), {locks}", (KEEPS_SUMS, *params))
    elif runs:
        conn.execute(f"SELECT {locks}", params)


# A list of ids as one parameter: JSON text, made by json.dumps in C (psycopg's array of 2,048 strings is
# dumped in Python, ~8 ms a batch), read by the server as a set of text values.
_IDS = "jsonb_array_elements_text(%s::jsonb)"


def _ids(ids: Sequence[str]) -> str:
    return json.dumps(list(ids))


_started = operator.itemgetter(1, 0)  # start order, the span id breaking ties (as SQLite's writer)


def refresh_totals(
    conn: Any, run_ids: Sequence[str], prices: Any, written: Iterable[tuple[Any, ...]] | None = None
) -> None:
    """Recompute `run_totals` and `run_sums` for these runs from their calls, inside the caller's
    transaction (the PostgreSQL form of `unitcost.store.run_totals.refresh`: a run without sums yet
    is summed from the calls just written, any other from the store)."""
    ids = sorted(set(run_ids))
    # run -> span -> the call as written, (span_id, started_ns, *CALL_FIELDS): kept as it is (no tuple made
    # again a call), its CALL_FIELDS sliced once for add_up
    fresh: dict[str, dict[Any, tuple[Any, ...]]] = {}
    for call in written or ():
        run = fresh.get(call[2])
        if run is None:
            fresh[call[2]] = {call[0]: call}
        else:
            run[call[0]] = call
    known = {r for (r,) in conn.execute(f"SELECT run_id FROM run_sums WHERE run_id IN (SELECT {_IDS})", (_ids(ids),))}
    new = [r for r in ids if r not in known and r in fresh]
    old = [r for r in ids if r in known or r not in fresh]
    rows: list[Iterable[tuple[Any, ...]]] = []
    if old:
        listed = _ids(old)
        conn.execute(f"DELETE FROM run_totals WHERE run_id IN (SELECT {_IDS})", (listed,))
        conn.execute(f"DELETE FROM run_sums WHERE run_id IN (SELECT {_IDS})", (listed,))
        rows.append(conn.execute(
            f"SELECT {', '.join(CALL_FIELDS)} FROM calls WHERE run_id IN (SELECT {_IDS}) "
            "ORDER BY run_id, started_ns, span_id",
            (listed,),
        ).fetchall())
    for run_id in new:
        calls = fresh[run_id].values()
        rows.append([c[2:] for c in (calls if len(calls) == 1 else sorted(calls, key=_started))])
    sums = add_up(itertools.chain(*rows), prices, {})
    per_run: dict[str, list[Any]] = {}
    for (run_id, _, _), acc in sums.items():
        total = per_run.get(run_id)
        per_run[run_id] = list(acc) if total is None else [a + b for a, b in zip(total, acc, strict=True)]
    with conn.cursor() as cur:
        with cur.copy(f"COPY run_totals ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text"] * 3 + ["int8"] * (len(COLUMNS) - 3))
            for key, acc in sums.items():
                copy.write_row((*key, *acc))
        with cur.copy(f"COPY run_sums ({', '.join(_RUN_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["text"] + ["int8"] * (len(_RUN_COLUMNS) - 1))
            for run_id, acc in per_run.items():
                copy.write_row((run_id, *acc))
