"""Tasks as reports see them: runs joined by key, each with the outcome that wins.

A *run* is one execution of a task; runs of one kind with the same key are one *task*; a run without
a key is a task on its own. Outcomes are joined here, at read time, because they may arrive before
or after the runs they speak of, from any process: the latest one recorded for a task wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils


@dataclass(slots=True)
class OutcomeRow:
    recorded_ns: int
    label: str
    success: bool
    value_pico: int | None
    source: str
    run_id: str | None
    kind: str | None
    key: str | None


@dataclass(slots=True)
class Task:
    """All runs of one task (one key of one kind, or a single run without a key)."""

    kind: str
    key: str | None
    run_ids: list[str] = field(default_factory=list)
    started_ns: int = 0
    attributes: dict[str, Any] = field(default_factory=dict)
    outcome: OutcomeRow | None = None


TaskId = tuple[str, str]


def task_identity(kind: str, key: str | None, run_id: str) -> TaskId:
    return (kind, key) if key is not None else ("", run_id)


class Store:
    """Read access to a store, with the task and outcome rules applied."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db
        self.run_task: dict[str, TaskId] = {}

    def tasks(self) -> dict[TaskId, Task]:
        tasks: dict[TaskId, Task] = {}
        self.run_task = {}
        rows = self.db.execute("SELECT run_id, kind, key, started_ns, attributes FROM runs ORDER BY started_ns")
        for run_id, kind, key, started, attrs in rows:
            ident = task_identity(kind, key, run_id)
            task = tasks.get(ident)
            if task is None:
                task = tasks[ident] = Task(kind, key, started_ns=started)
            task.run_ids.append(run_id)
            if attrs and attrs != "{}":
                task.attributes.update(json.loads(attrs))  # later runs win
            self.run_task[run_id] = ident
        for outcome in self.outcomes():  # oldest first, so the latest ends up winning
            for ident in self.outcome_targets(outcome, tasks):
                tasks[ident].outcome = outcome
        return tasks

    def outcomes(self) -> list[OutcomeRow]:
        rows = self.db.execute(
            "SELECT recorded_ns, label, success, value_pico, source, run_id, kind, key FROM outcomes "
            "ORDER BY recorded_ns, id"
        )
        return [OutcomeRow(r[0], r[1], bool(r[2]), r[3], r[4], r[5], r[6], r[7]) for r in rows]

    def outcome_targets(self, outcome: OutcomeRow, tasks: dict[TaskId, Task]) -> list[TaskId]:
        """The tasks an outcome speaks of: by run id (any run of the task), else by kind and key."""
        if outcome.run_id is not None:
            ident = self.run_task.get(outcome.run_id)
            return [ident] if ident is not None else []
        if outcome.key is None:
            return []
        if outcome.kind is not None:
            ident = (outcome.kind, outcome.key)
            return [ident] if ident in tasks else []
        return [i for i, t in tasks.items() if t.key == outcome.key]
