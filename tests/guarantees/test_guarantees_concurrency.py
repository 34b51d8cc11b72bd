"""Guarantee 3, concurrency: every call is attributed to the task that made it, from 16 threads, 500
asyncio tasks, thread pools the code did not prepare (``executor.submit``, ``executor.map``,
``loop.run_in_executor``, ``asyncio.to_thread``) and 4 processes writing one store at once; the
store then holds exactly the expected tasks, calls and tokens.

Each call's request names its task (the message text is the task key); the server answers with a
prompt token count derived from that key, so a call stored under the wrong run shows at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import httpx2
import pytest
from conftest import chat_body, store_rows, usage_block

import unitcost


def tokens_for(key: str) -> int:
    """The prompt tokens the server reports for a request made by the task with this key."""
    return 100 + sum(ord(c) * (i + 1) for i, c in enumerate(key)) % 100_000


def answer(request: httpx2.Request) -> httpx2.Response:
    key = json.loads(request.content)["messages"][0]["content"]
    return httpx2.Response(200, json=chat_body(usage=usage_block(tokens_for(key), 7)))


async def answer_async(request: httpx2.Request) -> httpx2.Response:
    await asyncio.sleep(0)  # let the other tasks run in between
    return answer(request)


def ask(client, key: str):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": key}])


def assert_every_call_in_its_task(db: Path, calls_per_task: int, tasks: int) -> None:
    runs = store_rows(db, "SELECT run_id, key FROM runs")
    assert len(runs) == tasks
    key_of = {r["run_id"]: r["key"] for r in runs}
    calls = store_rows(db, "SELECT run_id, input_tokens, cache_read_tokens FROM calls")
    assert len(calls) == tasks * calls_per_task
    per_run: dict[str, int] = {}
    for call in calls:
        key = key_of[call["run_id"]]  # every call belongs to a stored task (none to "no task")
        assert call["input_tokens"] + call["cache_read_tokens"] == tokens_for(key), key
        per_run[call["run_id"]] = per_run.get(call["run_id"], 0) + 1
    assert set(per_run.values()) == {calls_per_task}
    totals = store_rows(db, "SELECT SUM(input_tokens) AS i, SUM(output_tokens) AS o FROM calls")[0]
    assert totals == {"i": calls_per_task * sum(tokens_for(k) for k in key_of.values()),
                      "o": 7 * tasks * calls_per_task}
    assert store_rows(db, "SELECT COUNT(*) AS n FROM dropped_spans") == [{"n": 0}]


def test_16_threads_and_thread_pools_attribute_every_call_to_its_task(store_db, openai_client):
    client = openai_client(answer)
    pool = ThreadPoolExecutor(max_workers=4)  # shared, its threads made before any task: nothing copied by hand

    def worker(thread: int) -> None:
        for j in range(12):
            key = f"T-{thread}-{j}"
            with unitcost.task("ticket", key=key):
                ask(client, key)
                pool.submit(ask, client, key).result()
                list(pool.map(lambda k: ask(client, k), [key, key]))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool.shutdown()
    assert_every_call_in_its_task(store_db, calls_per_task=4, tasks=16 * 12)


def test_500_asyncio_tasks_with_gather_run_in_executor_and_to_thread(store_db, openai_client):
    aclient = openai_client(answer_async, is_async=True)
    client = openai_client(answer)

    async def one(i: int) -> None:
        key = f"A-{i}"
        async with unitcost.task("ticket", key=key):
            await asyncio.gather(
                aclient.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": key}]),
                aclient.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": key}]),
            )
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, ask, client, key)  # the default pool: no context of its own
            await asyncio.to_thread(ask, client, key)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(500)))

    asyncio.run(main())
    assert_every_call_in_its_task(store_db, calls_per_task=4, tasks=500)


def test_pool_threads_outside_any_task_are_left_as_they_were(store_db, openai_client):
    client = openai_client(answer)
    with ThreadPoolExecutor(max_workers=2) as pool:
        pool.submit(ask, client, "outside").result()
        with unitcost.task("ticket", key="inside"):
            pool.submit(ask, client, "inside").result()
        pool.submit(ask, client, "outside").result()  # the pool thread did not keep the task
    calls = store_rows(store_db, "SELECT run_id FROM calls ORDER BY started_ns")
    (run,) = store_rows(store_db, "runs")
    assert [c["run_id"] for c in calls] == [None, run["run_id"], None]


def test_uninstrument_puts_the_executor_back(store_db):
    original = ThreadPoolExecutor.submit
    assert original.__module__ == "unitcost.record.threads"
    unitcost.uninstrument()
    assert ThreadPoolExecutor.submit.__module__ == "concurrent.futures.thread"
    unitcost.instrument()
    unitcost.instrument()  # idempotent
    assert ThreadPoolExecutor.submit is original


_WRITER = textwrap.dedent(
    """
    import sys, unitcost
    db, proc = sys.argv[1], int(sys.argv[2])
    unitcost.configure(service_name=f"writer-{proc}", db=db)
    for j in range(300):
        with unitcost.task("ticket", key=f"P-{proc}-{j}"):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1000 + proc, output_tokens=j)
            unitcost.record_usage("anthropic", "claude-sonnet-4-6", input_tokens=10, output_tokens=1)
    # no flush(): a normal exit writes everything
    """
)


def test_4_processes_write_one_store_at_once(tmp_path):
    db = tmp_path / "shared.db"
    env = {**os.environ, "UNITCOST_STRICT": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(db), str(p)], env=env, stderr=subprocess.PIPE)
        for p in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (1200,)
        assert conn.execute("SELECT COUNT(*) FROM calls").fetchone() == (2400,)
        assert conn.execute("SELECT COUNT(DISTINCT service) FROM runs").fetchone() == (4,)
        expected_input = sum(300 * (1000 + p) + 300 * 10 for p in range(4))
        expected_output = 4 * (sum(range(300)) + 300)
        assert conn.execute("SELECT SUM(input_tokens), SUM(output_tokens) FROM calls").fetchone() == (
            expected_input, expected_output,
        )
        orphans = conn.execute("SELECT COUNT(*) FROM calls WHERE run_id NOT IN (SELECT run_id FROM runs)").fetchone()
        assert orphans == (0,)
        assert conn.execute("SELECT COUNT(*) FROM dropped_spans").fetchone() == (0,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize("workers", [1, 8])
def test_a_pool_made_inside_a_task_is_attributed_too(store_db, openai_client, workers):
    client = openai_client(answer)
    with unitcost.task("ticket", key="K"), ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda _: ask(client, "K"), range(10)))
    assert_every_call_in_its_task(store_db, calls_per_task=10, tasks=1)
