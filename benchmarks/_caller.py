"""A busy program for the `lag` benchmark: threads making real openai calls flat out, each in a task.

``python -m benchmarks._caller DB THREADS SECONDS CLIENT OUT``: unitcost configured with its default
SQLite store at DB and instrumented, then THREADS threads each call the real openai client (over an
in-memory transport; CLIENT ``real``, or ``hollow`` for the client with the SDK's own work stubbed, to
offer more spans than the writer can take) inside ``@unitcost.task`` for SECONDS. Then it flushes and
writes one JSON document to OUT: when the first task started, when each task ended (Unix ns), how long the
store writer spent in its exports and on how many spans, and when the first span was dropped.

Nothing here waits for the writer or reads the store: the parent process samples the store.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any


def main(db: str, threads: int, seconds: float, client_kind: str, out: str) -> None:
    import unitcost
    from unitcost.exporters.store import DropCounter, StoreSpanExporter

    from ._fake import GPT, HOLLOW_MESSAGES, MESSAGES, chat_body, hollow_chat_client, openai_client

    # The writer's own time: how long its exports took (wall, GIL waits included) and for how many
    # spans. Measured around the real export, on the writer's thread; nothing else is changed.
    writer = {"seconds": 0.0, "spans": 0, "batches": 0}
    real_export = StoreSpanExporter.export

    def timed_export(self: Any, spans: Any) -> Any:
        started = time.perf_counter()
        try:
            return real_export(self, spans)
        finally:
            writer["seconds"] += time.perf_counter() - started
            writer["spans"] += len(spans)
            writer["batches"] += 1 if spans else 0

    StoreSpanExporter.export = timed_export  # type: ignore[method-assign]
    first_drop: list[int] = []
    real_add = DropCounter.add

    def noted_add(self: Any, reason: str, count: int = 1) -> None:
        if not first_drop and count > 0:
            first_drop.append(time.time_ns())
        real_add(self, reason, count)

    DropCounter.add = noted_add  # type: ignore[method-assign]

    unitcost.configure(service_name="lag", db=db)
    unitcost.instrument()
    process_at_start = _writer_process_figures(db, wait=True)  # its start-up (imports) is not the workload's
    hollow = client_kind == "hollow"
    clients = [hollow_chat_client() if hollow else openai_client(chat_body()) for _ in range(threads)]
    messages = HOLLOW_MESSAGES if hollow else MESSAGES

    @unitcost.task("ticket")
    def answer(client: Any) -> Any:
        return client.chat.completions.create(model=GPT, messages=messages)

    ends: list[list[int]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    stop_at = [0.0]

    def work(i: int) -> None:
        client, ended = clients[i], ends[i]
        start.wait()
        while time.monotonic() < stop_at[0]:
            answer(client)
            ended.append(time.time_ns())

    workers = [threading.Thread(target=work, args=(i,), name=f"caller-{i}") for i in range(threads)]
    for w in workers:
        w.start()
    stop_at[0] = time.monotonic() + seconds
    first_start = time.time_ns()
    start.wait()
    for w in workers:
        w.join()
    stopped = time.time_ns()
    process = _writer_process_figures(db)  # before the flush: what it did while the callers ran
    if process and process_at_start:
        process = {k: process[k] - process_at_start[k] for k in process}
    unitcost.flush()
    with open(out, "w") as f:  # a file, not stdout: a pipe nobody reads until exit would block here
        json.dump({
            "first_start_ns": first_start, "stopped_ns": stopped, "ends_ns": sorted(e for t in ends for e in t),
            "writer": writer, "first_drop_ns": first_drop[0] if first_drop else None,
            "writer_process": process,
        }, f)
    unitcost.shutdown()


def _writer_process_figures(db: str, wait: bool = False) -> dict[str, Any] | None:
    """With configure(store_writer="process"): the writer process's CPU time so far and the spans stored,
    read together (Linux /proc), or None for a writer thread (``wait``: once it has started)."""
    import os
    import sqlite3

    from unitcost.pipeline import config

    store = next(p for p in config.pipeline().processors if type(p).__name__ == "StoreSpanProcessor")
    pid = getattr(store._exporter, "writer_pid", None)
    if pid is None:
        return None
    if wait:
        store._exporter._writer.wait_started(time.monotonic() + 30)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        stored = conn.execute("SELECT (SELECT COUNT(*) FROM runs) + (SELECT COUNT(*) FROM calls)").fetchone()[0]
    return {"cpu_s": cpu, "spans_stored": stored}


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5])
