"""Reports read from the per-task rollups (`unitcost.store.rollups`): one text for SQLite and PostgreSQL.

A report that groups by kind, outcome, model, provider and time bucket, filtered by kind, outcome and
time window, needs of each task only what ``task_rollup`` holds (its kind, first start, runs, sums,
tools and winning outcome) and, by model or provider, ``task_model_rollup``. So the groups are summed
and their task costs ranked straight from those rows (~100k for a million calls) instead of joining
runs, per-run sums, steps and outcomes first (`unitcost.report.sql`, `unitcost.report.pg_sql`, still
used for task attributes in --by/--where, and by the tests as the rollups' reference).

Requests and stores it does not take raise `Unfit`: task attributes, a task identity of kind ''
that meets a run id, a task started before 1970 in a bucketed report, and rollups still marked
dirty (a store that could not be refreshed: read-only, or a sum past 2**63).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..store.rollups import SUM_COLUMNS, is_dirty
from .sql import PART, Unfit

__all__ = ["group_rows", "outside_sums"]


def _check_fits(execute: Callable[..., Any], bucketed: bool) -> None:
    if is_dirty(execute):
        raise Unfit("rollups not current")
    odd = execute(
        "SELECT EXISTS (SELECT 1 FROM runs a WHERE a.kind = '' AND a.key IS NOT NULL"
        "  AND EXISTS (SELECT 1 FROM runs b WHERE b.run_id = a.key AND b.key IS NULL))"
        " OR EXISTS (SELECT 1 FROM outcomes WHERE run_id IS NULL AND kind = '' AND key IS NOT NULL)"
    ).fetchone()[0]
    if odd:
        raise Unfit("task identities of kind ''")
    if bucketed and execute("SELECT MIN(started_ns) < 0 FROM task_rollup").fetchone()[0]:
        raise Unfit("a task started before 1970")


def group_rows(
    execute: Callable[..., Any],
    *,
    keys: Sequence[str],
    per_model: str | None,
    where: Sequence[str],
    params: Sequence[Any],
    percentiles: Sequence[int],
    bucket: Callable[[int], str] | None = None,
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(group key, its counts, sums and ranked costs) for each group of kept tasks, as `sql.group_rows`.

    ``execute``: the store's (``?`` placeholders), inside one consistent read. ``keys``: "kind",
    "outcome" or `PART`, in the report's order; ``bucket`` (ns -> label) puts the task's time bucket
    first. ``where``: conditions over the task `t` and its outcome `o`, with ``?`` parameters."""
    _check_fits(execute, bucket is not None)
    columns = {"kind": "t.kind", "outcome": "o.label"}
    task_keys = [columns[k] for k in keys if k != PART]
    days_cte, day_params = "", []
    if bucket is not None:
        days = [d for (d,) in execute("SELECT DISTINCT start_day FROM task_rollup")]
        if not days:
            return
        # Each distinct day named once in Python (time_bucket), joined as a small table.
        days_cte = "WITH b (day, label) AS (VALUES " + ", ".join("(?, ?)" for _ in days) + ") "
        day_params = [v for d in days for v in (d, bucket(d * 86_400 * 10**9))]
        task_keys.insert(0, "b.label")
    state = "CASE WHEN o.id IS NULL THEN 0 WHEN o.success <> 0 THEN 1 ELSE 2 END"  # none, succeeded, failed
    g = [f"g{i}" for i in range(len(task_keys))]
    picked = "".join(f"{k} AS {name}, " for k, name in zip(task_keys, g, strict=True))
    source = (
        "FROM task_rollup t LEFT JOIN outcomes o ON o.id = t.outcome_id"
        + (" JOIN b ON b.day = t.start_day" if bucket is not None else "")
    )
    condition = " AND ".join(where) or "true"
    if per_model is None:
        entries = (
            f"SELECT {picked}t.runs AS runs, {state} AS state, COALESCE(o.value_pico, 0) AS value, "
            "t.cost_pico + t.tool_cost_pico + t.runtime_cost_pico AS cost, t.tool_calls AS tools, "
            "t.step_blocks AS blocks, t.tool_cost_pico AS tcost, t.runtime_cost_pico AS rcost"
            + "".join(f", t.{c} AS {c}" for c in SUM_COLUMNS) + f" {source} WHERE {condition}"
        )
        entry_params = list(params)
    else:
        # A task counts in each of its models' (or providers') rows with only those calls and no tools;
        # a task without calls once, in the (none) row.
        parts = (
            f"SELECT task_kind, task_key, {per_model} AS part"
            + "".join(f", SUM({c}) AS {c}" for c in SUM_COLUMNS)
            + f" FROM task_model_rollup GROUP BY task_kind, task_key, {per_model}"
        )
        common = f"t.runs AS runs, {state} AS state, COALESCE(o.value_pico, 0) AS value"
        entries = (
            f"SELECT {picked}p.part AS part, p.cost_pico AS cost, {common}"
            + "".join(f", p.{c} AS {c}" for c in SUM_COLUMNS)
            + f" {source} JOIN ({parts}) p ON p.task_kind = t.task_kind AND p.task_key = t.task_key"
            f" WHERE {condition} UNION ALL SELECT {picked}NULL AS part, 0 AS cost, {common}"
            + "".join(f", 0 AS {c}" for c in SUM_COLUMNS)
            + f" {source} WHERE t.runs_with_calls = 0 AND {condition}"
        )
        entry_params = [*params, *params]
    # the group columns, in the report's key order (the bucket first)
    order = (["g0"] if bucket is not None else []) + [
        "part" if k == PART else f"g{[kk for kk in keys if kk != PART].index(k) + (bucket is not None)}"
        for k in keys
    ]
    tools = "SUM(tools), SUM(blocks), SUM(tcost), SUM(rcost)" if per_model is None else "0, 0, 0, 0"
    group_by = ", ".join(order)
    lead = f"{group_by}, " if order else ""
    counted = execute(
        f"{days_cte}SELECT {lead}COUNT(*), SUM(runs), SUM(CASE WHEN state = 1 THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN state = 2 THEN 1 ELSE 0 END), SUM(value), SUM(CASE WHEN state = 2 THEN cost ELSE 0 END), "
        f"{tools}" + "".join(f", SUM({c})" for c in SUM_COLUMNS)
        + f" FROM ({entries}) e" + (f" GROUP BY {group_by}" if order else ""),
        [*day_params, *entry_params],
    ).fetchall()
    partition = f"PARTITION BY {group_by} " if order else ""
    # (the nearest rank, `sql.nearest_rank`: n >= 1 and p >= 1, so it is never below 1)
    ranks = " OR ".join(f"rn = ({p} * n + 99) / 100" for p in sorted(set(percentiles)))
    ranked: dict[tuple[Any, ...], dict[int, int]] = {}
    for row in execute(
        f"{days_cte}SELECT {lead}rn, cost FROM (SELECT {lead}cost, row_number() OVER ({partition}ORDER BY cost) AS rn, "
        f"COUNT(*) OVER ({partition.strip()}) AS n FROM ({entries}) e) r WHERE {ranks}",
        [*day_params, *entry_params],
    ):
        ranked.setdefault(tuple(row[: len(order)]), {})[row[len(order)]] = row[len(order) + 1]
    for row in counted:
        key = tuple(row[: len(order)])
        n, runs, succeeded, failed, value, wasted, tools_, blocks, tcost, rcost, *sums = row[len(order):]
        if not n:
            continue
        yield key, {
            "tasks": n, "runs": runs, "succeeded": succeeded, "failed": failed,
            "no_outcome": n - succeeded - failed, "value_pico": value, "wasted_pico": wasted, "tool_calls": tools_,
            "step_blocks": blocks, "tool_cost_pico": tcost, "runtime_cost_pico": rcost,
            "ranked": ranked.get(key, {}), "sums": [v or 0 for v in sums],
        }


def outside_sums(execute: Callable[..., Any]) -> tuple[int, list[int]]:
    """How many runs with calls belong to no stored run (their task span never arrived), and their
    sums: none when every run_sums row is a stored run's (the rollups count those)."""
    stored = execute("SELECT COALESCE(SUM(runs_with_calls), 0) FROM task_rollup").fetchone()[0]
    if execute("SELECT COUNT(*) FROM run_sums").fetchone()[0] == stored:
        return 0, [0] * len(SUM_COLUMNS)
    row = execute(
        f"SELECT COUNT(*), {', '.join(f'COALESCE(SUM(s.{c}), 0)' for c in SUM_COLUMNS)} FROM run_sums s "
        "WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = s.run_id)"
    ).fetchone()
    return row[0], list(row[1:])
