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

# A search walks the sort's index when it matches at least this many times the tasks of the page and
# the pages before it (see `task_page`).
_WALK_MATCHES = 2
_COLUMNS = ("t.task_kind, t.task_key, t.kind, t.key, t.started_ns, t.runs, t.calls, t.task_cost_pico, "
            "t.unpriced_calls, t.estimated_calls, t.outcome_label, t.outcome_success")


def _order_by(sort: str, descending: bool, dialect: str, searching: bool = False) -> str:
    """ORDER BY for a sort: ties as `page_of_tasks` leaves them (its input is newest first, and
    Python's sort is stable), then by identity so that pages never overlap. ``searching``: the rows
    are found by a text search few tasks match, which reads every task's key: a number's order is
    then made by a sort of the few found (unary +: no index), not by walking an index in order and
    reading every task's row on the way (134 ms against 70 ms, 100,000 tasks)."""
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
) -> tuple[str, list[Any], tuple[str, list[Any], str, list[Any]] | None]:
    """WHERE over task_rollup `t` (the filters of `page_of_tasks`) but the search, and its parameters;
    and the search's two conditions (a key containing the text, a task id starting with it) with theirs."""
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
    where = " AND ".join(conditions) or "1 = 1"
    needle = search.strip().lower() if search else ""
    if not needle:
        return where, params, None
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    # A key containing the text, or a task id (its first run's id, as the list shows it) starting
    # with it: a range of the runs' primary key, from the prefix up to the next string after every
    # string it starts.
    earlier = ("r2.rowid < r.rowid" if dialect == "sqlite"
               else "(r2.started_ns, r2.run_id) < (r.started_ns, r.run_id)")
    # (SQLite's LIKE ignores the case of ASCII letters, as its LOWER only lowers them: the key is
    # matched as it is, half the time of lowering each; PostgreSQL's LIKE minds the case)
    key = "COALESCE(t.key, '')" if dialect == "sqlite" else "LOWER(COALESCE(t.key, ''))"
    ids = ("(t.task_kind, t.task_key) IN (SELECT CASE WHEN r.key IS NULL THEN '' ELSE r.kind END, "
           "COALESCE(r.key, r.run_id) FROM runs r WHERE r.run_id >= ? AND r.run_id < ? AND (r.key IS NULL "
           f"OR NOT EXISTS (SELECT 1 FROM runs r2 WHERE r2.kind = r.kind AND r2.key = r.key AND {earlier})))")
    return where, params, (f"{key} LIKE ? ESCAPE '\\'", [f"%{escaped}%"],
                           ids, [needle, needle[:-1] + chr(ord(needle[-1]) + 1)])


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
            where, params, found_by = _conditions(kind, search, retried, since_ns, until_ns, db.dialect)
            rows_from, rows_params = f"task_rollup t WHERE {where}", params
            rare = False
            if found_by is None:
                (total,) = db.execute(f"SELECT COUNT(*) FROM task_rollup t WHERE {where}", params).fetchone()
            else:
                like, like_params, ids, ids_params = found_by
                # The tasks found: those whose key contains the text, then those found by id whose key
                # does not, read from the ids (a few rows by key), not by looking every task up among
                # the ids (100,000 look-ups, 60 ms).
                matched = (f"SELECT t.task_kind, t.task_key FROM task_rollup t WHERE {where} AND {like} UNION ALL "
                           f"SELECT t.task_kind, t.task_key FROM task_rollup t WHERE {where} AND {ids} AND NOT {like}")
                matched_params = [*params, *like_params, *params, *ids_params, *like_params]
                (total,) = db.execute(f"SELECT COUNT(*) FROM ({matched}) AS f", matched_params).fetchone()
                # A search many tasks match walks the sort's index, where there is one, and stops at
                # the page's end: it reads about (offset + limit) * tasks / total rows, by index. Fewer
                # than twice the rows shown (and the pages before) are sorted once found: the walk would
                # read most rows, each costing it twice what a scan pays.
                rare = total < _WALK_MATCHES * (offset + limit)
                if rare:
                    rows_from = ("(" + matched + ") AS f CROSS JOIN task_rollup t "
                                 "WHERE t.task_kind = f.task_kind AND t.task_key = f.task_key")
                    rows_params = matched_params
                else:
                    rows_from = f"task_rollup t WHERE {where} AND ({like} OR {ids})"
                    rows_params = [*params, *like_params, *ids_params]
            # The sort carries each task's identity alone (narrow records sort in memory, and
            # faster), then the page's rows are read by their primary key.
            page = [] if offset >= total or not limit else db.execute(
                f"SELECT t.task_kind, t.task_key FROM {rows_from} "
                f"ORDER BY {_order_by(sort, descending, db.dialect, rare)} LIMIT ? OFFSET ?",
                [*rows_params, limit, offset],
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
