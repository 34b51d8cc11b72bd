"""`unitcost export`: stored tasks replayed as spans, to OTLP, JSONL or CSV; idempotent (the same span
ids every time) and windowed by the tasks' start."""

# ruff: noqa: F811 - the otlp_receiver fixture is imported, then used as a parameter of the same name

from __future__ import annotations

import csv
import io
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import GPT4O_MINI, PROMPT, ChatServer, genai_cost, report_json, run_cli, store_rows, usage_block
from otlp_receiver import (
    Receiver,
    otlp_receiver,  # noqa: F401 - a fixture
)

import unitcost
from unitcost.common import attributes as A

CALL_COST = genai_cost(GPT4O_MINI, prompt=1000, completion=200, cached=400)


@pytest.fixture
def store(make_store: Any, openai_client: Any) -> tuple[Path, dict[str, str]]:
    """Two tickets (one nested task), a call outside any task, and outcomes inline, late and from the CLI."""
    db = make_store()
    client = openai_client(ChatServer(usage=usage_block(1000, 200, cached=400)))
    runs = {}
    with unitcost.task("support_ticket", key="T-1") as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        with unitcost.tool("search_kb", cost="0.002"):
            pass
        with unitcost.step("draft"), unitcost.task("translate", key="T-1-fr") as nested:
            client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        unitcost.outcome("escalated")
    runs["T-1"], runs["T-1-fr"] = run.id, nested.id
    with unitcost.task("support_ticket", key="T-2") as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    runs["T-2"] = run.id
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)  # outside any task
    unitcost.record_outcome("resolved", kind="support_ticket", key="T-1", value=20)
    assert unitcost.flush()
    run_cli("outcome", "T-2", "resolved", "--kind", "support_ticket", "--db", str(db))
    return db, runs


