"""Guarantee: fork safety. A child forked while the store writer is busy (holding its locks, mid
batch) neither hangs nor loses its records nor writes the parent's twice; every wait here is
bounded, so a regression fails rather than hangs.
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

from unitcost.store.schema import open_store

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")

_FORKS = 50
_PER_CHILD = 5

# The parent records tasks flat out on a thread (so the writer is always mid-batch) and forks
# children from the main thread; each child records its own tasks, then ends by os._exit (as
# multiprocessing's workers do) or by a normal exit (atexit). Each wait is bounded: a child that has
# not ended 20 s after it was forked is killed and reported as hung.
_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, threading, time, unitcost
    db, forks, per_child = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    unitcost.configure(service_name="forks", db=db)
    stop = threading.Event()

    def busy():
        i = 0
        while not stop.is_set():
            with unitcost.task("parent", key=f"P-{i}"):
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=100, output_tokens=10)
            i += 1
            time.sleep(0.001)
    worker = threading.Thread(target=busy, daemon=True)
    worker.start()
    time.sleep(0.3)
    hung, codes = [], []
    for n in range(forks):
        pid = os.fork()
        if pid == 0:
            for j in range(per_child):
                with unitcost.task("child", key=f"C-{n}-{j}"):
                    unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=50, output_tokens=5)
            if n % 2:
                os._exit(0)
            sys.exit(0)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes.append(os.waitstatus_to_exitcode(status))
                break
            if time.monotonic() > deadline:
                hung.append(n)
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)
    stop.set()
    worker.join(10)
    print(json.dumps({"hung": hung, "codes": codes, "flushed": unitcost.flush(timeout_seconds=20)}), flush=True)
    """
)


def test_fifty_forks_while_the_writer_is_busy_none_hangs_every_record_stored_once(store_writer, tmp_path):
    db = tmp_path / "forks.db"
    with closing(open_store(db).conn) as conn:
        # Counts every row insert (INSERT OR REPLACE would hide a second write of the same run).
        conn.executescript(
            "CREATE TABLE writes (run_id TEXT); "
            "CREATE TRIGGER count_writes AFTER INSERT ON runs BEGIN INSERT INTO writes VALUES (new.run_id); END;"
        )
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(db), str(_FORKS), str(_PER_CHILD)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "UNITCOST_STRICT": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["hung"] == [], f"children hung at exit: {result['hung']}"
    assert result["codes"] == [0] * _FORKS
    assert result["flushed"] is True
    with closing(sqlite3.connect(db)) as conn:
        keys = [k for (k,) in conn.execute("SELECT key FROM runs WHERE kind = 'child'")]
        assert sorted(keys) == sorted(f"C-{n}-{j}" for n in range(_FORKS) for j in range(_PER_CHILD))
        twice = conn.execute("SELECT run_id, COUNT(*) FROM writes GROUP BY run_id HAVING COUNT(*) > 1").fetchall()
        assert twice == [], f"{len(twice)} run(s) written more than once, e.g. {twice[:3]}"
        parents = conn.execute("SELECT COUNT(*) FROM runs WHERE kind = 'parent'").fetchone()[0]
        assert parents > 0
        # The parent records flat out, so its queue may overflow (counted as queue_full); nothing else.
        reasons = {r for (r,) in conn.execute("SELECT DISTINCT reason FROM dropped_spans")}
        assert reasons <= {"queue_full"}, reasons
