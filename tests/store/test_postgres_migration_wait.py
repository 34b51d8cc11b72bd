"""Every wait of a PostgreSQL migration is bounded: a process whose migration cannot get a lock it needs
(another process migrating, a long transaction on a table the migration alters) gives up after
`MIGRATION_WAIT_S`, changes nothing, and says so; the SDK's writer treats it as a server it cannot reach
yet (keeps its batches, tries again after a backoff)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from conftest import make_older_postgres_store

from unitcost.cli.main import cli
from unitcost.store import postgres_schema
from unitcost.store.postgres import PostgresBackend, StoreUnavailable
from unitcost.store.postgres_schema import (
    MIGRATION_LOCK,
    MIGRATIONS,
    MigrationBusy,
    connect,
    migrate,
    pending_migrations,
)


def _held(url: str, statement: str) -> Any:
    """Another session holding a lock: the migration lock, or a table in an open transaction."""
    other = psycopg.connect(url)
    other.execute(statement)
    return other


def test_a_migration_waits_a_bounded_time_for_another_processs_then_says_so(pg_url: str) -> None:
    other = _held(pg_url, f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")  # (until `other` commits)
    conn = connect(pg_url)
    try:
        started = time.monotonic()
        with pytest.raises(MigrationBusy, match=r"waited 0\.5 s for another process's migration"):
            migrate(conn, wait=0.5)
        assert time.monotonic() - started < 30  # (bounded; not a timing assertion on 0.5 s itself)
        assert pending_migrations(conn) == [name for name, _ in MIGRATIONS]  # nothing was made
        conn.rollback()
    finally:
        other.rollback()
        other.close()
    assert migrate(conn, wait=0.5) == [name for name, _ in MIGRATIONS]
    conn.close()


def test_a_long_transaction_on_a_table_the_migration_alters_bounds_its_wait(pg_url: str) -> None:
    with connect(pg_url, autocommit=True) as conn:
        make_older_postgres_store(conn)  # the first four migrations: the next ones alter `calls`
    reader = _held(pg_url, "LOCK TABLE calls IN ACCESS SHARE MODE")  # a long report reading the calls
    conn = connect(pg_url)
    try:
        with pytest.raises(MigrationBusy):
            migrate(conn, wait=0.5)
        assert pending_migrations(conn) == [name for name, _ in MIGRATIONS[4:]]  # rolled back whole
        conn.rollback()
    finally:
        reader.rollback()
        reader.close()
    assert migrate(conn, wait=0.5) == [name for name, _ in MIGRATIONS[4:]]
    conn.close()


def test_the_writer_keeps_its_batches_and_a_command_says_why(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_schema, "MIGRATION_WAIT_S", 0.3)
    with connect(pg_url, autocommit=True) as conn:
        make_older_postgres_store(conn)  # (a store for `unitcost migrate` to bring up to date)
    other = _held(pg_url, f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    try:
        # The SDK's store (create=True, as `configure()` opens it) while the lock is held: no error at start ...
        store = PostgresBackend(pg_url)
        with pytest.raises(StoreUnavailable) as caught:
            store.execute("SELECT 1")
        # ... and what it meets is a refusal, so the pipeline keeps the batch and tries again later.
        assert store.is_refusal(caught.value)
        with pytest.raises(StoreUnavailable, match="being migrated by another process; next try in"):
            store.execute("SELECT 1")  # (within the backoff: no new connection, the reason kept)
        result = CliRunner().invoke(cli, ["migrate", "--db", pg_url])
        assert result.exit_code == 1
        assert "another process's migration" in result.output
        assert "Traceback" not in result.output
    finally:
        other.rollback()
        other.close()
    store._retry_at = 0.0  # (skip the backoff: the next try comes now)
    assert store.execute("SELECT COUNT(*) FROM _unitcost_migrations").fetchone()[0] == len(MIGRATIONS)
    store.close()
