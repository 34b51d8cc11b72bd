"""Every wait on a PostgreSQL store is bounded.

- A process whose migration cannot get a lock it needs (another process migrating, a long transaction
  on a table the migration alters) gives up after `MIGRATION_WAIT_S`, changes nothing, and says so; the
  SDK's writer treats it as a server it cannot reach yet (keeps its batches, tries again after a backoff).
- A writer whose batch needs a lock another writer holds (a run's slot, the rollups') waits at most its
  limit (`limit_waits`: 10 s, less at flush and exit), then keeps the batch for its next try: `flush`
  and the program's exit stay bounded, and what is not stored by then is counted where `doctor` looks.
- A writer stalled in the middle of its batch (its process stopped, its host cut off) has its
  transaction ended by the server after `STALLED_BATCH_S`, so the locks it held are freed for the others.
- A connection whose network path dies without a word (no RST) notices within `UNACKED_SEND_S` (TCP
  keepalives and a user timeout on its socket) rather than the kernel's 15 min to 2 h; the URL's own
  settings, or a PGSERVICE file's, win. (Checked on the socket: a network cannot be cut here.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from click.testing import CliRunner
from conftest import _pg_missing, make_older_postgres_store

import unitcost
from unitcost.cli.main import cli
from unitcost.exporters.store import EXIT_WAIT_SECONDS
from unitcost.store import postgres, postgres_schema
from unitcost.store.backend import TABLES, Batch
from unitcost.store.postgres import PostgresBackend, StoreUnavailable
from unitcost.store.postgres_schema import (
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE_S,
    KEEPALIVE_INTERVAL_S,
    MIGRATION_LOCK,
    MIGRATIONS,
    UNACKED_SEND_S,
    MigrationBusy,
    connect,
    migrate,
    pending_migrations,
)
from unitcost.store.postgres_writer import _RUN_LOCK_BASE, RUN_LOCK_SLOTS
from unitcost.store.rollups import ROLLUP_LOCK


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


_WRITER = textwrap.dedent(
    """
    import json, sys, time, unitcost
    unitcost.configure(service_name="blocked", db=sys.argv[1])
    for i in range(int(sys.argv[2])):
        with unitcost.task("ticket", key=f"T-{i}"):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=100, output_tokens=10)
    started = time.monotonic()
    flushed = unitcost.flush(timeout_seconds=1)
    print(json.dumps({"flushed": flushed, "flush_s": time.monotonic() - started}), flush=True)
    """
)


def _every_writer_lock(url: str) -> Any:
    """A session holding what a writer's batch needs, as a writer stalled mid-batch would."""
    holder = psycopg.connect(url, autocommit=True)
    holder.execute("SELECT pg_advisory_lock(%s + k) FROM generate_series(0, %s - 1) AS k",
                   (_RUN_LOCK_BASE, RUN_LOCK_SLOTS))
    holder.execute("SELECT pg_advisory_lock(%s)", (ROLLUP_LOCK,))
    return holder


def test_a_writer_blocked_by_another_bounds_flush_and_exit_and_counts_the_loss(pg_url: str) -> None:
    tasks = 40
    with connect(pg_url, autocommit=True) as conn:
        migrate(conn)
    holder = _every_writer_lock(pg_url)
    try:
        # Before: the batch waited on the locks for as long as they were held, and so did the exit.
        proc = subprocess.run(
            [sys.executable, "-c", _WRITER, pg_url, str(tasks)], capture_output=True, text=True,
            timeout=60 + EXIT_WAIT_SECONDS, env={**os.environ, "UNITCOST_STRICT": "0"},
        )
    finally:
        holder.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["flushed"] is False
    assert result["flush_s"] < 1 + 10, result  # returned by its timeout (slack for a loaded machine)

    # Counted where doctor looks; the next writer, with the locks free, moves the count into the store.
    runner = CliRunner()
    doctor = json.loads(runner.invoke(cli, ["doctor", "--db", pg_url, "--format", "json"]).output)
    assert doctor["dropped_spans"] == 2 * tasks, doctor
    unitcost.configure(db=pg_url)
    try:
        with unitcost.task("ticket", key="after"):
            pass
        assert unitcost.flush()
    finally:
        unitcost.shutdown()
    with connect(pg_url) as conn:
        assert conn.execute("SELECT SUM(count) FROM dropped_spans").fetchone()[0] == 2 * tasks
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1


