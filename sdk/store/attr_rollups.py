"""The task attributes' rollups (m020): each task's merged attributes as report keys, kept with the
per-task rollups (`unitcost.store.rollups`) so a report by or filtered by a task attribute reads them
instead of merging every run's attributes (`unitcost.report.attr_rollup_sql` reads them).

Tables (the same on SQLite and PostgreSQL):

- ``task_attributes``: one row a (task, attribute name): the task's identity (``task_kind``,
  ``task_key``, as ``task_rollup``), the name and ``value``, the report key the Python engine gives
  the merged value (the task's runs' attributes merged in start order, then run id, later runs winning
  per name; the key is ``str()`` of the JSON-decoded value, NULL for a JSON null), and, copied from the
  task's ``task_rollup`` row, what ranking and windows need: kind, first start, start day, whole cost
  and winning outcome label. A task whose attributes the engines cannot read alike (text that is not a
  JSON object, a name or value PostgreSQL or SQLite cannot hold as text, an attribute named '') has one
  row of name '' instead, and the reports then take the engines that merge the runs themselves.
- ``attribute_days``: per attribute name, value (not NULL), start day, kind, outcome label and state,
  the tasks' counts and sums as ``rollup_days`` holds them for whole tasks: what a report's rows add up.
  (The tasks without a value are every task less those: ``rollup_days`` minus these.)

`refresh_attributes` makes the dirty tasks' rows again (called by `rollups.refresh`, in the same
transaction, for the tasks ``rollup_dirty`` names): their part of ``attribute_days`` taken away before
their task rows change (`days_sql` "-"), their rows made again after the task rows are, then their
part added back. The merge and the keys are Python (the writer thread's: ``json`` is preloaded), so the
keys are exactly the Python engine's. `rebuild` makes every row again (the migration).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from .run_totals import COLUMNS

__all__ = [
    "ATTRIBUTE_TABLES", "UNFIT_NAME", "create_tables_sql", "days_sql", "has_tables", "rebuild",
    "refresh_attributes",
]

SUM_COLUMNS = COLUMNS[3:]
ATTRIBUTE_TABLES = ("task_attributes", "attribute_days")
# The name of the row that marks a task whose attributes the rollup does not hold (see above).
UNFIT_NAME = ""
# attribute_days' counts (as rollup_days' DAY_COUNTS, less split_tasks), then the sums.
DAY_COUNTS = ("tasks", "runs", "runs_with_calls", "value_pico", "entry_cost_pico", "tool_calls", "step_blocks",
              "tool_cost_pico", "runtime_cost_pico")
_DAY_KEY = ("name", "value", "start_day", "kind", "outcome_label", "state")
# Copied from the task's task_rollup row `t`.
_TASK_FIELDS = ("kind", "started_ns", "start_day", "task_cost_pico", "outcome_label")
_CHUNK = 200  # rows a statement when inserting (4 parameters each)


def create_tables_sql(dialect: str) -> list[str]:
    integer = "INTEGER" if dialect == "sqlite" else "BIGINT"
    without_rowid = " WITHOUT ROWID" if dialect == "sqlite" else ""
    counts = ", ".join(f"{c} {integer} NOT NULL DEFAULT 0" for c in (*DAY_COUNTS, *SUM_COLUMNS))
    return [
        f"CREATE TABLE task_attributes (task_kind TEXT NOT NULL, task_key TEXT NOT NULL, name TEXT NOT NULL, "
        f"value TEXT, kind TEXT NOT NULL, started_ns {integer} NOT NULL, start_day {integer} NOT NULL, "
        f"task_cost_pico {integer} NOT NULL, outcome_label TEXT, PRIMARY KEY (task_kind, task_key, name))"
        + without_rowid,
        # A value's k-th cost (and by day) read in order; the kind and outcome beside, for the groups of
        # one; a window's tasks by start.
        "CREATE INDEX task_attributes_cost ON task_attributes(name, value, task_cost_pico, kind, outcome_label)",
        "CREATE INDEX task_attributes_day_cost ON task_attributes(name, value, start_day, task_cost_pico, kind, "
        "outcome_label)",
        "CREATE INDEX task_attributes_started ON task_attributes(name, started_ns)",
        f"CREATE TABLE attribute_days (name TEXT NOT NULL, value TEXT NOT NULL, kind TEXT NOT NULL, "
        f"start_day {integer} NOT NULL, outcome_label TEXT NOT NULL, state {integer} NOT NULL, {counts}, "
        # (SQLite: stored in key order, so a report's rows by value, or by value and day, are summed as read)
        f"PRIMARY KEY (name, value, start_day, kind, outcome_label, state)){without_rowid}",
        # (the rows a refresh left without a task, found without reading the others)
        "CREATE INDEX attribute_days_empty ON attribute_days(name) WHERE tasks = 0",
    ]


def has_tables(execute: Callable[..., Any], dialect: str) -> bool:
    """Whether the store has m020's tables (a store opened without migrating it may not)."""
    if dialect == "sqlite":
        found = execute("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'task_attributes')")
    else:
        found = execute("SELECT to_regclass('task_attributes') IS NOT NULL")
    return bool(found.fetchone()[0])


