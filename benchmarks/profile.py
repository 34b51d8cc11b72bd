"""``benchmarks/run --profile``: where unitcost's time goes on its hot paths.

py-spy samples a child process running one path in a loop (every thread, so the exporter's
background work shows), after a warm-up; `benchmarks._spy` sorts the samples into unitcost's and
the provider SDK's. Without py-spy (or without permission to attach), cProfile of the main thread.
The report commands are profiled in-process with cProfile over the cached 1,000,000-call store.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import REPO, bench_env

PATHS = ("openai_chat_hollow", "openai_chat", "openai_stream", "task_decorator", "exporter")


def _child(path: str, seconds: float) -> None:
    """Runs one path in a loop for ``seconds`` (after ~5 s of warm-up, which the parent skips)."""
    import unitcost

    directory = tempfile.mkdtemp(prefix="unitcost-bench-")
    unitcost.configure(service_name="bench", db=os.path.join(directory, "profile.db"))
    unitcost.instrument()
    if path == "exporter":
        from unitcost.exporters.store import StoreSpanExporter
        from unitcost.pricing.book import PriceBook

        from ._spans import llm_spans

        spans = llm_spans(20_000, seed=7, days=1)

        def step() -> None:
            exporter = StoreSpanExporter(os.path.join(directory, f"e{time.monotonic_ns()}.db"), PriceBook())
            for i in range(0, len(spans), 2048):  # the store processor's batch size
                exporter.export(spans[i : i + 2048])
            exporter.shutdown()
    elif path == "task_decorator":
        @unitcost.task("bench_task")
        def task() -> None:
            pass

        def step() -> None:
            for _ in range(1000):
                task()
            unitcost.flush()
    else:
        from ._fake import Workloads

        fn = Workloads().get(path)

        def step() -> None:
            for _ in range(50):
                fn()
            unitcost.flush()

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        step()
    unitcost.shutdown()
    shutil.rmtree(directory, ignore_errors=True)


def _spy(path: str, seconds: float, out: Path) -> bool:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(spy):
        return False
    warmup = 5.0
    child = subprocess.Popen([sys.executable, "-m", "benchmarks.profile", "--child", path, str(seconds + warmup + 2)],
                             cwd=REPO, env=bench_env())
    time.sleep(warmup)
    done = subprocess.run([spy, "record", "-r", "250", "-f", "raw", "-d", str(int(seconds)), "-p", str(child.pid),
                           "-o", str(out)], capture_output=True, text=True)
    child.wait()
    return done.returncode == 0 and out.exists()


def _cprofile(fn: Any, top: int = 25) -> str:
    profile = cProfile.Profile()
    profile.enable()
    fn()
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(top)
    return text.getvalue()


def _reports(top: int) -> str:
    from unitcost.store.schema import open_store

    from .store import build_store

    path, _ = build_store(100_000, 10, 90, lambda m: print(m, file=sys.stderr))
    db = open_store(path, create=False)
    out = []
    from unitcost.report.engine import report

    out.append("### report() over the 1,000,000-call store (cProfile, cumulative)\n\n```\n"
               + _cprofile(lambda: report(db), top) + "```")
    out.append("### report(by='model') (cProfile, cumulative)\n\n```\n"
               + _cprofile(lambda: report(db, by="model"), top) + "```")
    try:
        from unitcost.report.inspect import show_run

        run_id = db.conn.execute("SELECT run_id FROM runs ORDER BY started_ns LIMIT 1 OFFSET 50000").fetchone()[0]
        out.append("### show_run() (cProfile, cumulative)\n\n```\n" + _cprofile(lambda: show_run(db, run_id), top)
                   + "```")
    except ImportError:
        pass
    out.append("### import unitcost.cli.main (cProfile, cumulative)\n\n```\n"
               + _cprofile(lambda: __import__("unitcost.cli.main"), top) + "```")
    return "\n\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.profile", description=__doc__)
    parser.add_argument("--child", nargs=2, metavar=("PATH", "SECONDS"), help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--paths", default=",".join(PATHS) + ",reports")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], float(args.child[1]))
        return 0
    from ._spy import render, summarize

    with tempfile.TemporaryDirectory(prefix="unitcost-bench-") as directory:
        for path in args.paths.split(","):
            if path == "reports":
                print(_reports(args.top), flush=True)
                continue
            out = Path(directory) / f"{path}.txt"
            if _spy(path, args.seconds, out):
                print(render(f"{path} (py-spy, every thread)", summarize(out, args.top)) + "\n", flush=True)
            else:
                print(f"### {path}: py-spy unavailable; cProfile of the main thread\n\n```\n"
                      + _cprofile(lambda p=path: _child(p, args.seconds), args.top) + "```\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
