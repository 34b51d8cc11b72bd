"""Decorator overhead, memory over 200,000 calls, and `import unitcost`."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from ._common import Row, Worker, bench_env, median, quartiles

TASK_TARGET_S = 30e-6
MEMORY_TARGET_BYTES = 20 * 2**20
IMPORT_TARGET_S = 0.150


def decorators(blocks: int, log: Any) -> tuple[list[Row], dict[str, Any]]:
    worker = Worker("unitcost")
    try:
        times = worker.ask(op="decorators", n=2000, blocks=blocks)
    finally:
        worker.close()
    n = 2000
    rows = []
    cpu, wall = times["cpu"], times["wall"]
    for kind in ("task", "step"):
        added = [(a - b) / n for a, b in zip(cpu[kind], cpu["bare"], strict=True)]
        added_wall = [(a - b) / n for a, b in zip(wall[kind], wall["bare"], strict=True)]
        lo, hi = quartiles(added)
        target, ok = ("<= 30 us", median(added) <= TASK_TARGET_S) if kind == "task" else ("", None)
        rows.append(Row("decorators", f"empty @unitcost.{kind} function, per span",
                        f"bare function {median(cpu['bare']) / n * 1e6:.2f} us",
                        f"+{median(added) * 1e6:,.1f} us CPU [IQR {lo * 1e6:,.1f}..{hi * 1e6:,.1f}]; "
                        f"wall +{median(added_wall) * 1e6:,.1f} us", target, ok,
                        f"{blocks} blocks of {n} calls, each with its flush()", data={"added": added}))
    if "otel" in cpu:
        added = [(a - b) / n for a, b in zip(cpu["otel"], cpu["bare"], strict=True)]
        lo, hi = quartiles(added)
        rows.append(Row("decorators", "reference: an OpenTelemetry SDK span alone (a task span's attributes, made "
                        "current, no processor)", f"bare function {median(cpu['bare']) / n * 1e6:.2f} us",
                        f"+{median(added) * 1e6:,.1f} us CPU [IQR {lo * 1e6:,.1f}..{hi * 1e6:,.1f}]", "", None,
                        "the floor under any span-based decorator on this machine", data={"added": added}))
    log(f"  decorators: {blocks} blocks")
    return rows, {"decorator_block_seconds": times}


def memory(calls: int, log: Any) -> tuple[list[Row], dict[str, Any]]:
    results = {}
    for config in ("bare", "unitcost"):
        worker = Worker(config)
        try:
            results[config] = worker.ask(op="memory", workload="openai_chat_hollow", calls=calls)
        finally:
            worker.close()
        r = results[config]
        log(f"  memory {config}: {r['calls']:,} calls in {r['seconds']:.0f} s, "
            f"RSS {r['rss_before'] / 2**20:.1f} -> {r['rss_after'] / 2**20:.1f} MiB")
    u, b = results["unitcost"], results["bare"]
    growth = u["rss_after"] - u["rss_before"]
    bare_growth = b["rss_after"] - b["rss_before"]
    lost = u["calls"] - u["rows"]
    row = Row(
        "memory", f"RSS growth over {calls:,} instrumented calls, exporter drained",
        f"bare {bare_growth / 2**20:+.1f} MiB", f"{growth / 2**20:+.1f} MiB (peak {u['rss_peak'] / 2**20:.0f} MiB)",
        "< 20 MiB", growth < MEMORY_TARGET_BYTES and lost == 0,
        f"{u['rows']:,} of {u['calls']:,} calls stored" + ("" if lost == 0 else f": {lost:,} LOST")
        + f"; {u['cpu'] / u['calls'] * 1e6:.0f} us CPU/call vs bare {b['cpu'] / b['calls'] * 1e6:.0f} us "
        "(openai client with its request building, HTTP and parsing stubbed)",
        data=results,
    )
    return [row], results


_IMPORT_PROBE = (
    "import sys, time; t = time.perf_counter(); import {module}; t = time.perf_counter() - t; "
    "import json; print(json.dumps([t, [m for m in ('openai', 'anthropic', 'tiktoken') if m in sys.modules]]))"
)


def imports(repeats: int, log: Any) -> tuple[list[Row], dict[str, Any]]:
    """`import unitcost` in a fresh interpreter, alternating with a baseline import (json)."""
    env = bench_env()
    subprocess.run([sys.executable, "-c", "import unitcost, unitcost.cli.main"], env=env, cwd="/", check=True)
    times: dict[str, list[float]] = {"unitcost": [], "json": []}
    heavy: set[str] = set()
    for _ in range(repeats):
        for module in ("json", "unitcost"):
            out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE.format(module=module)], env=env, cwd="/",
                                 capture_output=True, text=True, check=True)
            seconds, loaded = json.loads(out.stdout)
            times[module].append(seconds)
            if module == "unitcost":
                heavy.update(loaded)
    t = median(times["unitcost"])
    lo, hi = quartiles(times["unitcost"])
    log(f"  import: {repeats} fresh interpreters")
    row = Row("import", "import unitcost (fresh interpreter)", f"import json {median(times['json']) * 1e3:.1f} ms",
              f"{t * 1e3:.1f} ms [IQR {lo * 1e3:.1f}..{hi * 1e3:.1f}]", "<= 150 ms, no openai/anthropic/tiktoken",
              t <= IMPORT_TARGET_S and not heavy, "imports " + (", ".join(sorted(heavy)) if heavy else "none of them"),
              data=times)
    return [row], times
