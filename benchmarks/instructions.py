"""Instructions per call, counted by valgrind's callgrind: the figure that decides per-call questions.

Wall and CPU time on a shared 2-core machine move by tens of percent between processes; the number
of instructions a call executes does not. Each (configuration, workload) runs in a fresh process
under ``valgrind --tool=callgrind --instr-atstart=no``; the process turns counting on only around
its N measured calls and the flush after them (benchmarks/_counted.py), so start-up and warm-up are
not counted and a run takes seconds, not minutes. Every thread is counted, the store writer's too.

Added instructions per call = (configuration's count - bare count) / N. Targets (issue "Performance
you can prove"):
- below the official OpenTelemetry instrumentation (the peer) by at least 20% on every workload both
  instrument, store work included;
- at most 1.5x a minimal one-span wrapper (the floor) on plain calls, 3x on streams;
- ``@unitcost.task`` / ``@unitcost.step`` at most 1.3x an OpenTelemetry SDK span with the same
  attributes exported to an in-memory exporter;
- the store writer at least 60% of plain SQLite ``executemany`` rows/s into the same schema, i.e.
  executemany's instructions per row / the exporter's per span >= 0.6.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from ._common import REPO, Row
from ._counted import CALL_WORKLOADS, STORE_BATCH

STREAMS = {"openai_stream", "anthropic_stream"}
PEER_WORKLOADS = {"openai_chat", "openai_stream", "openai_responses"}  # what openai-v2 instruments
PEER_MARGIN = 0.8
FLOOR_PLAIN, FLOOR_STREAM, FLOOR_SCOPE = 1.5, 3.0, 1.3
STORE_TARGET = 0.6
_TOTALS = re.compile(r"^totals:\s*(\d+)", re.MULTILINE)


def available() -> str | None:
    """None when callgrind can run here, else why not."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install valgrind)"
    return None


def count(config: str, workload: str, n: int, keep: str | None = None, *, main_thread: bool = False) -> int:
    """Instructions callgrind counted in the measured section of one run (``main_thread``: those of the
    thread that makes the calls only, not the store writer's)."""
    directory = keep or tempfile.mkdtemp(prefix="unitcost-callgrind-")
    out = os.path.join(directory, f"callgrind.{workload}.{config}{'.main' if main_thread else ''}.out")
    command = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
        *(["--separate-threads=yes"] if main_thread else []),
        sys.executable, "-m", "benchmarks._counted", config, workload, str(n),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{config} {workload}: exit {done.returncode}\n{done.stderr[-2000:]}")
    with open(out + "-01" if main_thread else out) as f:  # thread 1: the main thread, which calls
        found = _TOTALS.search(f.read())
    if keep is None:
        shutil.rmtree(directory, ignore_errors=True)
    if found is None:
        raise RuntimeError(f"{config} {workload}: no totals in {out}")
    return int(found.group(1))


def _k(instructions: float) -> str:
    return f"{instructions / 1000:,.0f} k"