_IN_DIRTY = "(a.task_kind, a.task_key) IN (SELECT task_kind, task_key FROM rollup_dirty)"


def days_sql(sign: str, *, everyone: bool = False) -> str:
    """Add (sign "+") or take away ("-") the dirty tasks' part (``everyone``: every task's) of
    attribute_days, from their task_attributes rows and task rows as they are now."""
    state = "CASE WHEN t.outcome_id IS NULL THEN 0 WHEN t.outcome_success <> 0 THEN 1 ELSE 2 END"
    values = (*DAY_COUNTS, *SUM_COLUMNS)
    picked = (
        f"a.name, a.value, t.start_day, t.kind, COALESCE(t.outcome_label, ''), {state}, COUNT(*), SUM(t.runs), "
        "SUM(t.runs_with_calls), SUM(COALESCE(t.outcome_value_pico, 0)), "
        "SUM(t.cost_pico + t.tool_cost_pico + t.runtime_cost_pico), SUM(t.tool_calls), SUM(t.step_blocks), "
        "SUM(t.tool_cost_pico), SUM(t.runtime_cost_pico)" + "".join(f", SUM(t.{c})" for c in SUM_COLUMNS)
    )
    named = ", ".join((*(f"k{i}" for i in range(len(_DAY_KEY))), *(f"v{i}" for i in range(len(values)))))
    keys = ", ".join(f"k{i}" for i in range(len(_DAY_KEY)))
    return (
        f"WITH c ({named}) AS (SELECT {picked} FROM task_attributes a JOIN task_rollup t "
        "ON t.task_kind = a.task_kind AND t.task_key = a.task_key "
        f"WHERE a.value IS NOT NULL AND a.name <> ''{'' if everyone else ' AND ' + _IN_DIRTY} "
        "GROUP BY 1, 2, 3, 4, 5, 6) "
        f"INSERT INTO attribute_days ({', '.join((*_DAY_KEY, *values))}) "
        f"SELECT {keys}, {', '.join(f'{sign}v{i}' for i in range(len(values)))} FROM c WHERE true "
        f"ON CONFLICT ({', '.join(_DAY_KEY)}) DO UPDATE SET "
        + ", ".join(f"{c} = attribute_days.{c} + excluded.{c}" for c in values)
    )


# The runs with attributes of the dirty tasks, by task, then in the order they merge (as
# `unitcost.report.tasks.Store.tasks` reads them: start, then run id).
_DIRTY_RUN_ATTRIBUTES = (
    "SELECT d.task_kind, d.task_key, x.started_ns, x.run_id, x.attributes FROM rollup_dirty d CROSS JOIN runs x "
    "WHERE x.kind = d.task_kind AND x.key = d.task_key AND x.attributes IS NOT NULL "
    "UNION ALL SELECT d.task_kind, d.task_key, x.started_ns, x.run_id, x.attributes FROM rollup_dirty d "
    "CROSS JOIN runs x WHERE x.run_id = d.task_key AND x.key IS NULL AND d.task_kind = '' "
    "AND x.attributes IS NOT NULL ORDER BY 1, 2, 3, 4"
)
_EVERY_RUN_ATTRIBUTES = (
    "SELECT CASE WHEN key IS NULL THEN '' ELSE kind END, COALESCE(key, run_id), started_ns, run_id, attributes "
    "FROM runs WHERE attributes IS NOT NULL ORDER BY 1, 2, 3, 4"
)


