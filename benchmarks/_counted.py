"""One configuration running one workload under valgrind's callgrind, counting only the measured section.

Started by `benchmarks.instructions` as

    valgrind --tool=callgrind --instr-atstart=no ... python -m benchmarks._counted CONFIG WORKLOAD N

It sets the configuration up, warms the workload (calls, then a flush, so first-call work such as
imports, compiled statements and price lookups is not counted), turns callgrind's instrumentation on
with ``callgrind_control -i on``, makes N calls, flushes once (so every call's background work, the
store writer's included, is counted exactly once whatever the clock did under valgrind), and turns
it off. Instructions outside that section are not counted at all.

Configurations:
    bare      the workload alone
    unitcost  unitcost configured with its default store, and instrumented
    unitcost-nostore  the same without a store: the caller's thread's share (unitcost - this = the writer's)
    unitcost-postgres  unitcost with a PostgreSQL store ($UNITCOST_BENCH_PG_URL, a schema of its own)
    peer      the official OpenTelemetry OpenAI instrumentation (opentelemetry-instrumentation-openai-v2)
    floor     a minimal one-span wrapper: a span around the SDK method with the usage's token counts
Peer and floor export through a BatchSpanProcessor to an in-memory exporter that counts spans.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from ._fake import Workloads

CONFIGS = ("bare", "unitcost", "unitcost-nostore", "unitcost-postgres", "peer", "floor")
CALL_WORKLOADS = ("openai_chat", "openai_stream", "openai_responses", "anthropic_messages", "anthropic_stream")
SCOPE_WORKLOADS = ("task", "step")
WORKLOADS = CALL_WORKLOADS + SCOPE_WORKLOADS + ("store",)
WARM_UP = 20
STORE_BATCH = 2048  # spans a batch, as the store processor hands them to its exporter


class CountingExporter:
    """Keeps no span, counts them: what a peer pays before the network."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(CountingExporter()))  # type: ignore[arg-type]
    return provider


def _floor(provider: Any) -> None:
    """The cheapest instrumentation that still records a call: one span, the model and two counts."""
    import wrapt

    tracer = provider.get_tracer("floor")

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        with tracer.start_as_current_span("chat") as span:
            span.set_attribute("gen_ai.request.model", kwargs.get("model", ""))
            result = wrapped(*args, **kwargs)
            usage = getattr(result, "usage", None)
            if usage is not None:
                span.set_attributes({
                    "gen_ai.usage.input_tokens": getattr(usage, "prompt_tokens", None)
                    or getattr(usage, "input_tokens", 0),
                    "gen_ai.usage.output_tokens": getattr(usage, "completion_tokens", None)
                    or getattr(usage, "output_tokens", 0),
                })
            return result

    for module, name in (
        ("openai.resources.chat.completions", "Completions.create"),
        ("openai.resources.responses", "Responses.create"),
        ("anthropic.resources.messages", "Messages.create"),
    ):
        wrapt.wrap_function_wrapper(module, name, wrapper)


class Scopes:
    """The decorator workloads: an empty function, bare or as a task / step, or as the OpenTelemetry
    span a decorator could at least make (the floor: the task span's attributes, made current)."""

    def __init__(self, config: str, provider: Any) -> None:
        def nothing() -> None:
            pass

        self.task: Callable[[], None] = nothing
        self.step: Callable[[], None] = nothing
        if config.startswith("unitcost"):
            import unitcost

            self.task = unitcost.task("ticket")(nothing)
            self.step = unitcost.step("plan")(nothing)
        elif config == "floor":
            tracer = provider.get_tracer("floor")
            attributes = {"unitcost.span.type": "task", "unitcost.task.kind": "ticket"}

            def spanned() -> None:
                with tracer.start_as_current_span("ticket", attributes=attributes):
                    pass

            self.task = self.step = spanned

    def get(self, name: str) -> Callable[[], None]:
        return getattr(self, name)  # type: ignore[no-any-return]


def _toggle(on: bool) -> None:
    # callgrind_control talks to the valgrind running this process; it returns once valgrind took the command.
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
                   check=True, capture_output=True, timeout=120)


def store_writer(config: str, n: int) -> None:
    """The store writer per span: unitcost's exporter on synthetic LLM-call spans (batches of the
    store processor's size, one transaction each), against plain ``executemany`` of the very rows it
    wrote into a fresh store of the same schema (config "bare")."""
    import sqlite3

    from unitcost.exporters.store import StoreSpanExporter
    from unitcost.pricing.book import PriceBook
    from unitcost.store.schema import open_store

    from ._spans import llm_spans

    directory = tempfile.mkdtemp()
    spans = llm_spans(STORE_BATCH * (n + 1), seed=7, days=1)
    batches = [spans[i : i + STORE_BATCH] for i in range(0, len(spans), STORE_BATCH)]
    rows_path = os.path.join(directory, "rows.db")
    open_store(rows_path).conn.close()
    exporter = StoreSpanExporter(rows_path, PriceBook())
    exporter.open()
    if config == "bare":
        for batch in batches:
            exporter.export(batch)
        exporter.shutdown()
        with sqlite3.connect(rows_path) as conn:
            columns = [r[1] for r in conn.execute("PRAGMA table_info(calls)")]
            rows = conn.execute("SELECT * FROM calls ORDER BY rowid").fetchall()
        sql = f"INSERT INTO calls ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        conn = open_store(os.path.join(directory, "plain.db")).conn
        row_batches = [rows[i : i + STORE_BATCH] for i in range(0, len(rows), STORE_BATCH)]

        def write(batch: Any) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, batch)
            conn.execute("COMMIT")

        write(row_batches[0])  # warm: compiled statement, pages
        _toggle(True)
        for batch in row_batches[1:]:
            write(batch)
        _toggle(False)
        return
    exporter.export(batches[0])  # warm: price lookups, compiled statements
    _toggle(True)
    for batch in batches[1:]:
        exporter.export(batch)
    _toggle(False)
    exporter.shutdown()


def main() -> None:
    config, workload, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if workload == "store":
        store_writer(config, n)
        return
    flush: Callable[[], Any] = lambda: None  # noqa: E731
    provider: Any = None
    if config.startswith("unitcost"):
        import unitcost

        db = os.path.join(tempfile.mkdtemp(), "unitcost.db")
        if config == "unitcost-postgres":
            from .postgres import _new_schema, _with_schema

            url = os.environ["UNITCOST_BENCH_PG_URL"]
            db = _with_schema(url, _new_schema(url, "bench_callers"))
        unitcost.configure(service_name="bench", db=db, store=config != "unitcost-nostore")
        unitcost.instrument()
        flush = unitcost.flush
    elif config in ("peer", "floor"):
        provider = _provider()
        flush = provider.force_flush
        if config == "peer":
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

            OpenAIInstrumentor().instrument(tracer_provider=provider)
        elif workload in CALL_WORKLOADS:
            _floor(provider)
    call = Scopes(config, provider).get(workload) if workload in SCOPE_WORKLOADS else Workloads().get(workload)
    for _ in range(WARM_UP):
        call()
    flush()
    _toggle(True)
    for _ in range(n):
        call()
    flush()
    _toggle(False)
    if config.startswith("unitcost"):
        import unitcost

        unitcost.shutdown()


if __name__ == "__main__":
    main()
