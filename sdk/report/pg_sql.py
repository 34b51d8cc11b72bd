"""Reports summed by PostgreSQL: the task, outcome and grouping rules of `unitcost.report.engine`, in SQL.

The same rules as `unitcost.report.sql` (SQLite's), written in PostgreSQL's terms: a task is its
runs grouped by kind and key (a run without a key is a task of its own), named by its first run;
the latest outcome (by recorded time, then id) that names one of its runs, else its kind and key,
else its key alone, wins; each group's tasks are summed from the per-run totals (`run_sums`,
`run_totals` grouped by model) and ranked by cost for the percentiles, all in the server. Python
gets one row per group and the few ranked costs the percentiles need.

Requests this engine does not take (task attributes in --by/--where, a task started before 1970,
task identities of kind '') raise `Unfit`, and the Python engine answers them.
tests/report/test_report_engines.py checks that the engines give the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..store.run_totals import COLUMNS
from .sql import ODD_TASK_IDENTITIES_SQL, PART, Unfit

__all__ = ["group_rows", "outside_sums"]

SUM_COLUMNS = COLUMNS[3:]

# A run's task: its own id without a key, else the first run (by start, then id) of its kind and key.
_RUN_TASKS = (
    "rt AS (SELECT r.run_id, r.kind, r.key, r.started_ns, CASE WHEN r.key IS NULL THEN r.run_id ELSE "
    "first_value(r.run_id) OVER (PARTITION BY r.kind, r.key ORDER BY r.started_ns, r.run_id) END AS tid FROM runs r)"
)


def _tasks_sql(per_model: bool) -> str:
    sums = "".join(f", COALESCE(SUM(s.{c}), 0) AS {c}" for c in SUM_COLUMNS) if not per_model else ""
    return (
        f"{_RUN_TASKS}, "
        "t AS (SELECT rt.tid, MIN(rt.kind) AS kind, MIN(rt.key) AS key, MIN(rt.started_ns) AS started_ns, "
        f"COUNT(*) AS runs, COUNT(s.run_id) > 0 AS has_calls{sums} "
        "FROM rt LEFT JOIN run_sums s ON s.run_id = rt.run_id GROUP BY rt.tid), "
        # The candidates for each task's outcome; the latest wins.
        "cand AS (SELECT rt.tid, o.id, o.recorded_ns FROM outcomes o JOIN rt ON rt.run_id = o.run_id "
        " UNION ALL SELECT t.tid, o.id, o.recorded_ns FROM outcomes o JOIN t ON t.kind = o.kind AND t.key = o.key"
        "  WHERE o.run_id IS NULL AND o.kind IS NOT NULL AND o.key IS NOT NULL"
        " UNION ALL SELECT t.tid, o.id, o.recorded_ns FROM outcomes o JOIN t ON t.key = o.key"
        "  WHERE o.run_id IS NULL AND o.kind IS NULL AND o.key IS NOT NULL), "
        "won AS (SELECT DISTINCT ON (tid) tid, id FROM cand ORDER BY tid, recorded_ns DESC, id DESC)"
    )


def check_fits(conn: Any) -> None:
    """Raise Unfit for the stores whose tasks the SQL would join differently (as `sql.TaskTables.check_fits`)."""
    odd = conn.execute(ODD_TASK_IDENTITIES_SQL).fetchone()[0]
    if odd:
        raise Unfit("task identities of kind ''")


def _day_sql(column: str) -> str:
    # The UTC day a task starts on, as `engine.time_bucket` reads ns: a float of seconds rounded to the
    # microsecond (half to even: a fraction at or past 999999.5 us is the next second).
    seconds = f"({column}::double precision / 1e9)"
    whole = f"floor({seconds})"
    return f"((({whole})::bigint + CASE WHEN ({seconds} - {whole}) * 1e6 >= 999999.5 THEN 1 ELSE 0 END) / 86400)"


def group_rows(
    conn: Any,
    *,
    keys: Sequence[str],
    per_model: str | None,
    where: Sequence[str],
    params: Sequence[Any],
    percentiles: Sequence[int],
    bucket: Callable[[int], str] | None = None,
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(group key, its sums and ranked costs) for each group of kept tasks, as `sql.group_rows`.

    ``keys``: "kind", "outcome" or `PART` (the model or provider), in the report's order; ``bucket``
    (ns -> label) puts the task's time bucket first. ``where``: conditions over the task `t` and its
    outcome `o`, with %s parameters."""
    check_fits(conn)
    if bucket is not None and conn.execute("SELECT MIN(started_ns) < 0 FROM runs").fetchone()[0]:
        raise Unfit("a task started before 1970")
    columns = {"kind": "t.kind", "outcome": "o.label"}
    task_keys = [columns[k] for k in keys if k != PART]
    extra: list[Any] = []
    if bucket is not None:
        days = [d for (d,) in conn.execute(f"WITH {_RUN_TASKS} SELECT DISTINCT {_day_sql('MIN(started_ns)')} "
                                           "FROM rt GROUP BY tid")]
        task_keys.insert(0, "b.label")
        extra = [days, [bucket(d * 86_400 * 10**9) for d in days]]
    state = "CASE WHEN o.id IS NULL THEN 0 WHEN o.success <> 0 THEN 1 ELSE 2 END"
    kept = (
        "SELECT t.tid" + "".join(f", {k} AS g{i}" for i, k in enumerate(task_keys))
        + f", t.runs, {state} AS state, COALESCE(o.value_pico, 0) AS value, t.has_calls"
        + ("" if per_model else
           ", t.cost_pico + COALESCE(tl.tcost, 0) + COALESCE(tl.rcost, 0) AS cost, COALESCE(tl.tools, 0) AS tools, "
           "COALESCE(tl.blocks, 0) AS blocks, COALESCE(tl.tcost, 0) AS tcost, COALESCE(tl.rcost, 0) AS rcost"
           + "".join(f", t.{c}" for c in SUM_COLUMNS))
        + " FROM t LEFT JOIN won w ON w.tid = t.tid LEFT JOIN outcomes o ON o.id = w.id"
        + ("" if per_model else
           # tools and steps (session blocks are a [[runtime]] charge, not tool cost), then the
           # runs' own [[runtime]] charges: as `sql.TaskTables`'s uc_tools
           " LEFT JOIN (SELECT tid, SUM(tools) AS tools, SUM(blocks) AS blocks, SUM(tcost) AS tcost, "
           "SUM(rcost) AS rcost FROM (SELECT rt.tid, COUNT(*) FILTER (WHERE s.type = 'tool') AS tools, "
           "COUNT(*) FILTER (WHERE s.type = 'step') AS blocks, "
           "SUM(CASE WHEN s.type = 'session' THEN 0 ELSE COALESCE(s.cost_pico, 0) END) AS tcost, "
           "SUM(CASE WHEN s.type = 'session' THEN COALESCE(s.cost_pico, 0) ELSE 0 END) AS rcost "
           "FROM steps s JOIN rt ON rt.run_id = s.run_id GROUP BY rt.tid "
           "UNION ALL SELECT rt.tid, 0, 0, 0, SUM(r.runtime_cost_pico) FROM runs r JOIN rt ON rt.run_id = r.run_id "
           "WHERE r.runtime_cost_pico IS NOT NULL GROUP BY rt.tid) AS x GROUP BY tid) tl ON tl.tid = t.tid")
        + (f" JOIN unnest(%s::bigint[], %s::text[]) AS b(day, label) ON b.day = {_day_sql('t.started_ns')}"
           if bucket is not None else "")
        + f" WHERE {' AND '.join(where) or 'true'}"
    )
    # the entries' group columns, in the report's key order (the bucket first)
    order = (["g0"] if bucket is not None else []) + [
        "part" if k == PART else f"g{[kk for kk in keys if kk != PART].index(k) + (bucket is not None)}"
        for k in keys
    ]
    if per_model:
        entries = (
            f"SELECT {', '.join(f'k.g{i} AS g{i}' for i in range(len(task_keys)))}{', ' if task_keys else ''}"
            "p.part, p.cost_pico AS cost, k.runs, k.state, k.value, 0 AS tools, 0 AS blocks, 0 AS tcost, 0 AS rcost"
            + "".join(f", p.{c}" for c in SUM_COLUMNS)
            + " FROM kept k JOIN (SELECT rt.tid, s." + per_model + " AS part"
            + "".join(f", SUM(s.{c}) AS {c}" for c in SUM_COLUMNS)
            + " FROM run_totals s JOIN rt ON rt.run_id = s.run_id GROUP BY rt.tid, s." + per_model
            + ") p ON p.tid = k.tid UNION ALL "
            f"SELECT {', '.join(f'k.g{i}' for i in range(len(task_keys)))}{', ' if task_keys else ''}"
            "NULL, 0, k.runs, k.state, k.value, 0, 0, 0, 0" + ", 0" * len(SUM_COLUMNS)
            + " FROM kept k WHERE NOT k.has_calls"
        )
    else:
        entries = "SELECT * FROM kept"
    with conn.transaction():
        conn.execute(
            f"CREATE TEMP TABLE uc_entries ON COMMIT DROP AS WITH {_tasks_sql(bool(per_model))}, "
            f"kept AS ({kept}) {entries}",
            (*extra, *params),
        )
        group_by = ", ".join(order)
        counted = conn.execute(
            f"SELECT {group_by}{', ' if order else ''}COUNT(*), SUM(runs), COUNT(*) FILTER (WHERE state = 1), "
            "COUNT(*) FILTER (WHERE state = 2), SUM(value), COALESCE(SUM(cost) FILTER (WHERE state = 2), 0), "
            "SUM(tools), SUM(blocks), SUM(tcost), SUM(rcost)" + "".join(f", SUM({c})" for c in SUM_COLUMNS)
            + " FROM uc_entries" + (f" GROUP BY {group_by}" if order else "")
        ).fetchall()
        partition = f"PARTITION BY {group_by} " if order else ""
        ranks = " OR ".join(f"rn = GREATEST(1, ({p} * n + 99) / 100)" for p in sorted(set(percentiles)))
        ranked: dict[tuple[Any, ...], dict[int, int]] = {}
        for row in conn.execute(
            f"SELECT {group_by}{', ' if order else ''}rn, cost FROM (SELECT *, row_number() OVER ({partition}"
            f"ORDER BY cost) AS rn, COUNT(*) OVER ({partition.strip()}) AS n FROM uc_entries) AS e WHERE {ranks}"
        ):
            ranked.setdefault(tuple(row[: len(order)]), {})[row[len(order)]] = row[len(order) + 1]
    for row in counted:
        key = tuple(row[: len(order)])
        n, runs, succeeded, failed, value, wasted, tools, blocks, tcost, rcost, *sums = row[len(order):]
        if not n:
            continue
        yield key, {
            "tasks": n, "runs": runs, "succeeded": succeeded, "failed": failed,
            "no_outcome": n - succeeded - failed, "value_pico": value, "wasted_pico": wasted, "tool_calls": tools,
            "step_blocks": blocks, "tool_cost_pico": tcost, "runtime_cost_pico": rcost, "ranked": ranked.get(key, {}),
            "sums": [v or 0 for v in sums],
        }


def outside_sums(conn: Any) -> tuple[int, list[int]]:
    """How many runs with calls belong to no stored run (their task span never arrived), and their sums."""
    row = conn.execute(
        f"SELECT COUNT(*), {', '.join(f'COALESCE(SUM(s.{c}), 0)' for c in SUM_COLUMNS)} FROM run_sums s "
        "WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = s.run_id)"
    ).fetchone()
    return row[0], list(row[1:])
