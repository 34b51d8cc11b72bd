"""Every task of a store, one row each, for lists a person sorts, pages and searches (`unitcost ui`).

Tasks are joined exactly as reports join them (`unitcost.report.sql.TaskTables`: runs by kind and
key, the latest outcome winning), so a task's cost here is the cost a report adds up for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..common.money import from_pico
from ..store.backend import StoreBackend
from ..store.sqlite import SqliteBackend
from . import sql

__all__ = ["TASK_SORTS", "TaskSummary", "all_tasks", "page_of_tasks", "store_version"]

# Sort keys a list offers, by the name a URL uses.
TASK_SORTS = ("cost", "runs", "started", "duration", "kind", "key", "outcome", "calls")


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One task: its first run's id (what `unitcost show` takes), kind, key, runs and what it cost."""

    run_id: str
    kind: str
    key: str | None
    started_ns: int
    duration_s: float  # first run's start to the last run's end
    runs: int
    llm_calls: int
    cost_pico: int  # LLM calls, tools and runtime (every total includes a [[runtime]] charge)
    unpriced_calls: int
    estimated_calls: int
    outcome: str | None
    success: bool | None
    # its runs' attributes merged, later runs winning (as reports read them); filled for a page of tasks
    attributes: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def cost_usd(self) -> Decimal:
        return from_pico(self.cost_pico) or Decimal(0)

    @property
    def retried(self) -> bool:
        return self.runs > 1


def all_tasks(db: StoreBackend) -> list[TaskSummary]:
    """Every task in the store, newest first. On SQLite one read of the store (temporary tables
    rolled back, as the SQL report engine does); on another backend by the reference rules."""
    db.ensure_fresh()
    if not isinstance(db, SqliteBackend):
        return _all_tasks_in_python(db)
    conn = db.conn
    with sql.reading(conn):
        tables = sql.TaskTables(conn, with_attributes=False, per_model=False)
        try:
            tables.build()
        except sql.Unfit:
            return _all_tasks_in_python(db)
        rows = conn.execute(
            "SELECT r.run_id, t.kind, t.key, t.started_ns, e.ended_ns, t.runs, t.calls, "
            "t.cost_pico + COALESCE(tl.tool_cost, 0) + COALESCE(tl.runtime_cost, 0), "
            "t.unpriced_calls, t.estimated_calls, o.label, o.success "
            "FROM uc_task t JOIN runs r ON r.rowid = t.tid "
            "JOIN (SELECT COALESCE(a.tid, r2.rowid) AS tid, MAX(r2.ended_ns) AS ended_ns FROM runs r2 "
            "      LEFT JOIN uc_alias a ON a.rid = r2.rowid GROUP BY 1) e ON e.tid = t.tid "
            "LEFT JOIN uc_tools tl ON tl.tid = t.tid "
            "LEFT JOIN uc_won w ON w.tid = t.tid LEFT JOIN outcomes o ON o.id = w.outcome "
            "ORDER BY t.started_ns DESC, t.tid DESC"
        ).fetchall()
    return [_summary(row) for row in rows]


def _summary(row: Sequence[Any]) -> TaskSummary:
    run_id, kind, key, started, ended, runs, calls, cost, unpriced, estimated, label, success = row
    return TaskSummary(
        run_id, kind, key, started, max((ended or started) - started, 0) / 1e9, runs, calls or 0, cost or 0,
        unpriced or 0, estimated or 0, label, None if label is None else bool(success),
    )


def _all_tasks_in_python(db: StoreBackend) -> list[TaskSummary]:
    """The same rows from the reference rules (`tasks.Store`), for the stores the SQL reads otherwise."""
    from .tasks import Store

    store = Store(db)
    tasks = store.tasks()
    per_run = {
        r[0]: r[1:] for r in db.execute(
            "SELECT r.run_id, r.ended_ns, COALESCE(s.calls, 0), COALESCE(s.cost_pico, 0), "
            "COALESCE(s.unpriced_calls, 0), COALESCE(s.estimated_calls, 0), "
            "(SELECT COALESCE(SUM(cost_pico), 0) FROM steps WHERE steps.run_id = r.run_id) "
            "+ COALESCE(r.runtime_cost_pico, 0) "
            "FROM runs r LEFT JOIN run_sums s ON s.run_id = r.run_id"
        )
    }
    result = []
    for task in tasks.values():
        sums = [per_run[r] for r in task.run_ids]
        outcome = task.outcome
        result.append(TaskSummary(
            task.run_ids[0], task.kind, task.key, task.started_ns,
            max(max(s[0] for s in sums) - task.started_ns, 0) / 1e9, len(task.run_ids),
            sum(s[1] for s in sums), sum(s[2] + s[5] for s in sums), sum(s[3] for s in sums),
            sum(s[4] for s in sums), outcome.label if outcome else None, outcome.success if outcome else None,
        ))
    result.sort(key=lambda t: t.started_ns, reverse=True)
    return result


def _sort_key(name: str) -> Any:
    return {
        "cost": lambda t: t.cost_pico,
        "runs": lambda t: t.runs,
        "started": lambda t: t.started_ns,
        "duration": lambda t: t.duration_s,
        "kind": lambda t: t.kind,
        "key": lambda t: t.key or "",
        "outcome": lambda t: t.outcome or "",
        "calls": lambda t: t.llm_calls,
    }[name]


def page_of_tasks(
    tasks: Sequence[TaskSummary],
    *,
    sort: str = "started",
    descending: bool = True,
    kind: str | None = None,
    search: str | None = None,
    retried: bool = False,
    since_ns: int | None = None,
    until_ns: int | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[int, list[TaskSummary]]:
    """(how many tasks match, one page of them). ``search`` finds a key (or task id) by its text;
    ``retried`` keeps tasks of more than one run. The window is by task start, as in reports."""
    if sort not in TASK_SORTS:
        raise ValueError(f"sort by one of {', '.join(TASK_SORTS)}, not {sort!r}")
    needle = search.strip().lower() if search else ""
    kept = [
        t for t in tasks
        if (kind is None or t.kind == kind)
        and (not retried or t.runs > 1)
        and (since_ns is None or t.started_ns >= since_ns)
        and (until_ns is None or t.started_ns < until_ns)
        and (not needle or needle in (t.key or "").lower() or t.run_id.startswith(needle))
    ]
    kept.sort(key=_sort_key(sort), reverse=descending)
    return len(kept), kept[max(offset, 0): max(offset, 0) + limit]


def store_version(db: StoreBackend) -> str:
    """A text that changes whenever something is written to the store (a run, call, step, outcome or a
    dropped-span count) or pruned from it. On SQLite each table's oldest and newest row id, read from
    the ends of its b-tree (microseconds at any size; rows are only appended, and prune removes the
    oldest); elsewhere each table's row count and newest time."""
    tables = db.tables()
    parts = []
    for table, column in (("runs", "started_ns"), ("calls", "started_ns"), ("steps", "started_ns"),
                          ("outcomes", "recorded_ns"), ("dropped_spans", "recorded_ns")):
        if table not in tables:
            parts.append("0.0")
            continue
        if isinstance(db, SqliteBackend):  # (MIN and MAX as two subqueries: each is then one b-tree seek)
            sql_text = (
                f"SELECT (SELECT COALESCE(MIN(rowid), 0) FROM {table}), (SELECT COALESCE(MAX(rowid), 0) FROM {table})"
            )
        else:
            sql_text = f"SELECT COUNT(*), COALESCE(MAX({column}), 0) FROM {table}"
        first, last = db.execute(sql_text).fetchone()
        parts.append(f"{first}.{last}")
    return "-".join(parts)
