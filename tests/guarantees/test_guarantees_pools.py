"""Guarantee: multiprocessing and concurrent.futures workers' records are stored, for every start
method, although their workers end by ``os._exit`` (fork and forkserver) or SIGTERM (``Pool`` left by
``with``, which terminates its workers), where ``atexit`` never runs: in a child process unitcost
writes each finished task before the task returns. No signal handler is installed for it.

A ``spawn`` worker is a new program: it records only because the worker module configures unitcost
(as here), exactly as a new program would.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX start methods")

_TASKS = 40

_WORK = textwrap.dedent(
    """
    import os, signal, unitcost
    unitcost.configure(service_name="pools", db=os.environ["POOL_DB"])

    @unitcost.task("job", key=lambda i: f"J-{i}")
    def one(i):
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
        # unitcost installs no handler in the worker: SIGTERM keeps its default action (ends the worker).
        assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None), signal.getsignal(signal.SIGTERM)
        return i
    """
)

_MAIN = textwrap.dedent(
    """
    import sys, multiprocessing as mp, concurrent.futures as cf
    import work

    if __name__ == "__main__":
        method, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
        ctx = mp.get_context(method)
        if kind == "process":
            for first in range(0, n, 8):  # eight at a time: a spawn worker's start-up is a new program's
                procs = [ctx.Process(target=work.one, args=(i,)) for i in range(first, min(n, first + 8))]
                for p in procs:
                    p.start()
                for p in procs:
                    p.join(120)
                    assert p.exitcode == 0, p.exitcode
        elif kind == "pool":
            with ctx.Pool(4) as pool:  # __exit__ terminates the workers (SIGTERM)
                assert pool.map(work.one, range(n)) == list(range(n))
        else:
            with cf.ProcessPoolExecutor(4, mp_context=ctx) as pool:
                assert list(pool.map(work.one, range(n))) == list(range(n))
    """
)


@pytest.mark.parametrize("kind", ["process", "pool", "executor"])
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_every_worker_task_is_stored(store_writer, tmp_path, method, kind):
    db = tmp_path / "pools.db"
    (tmp_path / "work.py").write_text(_WORK)
    (tmp_path / "main.py").write_text(_MAIN)
    env = {**os.environ, "UNITCOST_STRICT": "1", "POOL_DB": str(db), "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "main.py"), method, kind, str(_TASKS)], capture_output=True, text=True,
        timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with closing(sqlite3.connect(db)) as conn:
        keys = {k for (k,) in conn.execute("SELECT key FROM runs WHERE kind = 'job'")}
        calls = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    missing = sorted({f"J-{i}" for i in range(_TASKS)} - keys)
    assert not missing, f"{_TASKS - len(missing)}/{_TASKS} stored; missing {missing[:5]}"
    assert calls == _TASKS