def _fits(text: str, dialect: str) -> bool:
    """Text either store holds as it is (PostgreSQL's text takes no NUL; neither takes a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return dialect == "sqlite" or "\x00" not in text


def _keys(runs: Iterable[tuple[Any, ...]], dialect: str) -> Iterable[tuple[str, str, str, str | None]]:
    """(task_kind, task_key, name, report key) for each task's merged attributes; a task the engines
    would read otherwise (see the module) yields one (task_kind, task_key, UNFIT_NAME, None)."""
    task: tuple[str, str] | None = None
    merged: dict[str, Any] = {}
    unfit = False

    def rows() -> list[tuple[str, str, str, str | None]]:
        assert task is not None
        if not unfit:
            out = [(*task, name, None if value is None else str(value)) for name, value in merged.items()]
            if all(name != UNFIT_NAME and _fits(name, dialect) and (key is None or _fits(key, dialect))
                   for _, _, name, key in out):
                return out
        return [(*task, UNFIT_NAME, None)]

    for kind, key, _, _, text in runs:
        if (kind, key) != task:
            if task is not None and (merged or unfit):
                yield from rows()
            task, merged, unfit = (kind, key), {}, False
        if not text or text == "{}" or unfit:  # (as the Python engine: such a run adds nothing)
            continue
        try:
            found = json.loads(text)
            merged.update(found)  # later runs win
        except (ValueError, TypeError, AttributeError):  # (not a JSON object: the engines fail on it alike)
            unfit = True
    if task is not None and (merged or unfit):
        yield from rows()


def _insert(execute: Callable[..., Any], rows: Iterable[tuple[str, str, str, str | None]], dialect: str) -> None:
    """The rows, with their task's fields from task_rollup (made just before), a few hundred a statement."""
    mark = "?" if dialect == "sqlite" else "%s"
    chunk: list[tuple[str, str, str, str | None]] = []

    def flush() -> None:
        values = ", ".join(f"({mark}, {mark}, {mark}, {mark})" for _ in chunk)
        execute(
            f"WITH v (k, t, n, val) AS (VALUES {values}) INSERT INTO task_attributes "
            f"(task_kind, task_key, name, value, {', '.join(_TASK_FIELDS)}) "
            f"SELECT v.k, v.t, v.n, v.val, {', '.join(f't.{c}' for c in _TASK_FIELDS)} "
            "FROM v JOIN task_rollup t ON t.task_kind = v.k AND t.task_key = v.t",
            [p for row in chunk for p in row],
        )
        chunk.clear()

    for row in rows:
        chunk.append(row)
        if len(chunk) == _CHUNK:
            flush()
    if chunk:
        flush()


def refresh_attributes(execute: Callable[..., Any], dialect: str) -> None:
    """The dirty tasks' task_attributes rows made again (after their task_rollup rows are; their part of
    attribute_days was taken away before, by `days_sql` "-"), and their part of attribute_days added."""
    execute("DELETE FROM task_attributes WHERE (task_kind, task_key) IN (SELECT task_kind, task_key FROM rollup_dirty)")
    _insert(execute, _keys(execute(_DIRTY_RUN_ATTRIBUTES).fetchall(), dialect), dialect)
    execute(days_sql("+"))
    execute("DELETE FROM attribute_days WHERE tasks = 0")


def rebuild(execute: Callable[..., Any], dialect: str) -> None:
    """Every task's rows made again from its runs and task_rollup row (m020)."""
    execute("DELETE FROM task_attributes")
    execute("DELETE FROM attribute_days")
    _insert(execute, _keys(execute(_EVERY_RUN_ATTRIBUTES), dialect), dialect)
    execute(days_sql("+", everyone=True))
