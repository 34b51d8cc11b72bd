"""OTLP export, end to end: the real openai client through unitcost's spans, OpenTelemetry's OTLP
exporters and the wire, into a receiver written without unitcost's code (tests/otlp_receiver.py).

The exported spans carry the GenAI attributes and each call's cost; task spans carry their subtree's
totals and the outcome as a gen_ai.evaluation.result event; a late outcome lands in the task's trace.
"""

# ruff: noqa: F811 - the otlp_receiver fixture is imported, then used as a parameter of the same name
# The receiver comes first among a test's fixtures, so it is torn down last: unitcost's shutdown
# still exports to it.

from __future__ import annotations

import os
import threading
from decimal import Decimal
from typing import Any

import pytest
from conftest import GPT4O_MINI, PROMPT, ChatServer, genai_cost, usage_block
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from otlp_receiver import (
    Receiver,
    Span,
    otlp_receiver,  # noqa: F401 - a fixture
    spans_of,
)

import unitcost
from unitcost.common import attributes as A
from unitcost.pipeline import wiring as _pipeline

CALL_COST = genai_cost(GPT4O_MINI, prompt=1000, completion=200, cached=400)
TOOL_COST = Decimal("0.002")


@pytest.fixture(autouse=True)
def _no_otlp_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_EXPORTER_OTLP_") or name in ("OTEL_METRICS_EXPORTER",):
            monkeypatch.delenv(name)


@unitcost.tool("search_kb", cost=TOOL_COST)
def search_kb(query: str) -> list[str]:
    return ["kb-1"]


def run_ticket(client: Any, key: str, outcome: str | None = "resolved") -> Any:
    with unitcost.task("support_ticket", key=key, attributes={"customer": "acme"}) as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        search_kb("order status")
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        if outcome:
            unitcost.outcome(outcome, value=12)
    return run


def by_type(spans: list[Span], kind: str) -> list[Span]:
    return [s for s in spans if s.attrs.get(A.SPAN_TYPE) == kind]


@pytest.fixture
def client(openai_client: Any) -> Any:
    return openai_client(ChatServer(usage=usage_block(1000, 200, cached=400)))


def test_llm_and_task_spans_carry_costs_totals_and_the_outcome_event(
    otlp_receiver: Receiver, make_store: Any, client: Any
) -> None:
    make_store(otlp_endpoint=otlp_receiver.url, metrics=False)
    run = run_ticket(client, "T-1")
    assert unitcost.flush()

    spans = otlp_receiver.spans()
    [task] = by_type(spans, "task")
    calls = by_type(spans, "llm")
    [tool] = by_type(spans, "tool")
    assert len(calls) == 2 and len(spans) == 4

    # One trace; the task span is what the calls and the tool hang under.
    assert {s.trace_id for s in spans} == {task.trace_id}
    assert task.span_id == run.id and task.parent_span_id is None
    assert {s.parent_span_id for s in [*calls, tool]} == {task.span_id}
    assert task.resource["service.name"] == "tests"

    # LLM spans: the GenAI conventions' names and values, and the cost.
    call = calls[0]
    assert call.name == "chat gpt-4o-mini" and call.kind == 3  # SPAN_KIND_CLIENT
    assert {k: call.attrs[k] for k in (
        A.OPERATION, A.PROVIDER, A.REQUEST_MODEL, A.RESPONSE_MODEL, A.INPUT_TOKENS, A.OUTPUT_TOKENS,
        A.CACHE_READ_TOKENS,
    )} == {
        A.OPERATION: "chat", A.PROVIDER: "openai", A.REQUEST_MODEL: "gpt-4o-mini", A.RESPONSE_MODEL: GPT4O_MINI,
        A.INPUT_TOKENS: 1000, A.OUTPUT_TOKENS: 200, A.CACHE_READ_TOKENS: 400,
    }
    assert call.attrs[A.COST_USD] == pytest.approx(float(CALL_COST), rel=1e-12)
    assert call.attrs[A.PRICE_SOURCE] == "genai-prices"
    assert tool.attrs[A.COST_USD] == pytest.approx(0.002)

    # The task span: its subtree's totals, tokens in non-overlapping buckets.
    assert task.name == "invoke_agent support_ticket"
    assert task.attrs[A.TASK_COST_USD] == pytest.approx(float(2 * CALL_COST + TOOL_COST), rel=1e-12)
    assert task.attrs[A.TASK_LLM_COST_USD] == pytest.approx(float(2 * CALL_COST), rel=1e-12)
    assert task.attrs[A.TASK_TOOL_COST_USD] == pytest.approx(0.002)
    assert (task.attrs[A.TASK_LLM_CALLS], task.attrs[A.TASK_TOOL_CALLS], task.attrs[A.TASK_STEPS]) == (2, 1, 3)
    assert task.attrs[A.TASK_UNPRICED_CALLS] == 0
    prefix = A.TASK_TOKENS_PREFIX
    tokens = {k.removeprefix(prefix): v for k, v in task.attrs.items() if k.startswith(prefix)}
    assert tokens == {
        "uncached_input": 1200, "cache_read": 800, "cache_write": 0, "cache_write_1h": 0, "visible_output": 400,
        "reasoning": 0,
    }
    assert task.attrs["unitcost.task.attr.customer"] == "acme"

    # The outcome known when the task ended: an evaluation event on the task span.
    assert task.events == [(A.EVALUATION_EVENT, {
        A.EVALUATION_NAME: "outcome", A.EVALUATION_LABEL: "resolved", A.EVALUATION_SCORE: 1.0,
        A.OUTCOME_VALUE: "12",
    })]