def test_a_batch_refused_for_a_lock_is_kept_and_written_when_it_is_free(pg_url: str) -> None:
    store = PostgresBackend(pg_url)
    store.limit_waits(0.3)
    holder = _every_writer_lock(pg_url)
    run = {"run_id": "r-1", "trace_id": "t-1", "kind": "ticket", "key": "K-1", "service": "", "attributes": "{}",
           "started_ns": 1_764_061_200_000_000_000, "ended_ns": 1_764_061_200_000_000_500}
    rows = tuple([] for _ in TABLES)
    runs_at = [t.name for t in TABLES].index("runs")
    rows[runs_at].append(tuple(run.get(c) for c in TABLES[runs_at].columns))  # (its task's rollup needs a lock)
    try:
        with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
            store.write_batch(Batch(rows), None)
        assert store.is_refusal(caught.value)  # kept for the next batch, not dropped
    finally:
        holder.close()
    store.write_batch(Batch(rows), None)
    assert store.execute("SELECT run_id, kind FROM runs").fetchall() == [("r-1", "ticket")]
    store.close()


def test_a_writer_stalled_mid_batch_has_its_transaction_ended_by_the_server(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "STALLED_BATCH_S", 1)
    store = PostgresBackend(pg_url)
    store.write_batch(Batch(tuple([] for _ in TABLES)), None)  # (the writer's session settings are sent)
    other = psycopg.connect(pg_url, autocommit=True)
    slot = _RUN_LOCK_BASE + 7
    with pytest.raises(psycopg.Error) as caught, store.transaction():
        store.execute("SELECT pg_advisory_xact_lock(?)", [slot])  # mid-batch, holding a run's slot ...
        # ... and stalled: the other writer gets the slot once the server has ended the stalled transaction
        deadline = time.monotonic() + 60
        while not other.execute("SELECT pg_try_advisory_lock(%s)", (slot,)).fetchone()[0]:
            assert time.monotonic() < deadline, "the stalled batch's lock was never freed"
            time.sleep(0.2)
    other.close()
    assert store.is_refusal(caught.value)  # the stalled writer's batch is kept and tried again
    time.sleep(0.2)  # (its backoff after a lost connection: 0.1 s)
    assert store.execute("SELECT 1").fetchone() == (1,)  # on a new connection
    store.close()


# --- a dead network path: TCP keepalives and a user timeout on each connection ----------------------

_DEAD_PEER_OPTIONS = ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout")


def _dead_peer_options(conn: Any) -> dict[str, str | None]:
    """What libpq connected with (PQconninfo lists every option, the client-side ones too)."""
    return {
        option.keyword.decode(): None if option.val is None else option.val.decode()
        for option in conn.pgconn.info
        if option.keyword.decode() in _DEAD_PEER_OPTIONS
    }


def _on_the_socket(conn: Any) -> tuple[int, int, int, int, int]:
    """What the kernel holds for the connection's TCP socket: keepalive on, its idle, interval and count,
    and the user timeout (ms)."""
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:  # (a copy of the descriptor, closed here)
        assert sock.family in (socket.AF_INET, socket.AF_INET6), "the test server is reached over TCP"
        return (
            int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        )


_OURS = {
    "keepalives": "1", "keepalives_idle": str(KEEPALIVE_IDLE_S), "keepalives_interval": str(KEEPALIVE_INTERVAL_S),
    "keepalives_count": str(KEEPALIVE_COUNT), "tcp_user_timeout": str(UNACKED_SEND_S * 1000),
}


