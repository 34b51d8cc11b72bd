"""Guarantee 4, crash safety: a process killed with SIGKILL leaves a store that opens, passes
``PRAGMA integrity_check`` and holds every task that ended more than two seconds before the kill; a
normal exit flushes everything; no signal handler is installed unless asked; the queue to the
exporter is bounded, and what it drops is counted and shown, never blocking the caller.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import report_json, run_cli, store_rows

import unitcost
from unitcost.exporters.store import StoreSpanExporter, StoreSpanProcessor

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# An agent-like workload: each task makes LLM calls and a tool call, then prints its key and the time
# it ended, so the test knows what must be in the store.
_WORKLOAD = textwrap.dedent(
    """
    import sys, time, unitcost
    db, limit = sys.argv[1], int(sys.argv[2])
    unitcost.configure(service_name="crash", db=db, flush_on_signals=len(sys.argv) > 3)
    unitcost.instrument()
    if len(sys.argv) > 4:
        import signal
        def own(signum, frame):
            print("own handler", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, own)
        unitcost.configure(service_name="crash", db=db, flush_on_signals=True)
    search = unitcost.tool("search", cost=0.001)(lambda q: q)
    i = 0
    while limit < 0 or i < limit:
        with unitcost.task("ticket", key=f"T-{i}", attributes={"n": i}):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=100)
            search("order")
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1200, output_tokens=50)
        print(f"T-{i} {time.time()}", flush=True)
        i += 1
        if limit < 0:
            time.sleep(0.002)
    """
)


def _start(db: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "UNITCOST_STRICT": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _WORKLOAD, str(db), *args], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )


def _ended(proc: subprocess.Popen[str]) -> tuple[list[tuple[str, float]], threading.Thread]:
    seen: list[tuple[str, float]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            key, _, at = line.strip().partition(" ")
            try:
                seen.append((key, float(at)))
            except ValueError:  # a line cut by a signal handler's own output
                pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return seen, reader


def _stored_keys(db: Path) -> set[str]:
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return {key for (key,) in conn.execute("SELECT key FROM runs")}


def test_sigkill_mid_workload_leaves_an_intact_store_with_every_task_ended_2s_before(store_writer, tmp_path):
    db = tmp_path / "killed.db"
    proc = _start(db, "-1")
    seen, reader = _ended(proc)
    deadline = time.time() + 30
    while (not seen or seen[-1][1] - seen[0][1] < 4.5) and time.time() < deadline:
        time.sleep(0.05)
    killed_at = time.time()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    reader.join(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    old_enough = {key for key, at in seen if at < killed_at - 2}
    assert len(old_enough) > 100, "the workload did too little to mean anything"
    stored = _stored_keys(db)
    assert old_enough <= stored, sorted(old_enough - stored)[:10]
    # The store opens for unitcost itself, with every call of those tasks.
    doctor = json.loads(run_cli("doctor", "--db", str(db), "--format", "json").stdout)
    assert doctor["integrity"] == "ok"
    assert doctor["rows"]["calls"] == 2 * doctor["rows"]["runs"]
    assert doctor["rows"]["steps"] == doctor["rows"]["runs"]


def test_a_normal_exit_flushes_everything(store_writer, tmp_path):
    db = tmp_path / "exit.db"
    proc = _start(db, "3000")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert _stored_keys(db) == {f"T-{i}" for i in range(3000)}  # the last half second too


def test_an_uncaught_exception_still_flushes(tmp_path):
    db = tmp_path / "raised.db"
    code = textwrap.dedent(
        """
        import sys, unitcost
        unitcost.configure(db=sys.argv[1])
        for i in range(500):
            with unitcost.task("ticket", key=f"T-{i}"):
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
        raise SystemError("the agent crashed")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "UNITCOST_STRICT": "1"})
    assert proc.returncode == 1 and "the agent crashed" in proc.stderr
    assert _stored_keys(db) == {f"T-{i}" for i in range(500)}


