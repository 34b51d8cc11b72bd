"""Reports over the store: cost per task and per successful task, grouped as the user asks.

Words (as in the README): a *run* is one execution of a task; runs of one kind with the same *key*
are one *task*; the latest *outcome* recorded for a task wins; *cost per success* is the cost of all
tasks in a group divided by the successes; *success rate* is succeeded / (succeeded + failed).

Heavy lifting (summing a million calls) is done by SQLite; the joins that need the task and outcome
rules are done here, over one row per run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlite_utils

from ._money import from_pico, usd_for_json

GROUP_FIELDS = ("kind", "model", "provider", "outcome")
_CALL_SUMS = (
    "llm_calls", "input_uncached", "cache_read", "cache_write", "cache_write_1h", "output_visible",
    "reasoning", "cost_pico", "reasoning_cost_pico", "unpriced_calls", "estimated_calls",
)


_ZERO_SUMS = (0,) * len(_CALL_SUMS)


class ReportError(ValueError):
    """A report was asked for with options that cannot be met (the message says which)."""


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


def _sum_columns() -> str:
    return (
        "COUNT(*), SUM(input_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens), "
        "SUM(cache_write_1h_tokens), SUM(output_tokens), SUM(reasoning_tokens), SUM(cost_pico), "
        "SUM(reasoning_cost_pico), SUM(cost_pico IS NULL), SUM(estimated)"
    )


def task_identity(kind: str, key: str | None, run_id: str) -> tuple[str, str]:
    return (kind, key) if key is not None else ("", run_id)


class Store:
    """Read access to a store, with the task and outcome rules applied."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    # -- tasks and their outcomes ----------------------------------------------------------------
    def tasks(self) -> dict[tuple[str, str], Task]:
        tasks: dict[tuple[str, str], Task] = {}
        self.run_task: dict[str, tuple[str, str]] = {}
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
        self._apply_outcomes(tasks)
        return tasks

    def outcomes(self) -> list[OutcomeRow]:
        rows = self.db.execute(
            "SELECT recorded_ns, label, success, value_pico, source, run_id, kind, key FROM outcomes "
            "ORDER BY recorded_ns, id"
        )
        return [OutcomeRow(r[0], r[1], bool(r[2]), r[3], r[4], r[5], r[6], r[7]) for r in rows]

    def outcome_targets(self, outcome: OutcomeRow, tasks: dict[tuple[str, str], Task]) -> list[tuple[str, str]]:
        """The tasks an outcome row speaks of: by run id (any run of the task), else by kind and key."""
        if outcome.run_id is not None:
            ident = self.run_task.get(outcome.run_id)
            return [ident] if ident is not None else []
        if outcome.key is None:
            return []
        if outcome.kind is not None:
            ident = (outcome.kind, outcome.key)
            return [ident] if ident in tasks else []
        return [i for i, t in tasks.items() if t.key == outcome.key]

    def _apply_outcomes(self, tasks: dict[tuple[str, str], Task]) -> None:
        for outcome in self.outcomes():  # oldest first, so the latest ends up winning
            for ident in self.outcome_targets(outcome, tasks):
                tasks[ident].outcome = outcome

    # -- call aggregates ---------------------------------------------------------------------------
    def call_sums(self, by_model: str | None = None) -> dict[Any, list[int]]:
        """Per run (and per model or provider when asked): the sums in _CALL_SUMS order.

        Calls outside any task are keyed by run id None.
        """
        extra = f", {by_model}" if by_model else ""
        sql = f"SELECT run_id{extra}, {_sum_columns()} FROM calls GROUP BY run_id{extra}"
        result: dict[Any, list[int]] = {}
        for row in self.db.execute(sql):
            key = (row[0], row[1]) if by_model else row[0]
            result[key] = [v or 0 for v in row[2 if by_model else 1 :]]
        return result

    def step_sums(self) -> dict[str | None, tuple[int, int, int]]:
        """Per run: (tool calls, step blocks, tool cost in pico-dollars)."""
        rows = self.db.execute(
            "SELECT run_id, SUM(type = 'tool'), SUM(type = 'step'), SUM(COALESCE(cost_pico, 0)) "
            "FROM steps GROUP BY run_id"
        )
        return {r[0]: (r[1] or 0, r[2] or 0, r[3] or 0) for r in rows}


