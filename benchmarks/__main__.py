"""``python -m benchmarks``: run every benchmark, print one table (``benchmarks/run`` sets up the venv).

Options: --quick (fewer rounds and a 100,000-call store: a smoke run, not for the record),
--only SECTION[,SECTION] (import, calls, decorators, store, lag, scale, ui, memory, postgres), --json PATH.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from ._common import Row, machine, median, versions

SECTIONS = ("import", "calls", "decorators", "store", "lag", "scale", "ui", "memory", "postgres")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer rounds, a 100,000-call store")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma list of: " + ", ".join(SECTIONS))
    parser.add_argument("--json", dest="json_path", help="also write every figure and sample here")
    parser.add_argument("--instructions", action="store_true",
                        help="first the per-call table in instructions counted by callgrind (instructions.py),"
                             " then the time sections of --only as the second table")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    quick = args.quick

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    rows: list[Row] = []
    data: dict[str, Any] = {}
    if args.instructions:
        from . import instructions

        log("instructions (callgrind) ...")
        instruction_rows, data["instructions"] = instructions.measure(30 if quick else 100, log)
        print(render({"measure": "instructions added per call (callgrind, measured section only)"}, instruction_rows))
    for section in SECTIONS:
        if section not in only:
            continue
        log(f"{section} ...")
        t = time.perf_counter()
        section_rows, section_data = _run(section, quick, log, data)
        rows += section_rows
        data[section] = section_data
        log(f"{section}: {time.perf_counter() - t:.0f} s")
    elapsed = time.perf_counter() - started
    header = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "benchmarks/run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seconds": round(elapsed),
        **machine(),
        **versions("unitcost", "openai", "anthropic", "opentelemetry-sdk", "opentelemetry-instrumentation-openai-v2",
                   "opentelemetry-util-genai", "genai-prices"),
    }
    print(render(header, rows))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"header": header, "rows": [r.__dict__ for r in rows], "data": data}, f, indent=1, default=str)
    return 0


def _run(section: str, quick: bool, log: Any, done: dict[str, Any]) -> tuple[list[Row], Any]:
    from . import calls, lag, overhead, postgres, store

    if section == "import":
        return overhead.imports(5 if quick else 15, log)
    if section == "calls":
        return calls.measure(8 if quick else 30, log)
    if section == "decorators":
        return overhead.decorators(5 if quick else 30, log)
    if section == "store":
        return store.throughput(2 if quick else 5, 20_000 if quick else 50_000, log)
    if section == "lag":  # against the `store` section's rate when it ran, else measures its own
        isolated = done.get("store", {}).get("exporter_spans_per_s")
        return lag.measure(10 if quick else 30, median(isolated) if isolated else None, log)
    if section == "scale":
        return store.scale(10_000 if quick else 100_000, 10, 90, 2 if quick else 5, log)
    if section == "ui":
        from . import ui

        return ui.measure(10_000 if quick else 100_000, 10, 90, 5, log)
    if section == "memory":
        return overhead.memory(20_000 if quick else 200_000, log)
    if section == "postgres":  # the PostgreSQL store beside SQLite: writer throughput, then reports
        rows, data = postgres.throughput(2 if quick else 5, 20_000 if quick else 50_000, log)
        tasks = 10_000 if quick else 100_000
        path, _ = store.build_store(tasks, 10, 90, log)
        more, scale_data = postgres.scale(str(path), 2 if quick else 3, log)
        return rows + more, {**data, "scale": scale_data}
    raise ValueError(section)


def render(header: dict[str, Any], rows: list[Row]) -> str:
    lines = ["", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in header.items()]
    lines += ["", "| section | benchmark | baseline (same run) | measured | target | verdict | note |",
              "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.section} | {r.name} | {r.baseline} | {r.measured} | {r.target} | {r.verdict} | {r.note} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
