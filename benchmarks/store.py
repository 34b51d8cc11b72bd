"""The store: exporter throughput against plain SQLite, and reports over a 1,000,000-call store.

Throughput: the real `StoreSpanExporter` on synthetic LLM-call spans (BoundedAttributes, as the SDK
hands them over) in batches of the store processor's size (2,048), one transaction a batch, into a
fresh store; against it, in the same rounds, plain ``executemany`` of the very rows the exporter
wrote, into a fresh store with the same schema and pragmas (the ceiling).

Scale: 100,000 tasks over 90 days, 10 LLM calls and one tool call each, written through the real
exporter by two processes, cached under the temp dir keyed by the store's schema; then the CLI,
each command a fresh interpreter, against `python -c pass` and `unitcost --help` in the same rounds.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import Row, bench_env, median, quartiles, timed_run

THROUGHPUT_TARGET = 100_000
REPORT_TARGET_S = 1.0  # issue 16: report, --by model, --every day over 1,000,000 calls
SHOW_TARGET_S = 0.3  # issue 16: show TASK
BYTES_PER_CALL_TARGET = 400
BATCH = 2048  # = StoreSpanProcessor.export_batch_size (checked in throughput())
SLOW_S = 10.0  # a command slower than this once is not repeated
TIMEOUT_S = 120
GENERATOR_VERSION = "1"  # bump when _spans.py changes what it generates


def _fresh_store(directory: str, name: str) -> Any:
    from unitcost.store.schema import open_store

    path = os.path.join(directory, name)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    return path, open_store(path)


def throughput(rounds: int, spans_per_round: int, log: Any) -> tuple[list[Row], dict[str, Any]]:
    from unitcost.exporters.store import StoreSpanExporter, StoreSpanProcessor
    from unitcost.pricing.book import PriceBook

    from ._spans import llm_spans

    if StoreSpanProcessor.export_batch_size != BATCH:
        raise RuntimeError(f"BATCH is {BATCH}, the store processor exports {StoreSpanProcessor.export_batch_size}")
    spans = llm_spans(spans_per_round, seed=7, days=1)
    batches = [spans[i : i + BATCH] for i in range(0, len(spans), BATCH)]
    exporter_rates, sqlite_rates = [], []
    with tempfile.TemporaryDirectory(prefix="unitcost-bench-") as directory:
        path, db = _fresh_store(directory, "rows.db")
        db.conn.close()
        StoreSpanExporter(path, PriceBook()).export(spans)
        with sqlite3.connect(path) as conn:
            columns = [r[1] for r in conn.execute("PRAGMA table_info(calls)")]
            rows = conn.execute("SELECT * FROM calls").fetchall()
        if len(rows) != len(spans):
            raise RuntimeError(f"the exporter stored {len(rows)} of {len(spans)} spans")
        sql = f"INSERT INTO calls ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        row_batches = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
        for _ in range(rounds):
            path, db = _fresh_store(directory, "plain.db")
            conn = db.conn
            started = time.perf_counter()
            for batch in row_batches:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(sql, batch)
                conn.execute("COMMIT")
            sqlite_rates.append(len(rows) / (time.perf_counter() - started))
            conn.close()

            path, db = _fresh_store(directory, "exporter.db")
            db.conn.close()
            exporter = StoreSpanExporter(path, PriceBook())  # a new price book: its lookups are counted
            started = time.perf_counter()
            for batch in batches:
                exporter.export(batch)
            exporter_rates.append(len(spans) / (time.perf_counter() - started))
            exporter.shutdown()
    log(f"  store throughput: {rounds} rounds of {len(spans):,} spans")
    rate, ceiling = median(exporter_rates), median(sqlite_rates)
    lo, hi = quartiles(exporter_rates)
    return [
        Row("store", "exporter: LLM-call spans persisted per second", f"plain SQLite executemany {ceiling:,.0f} rows/s",
            f"{rate:,.0f} spans/s [IQR {lo:,.0f}..{hi:,.0f}]", ">= 100,000 spans/s", rate >= THROUGHPUT_TARGET,
            f"{rate / ceiling:.0%} of the plain-SQLite ceiling on this machine",
            data={"exporter": exporter_rates, "sqlite": sqlite_rates}),
    ], {"exporter_spans_per_s": exporter_rates, "sqlite_rows_per_s": sqlite_rates}


# --- the 1,000,000-call store ----------------------------------------------------------------------

def _schema_key(tasks: int, calls_per_task: int, days: int) -> str:
    from unitcost.store.schema import open_store

    with tempfile.TemporaryDirectory(prefix="unitcost-bench-") as directory:
        db = open_store(os.path.join(directory, "blank.db"))
        schema = "\n".join(sorted(r[0] for r in db.conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")))
        db.conn.close()
    text = f"{schema}\n{GENERATOR_VERSION} {tasks} {calls_per_task} {days}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _export_part(path: str, first: int, last: int, total: int, calls_per_task: int, days: int) -> None:
    from unitcost.exporters.store import StoreSpanExporter
    from unitcost.pricing.book import PriceBook

    from ._spans import task_spans

    exporter = StoreSpanExporter(path, PriceBook(), "bench")
    batch: list[Any] = []
    for span in task_spans(first, last, total, calls_per_task, days, seed=11):
        batch.append(span)
        if len(batch) == BATCH:
            if exporter.export(batch).name != "SUCCESS":
                raise RuntimeError("the store exporter failed (its error is logged above)")
            batch = []
    if batch:
        exporter.export(batch)
    exporter.shutdown()


def cache_dir() -> Path:
    return Path(os.environ.get("UNITCOST_BENCH_CACHE") or Path(tempfile.gettempdir()) / "unitcost-bench-cache")


def build_store(tasks: int, calls_per_task: int, days: int, log: Any) -> tuple[Path, float | None]:
    """The cached store, built (through the real exporter, by two processes) when missing."""
    from unitcost.store.schema import open_store

    path = cache_dir() / f"store-{tasks}x{calls_per_task}-{_schema_key(tasks, calls_per_task, days)}.db"
    if path.exists():
        log(f"  scale: cached store {path}")
        return path, None
    path.parent.mkdir(parents=True, exist_ok=True)
    building = path.with_suffix(".building")
    for suffix in ("", "-wal", "-shm"):
        Path(str(building) + suffix).unlink(missing_ok=True)
    open_store(building).conn.close()
    started = time.perf_counter()
    workers = max(1, min(2, os.cpu_count() or 1))
    edges = [tasks * i // workers for i in range(workers + 1)]
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_export_part, args=(str(building), edges[i], edges[i + 1], tasks, calls_per_task, days))
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
        if proc.exitcode != 0:
            raise RuntimeError("building the benchmark store failed")
    with sqlite3.connect(building) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    seconds = time.perf_counter() - started
    os.replace(building, path)
    log(f"  scale: built {path} in {seconds:.0f} s")
    return path, seconds


def _unitcost_exe() -> list[str]:
    exe = Path(sys.executable).parent / "unitcost"
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from unitcost.cli.main import cli; cli()"]


def scale(tasks: int, calls_per_task: int, days: int, repeats: int, log: Any) -> tuple[list[Row], dict[str, Any]]:
    path, build_seconds = build_store(tasks, calls_per_task, days, log)
    with sqlite3.connect(path) as conn:
        calls = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        run_ids = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY started_ns")]
    conn.close()
    size = path.stat().st_size
    task_id = run_ids[len(run_ids) // 2]
    exe = _unitcost_exe()
    env = bench_env(UNITCOST_DB=str(path))
    help_text = subprocess.run([*exe, "report", "--help"], env=env, capture_output=True, text=True).stdout
    commands: dict[str, list[str] | None] = {
        "python -c pass (interpreter start)": [sys.executable, "-c", "pass"],
        "unitcost --help": [*exe, "--help"],
        "unitcost report": [*exe, "report", "--db", str(path)],
        "unitcost report --by model": [*exe, "report", "--db", str(path), "--by", "model"],
        "unitcost report --every day": [*exe, "report", "--db", str(path), "--every", "day"]
        if "--every" in help_text else None,
        "unitcost show TASK": [*exe, "show", task_id, "--db", str(path)],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    failures: dict[str, str] = {}
    load_before = os.getloadavg()
    for repeat in range(repeats):
        for name, argv in commands.items():
            # A command far over its target is timed once: the verdict is clear and the run stays short.
            if argv is None or name in failures or (repeat and min(times[name]) > SLOW_S):
                continue
            wall, cpu, failed = timed_run(argv, env, TIMEOUT_S)
            times[name].append(wall)
            cpus[name].append(cpu)
            if failed:
                failures[name] = failed
    load_after = os.getloadavg()
    log(f"  scale: {repeats} rounds of {len([c for c in commands.values() if c])} commands")
    start_figure = median(times["python -c pass (interpreter start)"])
    help_figure = median(times["unitcost --help"])
    help_cpu = median(cpus["unitcost --help"])
    # On a shared machine other processes stretch wall time far more than CPU time: both are shown, with
    # the load average around the rounds, and the verdict is on wall time as the target says.
    load = f"load {load_before[0]:.2f} -> {load_after[0]:.2f}"
    rows = [
        Row("scale", f"store size per LLM call ({calls:,} calls, {runs:,} runs, 90 days)", "",
            f"{size / calls:,.0f} bytes ({size / 2**20:,.0f} MiB)", "< 400 bytes", size / calls < BYTES_PER_CALL_TARGET,
            "whole file (all tables and indexes) / calls" + (f"; built in {build_seconds:.0f} s" if build_seconds else
                                                             "; cached"))
    ]
    for name, argv in commands.items():
        if not name.startswith("unitcost ") or name == "unitcost --help":
            continue
        target = SHOW_TARGET_S if name.startswith("unitcost show") else REPORT_TARGET_S
        if argv is None:
            rows.append(Row("scale", name, "", "does not exist yet", f"<= {target:g} s", None,
                            "the CLI has no --every"))
            continue
        figure = median(times[name])
        failed = failures.get(name)
        runs_ = len(times[name])
        rows.append(Row("scale", name + " (wall, fresh interpreter)",
                        f"interpreter {start_figure:.2f} s, unitcost --help {help_figure:.2f} s ({help_cpu:.2f} s CPU)",
                        f"{figure:.2f} s" + (f" [min {min(times[name]):.2f}, {runs_} runs]" if runs_ > 1 else
                                             " (1 run)") + f", {median(cpus[name]):.2f} s CPU", f"<= {target:g} s",
                        False if failed and "stopped" in failed else None if failed else figure <= target,
                        f"FAILED: {failed}" if failed else load))
    return rows, {"store": str(path), "bytes": size, "calls": calls, "runs": runs, "seconds": times,
                  "cpu_seconds": cpus, "load": [load_before, load_after], "build_seconds": build_seconds}


def remove_cache() -> None:
    shutil.rmtree(cache_dir(), ignore_errors=True)