def test_a_late_outcome_is_a_small_span_in_the_tasks_trace(
    otlp_receiver: Receiver, make_store: Any, client: Any
) -> None:
    make_store(otlp_endpoint=otlp_receiver.url, metrics=False)
    run = run_ticket(client, "T-2", outcome=None)
    assert unitcost.flush()  # the task span is exported and gone
    unitcost.record_outcome("escalated", task_id=run.id)
    unitcost.record_outcome("resolved", kind="support_ticket", key="T-2", value=3)
    unitcost.record_outcome("resolved", kind="support_ticket", key="never-seen")
    assert unitcost.flush()

    spans = otlp_receiver.spans()
    [task] = by_type(spans, "task")
    assert task.events == []
    outcomes = {s.attrs[A.OUTCOME_LABEL] if s.attrs.get(A.OUTCOME_KEY) != "never-seen" else "unknown": s
                for s in by_type(spans, "outcome")}
    for label, success in (("escalated", 0.0), ("resolved", 1.0)):
        span = outcomes[label]
        assert span.name == "unitcost.outcome"
        assert (span.trace_id, span.parent_span_id) == (task.trace_id, task.span_id)
        assert span.attrs[A.TASK_ID] == run.id
        assert span.events == [(A.EVALUATION_EVENT, {
            A.EVALUATION_NAME: "outcome", A.EVALUATION_LABEL: label, A.EVALUATION_SCORE: success,
        })]
    # A task nobody knows: the outcome is exported in a trace of its own rather than lost.
    unknown = outcomes["unknown"]
    assert unknown.parent_span_id is None and unknown.trace_id != task.trace_id


def test_a_late_outcome_from_another_process_finds_its_task_in_the_store(
    otlp_receiver: Receiver, make_store: Any, client: Any
) -> None:
    db = make_store(otlp_endpoint=otlp_receiver.url, metrics=False)
    run = run_ticket(client, "T-3", outcome=None)
    assert unitcost.flush()
    # A new pipeline has no memory of the task, as another process would not: the store knows it.
    unitcost.configure(service_name="tests", db=db, otlp_endpoint=otlp_receiver.url, metrics=False)
    unitcost.record_outcome("resolved", key="T-3")
    assert unitcost.flush()
    [task] = by_type(otlp_receiver.spans(), "task")
    [late] = by_type(otlp_receiver.spans(), "outcome")
    assert (late.trace_id, late.parent_span_id, late.attrs[A.TASK_ID]) == (task.trace_id, run.id, run.id)


