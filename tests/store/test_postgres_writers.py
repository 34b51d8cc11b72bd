"""Many writers and a server that goes away: the PostgreSQL store through the real SDK pipeline.

- 4 processes x 2 threads write one store at once: every run and call is there once, with exact
  token counts and costs (the same as the same workload written to SQLite by one process).
- The server is restarted, then stopped for a while, in the middle of a workload: every span is
  stored once or counted as dropped, and the per-run sums agree with the calls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

import unitcost
from unitcost.common.errors import StoreError
from unitcost.store.connect import open_backend

_WRITER = textwrap.dedent(
    """
    import sys, threading, unitcost
    db, proc = sys.argv[1], int(sys.argv[2])
    unitcost.configure(service_name=f"writer-{proc}", db=db)

    def work(thread):
        for j in range(150):
            with unitcost.task("ticket", key=f"P-{proc}-{thread}-{j}"):
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1000 + proc, output_tokens=j)
                unitcost.record_usage("anthropic", "claude-sonnet-4-6", input_tokens=10 + thread, output_tokens=1)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # no flush(): a normal exit writes everything
    """
)


def _run_writers(db: str, processes: range) -> None:
    env = {**os.environ, "UNITCOST_STRICT": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, db, str(p)], env=env, stderr=subprocess.PIPE)
        for p in processes
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()


_BY_MODEL = (
    "SELECT provider, model, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_pico) FROM calls "
    "GROUP BY provider, model ORDER BY provider, model"
)


def test_4_processes_x_2_threads_write_one_postgres_store_with_exact_counts_and_costs(
    pg_url: str, tmp_path: Path
) -> None:
    _run_writers(pg_url, range(4))
    reference = str(tmp_path / "one-at-a-time.db")
    for p in range(4):  # the same workload into SQLite, one process at a time
        _run_writers(reference, range(p, p + 1))
    with closing(psycopg.connect(pg_url)) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT service) FROM runs").fetchone() == (1200, 4)
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT run_id) FROM calls").fetchone() == (2400, 1200)
        expected_input = sum(2 * 150 * (1000 + p) + sum(150 * (10 + t) for t in range(2)) for p in range(4))
        expected_output = 4 * 2 * (sum(range(150)) + 150)
        assert conn.execute("SELECT SUM(input_tokens), SUM(output_tokens) FROM calls").fetchone() == (
            expected_input, expected_output)
        assert conn.execute(
            "SELECT COUNT(*) FROM calls WHERE run_id NOT IN (SELECT run_id FROM runs)").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM dropped_spans").fetchone() == (0,)
        pg_costs = conn.execute(_BY_MODEL).fetchall()
        # The per-run sums hold every call once.
        assert conn.execute("SELECT SUM(calls), SUM(cost_pico) FROM run_sums").fetchone() == (
            2400, conn.execute("SELECT SUM(cost_pico) FROM calls").fetchone()[0])
    with closing(open_backend(reference, create=False)) as sqlite_store:
        # Costs: each call priced once, exactly as the SQLite store prices the same calls.
        assert pg_costs == [tuple(r) for r in sqlite_store.execute(_BY_MODEL).fetchall()]
    assert [row[2] for row in pg_costs] == [1200, 1200]


def _flushed_within(seconds: float) -> bool:
    """Flush until everything is written: the writer reconnects after its back-off (at most 5 s), and
    until then refuses at once (which UNITCOST_STRICT raises here)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if unitcost.flush():
                return True
        except StoreError:
            pass
        time.sleep(0.5)
    return False


def _pg_ctl(*args: str) -> None:
    directory, binaries = os.environ.get("PG_CI_DIR"), os.environ.get("PG_CI_BIN")
    if not directory or not binaries:
        if os.environ.get("CI"):
            pytest.fail("PG_CI_DIR / PG_CI_BIN are not set: .ci/run starts the server with .ci/postgres")
        pytest.skip("the test server was not started by .ci/postgres (PG_CI_DIR / PG_CI_BIN): cannot restart it")
    command = ["runuser", "-u", "postgres", "--", f"{binaries}/pg_ctl", "-D", f"{directory}/data", "-w", "-t", "30"]
    if args[0] in ("start", "restart"):
        command += ["-l", f"{directory}/server.log"]
    subprocess.run([*command, *args], check=True, stdout=subprocess.DEVNULL, timeout=60)


