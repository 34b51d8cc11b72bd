"""The JSONL and console exporters: real OpenTelemetry SpanExporters, alone under the SDK's own
processor, and through configure(exporters=[...]) with costs and task totals."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import GPT4O_MINI, PROMPT, ChatServer, genai_cost, store_rows, usage_block
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

import unitcost
from unitcost.common import attributes as A
from unitcost.exporters import ConsoleSpanExporter, JsonlSpanExporter

CALL_COST = genai_cost(GPT4O_MINI, prompt=120, completion=9)


def ticket(client: Any) -> Any:
    with unitcost.task("support_ticket", key="T-1") as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        with unitcost.tool("search_kb", cost="0.002"):
            pass
        unitcost.outcome("resolved")
    return run


def test_both_are_span_exporters_under_the_sdks_own_processor(tmp_path: Path) -> None:
    # A private provider: no unitcost pipeline, no global state. The exporters stand on their own.
    provider = TracerProvider(resource=Resource({"service.name": "plain"}))
    console = io.StringIO()
    exporters: list[SpanExporter] = [JsonlSpanExporter(tmp_path / "spans.jsonl"), ConsoleSpanExporter(console)]
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app", "1.2")
    with tracer.start_as_current_span("handle", kind=SpanKind.SERVER) as parent:
        parent.set_attribute("http.route", "/tickets")
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as child:
            child.set_attributes({A.OPERATION: "chat", A.INPUT_TOKENS: 10, A.OUTPUT_TOKENS: 2, "tags": ("a", "b")})
            child.add_event("retry", {"attempt": 1})
            child.set_status(Status(StatusCode.ERROR, "boom"))
    provider.shutdown()

    lines = (tmp_path / "spans.jsonl").read_text().splitlines()
    child_line, parent_line = (json.loads(line) for line in lines)
    assert child_line["parent_span_id"] == parent_line["span_id"]
    assert child_line["trace_id"] == parent_line["trace_id"] and len(child_line["trace_id"]) == 32
    assert {k: child_line[k] for k in ("name", "kind", "status", "resource", "scope")} == {
        "name": "chat gpt-4o", "kind": "CLIENT", "status": {"code": "ERROR", "message": "boom"},
        "resource": {"service.name": "plain"}, "scope": {"name": "app", "version": "1.2"},
    }
    assert child_line["attributes"] == {A.OPERATION: "chat", A.INPUT_TOKENS: 10, A.OUTPUT_TOKENS: 2, "tags": ["a", "b"]}
    assert child_line["events"][0]["name"] == "retry" and child_line["events"][0]["attributes"] == {"attempt": 1}
    assert child_line["end_time_unix_nano"] >= child_line["start_time_unix_nano"] > 0
    assert parent_line["parent_span_id"] is None and parent_line["attributes"] == {"http.route": "/tickets"}

    printed = console.getvalue().splitlines()
    assert len(printed) == 2
    assert "chat gpt-4o" in printed[0] and "10 in / 2 out" in printed[0]


def test_configure_gives_them_costs_totals_and_the_stores_ids(
    make_store: Any, openai_client: Any, tmp_path: Path
) -> None:
    console = io.StringIO()
    jsonl = tmp_path / "out" / "spans.jsonl"
    jsonl.parent.mkdir()
    db = make_store(exporters=[JsonlSpanExporter(jsonl), ConsoleSpanExporter(console)], metrics=False)
    client = openai_client(ChatServer(usage=usage_block(120, 9)))
    run = ticket(client)
    assert unitcost.flush()

    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    by_type = {line["attributes"][A.SPAN_TYPE]: line for line in lines}
    assert set(by_type) == {"llm", "tool", "task"} and len(lines) == 3
    call, task = by_type["llm"], by_type["task"]
    assert call["attributes"][A.COST_USD] == pytest.approx(float(CALL_COST), rel=1e-12)
    assert task["span_id"] == run.id
    assert task["attributes"][A.TASK_COST_USD] == pytest.approx(float(CALL_COST) + 0.002, rel=1e-12)
    assert task["events"][0]["attributes"][A.EVALUATION_LABEL] == "resolved"
    # The ids are the store's: a pipeline can join the two.
    [stored] = store_rows(db, "calls")
    assert (stored["span_id"], stored["trace_id"], stored["run_id"]) == (
        call["span_id"], call["trace_id"], run.id,
    )

    printed = console.getvalue()
    assert "chat gpt-4o-mini" in printed and "120 in / 9 out" in printed
    assert "execute_tool search_kb" in printed and "$0.002000" in printed
    task_line = next(line for line in printed.splitlines() if line.split()[1] == "invoke_agent")
    assert "support_ticket T-1" in task_line and "1 LLM, 1 tool" in task_line and "resolved" in task_line
    assert f"${float(CALL_COST) + 0.002:.6f}" in task_line


def test_jsonl_appends_to_a_file_and_leaves_a_given_stream_open(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext

    span = ReadableSpan("one", SpanContext(1, 2, False), attributes={"k": "v"}, start_time=1, end_time=2)
    path = tmp_path / "spans.jsonl"
    for _ in range(2):
        exporter = JsonlSpanExporter(path)
        exporter.export([span])
        exporter.shutdown()
    assert [json.loads(line)["span_id"] for line in path.read_text().splitlines()] == ["0000000000000002"] * 2

    stream = io.StringIO()
    exporter = JsonlSpanExporter(stream)
    exporter.export([span, span])
    exporter.shutdown()
    assert not stream.closed and len(stream.getvalue().splitlines()) == 2


def test_an_unpriced_call_says_so_and_is_never_zero(make_store: Any, openai_client: Any) -> None:
    console = io.StringIO()
    make_store(exporters=[ConsoleSpanExporter(console)], metrics=False)
    client = openai_client(ChatServer(model="my-own-model-7b", usage=usage_block(120, 9)))
    client.chat.completions.create(model="my-own-model-7b", messages=PROMPT)
    assert unitcost.flush()
    [line] = console.getvalue().splitlines()
    assert "unpriced" in line and "$" not in line