def test_a_connection_notices_a_dead_network_path_in_under_a_minute(pg_url: str) -> None:
    # (the kernel's defaults: keepalives after 2 h idle, retransmissions for ~15 min)
    assert KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT < 60 and UNACKED_SEND_S < 60
    with connect(pg_url) as conn:
        assert _dead_peer_options(conn) == _OURS
        assert _on_the_socket(conn) == (
            1, KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT, UNACKED_SEND_S * 1000
        )
    store = PostgresBackend(pg_url)  # the SDK's writer connects the same way
    try:
        assert _on_the_socket(store._connection()) == (
            1, KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT, UNACKED_SEND_S * 1000
        )
    finally:
        store.close()


def test_the_urls_own_keepalive_settings_win(pg_url: str) -> None:
    with connect(f"{pg_url}&keepalives_idle=7&tcp_user_timeout=0") as conn:  # (0: the system's default)
        assert _dead_peer_options(conn) == {**_OURS, "keepalives_idle": "7", "tcp_user_timeout": "0"}
        assert _on_the_socket(conn) == (1, 7, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT, 0)


def test_a_service_files_keepalive_settings_win(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = tmp_path / "pg_service.conf"
    services.write_text("[unitcost-test]\nkeepalives_idle=11\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    monkeypatch.setenv("PGSERVICE", "unitcost-test")  # (libpq has no environment variable for these)
    with connect(pg_url) as conn:
        assert _dead_peer_options(conn) == {**_OURS, "keepalives_idle": "11"}
    monkeypatch.delenv("PGSERVICE")
    # A URL that names its service gets none of unitcost's: what the file sets is not known before connecting.
    with connect(f"{pg_url}&service=unitcost-test") as conn:
        assert _dead_peer_options(conn) == dict.fromkeys(_DEAD_PEER_OPTIONS) | {"keepalives_idle": "11"}


def test_a_libpq_older_than_12_is_not_given_tcp_user_timeout(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psycopg.pq, "version", lambda: 110000)  # (libpq 11 refuses an option it does not know)
    with connect(pg_url) as conn:
        assert _dead_peer_options(conn) == {**_OURS, "tcp_user_timeout": None}


def _named_and_bounded(conn: Any) -> tuple[str, str | None]:
    """The name the server shows for the connection, and the connect bound libpq used."""
    [timeout] = [o.val for o in conn.pgconn.info if o.keyword == b"connect_timeout"]
    return conn.execute("SHOW application_name").fetchone()[0], None if timeout is None else timeout.decode()


def test_the_users_application_name_and_connect_timeout_win(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with connect(pg_url, connect_timeout=4) as conn:
        assert _named_and_bounded(conn) == ("unitcost", "4")
    with connect(f"{pg_url}&application_name=billing-worker&connect_timeout=30", connect_timeout=4) as conn:
        assert _named_and_bounded(conn) == ("billing-worker", "30")
    monkeypatch.setenv("PGAPPNAME", "from-env")
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "20")
    with connect(pg_url, connect_timeout=4) as conn:
        assert _named_and_bounded(conn) == ("from-env", "20")
    # 0 is libpq's "wait for ever": unitcost's bound stays, as every wait of the writer's is bounded.
    with connect(f"{pg_url}&connect_timeout=0", connect_timeout=4) as conn:
        assert _named_and_bounded(conn) == ("from-env", "4")


def test_a_unix_socket_url_still_connects(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    directory, port = os.path.join(os.environ.get("PG_CI_DIR", ""), "sock"), parts.port  # (.ci/postgres puts it there)
    if not os.environ.get("PG_CI_DIR") or not os.path.exists(os.path.join(directory, f".s.PGSQL.{port}")):
        _pg_missing("the test server has no Unix socket here (PG_CI_DIR: .ci/postgres starts it with one)")
    userinfo = parts.netloc.rpartition("@")[0]
    url = urlunsplit(parts._replace(
        netloc=f"{userinfo}@" if userinfo else "", query=f"{parts.query}&host={quote(directory, safe='')}&port={port}"
    ))
    with connect(url) as conn:  # libpq ignores the TCP options on a Unix socket
        assert conn.execute("SELECT 1").fetchone() == (1,)
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            assert sock.family == socket.AF_UNIX