def test_a_server_restarted_and_stopped_mid_workload_loses_nothing_uncounted(pg_url: str) -> None:
    _pg_ctl("status")
    unitcost.configure(service_name="tests", db=pg_url)
    tasks = 600
    done = threading.Event()

    def work() -> None:
        for j in range(tasks):
            with unitcost.task("ticket", key=f"R-{j}"):
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=100, output_tokens=j)
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=50, output_tokens=1)
            time.sleep(0.006)  # ~4 s of work: batches before, during and after the outages
        done.set()

    worker = threading.Thread(target=work)
    started = time.monotonic()
    worker.start()
    try:
        time.sleep(0.8)
        _pg_ctl("restart", "-m", "fast")  # connections cut mid-batch
        time.sleep(0.8)
        _pg_ctl("stop", "-m", "immediate")  # a crash: nothing answers for a second
        time.sleep(1.0)
    finally:
        _pg_ctl("start")
    worker.join(timeout=120)
    assert done.is_set()
    assert time.monotonic() - started < 60
    assert _flushed_within(30)
    unitcost.shutdown()

    with closing(psycopg.connect(pg_url)) as conn:
        runs, = conn.execute("SELECT COUNT(*) FROM runs").fetchone()
        calls, = conn.execute("SELECT COUNT(*) FROM calls").fetchone()
        dropped, = conn.execute("SELECT COALESCE(SUM(count), 0) FROM dropped_spans").fetchone()
        # Three spans a task: every one is a row, or counted as dropped; none is two rows (span id keys).
        assert runs + calls + dropped == 3 * tasks, (runs, calls, dropped)
        assert runs > 0 and calls > 0
        # The per-run sums hold each stored call once, however often its batch was sent.
        assert conn.execute("SELECT COALESCE(SUM(calls), 0) FROM run_sums").fetchone()[0] == conn.execute(
            "SELECT COUNT(*) FROM calls WHERE run_id IS NOT NULL").fetchone()[0]
        sums = conn.execute("SELECT COALESCE(SUM(output_tokens), 0) FROM run_sums").fetchone()[0]
        assert sums == conn.execute(
            "SELECT COALESCE(SUM(output_tokens), 0) FROM calls WHERE run_id IS NOT NULL").fetchone()[0]


def test_spans_beyond_the_writers_buffer_while_the_server_is_down_are_counted(pg_url: str) -> None:
    _pg_ctl("status")
    unitcost.configure(service_name="tests", db=pg_url)
    with unitcost.task("ticket", key="before"):
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1, output_tokens=1)
    assert unitcost.flush()
    tasks = 5000  # 15,000 spans: more than the 10,000 rows the writer keeps while the store refuses them
    _pg_ctl("stop", "-m", "fast")
    try:
        for j in range(tasks):
            with unitcost.task("ticket", key=f"D-{j}"):
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=100, output_tokens=j)
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=50, output_tokens=1)
        time.sleep(1.5)  # the writer's thread tries, and is refused, while the server is down
    finally:
        _pg_ctl("start")
    assert _flushed_within(30)
    unitcost.shutdown()
    with closing(psycopg.connect(pg_url)) as conn:
        runs, = conn.execute("SELECT COUNT(*) FROM runs WHERE key LIKE 'D-%'").fetchone()
        calls, = conn.execute(
            "SELECT COUNT(*) FROM calls c JOIN runs r ON r.run_id = c.run_id WHERE r.key LIKE 'D-%'").fetchone()
        orphans, = conn.execute("SELECT COUNT(*) FROM calls WHERE run_id NOT IN (SELECT run_id FROM runs)").fetchone()
        dropped = dict(conn.execute("SELECT reason, SUM(count) FROM dropped_spans GROUP BY reason").fetchall())
    assert sum(dropped.values()) > 0, "nothing was dropped: the test did not overflow the writer's buffer"
    assert runs + calls + orphans + sum(dropped.values()) == 3 * tasks, (runs, calls, orphans, dropped)
