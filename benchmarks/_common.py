"""What every benchmark shares: workers, paired statistics, result rows, the machine's description."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    """One line of the results table."""

    section: str
    name: str
    baseline: str  # what it is measured against, with that baseline's own figure
    measured: str
    target: str = ""
    ok: bool | None = None  # None: no target, or not measurable yet
    note: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "-"}[self.ok]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} us"


def spread(values: Sequence[float], scale: float = 1e6, unit: str = "us") -> str:
    """median [interquartile range], the figure and how much it moved between blocks."""
    lo, hi = quartiles(values)
    return f"{median(values) * scale:,.1f} {unit} [IQR {lo * scale:,.1f}..{hi * scale:,.1f}]"


class Worker:
    """A child process holding one configuration (see benchmarks/_worker.py)."""

    def __init__(self, config: str) -> None:
        self.config = config
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._worker", config],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=bench_env(),
        )
        self._read()  # {"ready": config}

    def _read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker {self.config!r} died (its error is above)")
        return json.loads(line)

    def ask(self, **request: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        try:
            self.ask(op="quit")
        except (BrokenPipeError, RuntimeError, json.JSONDecodeError):
            pass
        self.proc.wait(timeout=60)


# unitcost as `pip install unitcost` gives it: without ecologits, so without energy estimates (the dev
# extra these benchmarks run in has it; an estimate costs the writer ~1 ms of Python a distinct call).
ENERGY = os.environ.get("UNITCOST_BENCH_ENERGY", "0")


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of child processes: unitcost's own errors raised, no user store or prices."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNITCOST_", "OTEL_", "ANTHROPIC_"))}
    # Installed packages run from cached bytecode; an editable checkout gets it on first import.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(REPO)
    env["UNITCOST_ENERGY"] = ENERGY
    env.update(extra)
    return env


def probe(config: str) -> dict[str, Any]:
    """Which workloads a configuration records, by running each once with a span collector."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks._worker", config, "--probe"],
        cwd=REPO, env=bench_env(), capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def timed_run(argv: list[str], env: dict[str, str], timeout_s: float) -> tuple[float, float, str | None]:
    """(wall s, CPU s of the process, failure or None) of one fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return float(timeout_s), float("nan"), f"still running after {timeout_s:g} s: stopped"
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        return wall, cpu, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
    return wall, cpu, None