def test_no_signal_handler_is_installed_unless_asked(store_db):
    # store_db has configured and instrumented unitcost with the defaults.
    watched = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGQUIT]
    before = {s: signal.getsignal(s) for s in watched}
    unitcost.configure(db=store_db)
    unitcost.instrument()
    assert {s: signal.getsignal(s) for s in watched} == before
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    # Asked: SIGTERM and SIGHUP only; and configure() without it again puts the defaults back.
    unitcost.configure(db=store_db, flush_on_signals=True)
    try:
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) is before[signal.SIGINT]
    finally:
        unitcost.configure(db=store_db)
    assert {s: signal.getsignal(s) for s in watched} == before


def test_flush_on_signals_writes_everything_then_dies_of_the_signal(tmp_path):
    db = tmp_path / "term.db"
    proc = _start(db, "-1", "flush")
    seen, reader = _ended(proc)
    deadline = time.time() + 30
    while len(seen) < 300 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    reader.join(timeout=10)
    assert proc.returncode == -signal.SIGTERM  # ended as SIGTERM ends a program without unitcost
    ended = {key for key, _ in seen}
    assert ended <= _stored_keys(db)  # every task that ended, the last half second included


def test_ctrl_c_flushes_without_any_handler_of_unitcosts(tmp_path):
    db = tmp_path / "int.db"
    proc = _start(db, "-1")
    seen, reader = _ended(proc)
    deadline = time.time() + 30
    while len(seen) < 300 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # KeyboardInterrupt unwinds; the exit handler flushes
    proc.wait(timeout=20)
    reader.join(timeout=10)
    assert proc.returncode in (1, -signal.SIGINT)
    assert {key for key, _ in seen} <= _stored_keys(db)


def test_flush_on_signals_keeps_the_programs_own_handler(tmp_path):
    db = tmp_path / "own.db"
    proc = _start(db, "-1", "flush", "own-handler")
    seen, reader = _ended(proc)
    deadline = time.time() + 30
    while len(seen) < 100 and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    reader.join(timeout=10)
    assert proc.returncode == 7  # the program's handler ran, after unitcost's flush
    assert {key for key, _ in seen} <= _stored_keys(db)


# --- the bounded queue ---------------------------------------------------------------------------------


def test_a_full_queue_drops_counts_and_shows_never_blocking_the_caller(make_store, monkeypatch):
    monkeypatch.setattr(StoreSpanProcessor, "max_queue_size", 50)
    release = threading.Event()
    real_export = StoreSpanExporter.export

    def slow_export(self, spans):
        release.wait(30)  # an exporter that cannot keep up (a slow disk)
        return real_export(self, spans)

    monkeypatch.setattr(StoreSpanExporter, "export", slow_export)
    db = make_store()
    longest = 0.0
    started = time.perf_counter()
    for i in range(300):
        t0 = time.perf_counter()
        with unitcost.task("ticket", key=f"T-{i}"):
            pass
        longest = max(longest, time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    assert not release.is_set()
    assert longest < 1 and elapsed < 10  # the caller never waited for the exporter (blocked 30 s)
    release.set()
    assert unitcost.flush()

    stored = store_rows(db, "SELECT COUNT(*) AS n FROM runs")[0]["n"]
    dropped = store_rows(db, "SELECT reason, SUM(count) AS n FROM dropped_spans GROUP BY reason")
    assert stored < 300 and dropped == [{"reason": "queue_full", "n": 300 - stored}]  # dropped, and counted
    # Shown by `unitcost doctor` and by every report.
    doctor = json.loads(run_cli("doctor", "--db", str(db), "--format", "json").stdout)
    assert doctor["dropped_spans"] == 300 - stored and doctor["dropped_by_reason"] == {"queue_full": 300 - stored}
    assert any("dropped" in w for w in doctor["warnings"])
    assert f"{300 - stored} span(s) were dropped" in run_cli("doctor", "--db", str(db), expect=0).stdout
    assert {row["dropped_spans"] for row in report_json(db)} == {300 - stored}
    assert f"! {300 - stored} span(s) never reached the store" in run_cli("report", "--db", str(db)).stdout
    csv = run_cli("report", "--db", str(db), "--format", "csv").stdout
    assert "dropped_spans" in csv.splitlines()[0]
    check = run_cli("check", "--db", str(db), "--max-cost", "100")
    assert f"warning: {300 - stored} span(s) never reached the store" in check.stderr
