"""The PostgreSQL store, side by side with SQLite in the same run.

Throughput: the real `StoreSpanExporter` on the same synthetic LLM-call spans as the SQLite
benchmark (`store.throughput`), in batches of the store processor's size, one transaction a batch,
into a fresh PostgreSQL store; against it, in the same rounds, a plain binary ``COPY`` of the very
rows the exporter wrote into a fresh ``calls`` table of the same schema (the ceiling), and the same
exporter into a fresh SQLite file.

Scale: the cached 1,000,000-call SQLite store (`store.build_store`) copied into a PostgreSQL schema
(kept between runs), then ``unitcost report``, ``--by model`` and ``--every day`` with ``--db URL``,
each a fresh interpreter.

The server: ``$UNITCOST_BENCH_PG_URL`` (``benchmarks/run`` starts a scratch one with .ci/postgres
when it runs as root and none is given).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
import uuid
from typing import Any

from ._common import Row, bench_env, median, quartiles, timed_run

WRITER_TARGET = 50_000
COPY_SHARE_TARGET = 0.60
REPORT_TARGET_S = 2.0
BATCH = 2048
TIMEOUT_S = 120


def server_url() -> str | None:
    return os.environ.get("UNITCOST_BENCH_PG_URL") or os.environ.get("UNITCOST_TEST_PG_URL")


def _with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


def _new_schema(url: str, name: str | None = None, *, fresh: bool = True) -> str:
    import psycopg

    schema = name or f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        if fresh:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    return schema


def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _unavailable(section: str, names: list[str]) -> tuple[list[Row], dict[str, Any]]:
    note = "no PostgreSQL server: set UNITCOST_BENCH_PG_URL (benchmarks/run starts one when run as root)"
    return [Row(section, name, "", "not measured", "", None, note) for name in names], {}


def throughput(rounds: int, spans_per_round: int, log: Any) -> tuple[list[Row], dict[str, Any]]:
    url = server_url()
    if not url:
        return _unavailable("postgres", ["exporter into PostgreSQL: LLM-call spans persisted per second"])
    import psycopg

    from unitcost.exporters.store import StoreSpanExporter
    from unitcost.pricing.book import PriceBook
    from unitcost.store.backend import Batch
    from unitcost.store.connect import open_backend
    from unitcost.store.postgres_schema import connect
    from unitcost.store.stale_runs import KEEPS_SUMS

    from ._spans import llm_spans

    spans = llm_spans(spans_per_round, seed=7, days=1)
    batches = [spans[i : i + BATCH] for i in range(0, len(spans), BATCH)]
    pg_rates, copy_rates, sqlite_rates, write_rates = [], [], [], []
    # The rows the exporter builds from each batch (pricing included), built once: what the backend's
    # write_batch alone takes, without the exporter's Python work on each span.
    builder = StoreSpanExporter(os.devnull, PriceBook())
    built = [builder._rows(batch) for batch in batches]
    # The rows the exporter writes, read back once: what the plain COPY writes in each round.
    schema = _new_schema(url)
    try:
        StoreSpanExporter(_with_schema(url, schema), PriceBook()).export(spans)
        with connect(_with_schema(url, schema)) as conn:
            types = dict(conn.execute(
                "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                "WHERE a.attrelid = 'calls'::regclass AND a.attnum > 0 AND NOT a.attisdropped").fetchall())
            cursor = conn.execute("SELECT * FROM calls")
            columns = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
    finally:
        _drop_schema(url, schema)
    if len(rows) != len(spans):
        raise RuntimeError(f"the exporter stored {len(rows)} of {len(spans)} spans in PostgreSQL")
    row_batches = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
    copy_sql = f"COPY calls ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with tempfile.TemporaryDirectory(prefix="unitcost-bench-") as directory:
        for r in range(rounds):
            # plain COPY, same schema (a store made by unitcost, so the same indexes)
            schema = _new_schema(url)
            target = _with_schema(url, schema)
            StoreSpanExporter(target, PriceBook()).open()  # creates the schema, writes nothing
            with psycopg.connect(target) as conn:
                started = time.perf_counter()
                for batch in row_batches:
                    # (as the writer's own transactions: its calls mark no run's sums stale, see
                    # unitcost.store.stale_runs; otherwise the baseline would pay a trigger per row)
                    conn.execute("SELECT set_config(%s, 'on', true)", (KEEPS_SUMS,))
                    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                        copy.set_types([types[c] for c in columns])
                        for row in batch:
                            copy.write_row(row)
                    conn.commit()
                copy_rates.append(len(rows) / (time.perf_counter() - started))
            _drop_schema(url, schema)
            # the backend's batch writes alone, of rows already built
            schema = _new_schema(url)
            backend = open_backend(_with_schema(url, schema))
            prices = PriceBook()
            started = time.perf_counter()
            for rows_of_batch in built:
                backend.write_batch(Batch(rows_of_batch), prices)
            write_rates.append(len(spans) / (time.perf_counter() - started))
            backend.close()
            _drop_schema(url, schema)
            # the exporter into PostgreSQL
            schema = _new_schema(url)
            exporter = StoreSpanExporter(_with_schema(url, schema), PriceBook())
            exporter.open()
            started = time.perf_counter()
            for batch in batches:
                if exporter.export(batch).name != "SUCCESS":
                    raise RuntimeError("the PostgreSQL store exporter failed (its error is logged above)")
            pg_rates.append(len(spans) / (time.perf_counter() - started))
            exporter.shutdown()
            _drop_schema(url, schema)
            # the exporter into SQLite, same spans
            path = os.path.join(directory, f"sqlite-{r}.db")
            exporter = StoreSpanExporter(path, PriceBook())
            exporter.open()
            started = time.perf_counter()
            for batch in batches:
                exporter.export(batch)
            sqlite_rates.append(len(spans) / (time.perf_counter() - started))
            exporter.shutdown()
    log(f"  postgres throughput: {rounds} rounds of {len(spans):,} spans")
    rate, ceiling, sqlite_rate = median(pg_rates), median(copy_rates), median(sqlite_rates)
    write_rate = median(write_rates)
    lo, hi = quartiles(pg_rates)
    share = rate / ceiling
    return [
        Row("postgres", "exporter into PostgreSQL: LLM-call spans persisted per second",
            f"plain binary COPY {ceiling:,.0f} rows/s",
            f"{rate:,.0f} spans/s [IQR {lo:,.0f}..{hi:,.0f}]", ">= 50,000 spans/s", rate >= WRITER_TARGET,
            f"same spans into SQLite in the same rounds: {sqlite_rate:,.0f} spans/s"),
        Row("postgres", "exporter into PostgreSQL: share of a plain COPY of the same rows",
            f"plain binary COPY {ceiling:,.0f} rows/s", f"{share:.0%}", ">= 60%", share >= COPY_SHARE_TARGET,
            "COPY into a stage + INSERT ... ON CONFLICT, per-run sums, pricing and row building included"),
        Row("postgres", "PostgreSQL batch writes alone (rows already built and priced): share of a plain COPY",
            f"plain binary COPY {ceiling:,.0f} rows/s", f"{write_rate:,.0f} rows/s = {write_rate / ceiling:.0%}",
            ">= 60%", write_rate / ceiling >= COPY_SHARE_TARGET,
            "StoreBackend.write_batch: stage COPY + INSERT ... ON CONFLICT + per-run sums, one transaction a batch"),
    ], {"postgres_spans_per_s": pg_rates, "copy_rows_per_s": copy_rates, "sqlite_spans_per_s": sqlite_rates,
        "write_batch_rows_per_s": write_rates}


_TABLES = ("runs", "calls", "steps", "outcomes", "call_content", "run_totals", "run_sums", "dropped_spans")


def copy_store(sqlite_path: str, url: str, schema: str, log: Any) -> str:
    """The SQLite store's rows in a PostgreSQL schema of the same name as the cached file (kept)."""
    import psycopg

    from unitcost.store.connect import open_backend

    target = _with_schema(url, schema)
    with psycopg.connect(url) as conn:
        exists = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = "
            "'run_sums')", (schema,)).fetchone()[0]
    if exists:
        log(f"  postgres scale: cached schema {schema}")
        return target
    _new_schema(url, schema)
    open_backend(target).close()  # the schema, by unitcost's migrations
    started = time.perf_counter()
    with sqlite3.connect(sqlite_path) as source, psycopg.connect(target) as conn:
        for table in _TABLES:
            cursor = source.execute(f"SELECT * FROM {table}")
            columns = [d[0] for d in cursor.description]
            with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in cursor:
                    copy.write_row(row)
        conn.commit()
        conn.autocommit = True
        for table in _TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
    source.close()
    log(f"  postgres scale: copied the store into {schema} in {time.perf_counter() - started:.0f} s")
    # Rows copied in are rows unitcost's writer did not write: their tasks' rollups (unitcost.store.rollups)
    # are made now, as the writer makes them batch by batch, so the reports timed below find them current.
    started = time.perf_counter()
    with open_backend(target) as db:
        db.ensure_fresh()
    with psycopg.connect(target, autocommit=True) as conn:
        for table in ("task_rollup", "task_model_rollup", "rollup_days"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
    log(f"  postgres scale: made the rollups of the copied rows in {time.perf_counter() - started:.0f} s")
    return target


def scale(sqlite_path: str, repeats: int, log: Any) -> tuple[list[Row], dict[str, Any]]:
    """Each report over the same 1,000,000 calls on PostgreSQL and on SQLite, fresh interpreters, rounds
    interleaved with `unitcost --help` (the baseline): wall time, and the CPU time of the process (the
    server's work is in the wall time only)."""
    names = ["unitcost report", "unitcost report --by model", "unitcost report --every day"]
    url = server_url()
    if not url:
        return _unavailable("postgres scale", names)
    from .store import _unitcost_exe

    schema = "bench_" + os.path.basename(sqlite_path).replace("store-", "").split(".")[0].replace("-", "_")
    target = copy_store(sqlite_path, url, schema, log)
    # A store at rest, as autovacuum leaves it (m016 asks it to visit the rollups after 2% of rows changed):
    # the rank reads are index-only scans, which read the table too on pages not marked all-visible (a
    # transaction open elsewhere in the database during copy_store's VACUUM leaves them unmarked).
    import psycopg

    with psycopg.connect(target, autocommit=True) as conn:
        for table in ("task_rollup", "task_model_rollup", "rollup_days"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
    exe = _unitcost_exe()
    env = bench_env(UNITCOST_DB=target)
    flags = {"unitcost report": [], "unitcost report --by model": ["--by", "model"],
             "unitcost report --every day": ["--every", "day"]}
    commands = {"unitcost --help": [*exe, "--help"]}
    for name in names:
        commands[name] = [*exe, "report", "--db", target, *flags[name]]
        commands["SQLite: " + name] = [*exe, "report", "--db", sqlite_path, *flags[name]]
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    failures: dict[str, str] = {}
    for _ in range(repeats):
        for name, argv in commands.items():
            if name in failures:
                continue
            wall, cpu, failed = timed_run(argv, env, TIMEOUT_S)
            walls[name].append(wall)
            cpus[name].append(cpu)
            if failed:
                failures[name] = failed
    help_wall, help_cpu = median(walls["unitcost --help"]), median(cpus["unitcost --help"])
    rows = []
    for name in names:
        figure = median(walls[name])
        failed = failures.get(name) or failures.get("SQLite: " + name)
        rows.append(Row(
            "postgres scale", name + " --db postgresql://... (wall, fresh interpreter)",
            f"unitcost --help {help_wall:.2f} s wall, {help_cpu:.2f} s CPU; same report on SQLite "
            f"{median(walls['SQLite: ' + name]):.2f} s wall, {median(cpus['SQLite: ' + name]):.2f} s CPU",
            f"{figure:.2f} s wall [min {min(walls[name]):.2f}, {len(walls[name])} runs], "
            f"{median(cpus[name]):.2f} s CPU", "<= 2 s",
            None if failed else figure <= REPORT_TARGET_S, f"FAILED: {failed}" if failed else "",
        ))
    return rows, {"schema": schema, "seconds": walls, "cpu_seconds": cpus}