def measure(n: int, log: Any, keep: str | None = None, only: tuple[str, ...] = ()) -> tuple[list[Row], dict[str, Any]]:
    why_not = available()
    if why_not:
        return [Row("instructions", "instructions per call", "-", "not measured", ok=None, note=why_not)], {}
    rows: list[Row] = []
    data: dict[str, Any] = {}
    workloads = only or (*CALL_WORKLOADS, "task", "step", "store")
    for workload in workloads:
        configs = ["bare", "unitcost"]
        if workload != "store":
            configs += ["unitcost-nostore", "floor"]
        if workload in PEER_WORKLOADS:
            configs.append("peer")
        per = STORE_BATCH * n if workload == "store" else n
        counted = {}
        for config in configs:
            counted[config] = count(config, workload, n if workload != "store" else max(1, n // 50), keep)
            log(f"  {workload} {config}: {counted[config]:,} instructions")
        if workload == "store":
            batches = max(1, n // 50)
            plain = counted["bare"] / (batches * STORE_BATCH)
            ours = counted["unitcost"] / (batches * STORE_BATCH)
            ratio = plain / ours
            rows.append(Row(
                "instructions", "store writer, per LLM-call span", f"plain executemany {_k(plain)} per row",
                f"{_k(ours)} per span ({ratio:.0%} of the plain-SQLite rate)", f">= {STORE_TARGET:.0%}",
                ratio >= STORE_TARGET, data={"plain": plain, "exporter": ours},
            ))
            data[workload] = {"plain_per_row": plain, "exporter_per_span": ours}
            continue
        bare = counted["bare"] / per
        added = {c: (counted[c] - counted["bare"]) / per for c in configs if c != "bare"}
        data[workload] = {"bare": bare, **{f"{c}_added": v for c, v in added.items()}}
        ours, floor = added["unitcost"], added["floor"]
        limit = FLOOR_SCOPE if workload in ("task", "step") else FLOOR_STREAM if workload in STREAMS else FLOOR_PLAIN
        baseline = f"bare {_k(bare)}; floor +{_k(floor)}"
        verdicts = [ours <= limit * floor]
        target = f"<= {limit}x floor"
        caller = added["unitcost-nostore"]
        note = f"{ours / floor:.2f}x floor; caller's thread +{_k(caller)}, store writer +{_k(ours - caller)}"
        if "peer" in added:
            peer = added["peer"]
            baseline += f"; peer +{_k(peer)}"
            verdicts.append(ours <= PEER_MARGIN * peer)
            target += f", <= {PEER_MARGIN}x peer"
            note += f", {ours / peer:.2f}x peer"
        rows.append(Row("instructions", workload, baseline, f"+{_k(ours)} per call", target, all(verdicts), note,
                        data=data[workload]))
        if workload == "openai_chat":
            rows.append(_postgres_callers(n, keep, log, data))
    return rows, data


PG_SAME = 0.02  # "the same": the caller's thread within 2% with either store


def _postgres_callers(n: int, keep: str | None, log: Any, data: dict[str, Any]) -> Row:
    """The caller's thread with a PostgreSQL store against the SQLite store (issue 12): its database
    work is the writer thread's, so what the calling thread executes should not change."""
    name = "openai_chat, caller's thread: PostgreSQL store vs SQLite store"
    if not os.environ.get("UNITCOST_BENCH_PG_URL"):
        return Row("instructions", name, "-", "not measured", ok=None,
                   note="no server: set UNITCOST_BENCH_PG_URL (benchmarks/run starts one as root)")
    counted = {}
    for config in ("bare", "unitcost", "unitcost-postgres"):
        counted[config] = count(config, "openai_chat", n, keep, main_thread=True)
        log(f"  openai_chat {config} (main thread): {counted[config]:,} instructions")
    sqlite = (counted["unitcost"] - counted["bare"]) / n
    postgres = (counted["unitcost-postgres"] - counted["bare"]) / n
    data["openai_chat_callers"] = {"sqlite_added": sqlite, "postgres_added": postgres}
    return Row("instructions", name, f"SQLite store: caller's thread +{_k(sqlite)}", f"+{_k(postgres)} per call",
               f"within {PG_SAME:.0%}", abs(postgres - sqlite) <= PG_SAME * sqlite,
               f"{postgres / sqlite - 1:+.1%}", data=data["openai_chat_callers"])


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="benchmarks.instructions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100, help="measured calls per run (default 100)")
    parser.add_argument("--keep", help="keep the callgrind.out files here, for callgrind_annotate")
    parser.add_argument("--only", default="", help="comma list of workloads")
    args = parser.parse_args(argv)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    only = tuple(w for w in args.only.split(",") if w)
    rows, _ = measure(args.n, lambda m: print(m, file=sys.stderr, flush=True), args.keep, only)
    from .__main__ import render

    print(render({"measure": "instructions (callgrind), measured section only", "calls per run": args.n}, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
