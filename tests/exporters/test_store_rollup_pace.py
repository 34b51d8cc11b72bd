"""The store writer makes the per-task rollups again at most once per ROLLUP_EVERY_SECONDS (not at its
first batch), and at every flush and exit (their refresh is ~15 statements, each a GIL hand-off under a busy program).
Between refreshes the tasks stay marked dirty, and a report makes them before it reads: its numbers
never lag the calls."""

from __future__ import annotations

import sqlite3
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags

from unitcost.exporters import store as store_module
from unitcost.exporters.store import StoreSpanExporter
from unitcost.query import report

T0 = 1_764_028_800 * 10**9


def _span(span_id: int, parent: int | None, attributes: dict[str, Any], start: int) -> ReadableSpan:
    context = SpanContext(span_id, span_id, is_remote=False, trace_flags=TraceFlags(1))
    parent_context = None if parent is None else SpanContext(parent, parent, False, TraceFlags(1))
    return ReadableSpan(name="span", context=context, parent=parent_context, resource=Resource.create({}),
                        attributes=attributes, start_time=start, end_time=start + 10**9)


def _task(number: int) -> list[ReadableSpan]:
    """A support ticket with one gpt-4o-mini call of 1,000 input and 100 output tokens."""
    task_id = 1000 + number
    run_id = format(task_id, "016x")
    start = T0 + number * 10**9
    call = _span(task_id * 10, task_id, {
        "unitcost.span.type": "llm", "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100, "unitcost.task.id": run_id,
    }, start)
    task = _span(task_id, None, {
        "unitcost.span.type": "task", "unitcost.task.kind": "ticket", "unitcost.task.key": f"T-{number}",
        "unitcost.task.id": run_id,
    }, start)
    return [call, task]


def _rollup_tasks(path: Any) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM task_rollup").fetchone()[0])


def test_rollups_wait_for_their_pace_and_reports_never_do(tmp_path, monkeypatch):
    path = tmp_path / "pace.db"
    clock = [100.0]
    monkeypatch.setattr(store_module.time, "monotonic", lambda: clock[0])
    exporter = StoreSpanExporter(path)
    exporter.open()
    try:
        exporter.export(_task(1))  # the first batch leaves them (its rows are the ones waited for)
        assert _rollup_tasks(path) == 0
        clock[0] += store_module.ROLLUP_EVERY_SECONDS / 2
        exporter.export(_task(2))  # too soon: tasks 1 and 2 stay marked dirty
        assert _rollup_tasks(path) == 0
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM rollup_dirty").fetchone()[0] == 2

        # A report reads both tasks (it makes the dirty one before reading).
        (row,) = [r for r in report(db=path) if r["group"] == {"kind": "ticket"}]
        assert row["tasks"] == 2
        # 2 x (1,000 x $0.15 + 100 x $0.60) per million tokens = $0.00042
        assert row["cost_usd"] == 0.00042
        assert _rollup_tasks(path) == 2  # (made by the report, for the next reader)

        clock[0] += store_module.ROLLUP_EVERY_SECONDS / 4
        exporter.export(_task(3))  # still within the pace of the last refresh
        assert _rollup_tasks(path) == 2
        clock[0] += store_module.ROLLUP_EVERY_SECONDS
        exporter.export(_task(4))  # its time has come: tasks 3 and 4 at once
        assert _rollup_tasks(path) == 4

        exporter.export(_task(5))
        assert _rollup_tasks(path) == 4
    finally:
        exporter.shutdown()  # exit: every task's rows are made
    assert _rollup_tasks(path) == 5


def test_a_flush_refreshes_whatever_the_pace(tmp_path, monkeypatch):
    path = tmp_path / "flush.db"
    clock = [100.0]
    monkeypatch.setattr(store_module.time, "monotonic", lambda: clock[0])
    exporter = StoreSpanExporter(path)
    exporter.open()
    try:
        exporter.export(_task(1))
        exporter.export(_task(2))
        assert _rollup_tasks(path) == 0
        assert exporter.force_flush()  # (StoreSpanProcessor.force_flush ends with it)
        assert _rollup_tasks(path) == 2
    finally:
        exporter.shutdown()


def _sums(path: Any) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        return (
            int(conn.execute("SELECT COUNT(*) FROM run_sums").fetchone()[0]),
            int(conn.execute("SELECT COUNT(*) FROM run_sums_dirty").fetchone()[0]),
        )


def test_the_first_batch_leaves_its_runs_sums_to_the_next_refresh_and_reports_never_wait(tmp_path, monkeypatch):
    path = tmp_path / "first.db"
    clock = [100.0]
    monkeypatch.setattr(store_module.time, "monotonic", lambda: clock[0])
    exporter = StoreSpanExporter(path)
    exporter.open()
    try:
        exporter.export(_task(1) + _task(2))  # the fewest statements: the rows, no sums (its runs marked stale)
        assert _sums(path) == (0, 2)
        exporter.export(_task(3))  # later batches keep their own runs' sums
        assert _sums(path) == (1, 2)
        clock[0] += store_module.ROLLUP_EVERY_SECONDS
        exporter.export(_task(4))  # with the rollups, the first batch's runs are summed too
        assert _sums(path) == (4, 0)
        assert _rollup_tasks(path) == 4
    finally:
        exporter.shutdown()
    (row,) = [r for r in report(db=path) if r["group"] == {"kind": "ticket"}]
    assert row["tasks"] == 4 and row["llm_calls"] == 4
    assert row["cost_usd"] == 0.00084  # 4 x (1,000 x $0.15 + 100 x $0.60) per million tokens


def test_a_report_sums_the_first_batchs_runs_itself(tmp_path, monkeypatch):
    path = tmp_path / "first-read.db"
    exporter = StoreSpanExporter(path)
    exporter.open()
    exporter.export(_task(1))
    assert _sums(path) == (0, 1)
    (row,) = [r for r in report(db=path) if r["group"] == {"kind": "ticket"}]  # before any later batch
    assert row["llm_calls"] == 1 and row["cost_usd"] == 0.00021
    assert _sums(path) == (1, 0)
    exporter.shutdown()
