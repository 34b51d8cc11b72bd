"""A process that holds one configuration and runs timed blocks of calls when the parent asks.

Each configuration lives in its own process because instrumentation is global (patched SDK
methods, the global TracerProvider). The parent alternates between workers block by block
(A B A B ...), so drift on a noisy machine lands on every configuration alike.

Protocol: one JSON object a line on stdin, one answer a line on stdout.
    {"op": "run", "workload": "openai_chat", "n": 20}  -> {"seconds": ...}   (n calls, then flush)
    {"op": "probe"}                                     -> which workloads this configuration records
    {"op": "decorators", "n": 2000, "blocks": 30}       -> interleaved bare/task/step blocks
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

CONFIGS = ("bare", "unitcost", "otel-openai-v2", "anthropic-otel")


class _NullExporter:
    """Takes every span and keeps none: what a peer pays before the network."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _collector() -> Any:
    """A span processor that keeps finished spans (probe mode only: never while timing)."""
    from opentelemetry.sdk.trace import SpanProcessor

    class Collector(SpanProcessor):
        def __init__(self) -> None:
            self.spans: list[Any] = []

        def on_end(self, span: Any) -> None:
            self.spans.append(span)

    return Collector()


class Config:
    def __init__(self, name: str, workdir: str, probe: bool) -> None:
        self.name = name
        self.db = os.path.join(workdir, f"{name}.db")
        self.collector: Any = _collector() if probe else None
        self.flush: Callable[[], Any] = lambda: None
        getattr(self, "_setup_" + name.replace("-", "_"))()

    def _setup_bare(self) -> None:
        pass

    def _setup_unitcost(self) -> None:
        import unitcost

        unitcost.configure(service_name="bench", db=self.db)
        unitcost.instrument()
        self.flush = unitcost.flush
        if self.collector is not None:
            from opentelemetry import trace

            trace.get_tracer_provider().add_span_processor(self.collector)  # type: ignore[attr-defined]

    def _provider(self, set_global: bool) -> Any:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(_NullExporter()))  # type: ignore[arg-type]
        if self.collector is not None:
            provider.add_span_processor(self.collector)
        if set_global:
            trace.set_tracer_provider(provider)
        self.flush = provider.force_flush
        return provider

    def _setup_otel_openai_v2(self) -> None:
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=self._provider(set_global=False))

    def _setup_anthropic_otel(self) -> None:
        # No instrumentation at all: only the anthropic SDK's own span, into an SDK provider.
        self._provider(set_global=True)


def _probe(config: Config, workloads: Any) -> dict[str, Any]:
    """For each workload: the spans one call produced, by instrumentation scope, and store rows."""
    import sqlite3

    assert config.collector is not None
    result = {}
    for name in workloads.NAMES:
        before = len(config.collector.spans)
        rows_before = _rows(config.db)
        try:
            workloads.get(name)()
            error = None
        except Exception as exc:  # noqa: BLE001 - reported, not raised: the table says what broke
            error = f"{type(exc).__name__}: {exc}"[:300]
        config.flush()
        spans = config.collector.spans[before:]
        scopes: dict[str, int] = {}
        for span in spans:
            scope = span.instrumentation_scope.name if span.instrumentation_scope else "?"
            scopes[scope] = scopes.get(scope, 0) + 1
        # unitcost's calls: its own spans, or an SDK's span it adopted (anthropic's), marked as llm
        marked = sum(1 for span in spans if (span.attributes or {}).get("unitcost.span.type") == "llm")
        result[name] = {"scopes": scopes, "unitcost_spans": marked, "store_rows": _rows(config.db) - rows_before,
                        "error": error}
    del sqlite3
    return result


def _rows(db: str) -> int:
    import sqlite3

    if not os.path.exists(db):
        return 0
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


def _run(fn: Callable[[], None], n: int, flush: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process, every thread) for n calls and a flush."""
    perf, cpu = time.perf_counter, time.process_time
    wall0, cpu0 = perf(), cpu()
    for _ in range(n):
        fn()
    flush()
    return perf() - wall0, cpu() - cpu0


def _decorators(n: int, blocks: int) -> dict[str, dict[str, list[float]]]:
    """Empty functions: bare, @unitcost.task, @unitcost.step, interleaved block by block in-process
    (a decorator patches nothing global). Each decorated block ends with unitcost.flush()."""
    import unitcost

    def bare() -> None:
        pass

    @unitcost.task("bench_task")
    def task() -> None:
        pass

    @unitcost.step("bench_step")
    def step() -> None:
        pass

    # The floor of any decorator built on OpenTelemetry spans: the SDK's span with a task span's
    # attributes, made current and ended, into a provider with no processor (nothing exported).
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("bench")
    attributes = {"unitcost.span.type": "task", "gen_ai.operation.name": "invoke_agent",
                  "gen_ai.agent.name": "bench_task", "unitcost.task.kind": "bench_task",
                  "unitcost.task.id": "00000000000000a1"}

    def otel_span() -> None:
        with tracer.start_as_current_span("invoke_agent bench_task", attributes=attributes):
            pass

    kinds = {"bare": (bare, lambda: None), "task": (task, unitcost.flush), "step": (step, unitcost.flush),
             "otel": (otel_span, lambda: None)}
    for fn, flush in kinds.values():  # warm up
        _run(fn, n, flush)
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(blocks):
        for kind, (fn, flush) in kinds.items():
            wall_s, cpu_s = _run(fn, n, flush)
            times[kind].append(wall_s)
            cpu[kind].append(cpu_s)
    return {"wall": times, "cpu": cpu}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _memory(fn: Callable[[], None], calls: int, flush: Callable[[], Any], db: str) -> dict[str, Any]:
    """RSS after a warm-up, then after ``calls`` more calls and a drained exporter; store rows."""
    import gc

    for _ in range(5000):  # warm up: caches, the price book, the store's first pages
        fn()
    flush()
    gc.collect()
    before, rows_before = _rss(), _rows(db)
    peak = before
    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(calls):
        fn()
        if i % 10_000 == 0:
            peak = max(peak, _rss())
    flush()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    gc.collect()
    after = _rss()
    return {"rss_before": before, "rss_after": after, "rss_peak": max(peak, after), "seconds": seconds, "cpu": cpu,
            "calls": calls, "rows": _rows(db) - rows_before}


def main() -> None:
    from benchmarks._fake import Workloads

    name = sys.argv[1]
    probe = "--probe" in sys.argv
    with tempfile.TemporaryDirectory(prefix="unitcost-bench-") as workdir:
        config = Config(name, workdir, probe)
        workloads = Workloads()
        if probe:
            print(json.dumps(_probe(config, workloads)), flush=True)
            return
        print(json.dumps({"ready": name}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            op = request["op"]
            if op == "quit":
                break
            if op == "run":
                wall, cpu = _run(workloads.get(request["workload"]), request["n"], config.flush)
                answer: Any = {"seconds": wall, "cpu": cpu}
            elif op == "memory":
                answer = _memory(workloads.get(request["workload"]), request["calls"], config.flush, config.db)
            elif op == "decorators":
                answer = _decorators(request["n"], request["blocks"])
            else:
                answer = {"error": f"unknown op {op!r}"}
            print(json.dumps(answer), flush=True)
        if name == "unitcost":
            import unitcost

            unitcost.shutdown()


if __name__ == "__main__":
    main()
