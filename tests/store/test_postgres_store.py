"""The PostgreSQL store: migrations once under many processes, idempotent batch writes with the same
per-run sums as SQLite, dropped-span counts, libpq's environment, and no password anywhere."""

from __future__ import annotations

import multiprocessing
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from conftest import make_older_postgres_store

from unitcost.common.errors import StoreError
from unitcost.exporters.store import CALL_COLUMNS
from unitcost.pricing.book import PriceBook
from unitcost.store import run_totals
from unitcost.store.postgres import PostgresBackend
from unitcost.store.postgres_schema import (
    MIGRATIONS,
    connect,
    migrate,
    open_connection,
    pending_migrations,
    redact_url,
    without_password,
)
from unitcost.store.postgres_writer import PostgresWriter
from unitcost.store.run_totals import CALL_FIELDS
from unitcost.store.schema import open_store

_TOTALS = [CALL_COLUMNS.index(c) for c in ("span_id", "started_ns", *CALL_FIELDS)]


def call_row(n: int, run_id: str | None, model: str = "gpt-4o-mini-2024-07-18", **changes: Any) -> tuple[Any, ...]:
    values = dict.fromkeys(CALL_COLUMNS, 0) | {
        "span_id": f"{n:016x}", "trace_id": f"{n:032x}", "parent_span_id": None, "run_id": run_id,
        "started_ns": 1_764_061_200_000_000_000 + n, "ended_ns": 1_764_061_200_000_000_500 + n,
        "provider": "openai", "operation": "chat", "model": model, "response_model": None,
        "input_tokens": 1000 + n, "cache_read_tokens": 200, "output_tokens": 50, "reasoning_tokens": 5,
        "cost_pico": 10_000 * n if n % 7 else None, "reasoning_cost_pico": 3, "price_source": "genai-prices",
        "error_type": None, "service_tier": None, "price_modifiers": None, "usage_parts": None,
        # (m014_call_energy) a range for most calls, none (unestimated) for every fifth
        "energy_uwh_min": 100 * n if n % 5 else None, "energy_uwh_max": 300 * n if n % 5 else None,
        "gwp_ug_min": 40 * n if n % 5 else None, "gwp_ug_max": 90 * n if n % 5 else None,
        "energy_source": "unitcost.toml" if n % 5 else None,
    }
    values.update(changes)
    return tuple(values[c] for c in CALL_COLUMNS)


def written(calls: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(row[i] for i in _TOTALS) for row in calls]


def test_a_new_store_has_every_migration_by_its_sqlite_name_and_the_same_columns(pg_url: str, tmp_path: Any) -> None:
    conn = open_connection(pg_url)
    assert pending_migrations(conn) == []
    applied = [r[0] for r in conn.execute("SELECT name FROM _unitcost_migrations ORDER BY applied_order")]
    sqlite_db = open_store(tmp_path / "s.db")
    sqlite_names = [r[0] for r in sqlite_db.execute("SELECT name FROM _sqlite_migrations ORDER BY rowid")]
    assert applied == sqlite_names == [name for name, _ in MIGRATIONS]
    for table in ("runs", "calls", "steps", "outcomes", "call_content", "run_totals", "run_sums", "dropped_spans"):
        pg_columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = %s ORDER BY ordinal_position", (table,))]
        assert pg_columns == list(sqlite_db[table].columns_dict), table
    assert migrate(conn) == []  # a second time: nothing
    conn.close()


def _migrate(url: str) -> list[str]:
    conn = connect(url)
    try:
        return migrate(conn)
    finally:
        conn.close()


def test_many_processes_opening_a_new_store_at_once_apply_each_migration_once(pg_url: str) -> None:
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        # Bounded: a worker that dies mid-task makes a plain map() wait for ever.
        results = pool.map_async(_migrate, [pg_url] * 6).get(timeout=120)
    assert sorted(map(len, results)) == [0] * 5 + [len(MIGRATIONS)]
    with connect(pg_url) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT name) FROM _unitcost_migrations").fetchone() == (
            len(MIGRATIONS), len(MIGRATIONS))


def test_an_older_store_is_migrated_in_place(pg_url: str) -> None:
    conn = connect(pg_url)
    make_older_postgres_store(conn)  # the first four migrations
    conn.execute("INSERT INTO runs (run_id, trace_id, kind, started_ns, ended_ns) VALUES ('r', 't', 'k', 1, 2)")
    assert migrate(conn) == [name for name, _ in MIGRATIONS[4:]]
    assert conn.execute("SELECT run_id FROM runs").fetchall() == [("r",)]
    conn.close()