def test_configure_again_under_another_name_exports_under_that_name(
    otlp_receiver: Receiver, make_store: Any, client: Any
) -> None:
    # OpenTelemetry sets the global TracerProvider once, so every configure() in a process after the
    # first reuses the first one's provider, resource and all: the exports must still say this name.
    make_store(otlp_endpoint=otlp_receiver.url, metrics=False)
    run_ticket(client, "T-A")
    assert unitcost.flush()
    reader = InMemoryMetricReader()
    unitcost.configure(service_name="billing-bot", store=False, otlp_endpoint=otlp_receiver.url, metrics=[reader])
    run_ticket(client, "T-B")
    assert unitcost.flush()

    services = {s.attrs.get(A.TASK_KEY): s.resource["service.name"] for s in by_type(otlp_receiver.spans(), "task")}
    assert services == {"T-A": "tests", "T-B": "billing-bot"}
    assert {s.resource["service.name"] for s in otlp_receiver.spans()} == {"tests", "billing-bot"}
    [metrics] = reader.get_metrics_data().resource_metrics
    assert metrics.resource.attributes["service.name"] == "billing-bot"


def test_export_instead_of_the_store(otlp_receiver: Receiver, make_store: Any, client: Any, tmp_path: Any) -> None:
    make_store(store=False, otlp_endpoint=otlp_receiver.url, metrics=False)
    run_ticket(client, "T-4")
    assert unitcost.flush()
    assert len(otlp_receiver.spans()) == 4
    assert not list(tmp_path.glob("store*.db"))


def test_the_standard_variables_configure_export(
    otlp_receiver: Receiver, make_store: Any, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=s3cret,x-team=support")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "5")
    make_store()  # no OTLP argument at all
    assert _pipeline._own_provider is not None  # unitcost owns the provider: the variables apply
    run_ticket(client, "T-5")
    assert unitcost.flush()

    traces = [r for r in otlp_receiver.requests if r.path == "/v1/traces"]
    assert traces and all(r.headers["x-api-key"] == "s3cret" and r.headers["x-team"] == "support" for r in traces)
    assert len(by_type(otlp_receiver.spans(), "task")) == 1
    # Metrics go along with traces, to the same endpoint.
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration", "unitcost.cost", "unitcost.tasks",
            "unitcost.task.cost"} <= otlp_receiver.metric_names()


def test_metrics_can_be_turned_off_with_the_standard_variable(
    otlp_receiver: Receiver, make_store: Any, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp_receiver.url + "/v1/traces")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    make_store()
    run_ticket(client, "T-6")
    assert unitcost.flush()
    assert {r.path for r in otlp_receiver.requests} == {"/v1/traces"}


def test_an_unusable_protocol_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    with pytest.raises(unitcost.ConfigurationError, match="http/json"):
        unitcost.configure(db=tmp_path / "a.db", otlp_endpoint="http://127.0.0.1:9", otlp_protocol="http/json")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    with pytest.raises(unitcost.ConfigurationError, match="carrier-pigeon"):
        unitcost.configure(db=tmp_path / "b.db")
    unitcost.shutdown()


