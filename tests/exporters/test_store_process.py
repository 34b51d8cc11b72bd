"""The store writer in a process of its own (`configure(store_writer="process")`): the same rows as the
thread writer, `flush()` meaning written, the writer process's exit or absence costing nothing
uncounted, and nothing of the store's address on its command line.

The guarantees suite runs its crash, fork and pool programs with both writers too."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

import unitcost
from unitcost.common.errors import ConfigurationError
from unitcost.exporters import store_process
from unitcost.pipeline import config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes and signals")


def _store_exporter() -> Any:
    processors = config.pipeline().processors
    return next(p for p in processors if type(p).__name__ == "StoreSpanProcessor")._exporter


def _workload(tasks: int = 40) -> None:
    """Support tickets: two calls each (one cached), a tool, every third one resolved."""
    for i in range(tasks):
        with unitcost.task("ticket", key=f"T-{i}", attributes={"customer": f"c-{i % 3}"}):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1200, output_tokens=90,
                                  cache_read_tokens=1024 if i % 2 else 0)
            unitcost.record_usage("anthropic", "claude-sonnet-4-5", input_tokens=3000, output_tokens=400)
            unitcost.record_usage("acme", "acme-large", input_tokens=500, output_tokens=50)  # unitcost.toml's
            with unitcost.tool("search", cost="0.002"):
                pass
            if i % 3 == 0:
                unitcost.outcome("resolved", success=True, value="4.50")


def _report(db: Path, *args: str) -> Any:
    return json.loads(run_cli("report", "--db", str(db), "--format", "json", *args).stdout)


def test_a_writer_process_writes_what_the_thread_writes(make_store, tmp_path):
    (tmp_path / "unitcost.toml").write_text('[[price]]\nmodel = "acme-large"\ninput_mtok = 1.25\noutput_mtok = 5\n')
    threaded = make_store()
    _workload()
    assert unitcost.flush()
    by_process = make_store(store_writer="process")
    exporter = _store_exporter()
    assert exporter.writer_pid is not None and exporter.writer_pid != os.getpid()
    _workload()
    assert unitcost.flush()  # written by the child when it returns True
    for args in ((), ("--by", "model"), ("--by", "customer"), ("--every", "day")):
        assert _report(by_process, *args) == _report(threaded, *args)
    acme = next(row for row in _report(by_process, "--by", "model") if row["group"]["model"] == "acme-large")
    assert acme["unpriced_calls"] == 0  # the child priced it from the program's price file
    assert acme["llm_cost_usd"] == pytest.approx(40 * (500 * 1.25 + 50 * 5) / 1e6)
    with closing(sqlite3.connect(by_process)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 40
        assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 120
        assert conn.execute("SELECT COUNT(*) FROM dropped_spans").fetchone()[0] == 0


def test_the_environment_variable_chooses_it_and_a_wrong_name_is_refused(make_store, monkeypatch):
    monkeypatch.setenv("UNITCOST_STORE_WRITER", "process")
    make_store()
    assert _store_exporter().writer_pid is not None
    with pytest.raises(ConfigurationError, match="store_writer"):
        unitcost.configure(db=Path("x.db"), store_writer="processes")


def test_nothing_of_the_store_is_on_the_writer_processs_command_line(make_store):
    db = make_store(store_writer="process")
    _store_exporter()._writer.wait_started(time.monotonic() + 30)  # (exec'd: its own command line)
    pid = _store_exporter().writer_pid
    command_line = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
    assert "store_process" in command_line
    assert str(db) not in command_line and db.name not in command_line


def test_a_writer_process_that_dies_is_counted_and_the_thread_writes_on(make_store, caplog):
    db = make_store(store_writer="process")
    exporter = _store_exporter()
    _workload(10)
    assert unitcost.flush()
    pid = exporter.writer_pid
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    # What the dead child had been sent and not answered for is counted: here, the next batch's send
    # finds the pipe closed, so nothing was in flight, and that batch is written by the thread.
    _workload(10)
    assert unitcost.flush()
    assert exporter.writer_pid is None
    assert "writer process stopped" in caplog.text
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 20
        assert conn.execute("SELECT COUNT(*) FROM dropped_spans").fetchone()[0] == 0  # written, so not lost


def test_spans_sent_to_a_writer_process_that_died_before_writing_them_are_counted(make_store):
    db = make_store(store_writer="process")
    exporter = _store_exporter()
    writer = exporter._writer
    writer.wait_started(time.monotonic() + 30)
    os.kill(writer.pid, signal.SIGSTOP)  # it reads nothing more...
    try:
        _workload(5)  # 5 tasks of 5 spans: the task, three calls, a tool
        assert not unitcost.flush(0.5)  # handed over; the child answers nothing
        assert sum(spans for _, spans in writer.unanswered) == 25
    finally:
        os.kill(writer.pid, signal.SIGKILL)  # ... and dies without writing them
        os.waitpid(writer.pid, 0)
    assert unitcost.flush()  # the thread writes from now on, and the lost spans are counted in the store
    assert exporter.writer_pid is None
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
        lost = conn.execute("SELECT reason, SUM(count) FROM dropped_spans GROUP BY reason").fetchall()
    assert lost == [("writer_process_exited", 25)]
    assert "25" in run_cli("doctor", "--db", str(db)).stdout


def test_a_writer_process_that_cannot_start_leaves_the_thread_to_write(make_store, monkeypatch):
    def cannot_start(*args: Any, **kwargs: Any) -> Any:
        raise OSError("no processes left")

    monkeypatch.setenv("UNITCOST_STRICT", "0")  # the failed start is logged, not raised
    monkeypatch.setattr(store_process.subprocess, "Popen", cannot_start)
    db = make_store(store_writer="process")
    assert _store_exporter().writer_pid is None
    _workload(5)
    assert unitcost.flush()
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 5


def test_ctrl_c_is_the_programs_the_writer_process_goes_on(make_store):
    db = make_store(store_writer="process")
    pid = _store_exporter().writer_pid
    _store_exporter()._writer.wait_started(time.monotonic() + 30)
    os.kill(pid, signal.SIGINT)
    os.kill(pid, signal.SIGTERM)
    _workload(5)
    assert unitcost.flush()
    assert _store_exporter().writer_pid == pid
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 5


# A program that ends normally: its writer process has written everything when it has exited.
_PROGRAM = textwrap.dedent(
    """
    import sys, unitcost
    unitcost.configure(service_name="exits", db=sys.argv[1], store_writer="process")
    for i in range(int(sys.argv[2])):
        with unitcost.task("ticket", key=f"T-{i}"):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=100, output_tokens=10)
    from unitcost.pipeline import config
    store = next(p for p in config.pipeline().processors if type(p).__name__ == "StoreSpanProcessor")
    print(store._exporter.writer_pid, flush=True)
    """
)


def test_a_program_that_exits_leaves_every_task_written(tmp_path):
    db = tmp_path / "exits.db"
    done = subprocess.run([sys.executable, "-c", _PROGRAM, str(db), "3000"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "UNITCOST_STRICT": "1"})
    assert done.returncode == 0, done.stderr
    writer_pid = int(done.stdout.strip())
    deadline = time.monotonic() + 30
    while Path(f"/proc/{writer_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # (it may finish a moment after the program: its exit wait is bounded)
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 3000
        assert conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 3000


def test_a_postgresql_store_through_a_writer_process(pg_url, make_store, tmp_path):
    unitcost.configure(service_name="tests", db=pg_url, store_writer="process")
    assert _store_exporter().writer_pid is not None
    _workload(12)
    assert unitcost.flush()
    rows = json.loads(run_cli("report", "--db", pg_url, "--format", "json").stdout)
    assert rows[0]["tasks"] == 12
