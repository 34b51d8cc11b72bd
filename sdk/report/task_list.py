"""One page of a store's tasks, sorted, filtered and counted in SQL over the per-task rollups
(`unitcost.store.rollups`' ``task_rollup``), for `unitcost ui`'s task list.

A million calls make ~100k tasks: building each in Python (`browse.all_tasks`) takes seconds, but
``task_rollup`` already holds a row a task with its kind, key, first start, runs, calls, cost (LLM,
tools and runtime: the cost `all_tasks` gives) and winning outcome. So the page is one statement
with ORDER BY / LIMIT / OFFSET and its count another; only the page's own tasks are then looked up
in ``runs`` (their first run's id, last end and attributes). The same text runs on SQLite and
PostgreSQL. Stores the rollups cannot answer (rollups left dirty by a read-only reader, task
identities of kind '' meeting a run id) get `all_tasks` and `page_of_tasks`, the reference rules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..store.backend import StoreBackend
from ..store.rollups import duration_sql, is_dirty
from . import sql
from .browse import TASK_SORTS, TaskSummary, all_tasks, page_of_tasks
from .rollup_sql import window_sql

__all__ = ["task_page"]

_COLUMNS = ("t.task_kind, t.task_key, t.kind, t.key, t.started_ns, t.runs, t.calls, t.task_cost_pico, "
            "t.unpriced_calls, t.estimated_calls, t.outcome_label, t.outcome_success")


def _order_by(sort: str, descending: bool, dialect: str, searching: bool = False) -> str:
    """ORDER BY for a sort: ties as `page_of_tasks` leaves them (its input is newest first, and
    Python's sort is stable), then by identity so that pages never overlap. ``searching``: the rows
    are found by a text search, which reads every task's key: a number's order is then made by a
    sort of the few found (unary +: no index), not by walking an index in order and reading every
    task's row on the way (134 ms against 70 ms, 100,000 tasks)."""
    text = ' COLLATE "C"' if dialect == "postgresql" else ""  # (code point order, as Python compares)
    column = {
        "cost": "t.task_cost_pico", "runs": "t.runs", "started": "t.started_ns", "calls": "t.calls",
        # (the runs' last end, kept in the rollup: read in order from task_rollup_duration)
        "duration": duration_sql("t"),
        "kind": f"t.kind{text}", "key": f"COALESCE(t.key, ''){text}", "outcome": f"COALESCE(t.outcome_label, ''){text}",
    }[sort]
    way = "DESC" if descending else "ASC"
    if searching and sort in ("cost", "runs", "started", "calls", "duration"):
        column = f"+{column}"
    return f"{column} {way}, t.started_ns DESC, t.task_kind{text} DESC, t.task_key{text} DESC"


def _conditions(
    kind: str | None, search: str | None, retried: bool, since_ns: int | None, until_ns: int | None, dialect: str
) -> tuple[str, list[Any]]:
    """WHERE over task_rollup `t` (the filters of `page_of_tasks`)."""
    conditions: list[str] = []
    params: list[Any] = []
    if kind is not None:
        conditions.append("t.kind = ?")
        params.append(kind)
    window, window_params = window_sql(since_ns, until_ns)  # (found by task_rollup_started)
    conditions.extend(window)
    params.extend(window_params)
    if retried:
        conditions.append("t.runs > 1")
    needle = search.strip().lower() if search else ""
    if needle:
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        # A key containing the text, or a task id (its first run's id, as the list shows it) starting
        # with it: a range of the runs' primary key, from the prefix up to the next string after every
        # string it starts.
        earlier = ("r2.rowid < r.rowid" if dialect == "sqlite"
                   else "(r2.started_ns, r2.run_id) < (r.started_ns, r.run_id)")
        conditions.append(
            "(LOWER(COALESCE(t.key, '')) LIKE ? ESCAPE '\\' OR (t.task_kind, t.task_key) IN (SELECT "
            "CASE WHEN r.key IS NULL THEN '' ELSE r.kind END, COALESCE(r.key, r.run_id) FROM runs r "
            "WHERE r.run_id >= ? AND r.run_id < ? AND (r.key IS NULL OR NOT EXISTS (SELECT 1 FROM runs r2 "
            f"WHERE r2.kind = r.kind AND r2.key = r.key AND {earlier}))))"
        )
        params.extend([f"%{escaped}%", needle, needle[:-1] + chr(ord(needle[-1]) + 1)])
    return " AND ".join(conditions) or "1 = 1", params


def task_page(
    db: StoreBackend,
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
    """(how many tasks match, one page of them with their attributes): `page_of_tasks` over
    `all_tasks`, read from the rollups where they answer. ``search`` finds a key by its text, or a task
    by its id's start; ``retried`` keeps tasks of more than one run; the window is by task start."""
    if sort not in TASK_SORTS:
        raise ValueError(f"sort by one of {', '.join(TASK_SORTS)}, not {sort!r}")
    offset, limit = max(offset, 0), max(limit, 0)
    db.ensure_fresh()
    with sql.one_read(db):
        if is_dirty(db.execute) or db.execute(sql.ODD_TASK_IDENTITIES_SQL).fetchone()[0]:
            found = None
        else:
            where, params = _conditions(kind, search, retried, since_ns, until_ns, db.dialect)
            (total,) = db.execute(f"SELECT COUNT(*) FROM task_rollup t WHERE {where}", params).fetchone()
            # The sort carries each task's identity alone (narrow records sort in memory, and
            # faster), then the page's rows are read by their primary key.
            page = db.execute(
                f"SELECT t.task_kind, t.task_key FROM task_rollup t WHERE {where} "
                f"ORDER BY {_order_by(sort, descending, db.dialect, bool(search and search.strip()))} LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
            found = (total, [_summary(db, db.execute(
                f"SELECT {_COLUMNS} FROM task_rollup t WHERE t.task_kind = ? AND t.task_key = ?", list(identity)
            ).fetchone()) for identity in page])
    if found is None:
        total, page = page_of_tasks(all_tasks(db), sort=sort, descending=descending, kind=kind, search=search,
                                    retried=retried, since_ns=since_ns, until_ns=until_ns, offset=offset, limit=limit)
        found = (total, [replace(t, attributes=_runs_of(db, t.kind, t.key, t.run_id)[2]) for t in page])
    return found


def _runs_of(db: StoreBackend, kind: str, key: str | None, run_id: str) -> tuple[str, int, dict[str, Any]]:
    """A task's (first run's id, last end, attributes merged run after run: later runs win, as reports
    merge them). The first run is the one stored first on SQLite (as `all_tasks` names it), the first
    started elsewhere."""
    order = "started_ns, run_id"  # (runs started together: by run id, as reports merge attributes)
    first = "rowid" if db.dialect == "sqlite" else "0"
    if key is None:
        rows = db.execute(f"SELECT run_id, ended_ns, attributes, {first} FROM runs WHERE run_id = ?", [run_id])
    else:
        rows = db.execute(
            f"SELECT run_id, ended_ns, attributes, {first} FROM runs WHERE kind = ? AND key = ? ORDER BY {order}",
            [kind, key],
        )
    runs = rows.fetchall()
    if not runs:
        return run_id, 0, {}
    attributes: dict[str, Any] = {}
    for _, _, text, _ in runs:
        if text and text not in ("", "{}"):
            try:
                attributes.update(json.loads(text))
            except ValueError:
                continue
    if db.dialect == "sqlite":
        runs.sort(key=lambda r: r[3])
    return runs[0][0], max(r[1] for r in runs), attributes


def _summary(db: StoreBackend, row: Sequence[Any]) -> TaskSummary:
    task_kind, task_key, kind, key, started, runs, calls, cost, unpriced, estimated, label, success = row
    run_id, ended, attributes = _runs_of(db, kind, key, task_key if task_kind == "" else "")
    return TaskSummary(
        run_id, kind, key, started, max(ended - started, 0) / 1e9, runs, calls or 0, cost or 0, unpriced or 0,
        estimated or 0, label, None if label is None else bool(success), attributes,
    )