def test_a_foreign_schema_is_refused(pg_url: str) -> None:
    with connect(pg_url) as conn:
        conn.execute("CREATE TABLE runs (id int)")
        conn.commit()
    with pytest.raises(StoreError, match="not a unitcost store"):
        open_connection(pg_url)


def test_a_batch_written_twice_is_one_row_each_with_the_sums_sqlite_keeps(pg_url: str, tmp_path: Any) -> None:
    prices = PriceBook()
    calls = [call_row(n, f"run{n % 3}", model="gpt-4o-mini-2024-07-18" if n % 2 else "gpt-4o") for n in range(1, 40)]
    calls.append(call_row(99, None))
    late = [call_row(n, "run1", input_tokens=5) for n in range(40, 45)]  # a run's calls arriving in a later batch
    writer, conn = PostgresWriter(prices), open_connection(pg_url)
    table = ("calls", CALL_COLUMNS, "replace")
    writer.write(conn, [(*table, calls)], written(calls), {"queue_full": 2})
    writer.write(conn, [(*table, calls)], written(calls), {})  # resent after a failed commit: nothing doubles
    writer.write(conn, [(*table, late + late)], written(late + late), {"export_failed": 1})
    conn.close()

    sqlite_db = open_store(tmp_path / "s.db")
    conn = sqlite_db.conn
    conn.execute("BEGIN")
    for batch in (calls, late):
        conn.executemany(f"INSERT OR REPLACE INTO calls ({', '.join(CALL_COLUMNS)}) VALUES "
                         f"({', '.join('?' * len(CALL_COLUMNS))})", batch)
        run_totals.refresh(conn, {r[3] for r in batch}, prices, written(batch))
    conn.execute("COMMIT")
    order = "ORDER BY run_id, provider, model"
    with connect(pg_url) as pg:
        assert pg.execute("SELECT COUNT(*) FROM calls").fetchone() == (45,)
        assert pg.execute(f"SELECT * FROM run_totals {order}").fetchall() == conn.execute(
            f"SELECT * FROM run_totals {order}").fetchall()
        assert pg.execute("SELECT * FROM run_sums ORDER BY run_id").fetchall() == conn.execute(
            "SELECT * FROM run_sums ORDER BY run_id").fetchall()
        assert pg.execute("SELECT reason, count FROM dropped_spans ORDER BY id").fetchall() == [
            ("queue_full", 2), ("export_failed", 1)]
    with PostgresBackend(pg_url, create=False) as backend:
        assert backend.health()["dropped_spans"] == backend.dropped_spans() == 3


def test_outcomes_replayed_are_not_added_twice_and_text_postgres_refuses_is_cleaned(pg_url: str) -> None:
    columns = ("recorded_ns", "run_id", "kind", "key", "label", "success", "value_pico", "source", "origin")
    outcomes = [
        (10, "r", "k", "a\x00b", "resolved", 1, None, "inline", "o1"), (11, None, "k", "x", "no", 0, 5, "late", "o2"),
    ]
    writer, conn = PostgresWriter(PriceBook()), open_connection(pg_url)
    for _ in range(2):
        writer.write(conn, [("outcomes", columns, "ignore", outcomes)], [], {})
    conn.close()
    with connect(pg_url) as pg:
        assert pg.execute("SELECT id, key, origin FROM outcomes ORDER BY id").fetchall() == [
            (1, "a?b", "o1"), (2, "x", "o2")]


