"""Guarantee: every wait is bounded and every loss is counted durably.

A store another process keeps locked: ``flush(timeout)`` returns by its timeout, the program exits
within `EXIT_WAIT_SECONDS` (plus start-up and shutdown work), and the spans that could not be written
are counted in the store's side file, where `unitcost doctor` and reports see them and the next
writer moves them into the store. A full disk (a file-size limit) is counted the same way, and a
store file deleted while in use is noticed and written anew.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing

import pytest
from conftest import report_json, run_cli

import unitcost
from unitcost.exporters.store import EXIT_WAIT_SECONDS
from unitcost.store.schema import open_store

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX")

_TASKS = 60

_LOCKED = textwrap.dedent(
    """
    import json, sys, time, unitcost
    unitcost.configure(service_name="locked", db=sys.argv[1])
    for i in range(int(sys.argv[2])):
        with unitcost.task("ticket", key=f"T-{i}"):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=100, output_tokens=10)
    started = time.monotonic()
    flushed = unitcost.flush(timeout_seconds=1)
    print(json.dumps({"flushed": flushed, "flush_s": time.monotonic() - started}), flush=True)
    sys.stderr.write(f"exiting at {time.monotonic()}\\n")
    """
)


def test_a_locked_store_bounds_flush_and_exit_and_counts_the_loss(store_writer, tmp_path):
    db = tmp_path / "locked.db"
    open_store(db).conn.close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing, and never finishing
    try:
        # Old behaviour: 10 s of SQLite's busy timeout per attempt, 27 s in flush and 60 s at exit.
        proc = subprocess.run(
            [sys.executable, "-c", _LOCKED, str(db), str(_TASKS)], capture_output=True, text=True,
            timeout=30 + EXIT_WAIT_SECONDS, env={**os.environ, "UNITCOST_STRICT": "0"},
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["flushed"] is False
    assert result["flush_s"] < 1 + 5, result  # returned by its timeout (5 s of slack for a loaded machine)
    assert "counted in" in proc.stderr

    # Counted where doctor and reports look, before any writer has touched the store again.
    lost = 2 * _TASKS  # a task span and a call span each
    doctor = json.loads(run_cli("doctor", "--db", str(db), "--format", "json", expect=None).stdout)
    assert doctor["dropped_spans"] == lost, doctor

    # The next writer moves the count into the store (and removes the side file): counted once.
    unitcost.configure(db=db)
    with unitcost.task("ticket", key="after"):
        pass
    assert unitcost.flush()
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT SUM(count) FROM dropped_spans").fetchone()[0] == lost
    assert not list(tmp_path.glob("locked.db.lost*"))
    assert report_json(db)[0]["dropped_spans"] == lost
    doctor = json.loads(run_cli("doctor", "--db", str(db), "--format", "json", expect=None).stdout)
    assert doctor["dropped_spans"] == lost


_DISK_FULL = textwrap.dedent(
    """
    import resource, signal, sys, unitcost
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
    unitcost.configure(service_name="full", db=sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
    for i in range(int(sys.argv[2])):
        with unitcost.task("ticket", key=f"T-{i}"):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=100, output_tokens=10)
    """
)


def test_a_full_disk_until_exit_is_counted_after_restart(tmp_path):
    db = tmp_path / "full.db"
    open_store(db).conn.close()
    tasks = 3000
    proc = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(db), str(tasks), str(64 * 1024)], capture_output=True, text=True,
        timeout=120, env={**os.environ, "UNITCOST_STRICT": "0"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    unitcost.configure(db=db)  # the restart: disk space is back
    assert unitcost.flush()
    with closing(sqlite3.connect(db)) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] + conn.execute(
            "SELECT COUNT(*) FROM calls").fetchone()[0]
        dropped = conn.execute("SELECT COALESCE(SUM(count), 0) FROM dropped_spans").fetchone()[0]
    assert stored < 2 * tasks, "the file-size limit did not bite: the test means nothing"
    assert stored + dropped == 2 * tasks, (stored, dropped)


def test_a_store_deleted_while_in_use_is_written_anew(tmp_path, caplog):
    db = tmp_path / "deleted.db"
    unitcost.configure(db=db)
    with unitcost.task("ticket", key="before"):
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1, output_tokens=1)
    assert unitcost.flush()
    for path in tmp_path.glob("deleted.db*"):
        path.unlink()
    with unitcost.task("ticket", key="after"):
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1, output_tokens=1)
    assert unitcost.flush()
    assert db.exists()
    with closing(sqlite3.connect(db)) as conn:
        assert [k for (k,) in conn.execute("SELECT key FROM runs")] == ["after"]
    assert "deleted or replaced" in caplog.text