# --- the report --------------------------------------------------------------------------------


def parse_by(by: str | Sequence[str], known_attributes: Iterable[str]) -> list[tuple[str, str]]:
    """`--by` names -> [(name as given, field)] where field is a GROUP_FIELDS name or 'attr:NAME'."""
    names = [n.strip() for n in (by.split(",") if isinstance(by, str) else by) if n.strip()]
    if not names:
        raise ReportError("--by needs at least one name")
    known = set(known_attributes)
    fields = []
    for name in names:
        if name in GROUP_FIELDS:
            fields.append((name, name))
            continue
        attribute = name[5:] if name.startswith("attr.") else name
        if attribute not in known:
            choices = ", ".join(list(GROUP_FIELDS) + sorted(known)) or "none"
            raise ReportError(f"unknown --by name {name!r}: no task has that attribute (known: {choices})")
        fields.append((name, "attr:" + attribute))
    if sum(f in ("model", "provider") for _, f in fields) > 1:
        raise ReportError("--by can group by model or by provider, not both")
    return fields


@dataclass
class _Acc:
    tasks: int = 0
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    no_outcome: int = 0
    tool_calls: int = 0
    step_blocks: int = 0
    tool_cost_pico: int = 0
    value_pico: int = 0
    sums: list[int] = field(default_factory=lambda: list(_ZERO_SUMS))

    def add_sums(self, sums: Sequence[int]) -> None:
        for i, v in enumerate(sums):
            self.sums[i] += v


def _ratio(a: Decimal | int, b: Decimal | int) -> Decimal | None:
    return None if not b else Decimal(a) / Decimal(b)


def _finish(group: dict[str, Any], acc: _Acc) -> dict[str, Any]:
    s = dict(zip(_CALL_SUMS, acc.sums, strict=True))
    llm_cost = from_pico(s["cost_pico"]) or Decimal(0)
    cost = llm_cost + (from_pico(acc.tool_cost_pico) or Decimal(0))
    reasoning_cost = from_pico(s["reasoning_cost_pico"]) or Decimal(0)
    decided = acc.succeeded + acc.failed
    steps = s["llm_calls"] + acc.tool_calls + acc.step_blocks
    return {
        "group": group,
        "tasks": acc.tasks,
        "runs": acc.runs,
        "succeeded": acc.succeeded,
        "failed": acc.failed,
        "no_outcome": acc.no_outcome,
        "success_rate": None if not decided else acc.succeeded / decided,
        "cost_usd": cost,
        "cost_per_task_usd": _ratio(cost, acc.tasks),
        "cost_per_success_usd": _ratio(cost, acc.succeeded),
        "llm_cost_usd": llm_cost,
        "tool_cost_usd": from_pico(acc.tool_cost_pico) or Decimal(0),
        "value_usd": from_pico(acc.value_pico) or Decimal(0),
        "input_tokens": s["input_uncached"] + s["cache_read"] + s["cache_write"] + s["cache_write_1h"],
        "cache_read_tokens": s["cache_read"],
        "cache_write_tokens": s["cache_write"] + s["cache_write_1h"],
        "output_tokens": s["output_visible"] + s["reasoning"],
        "reasoning_tokens": s["reasoning"],
        "llm_calls": s["llm_calls"],
        "tool_calls": acc.tool_calls,
        "steps": steps,
        "reasoning_cost_share": None if not cost else float(reasoning_cost / cost),
        "unpriced_calls": s["unpriced_calls"],
        "estimated_calls": s["estimated_calls"],
    }


MONEY_FIELDS = (
    "cost_usd", "cost_per_task_usd", "cost_per_success_usd", "llm_cost_usd", "tool_cost_usd", "value_usd",
)