def test_libpq_environment_variables_and_sslmode_work(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = urlsplit(pg_url)
    # (a context of its own: the pg_url fixture's clean-up must not see these)
    with monkeypatch.context() as env:
        env.setenv("PGHOST", parts.hostname or "")
        env.setenv("PGPORT", str(parts.port))
        env.setenv("PGUSER", parts.username or "")
        env.setenv("PGDATABASE", parts.path.lstrip("/"))
        env.setenv("PGOPTIONS", parts.query.partition("options=")[2].replace("%3D", "="))
        env.setenv("PGSSLMODE", "disable")
        with open_connection("postgresql://") as conn:
            assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
        env.setenv("PGSSLMODE", "require")  # the test server has no TLS: libpq must refuse
        with pytest.raises(StoreError, match="SSL"):
            connect("postgresql://")


def test_the_password_never_appears_in_errors_or_doctor(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    secret = "hunter2-Secret"
    url = pg_url.replace(f"{parts.username}@", f"{parts.username}:{secret}@")
    open_connection(url).close()
    health = PostgresBackend(url).health() if _trusts_passwords(url) else None
    if health is not None:
        assert secret not in repr(health) and health["path"].startswith(f"postgresql://{parts.username}:***@")
    wrong_port = url.replace(f":{parts.port}/", ":1/")
    with pytest.raises(StoreError) as caught:
        connect(wrong_port, connect_timeout=2)
    assert secret not in str(caught.value) and "***" in str(caught.value)
    assert redact_url("postgresql://app:s3cret@db:5432/costs?sslmode=require&password=x") == (
        "postgresql://app:***@db:5432/costs?sslmode=require&password=***")
    assert "s3cret" not in without_password("FATAL for postgresql://app:s3cret@db/c password=s3cret",
                                            "postgresql://app:s3cret@db/c")


def _trusts_passwords(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=5).close()
        return True
    except psycopg.OperationalError:
        return False



def test_a_store_from_before_energy_counts_its_calls_as_unestimated(pg_url: str) -> None:
    # m014_call_energy on a store with sums: every call stored before it has no estimate.
    before = [name for name, _ in MIGRATIONS].index("m014_call_energy")
    conn = connect(pg_url)
    make_older_postgres_store(conn, before)
    with conn.transaction():
        conn.execute("INSERT INTO run_sums (run_id, calls) VALUES ('r', 3)")
        conn.execute("INSERT INTO run_totals (run_id, provider, model, calls) VALUES ('r', 'openai', 'm', 3)")
    assert migrate(conn) == [name for name, _ in MIGRATIONS[before:]]
    assert conn.execute("SELECT unestimated_energy_calls, energy_uwh_min FROM run_sums").fetchall() == [(3, 0)]
    assert conn.execute("SELECT unestimated_energy_calls, gwp_ug_max FROM run_totals").fetchall() == [(3, 0)]
    conn.close()


def test_settings_are_kept_on_postgresql_the_latest_winning(pg_url: str) -> None:
    from unitcost.store.settings import recall, remember

    with PostgresBackend(pg_url) as backend:
        assert recall(backend, "user_attribute") is None
        remember(backend, "user_attribute", "customer")
        remember(backend, "user_attribute", "tenant")
        assert recall(backend, "user_attribute") == "tenant"


def test_a_batch_of_thousands_of_runs_takes_few_locks(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run locks are slots of the runs' hash: a batch touching more runs than the server's shared
    lock table holds (max_locks_per_transaction x max_connections, 6,400 by default) holds at most
    RUN_LOCK_SLOTS advisory locks while it is written (before: one a run, 13,299 here)."""
    import unitcost.store.postgres_writer as postgres_writer

    with connect(pg_url) as pg:
        slots = int(pg.execute("SHOW max_locks_per_transaction").fetchone()[0]) * int(
            pg.execute("SHOW max_connections").fetchone()[0])
    calls = [call_row(n, f"run{n}") for n in range(1, slots + 500)]  # one run each: more runs than slots
    held: list[int] = []
    real_refresh = postgres_writer.refresh_totals

    def counting_refresh(conn: Any, *args: Any, **kwargs: Any) -> Any:  # inside the batch's transaction
        held.append(conn.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND pid = pg_backend_pid()").fetchone()[0])
        return real_refresh(conn, *args, **kwargs)

    monkeypatch.setattr(postgres_writer, "refresh_totals", counting_refresh)
    writer, conn = PostgresWriter(PriceBook()), open_connection(pg_url)
    try:
        writer.write(conn, [("calls", CALL_COLUMNS, "replace", calls)], written(calls), {})
    finally:
        conn.close()
    assert held and 0 < held[0] <= postgres_writer.RUN_LOCK_SLOTS
    with connect(pg_url) as pg:
        assert pg.execute("SELECT COUNT(*) FROM calls").fetchone() == (len(calls),)
        assert pg.execute("SELECT COUNT(*) FROM run_sums").fetchone() == (len(calls),)


def test_spans_a_writer_could_not_store_count_as_dropped_until_moved_in(
    pg_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A writer that could not reach the server counted its losses in the loss file named from the URL
    # (unitcost.store.losses): reports and doctor add them to the table's, by the one rule SQLite's use.
    from unitcost.store.losses import loss_file_for

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    writer, conn = PostgresWriter(PriceBook()), open_connection(pg_url)
    writer.write(conn, [], [], {"queue_full": 2})
    conn.close()
    loss_file_for(pg_url).add({"store_unavailable": 5})
    with PostgresBackend(pg_url, create=False) as backend:
        assert backend.dropped_spans() == 7
        health = backend.health()
        assert health["dropped_spans"] == 7
        assert health["dropped_by_reason"] == {"queue_full": 2, "store_unavailable": 5}
        (recorded,) = [ns for ns, *_ in loss_file_for(pg_url).read()]
        assert health["last_drop_ns"] >= recorded
        assert backend.dropped_spans(since_ns=recorded + 1) == 0  # the window applies to both