def test_metrics_follow_the_genai_conventions(make_store: Any, client: Any) -> None:
    reader = InMemoryMetricReader()
    make_store(metrics=[reader])
    run_ticket(client, "T-7")
    run_ticket(client, "T-8", outcome="escalated")
    assert unitcost.flush()

    metrics = {
        m.name: m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    tokens = metrics["gen_ai.client.token.usage"]
    assert tokens.unit == "{token}"
    points = {p.attributes[A.TOKEN_TYPE]: p for p in tokens.data.data_points}
    assert (points["input"].sum, points["input"].count, points["output"].sum) == (4000, 4, 800)
    assert list(points["input"].explicit_bounds) == [float(4**i) for i in range(14)]
    assert dict(points["input"].attributes) == {
        A.OPERATION: "chat", A.PROVIDER: "openai", A.REQUEST_MODEL: "gpt-4o-mini", A.RESPONSE_MODEL: GPT4O_MINI,
        A.SERVER_ADDRESS: "api.openai.com", A.TOKEN_TYPE: "input",
    }
    [duration] = metrics["gen_ai.client.operation.duration"].data.data_points
    assert metrics["gen_ai.client.operation.duration"].unit == "s" and duration.count == 4
    assert list(duration.explicit_bounds) == pytest.approx([0.01 * 2**i for i in range(14)])

    cost = {p.attributes.get(A.OPERATION): p.value for p in metrics["unitcost.cost"].data.data_points}
    assert cost["chat"] == pytest.approx(float(4 * CALL_COST), rel=1e-9)
    assert cost["execute_tool"] == pytest.approx(0.004)
    tasks = {(p.attributes[A.TASK_KIND], p.attributes[A.OUTCOME_LABEL], p.attributes[A.OUTCOME_SUCCESS]): p.value
             for p in metrics["unitcost.tasks"].data.data_points}
    assert tasks == {("support_ticket", "resolved", True): 1, ("support_ticket", "escalated", False): 1}
    task_cost = [p.sum for p in metrics["unitcost.task.cost"].data.data_points]
    assert task_cost == pytest.approx([float(2 * CALL_COST + TOOL_COST)] * 2, rel=1e-9)


def test_otlp_over_grpc(make_store: Any, client: Any) -> None:
    grpc = pytest.importorskip("grpc")
    from concurrent import futures

    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[Any] = []
    metadata: list[dict[str, str]] = []

    class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method's name
            received.append(request)
            metadata.append(dict(context.invocation_metadata()))
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        make_store(otlp_endpoint=f"http://127.0.0.1:{port}", otlp_protocol="grpc",
                   otlp_headers={"authorization": "Bearer t0k"}, metrics=False)
        run_ticket(client, "T-9")
        assert unitcost.flush()
    finally:
        unitcost.shutdown()
        server.stop(None)
    spans = [s for request in received for s in spans_of(request)]
    [task] = by_type(spans, "task")
    assert task.attrs[A.TASK_COST_USD] == pytest.approx(float(2 * CALL_COST + TOOL_COST), rel=1e-12)
    assert all(m["authorization"] == "Bearer t0k" for m in metadata)


def test_pricing_for_export_does_not_run_on_the_callers_thread(
    otlp_receiver: Receiver, make_store: Any, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from unitcost.exporters.enrich import EnrichingSpanExporter

    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # the batch processor's own thread, soon

    threads: set[str] = set()
    original = EnrichingSpanExporter._call

    def spy(self: Any, *args: Any) -> Any:
        threads.add(threading.current_thread().name)
        return original(self, *args)

    EnrichingSpanExporter._call = spy  # type: ignore[method-assign]
    try:
        make_store(otlp_endpoint=otlp_receiver.url, metrics=False)
        run_ticket(client, "T-10")
        deadline = time.monotonic() + 20
        while len(otlp_receiver.spans()) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)  # not unitcost.flush(): that exports on the thread that calls it
    finally:
        EnrichingSpanExporter._call = original  # type: ignore[method-assign]
    assert threads and threading.current_thread().name not in threads


# --- EnrichingSpanExporter in isolation: hand-made spans, children first as they end -------------

def made_span(name: str, span_id: int, parent: int | None, attrs: dict[str, Any], *, sampled: bool = True,
              trace_id: int = 0xABC) -> Any:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, TraceFlags

    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return ReadableSpan(
        name=name, context=SpanContext(trace_id, span_id, False, flags),
        parent=SpanContext(trace_id, parent, False, flags) if parent else None, attributes=attrs,
        start_time=1_764_061_200_000_000_000, end_time=1_764_061_201_000_000_000,
    )


def task_attrs(span_id: int) -> dict[str, Any]:
    return {A.SPAN_TYPE: "task", A.TASK_ID: format(span_id, "016x"), A.TASK_KIND: "research"}


OPENLLMETRY_CALL = {
    "gen_ai.system": "openai", "llm.request.type": "chat", "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.prompt_tokens": 1000, "gen_ai.usage.completion_tokens": 200,
    "gen_ai.usage.cache_read_input_tokens": 400,
}


def test_another_instrumentations_call_under_a_task_is_priced_and_counted() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from unitcost.exporters import EnrichingSpanExporter

    inner = InMemorySpanExporter()
    exporter = EnrichingSpanExporter(inner)
    exporter.export([
        made_span("openai.chat", 3, 2, OPENLLMETRY_CALL),  # under a workflow span of its own
        made_span("plan.workflow", 2, 1, {"traceloop.span.kind": "workflow"}),
        made_span("invoke_agent research", 1, None, task_attrs(1)),
    ])
    call, workflow, task = inner.get_finished_spans()
    assert call.attributes[A.COST_USD] == pytest.approx(float(CALL_COST), rel=1e-12)
    assert A.SPAN_TYPE not in call.attributes  # its own names are exported as they were, plus the cost
    assert A.COST_USD not in workflow.attributes
    assert (task.attributes[A.TASK_LLM_CALLS], task.attributes[A.TASK_COST_USD]) == (1, pytest.approx(float(CALL_COST)))


def test_calls_the_sampler_dropped_count_in_totals_but_are_not_exported() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from unitcost.exporters import EnrichingSpanExporter

    inner = InMemorySpanExporter()
    call = {**OPENLLMETRY_CALL, A.SPAN_TYPE: "llm", A.TASK_ID: format(1, "016x"), A.PROVIDER: "openai"}
    EnrichingSpanExporter(inner).export([
        made_span("chat gpt-4o-mini", 2, 1, call, sampled=False),
        made_span("invoke_agent research", 1, None, task_attrs(1)),
    ])
    [task] = inner.get_finished_spans()
    assert task.attributes[A.TASK_LLM_CALLS] == 1


def test_totals_of_spans_that_never_end_are_bounded() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from unitcost.exporters import EnrichingSpanExporter

    exporter = EnrichingSpanExporter(InMemorySpanExporter(), max_open=8)
    for i in range(100):  # each call's parent never ends
        exporter.export([made_span("openai.chat", 1000 + i, 2000 + i, OPENLLMETRY_CALL)])
    assert len(exporter._pending) == 8


def test_an_exporter_that_fails_does_not_stop_the_others() -> None:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from unitcost.exporters import EnrichingSpanExporter

    class Down(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.FAILURE

    inner = InMemorySpanExporter()
    result = EnrichingSpanExporter([Down(), inner]).export([made_span("openai.chat", 1, None, OPENLLMETRY_CALL)])
    assert result is SpanExportResult.FAILURE
    assert len(inner.get_finished_spans()) == 1


def test_a_junk_token_count_records_no_tokens_but_keeps_the_call() -> None:
    from opentelemetry.sdk.metrics import MeterProvider

    from unitcost.exporters.metrics import SpanMetrics

    reader = InMemoryMetricReader()
    metrics = SpanMetrics(MeterProvider(metric_readers=[reader]))
    attrs = {A.OPERATION: "chat", A.PROVIDER: "openai", A.INPUT_TOKENS: "n/a", A.OUTPUT_TOKENS: 7}
    metrics.record_call(attrs, 0.5, 0.25, None)  # a server's junk count must not cost the call its cost
    found = {m.name: m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
             for m in sm.metrics}
    tokens = {p.attributes[A.TOKEN_TYPE]: p.sum for p in found["gen_ai.client.token.usage"].data.data_points}
    assert tokens == {"output": 7}
    assert [p.value for p in found["unitcost.cost"].data.data_points] == [0.25]
