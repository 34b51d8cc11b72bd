"""Runs of one task that start at the same nanosecond: every reader merges their attributes in the
same order, by start and then by run id (later runs win), whatever order the store holds them in.

The reports (SQLite's SQL engine, the Python engine on SQLite and on PostgreSQL), `unitcost show`
and the UI's task list all read the task's customer from the run whose id sorts last; and the
percentiles of a report by outcome rank each outcome's own tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from unitcost.report import engine as _reports
from unitcost.report import task_page
from unitcost.report.engine import report, row_for_json
from unitcost.report.inspect import show_run
from unitcost.store.connect import open_backend

START = 1_764_028_799_999_999_999

# Stored in this order: "r-b" first, so the stored order (SQLite's rowid, PostgreSQL's heap) is not
# the run id order. By run id "r-a" comes first and "r-b", merged last, wins: customer acme.
RUNS = [
    ("r-b", "ticket", "K1", START, '{"customer": "acme", "tier": "gold"}', 5_000_000),
    ("r-a", "ticket", "K1", START, '{"customer": "globex"}', 7_000_000),
    ("r-c", "ticket", None, START, '{"customer": "globex"}', 3_000_000),
]


def _write(db: Any) -> None:
    for run_id, kind, key, started, attributes, runtime in RUNS:
        db.execute(
            "INSERT INTO runs (run_id, trace_id, kind, key, started_ns, ended_ns, attributes, runtime_cost_pico) "
            "VALUES (?, 't', ?, ?, ?, ?, ?, ?)",
            (run_id, kind, key, started, started + 10, attributes, runtime),
        )
    db.execute(
        "INSERT INTO outcomes (recorded_ns, run_id, kind, key, label, success, value_pico, source) "
        "VALUES (1, 'r-c', NULL, NULL, 'resolved', 1, NULL, 'test')"
    )


def _reports_by_customer(db: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The report by customer from SQLite's SQL engine (when `db` is SQLite) and from the Python engine."""
    found = [[row_for_json(r) for r in report(db, by="customer")]]
    with monkeypatch.context() as m:
        m.setattr(_reports, "_group_in_store", lambda db_, request: None)
        found.append([row_for_json(r) for r in report(db, by="customer")])
    return found


def _check(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for rows in _reports_by_customer(db, monkeypatch):
        assert [(r["group"]["customer"], r["tasks"], r["runs"]) for r in rows] == [("acme", 1, 2), ("globex", 1, 1)]
    assert show_run(db, "r-a").attributes == {"customer": "acme", "tier": "gold"}
    # (a key names its task's latest run: of two started together, the one whose id sorts last)
    assert show_run(db, "K1").run_id == "r-b"
    _, page = task_page(db, sort="cost")
    assert [(t.key, t.attributes) for t in page] == [
        ("K1", {"customer": "acme", "tier": "gold"}), (None, {"customer": "globex"})
    ]
    # By outcome, of one kind: the resolved task's percentiles are its own cost, not the kind's highest.
    for by_outcome in (report(db, by="outcome", kind="ticket"), report(db, by="kind,outcome")):
        resolved = [row_for_json(r) for r in by_outcome if r["group"]["outcome"] == "resolved"]
        assert [(r["tasks"], r["cost_per_task_p50_usd"], r["cost_per_task_p99_usd"]) for r in resolved] == [
            (1, 0.000003, 0.000003)
        ]


def test_sqlite_merges_runs_started_together_by_run_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = open_backend(tmp_path / "ties.db")
    _write(db.conn)
    _check(db, monkeypatch)


def test_postgres_merges_runs_started_together_by_run_id(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = open_backend(pg_url)
    try:
        _write(db)
        _check(db, monkeypatch)
    finally:
        db.close()