def row_for_json(row: dict[str, Any]) -> dict[str, Any]:
    """A report row with money as JSON numbers rounded to 9 places (computed in Decimal)."""
    out = dict(row)
    for name in MONEY_FIELDS:
        out[name] = usd_for_json(row[name])
    return out


def report(
    db: sqlite_utils.Database,
    *,
    by: str | Sequence[str] = "kind",
    since_ns: int | None = None,
    until_ns: int | None = None,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """One row per group, in the JSON contract's fields (money as Decimal; see `row_for_json`)."""
    store = Store(db)
    tasks = store.tasks()
    known_attributes = {name for t in tasks.values() for name in t.attributes}
    fields = parse_by(by, known_attributes)
    model_field = next((f for _, f in fields if f in ("model", "provider")), None)
    call_sums = store.call_sums(model_field)
    step_sums = store.step_sums()
    per_run_models: dict[str | None, list[tuple[str, list[int]]]] = defaultdict(list)
    if model_field:
        for (run_id, model), sums in call_sums.items():
            per_run_models[run_id].append((model, sums))

    groups: dict[tuple[Any, ...], _Acc] = {}
    for task in tasks.values():
        if kind is not None and task.kind != kind:
            continue
        if since_ns is not None and task.started_ns < since_ns:
            continue
        if until_ns is not None and task.started_ns >= until_ns:
            continue
        base = {
            "kind": task.kind,
            "outcome": task.outcome.label if task.outcome else None,
        }
        # Grouped by model, a task counts in each model's row with only that model's calls.
        if model_field:
            models: dict[str, list[int]] = defaultdict(lambda: list(_ZERO_SUMS))
            for run_id in task.run_ids:
                for model, sums in per_run_models.get(run_id, ()):
                    models[model] = [a + b for a, b in zip(models[model], sums, strict=True)]
            slices: list[tuple[str | None, list[int]]] = list(models.items()) or [(None, list(_ZERO_SUMS))]
        else:
            total = list(_ZERO_SUMS)
            for run_id in task.run_ids:
                total = [a + b for a, b in zip(total, call_sums.get(run_id, _ZERO_SUMS), strict=True)]
            slices = [(None, total)]
        for model, sums in slices:
            values = dict(base, model=model, provider=model)
            key = tuple(
                task.attributes.get(f[5:]) if f.startswith("attr:") else values[f] for _, f in fields
            )
            acc = groups.get(key)
            if acc is None:
                acc = groups[key] = _Acc()
            acc.tasks += 1
            acc.runs += len(task.run_ids)
            if task.outcome is None:
                acc.no_outcome += 1
            elif task.outcome.success:
                acc.succeeded += 1
            else:
                acc.failed += 1
            if task.outcome is not None and task.outcome.value_pico:
                acc.value_pico += task.outcome.value_pico
            acc.add_sums(sums)
            if not model_field:  # tools are no model's cost
                for run_id in task.run_ids:
                    tools, blocks, tool_cost = step_sums.get(run_id, (0, 0, 0))
                    acc.tool_calls += tools
                    acc.step_blocks += blocks
                    acc.tool_cost_pico += tool_cost

    rows = [
        _finish({name: k for (name, _), k in zip(fields, key, strict=True)}, acc)
        for key, acc in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0]))
    ]
    no_task = _calls_outside_tasks(db, since_ns, until_ns, model_field)
    if no_task is not None and kind is None:
        rows.append(_finish({name: None for name, _ in fields}, no_task))
    return rows


def _calls_outside_tasks(
    db: sqlite_utils.Database, since_ns: int | None, until_ns: int | None, model_field: str | None
) -> _Acc | None:
    where, params = ["run_id IS NULL"], []
    if since_ns is not None:
        where.append("started_ns >= ?")
        params.append(since_ns)
    if until_ns is not None:
        where.append("started_ns < ?")
        params.append(until_ns)
    row = db.execute(f"SELECT {_sum_columns()} FROM calls WHERE {' AND '.join(where)}", params).fetchone()
    if not row or not row[0]:
        return None
    acc = _Acc()
    acc.add_sums([v or 0 for v in row])
    return acc