def export(db: Path, *args: str) -> str:
    return run_cli("export", "--db", str(db), *args).stdout


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_jsonl_replays_every_stored_span_with_its_ids(store: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    db, runs = store
    out = tmp_path / "spans.jsonl"
    run_cli("export", "--db", str(db), "-o", str(out))
    spans = jsonl(out.read_text())
    ids = {s["span_id"] for s in spans}

    stored = {r["run_id"] for r in store_rows(db, "runs")}
    stored |= {r["span_id"] for r in store_rows(db, "calls")} | {r["span_id"] for r in store_rows(db, "steps")}
    late = [s for s in spans if s["attributes"][A.SPAN_TYPE] == "outcome"]
    assert ids == stored | {s["span_id"] for s in late}
    assert len(late) == 2  # the one recorded from Python (by key) and the one from the CLI

    task = next(s for s in spans if s["span_id"] == runs["T-1"])
    attrs = task["attributes"]
    # Subtree totals: the nested translate task's call counts in T-1's, as in live export.
    assert (attrs[A.TASK_LLM_CALLS], attrs[A.TASK_TOOL_CALLS], attrs[A.TASK_STEPS]) == (2, 1, 4)
    assert attrs[A.TASK_COST_USD] == pytest.approx(float(2 * CALL_COST + Decimal("0.002")), rel=1e-12)
    assert task["events"][0]["attributes"][A.EVALUATION_LABEL] == "escalated"
    for outcome in late:  # under the task they speak of, in its trace
        target = runs["T-1"] if outcome["attributes"][A.OUTCOME_LABEL] == "resolved" and outcome[
            "attributes"].get(A.OUTCOME_VALUE) else runs["T-2"]
        parent = next(s for s in spans if s["span_id"] == target)
        assert (outcome["trace_id"], outcome["parent_span_id"]) == (parent["trace_id"], target)
        assert outcome["events"][0]["name"] == A.EVALUATION_EVENT

    call = next(s for s in spans if s["attributes"][A.SPAN_TYPE] == "llm" and s["parent_span_id"] == runs["T-1"])
    assert {k: call["attributes"][k] for k in (A.INPUT_TOKENS, A.OUTPUT_TOKENS, A.CACHE_READ_TOKENS)} == {
        A.INPUT_TOKENS: 1000, A.OUTPUT_TOKENS: 200, A.CACHE_READ_TOKENS: 400,
    }
    assert call["attributes"][A.COST_USD] == pytest.approx(float(CALL_COST), rel=1e-12)
    assert call["resource"]["service.name"] == "tests"
    outside = [s for s in spans if s["attributes"][A.SPAN_TYPE] == "llm" and A.TASK_ID not in s["attributes"]]
    assert len(outside) == 1


def test_exporting_twice_gives_the_same_spans(store: tuple[Path, dict[str, str]]) -> None:
    db, _ = store
    first, second = jsonl(export(db)), jsonl(export(db))
    assert len(first) == 11
    assert [s["span_id"] for s in first] == [s["span_id"] for s in second]
    assert first == second


def test_csv_has_one_row_per_span_and_the_reports_costs(store: tuple[Path, dict[str, str]]) -> None:
    db, runs = store
    rows = list(csv.DictReader(io.StringIO(export(db, "--format", "csv").split("exported")[0])))
    assert len(rows) == 11
    tasks = {r["task_key"]: r for r in rows if r["type"] == "task"}
    report = {row["group"]["kind"]: row for row in report_json(db, "--by", "kind")}
    # T-2's cost is the report's cost of the one support ticket without a nested task.
    assert float(tasks["T-2"]["cost_usd"]) == pytest.approx(float(CALL_COST), rel=1e-9)
    assert float(tasks["T-1-fr"]["cost_usd"]) == pytest.approx(report["translate"]["cost_usd"], rel=1e-9)
    t1 = tasks["T-1"]
    assert (t1["outcome"], t1["outcome_success"], t1["llm_calls"]) == ("escalated", "0", "2")
    call = next(r for r in rows if r["type"] == "llm" and r["task_id"] == runs["T-2"])
    assert (call["input_tokens"], call["cache_read_tokens"], call["unpriced"]) == ("1000", "400", "0")


def test_the_window_and_kind_select_tasks_by_their_start(store: tuple[Path, dict[str, str]]) -> None:
    db, runs = store
    assert jsonl(export(db, "--since", "2099-01-01")) == []
    everything = jsonl(export(db, "--until", "2099-01-01"))
    assert len(everything) == 11
    translate = jsonl(export(db, "--kind", "translate"))
    assert {s["attributes"].get(A.TASK_ID) for s in translate} == {runs["T-1-fr"]}
    assert len(translate) == 2  # the task and its call; calls outside any task are left out with --kind


def test_otlp_replay_is_idempotent(otlp_receiver: Receiver, store: tuple[Path, dict[str, str]]) -> None:
    db, _ = store
    for _ in range(2):
        run_cli("export", "--db", str(db), "--format", "otlp", "--endpoint", otlp_receiver.url,
                "--header", "x-api-key=k")
    spans = otlp_receiver.spans()
    assert len(spans) == 22
    first, second = spans[:11], spans[11:]
    assert sorted((s.trace_id, s.span_id) for s in first) == sorted((s.trace_id, s.span_id) for s in second)
    assert all(r.headers["x-api-key"] == "k" for r in otlp_receiver.requests)


def test_an_endpoint_that_is_down_fails_clearly(
    store: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    # The OTLP exporter logs its failure as an error; here that is expected (make_store fails on them).
    monkeypatch.setattr(logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter"), "propagate", False)
    db, _ = store
    started = time.monotonic()
    result = run_cli("export", "--db", str(db), "--format", "otlp", "--endpoint", "http://127.0.0.1:9",
                     "--timeout", "1", expect=1)
    assert "did not accept" in result.output and "safe" in result.output
    assert time.monotonic() - started < 60


def test_progress_counts_every_unit(store: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    from unitcost.cli import export_cmds

    seen: list[tuple[int | None, list[int]]] = []

    @contextlib.contextmanager
    def progress(description: str, total: int | None = None) -> Any:
        advances: list[int] = []
        seen.append((total, advances))
        yield advances.append

    monkeypatch.setattr(export_cmds, "progress_bar", progress)
    db, _ = store
    export(db)
    [(total, advances)] = seen
    assert total == sum(advances) == 4  # three runs and one call outside any task
