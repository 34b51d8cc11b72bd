"""Tasks as reports see them: runs joined by key, each with the outcome that wins.

A *run* is one execution of a task; runs of one kind with the same key are one *task*; a run without
a key is a task on its own. Outcomes are joined here, at read time, because they may arrive before
or after the runs they speak of, from any process: the latest one recorded for a task wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..store.backend import StoreBackend

__all__ = ["OutcomeRow", "Store", "Task", "TaskId", "task_identity"]


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


class Task:
    """All runs of one task (one key of one kind, or a single run without a key).

    `attributes` are read from the runs' JSON only when asked for: most reports never need them.
    """

    __slots__ = ("kind", "key", "run_ids", "started_ns", "outcome", "_attribute_json", "_attributes")

    def __init__(self, kind: str, key: str | None, started_ns: int = 0) -> None:
        self.kind = kind
        self.key = key
        self.run_ids: list[str] = []
        self.started_ns = started_ns
        self.outcome: OutcomeRow | None = None
        self._attribute_json: list[str] = []
        self._attributes: dict[str, Any] | None = None

    @property
    def attributes(self) -> dict[str, Any]:
        if self._attributes is None:
            merged: dict[str, Any] = {}
            for text in self._attribute_json:
                merged.update(json.loads(text))  # later runs win
            self._attributes = merged
        return self._attributes


TaskId = tuple[str, str]


def task_identity(kind: str, key: str | None, run_id: str) -> TaskId:
    return (kind, key) if key is not None else ("", run_id)


class Store:
    """Read access to a store, with the task and outcome rules applied."""

    def __init__(self, db: StoreBackend) -> None:
        self.db = db
        self.run_task: dict[str, TaskId] = {}
        self._by_key: dict[str, list[TaskId]] | None = None

    def tasks(self) -> dict[TaskId, Task]:
        tasks: dict[TaskId, Task] = {}
        run_task: dict[str, TaskId] = {}
        # Runs in start order, runs started at the same nanosecond in run id order (the tie rule of
        # every engine: a task's attributes merge in this order, later runs winning; as the calls of a
        # run are ordered by start then span id, and outcomes recorded together by id).
        rows = self.db.execute(
            "SELECT run_id, kind, key, started_ns, attributes FROM runs ORDER BY started_ns, run_id"
        )
        for run_id, kind, key, started, attrs in rows:
            ident = (kind, key) if key is not None else ("", run_id)
            task = tasks.get(ident)
            if task is None:
                task = tasks[ident] = Task(kind, key, started)
            task.run_ids.append(run_id)
            if attrs and attrs != "{}":
                task._attribute_json.append(attrs)
            run_task[run_id] = ident
        self.run_task = run_task
        self._by_key = None
        for outcome in self.outcomes():  # oldest first, so the latest ends up winning
            if outcome.run_id is not None:  # the common case, inline
                owner = run_task.get(outcome.run_id)
                if owner is not None:
                    tasks[owner].outcome = outcome
                continue
            for target in self.outcome_targets(outcome, tasks):
                tasks[target].outcome = outcome
        return tasks

    def known_attributes(self, tasks: dict[TaskId, Task]) -> set[str]:
        """Every attribute name any task has (parses each task's attributes once)."""
        return {name for task in tasks.values() if task._attribute_json for name in task.attributes}

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
        if getattr(self, "_by_key", None) is None:  # an outcome by key alone: any kind with that key
            by_key: dict[str, list[TaskId]] = {}
            for ident, task in tasks.items():
                if task.key is not None:
                    by_key.setdefault(task.key, []).append(ident)
            self._by_key = by_key
        return list(self._by_key.get(outcome.key, ()))  # type: ignore[union-attr]
