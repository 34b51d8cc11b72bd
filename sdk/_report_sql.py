"""Reports summed by SQLite: the task, outcome and grouping rules of `unitcost._reports`, in SQL.

A store of a million calls holds some 100k tasks. Python that touches every task's sixteen sums costs
seconds; SQLite does the same joins and sums in a fraction of that. So here SQLite joins runs into
tasks, picks each task's winning outcome, groups the tasks, sums each group and ranks each group's
task costs, in temporary tables that live inside one savepoint (one consistent read of the store,
rolled back at the end, so the tables vanish and the store is untouched). Python gets one row per
group, plus the few ranked costs the percentiles need.

The Python engine (`_reports._load` and `_group_facts`) stays the reference: re-pricing (`unitcost
whatif`) needs each call, and a store this SQL would read differently from it (see `Unfit`) is
reported by it too. tests/test_report_engines.py checks that both give the same rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ._run_totals import COLUMNS

# run_sums / run_totals columns, in the order of `_reports._SUMS`.
SUM_COLUMNS = COLUMNS[3:]
_SAVEPOINT = "unitcost_report"
_CACHE_KIB = -256 * 1024  # negative: KiB, as PRAGMA cache_size takes it


class Unfit(Exception):
    """This store (or this request) is one the SQL rules would read differently: use the Python engine."""


def _ranks(p: int) -> str:
    # Nearest rank, as `_reports._percentile`: the smallest rank r with r >= p% of n.
    return f"MAX(1, ({p} * n + 99) / 100)"


class TaskTables:
    """The store's tasks as temporary tables: `uc_run` (run -> task), `uc_task` (one row a task,
    with its start, runs, attributes, costs and tools), `uc_won` (a task's winning outcome)."""

    def __init__(self, conn: sqlite3.Connection, *, with_attributes: bool) -> None:
        self.conn = conn
        self.with_attributes = with_attributes
        self._merged: dict[tuple[str, int], dict[str, Any]] | None = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def check_fits(self) -> None:
        """Raise Unfit for the stores whose tasks the SQL below would join differently."""
        # A task's identity is (kind, key), or ("", run_id) for a run without a key: a run of kind ""
        # whose key is another run's id, or an outcome of kind "" by key, would meet such a task.
        odd = self.execute(
            "SELECT EXISTS (SELECT 1 FROM runs a WHERE a.kind = '' AND a.key IS NOT NULL"
            "  AND EXISTS (SELECT 1 FROM runs b WHERE b.run_id = a.key AND b.key IS NULL))"
            " OR EXISTS (SELECT 1 FROM outcomes WHERE run_id IS NULL AND kind = '' AND key IS NOT NULL)"
        ).fetchone()[0]
        if odd:
            raise Unfit("task identities of kind ''")

    def build(self) -> None:
        self.check_fits()
        x = self.execute
        # Keyed tasks: one row per (kind, key), named by the smallest rowid of its runs (read from
        # the runs_kind_key index alone); a run without a key is a task on its own, named by its rowid.
        x(
            "CREATE TEMP TABLE uc_key (key TEXT NOT NULL, kind TEXT NOT NULL, tid INTEGER NOT NULL, "
            "PRIMARY KEY (key, kind)) WITHOUT ROWID"
        )
        x("INSERT INTO uc_key SELECT key, kind, MIN(rowid) FROM runs WHERE key IS NOT NULL GROUP BY kind, key")
        x("CREATE TEMP TABLE uc_run (run_id TEXT PRIMARY KEY, tid INTEGER NOT NULL) WITHOUT ROWID")
        x(
            "INSERT INTO uc_run SELECT r.run_id, COALESCE(k.tid, r.rowid) FROM runs r "
            "LEFT JOIN uc_key k ON k.key = r.key AND k.kind = r.kind"
        )
        x(
            "CREATE TEMP TABLE uc_task (tid INTEGER PRIMARY KEY, kind TEXT, key TEXT, started_ns INTEGER, "
            "runs INTEGER NOT NULL, attributes TEXT, attribute_runs INTEGER NOT NULL DEFAULT 0, "
            "llm_cost INTEGER NOT NULL DEFAULT 0, tool_calls INTEGER NOT NULL DEFAULT 0, "
            "step_blocks INTEGER NOT NULL DEFAULT 0, tool_cost INTEGER NOT NULL DEFAULT 0)"
        )
        if self.with_attributes:
            # Attributes merge run after run, later runs winning: the runs go in by start (as the
            # Python engine reads them), and a task of several runs keeps their texts in a JSON array.
            x(
                "INSERT INTO uc_task (tid, kind, key, started_ns, runs, attributes, attribute_runs) "
                "SELECT u.tid, r.kind, r.key, r.started_ns, 1, r.text, r.text IS NOT NULL FROM ("
                " SELECT run_id, kind, key, started_ns, rowid AS rid, CASE WHEN attributes IS NULL"
                "  OR attributes IN ('', '{}') THEN NULL ELSE attributes END AS text FROM runs) AS r "
                "JOIN uc_run u ON u.run_id = r.run_id "
                "WHERE true ORDER BY r.started_ns, r.rid "
                "ON CONFLICT (tid) DO UPDATE SET runs = runs + 1, started_ns = MIN(started_ns, excluded.started_ns), "
                "attributes = CASE WHEN excluded.attributes IS NULL THEN attributes "
                "  WHEN attribute_runs = 0 THEN excluded.attributes "
                "  WHEN attribute_runs = 1 THEN json_array(attributes, excluded.attributes) "
                "  ELSE json_insert(attributes, '$[#]', excluded.attributes) END, "
                "attribute_runs = attribute_runs + (excluded.attributes IS NOT NULL)"
            )
        else:
            x(
                "INSERT INTO uc_task (tid, kind, key, started_ns, runs) "
                "SELECT COALESCE(k.tid, r.rowid), r.kind, r.key, r.started_ns, 1 FROM runs r "
                "LEFT JOIN uc_key k ON k.key = r.key AND k.kind = r.kind "
                "WHERE true ON CONFLICT (tid) DO UPDATE SET runs = runs + 1, "
                "started_ns = MIN(started_ns, excluded.started_ns)"
            )
        # The latest outcome of a task wins: outcomes go in oldest first, each replacing the one
        # before. An outcome names a run (any run of the task), else a kind and key, else a key alone
        # (every kind with that key).
        x("CREATE TEMP TABLE uc_won (tid INTEGER PRIMARY KEY, outcome INTEGER NOT NULL)")
        x(
            "INSERT INTO uc_won (tid, outcome) SELECT tid, id FROM ("
            " SELECT u.tid AS tid, o.id AS id, o.recorded_ns AS recorded_ns FROM outcomes o "
            "  JOIN uc_run u ON u.run_id = o.run_id"
            " UNION ALL SELECT k.tid, o.id, o.recorded_ns FROM outcomes o "
            "  JOIN uc_key k ON k.key = o.key AND k.kind = o.kind WHERE o.run_id IS NULL"
            " UNION ALL SELECT k.tid, o.id, o.recorded_ns FROM outcomes o "
            "  JOIN uc_key k ON k.key = o.key WHERE o.run_id IS NULL AND o.kind IS NULL"
            ") WHERE true ORDER BY recorded_ns, id "
            "ON CONFLICT (tid) DO UPDATE SET outcome = excluded.outcome"
        )

    def add_costs_and_tools(self) -> None:
        """Each task's LLM cost (all its calls) and its tools and step blocks."""
        self.execute(
            "UPDATE uc_task SET llm_cost = s.cost FROM ("
            " SELECT u.tid AS tid, SUM(s.cost_pico) AS cost FROM run_sums s JOIN uc_run u ON u.run_id = s.run_id"
            " GROUP BY u.tid) AS s WHERE s.tid = uc_task.tid"
        )
        self.add_tools()

    def add_tools(self) -> None:
        self.execute(
            "UPDATE uc_task SET tool_calls = s.tools, step_blocks = s.blocks, tool_cost = s.cost FROM ("
            " SELECT u.tid AS tid, COALESCE(SUM(s.type = 'tool'), 0) AS tools,"
            "  COALESCE(SUM(s.type = 'step'), 0) AS blocks, COALESCE(SUM(COALESCE(s.cost_pico, 0)), 0) AS cost"
            " FROM steps s JOIN uc_run u ON u.run_id = s.run_id GROUP BY u.tid) AS s WHERE s.tid = uc_task.tid"
        )

    # --- attributes ---------------------------------------------------------------------------

    def merged_attributes(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Each distinct attributes text of a task (one run's JSON, or a JSON array of several) ->
        the attributes merged as the Python engine merges them (later runs win)."""
        if self._merged is None:
            merged: dict[tuple[str, int], dict[str, Any]] = {}
            for text, runs in self.execute(
                "SELECT DISTINCT attributes, attribute_runs FROM uc_task WHERE attribute_runs > 0"
            ):
                values: dict[str, Any] = {}
                for one in [text] if runs == 1 else json.loads(text):
                    values.update(json.loads(one))
                merged[(text, runs)] = values
            self._merged = merged
        return self._merged

    def known_attributes(self) -> set[str]:
        return {name for values in self.merged_attributes().values() for name in values}

    def add_attribute_values(self, names: Sequence[str], filters: Sequence[tuple[str, str]]) -> None:
        """`uc_attr`: for each attributes text, the values of `names` (as report keys: str or None)
        and whether the task passes the attribute `filters` (name, value)."""
        columns = "".join(f", a{i} TEXT" for i in range(len(names)))
        self.execute(
            f"CREATE TEMP TABLE uc_attr (attributes TEXT NOT NULL, attribute_runs INTEGER NOT NULL, "
            f"keep INTEGER NOT NULL{columns}, PRIMARY KEY (attributes, attribute_runs)) WITHOUT ROWID"
        )

        def key(values: dict[str, Any], name: str) -> str | None:
            value = values.get(name)
            return None if value is None else str(value)

        rows = [
            (text, runs, all(key(values, n) == v for n, v in filters), *(key(values, n) for n in names))
            for (text, runs), values in self.merged_attributes().items()
        ]
        marks = ", ".join("?" * (3 + len(names)))
        self.conn.executemany(f"INSERT INTO uc_attr VALUES ({marks})", rows)


def bucket_sql(every: str, started: str) -> str:
    """The UTC day/week/month of a start in nanoseconds, as `_reports.time_bucket` names it.

    `time_bucket` reads ns / 1e9 as a float and rounds it to the microsecond (half to even): the
    second is the float's whole part, plus one when its fraction rounds up to a whole second."""
    seconds = f"({started} / 1e9)"
    whole = f"CAST({seconds} AS INTEGER)"
    second = f"({whole} + (({seconds} - {whole}) * 1e6 >= 999999.5))"
    if every == "day":
        return f"date({second}, 'unixepoch')"
    if every == "week":  # named by its Monday
        return f"date({second}, 'unixepoch', '-6 days', 'weekday 1')"
    return f"strftime('%Y-%m', {second}, 'unixepoch')"


@contextmanager
def reading(conn: sqlite3.Connection) -> Iterator[None]:
    """One consistent read of the store; the temporary tables made inside vanish at the end.

    The sorts and temporary tables of 100k tasks need more than SQLite's default 2 MB of cache, or
    they spill to files: the cache grows for the report and is put back after it. Temporary tables
    go to memory when the connection has none yet (changing that setting drops existing ones)."""
    (cache_size,) = conn.execute("PRAGMA cache_size").fetchone()
    conn.execute(f"PRAGMA cache_size = {_CACHE_KIB}")
    if not conn.execute("SELECT COUNT(*) FROM temp.sqlite_master").fetchone()[0]:
        conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        yield
    finally:
        conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
        conn.execute(f"RELEASE {_SAVEPOINT}")
        conn.execute(f"PRAGMA cache_size = {int(cache_size)}")


def group_rows(
    tables: TaskTables,
    *,
    keys: Sequence[str],
    per_model: str | None,
    where: Sequence[str],
    params: Sequence[Any],
    with_attributes: bool,
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(group key, the group's counts, sums and ranked costs) for the kept tasks.

    ``keys`` are SQL expressions over uc_task `t`, its outcome `o`, its attributes `a` and, grouped by
    model or provider, `part` (the model or provider); ``where`` are conditions over the same."""
    x = tables.execute
    part_column = {"model": "model", "provider": "provider"}.get(per_model or "")
    if part_column is None:
        tables.add_costs_and_tools()
    attributes_join = (
        " LEFT JOIN uc_attr a ON a.attributes = t.attributes AND a.attribute_runs = t.attribute_runs"
        if with_attributes else ""
    )
    task_keys = [k for k in keys if k != "part"]
    # The kept tasks with their group values (all but the model/provider part) and outcome.
    x(
        "CREATE TEMP TABLE uc_kept (tid INTEGER PRIMARY KEY, runs INTEGER, outcome_state INTEGER, "
        "value_pico INTEGER, task_cost INTEGER, tool_calls INTEGER, step_blocks INTEGER, tool_cost INTEGER"
        + "".join(f", g{i}" for i in range(len(task_keys))) + ")"
    )
    conditions = " AND ".join(where) or "true"
    x(
        "INSERT INTO uc_kept SELECT t.tid, t.runs, "
        # 0: no outcome, 1: succeeded, 2: failed
        "CASE WHEN o.id IS NULL THEN 0 WHEN o.success THEN 1 ELSE 2 END, COALESCE(o.value_pico, 0), "
        "t.llm_cost + t.tool_cost, t.tool_calls, t.step_blocks, t.tool_cost"
        + "".join(f", {k}" for k in task_keys)
        + " FROM uc_task t LEFT JOIN uc_won w ON w.tid = t.tid LEFT JOIN outcomes o ON o.id = w.outcome"
        + attributes_join + f" WHERE {conditions}",
        params,
    )
    g = [f"e.g{task_keys.index(k)}" if k != "part" else "e.part" for k in keys]
    gk = ", ".join(g) or "NULL"
    if part_column is None:
        entries = (
            "SELECT k.*, NULL AS part, k.task_cost AS cost, k.tool_calls AS tools, k.step_blocks AS blocks, "
            "k.tool_cost AS tcost FROM uc_kept k"
        )
    else:
        # A task counts in each of its models' rows with only that model's calls (and no tools);
        # a task without calls counts once, in the (none) row.
        x(
            "CREATE TEMP TABLE uc_part (tid INTEGER NOT NULL, part TEXT NOT NULL, cost INTEGER NOT NULL, "
            "PRIMARY KEY (tid, part)) WITHOUT ROWID"
        )
        x(
            f"INSERT INTO uc_part SELECT u.tid, s.{part_column}, SUM(s.cost_pico) FROM run_totals s "
            "JOIN uc_run u ON u.run_id = s.run_id JOIN uc_kept k ON k.tid = u.tid GROUP BY u.tid, s." + part_column
        )
        entries = (
            "SELECT k.*, p.part AS part, COALESCE(p.cost, 0) AS cost, 0 AS tools, 0 AS blocks, 0 AS tcost "
            "FROM uc_kept k LEFT JOIN uc_part p ON p.tid = k.tid"
        )
    whole = "(PARTITION BY {gk} ORDER BY e.cost ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)"
    ranked = x(
        f"SELECT {', '.join(f'g_{i}' for i in range(len(g))) or 'NULL'}, rank, n, cost, runs, succeeded, failed, "
        "no_outcome, value, wasted, tools, blocks, tcost FROM ("
        f" SELECT {', '.join(f'{c} AS g_{i}' for i, c in enumerate(g)) or 'NULL'}, e.cost AS cost,"
        f"  ROW_NUMBER() OVER (PARTITION BY {gk} ORDER BY e.cost) AS rank,"
        "  COUNT(*) OVER whole AS n, SUM(e.runs) OVER whole AS runs,"
        "  SUM(e.outcome_state = 1) OVER whole AS succeeded, SUM(e.outcome_state = 2) OVER whole AS failed,"
        "  SUM(e.outcome_state = 0) OVER whole AS no_outcome, SUM(e.value_pico) OVER whole AS value,"
        "  SUM(CASE WHEN e.outcome_state = 2 THEN e.cost ELSE 0 END) OVER whole AS wasted,"
        "  SUM(e.tools) OVER whole AS tools, SUM(e.blocks) OVER whole AS blocks, SUM(e.tcost) OVER whole AS tcost"
        f" FROM ({entries}) AS e WINDOW whole AS {whole.format(gk=gk)}"
        f") WHERE rank = 1 OR rank IN ({', '.join(_ranks(p) for p in (50, 90, 95, 99))})"
    )
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    width = len(g) or 1
    for row in ranked:
        key = tuple(row[: len(g)])
        rank, n, cost = row[width : width + 3]
        group = groups.get(key)
        if group is None:
            runs, succeeded, failed, no_outcome, value, wasted, tools, blocks, tcost = row[width + 3 :]
            group = groups[key] = {
                "tasks": n, "runs": runs, "succeeded": succeeded, "failed": failed, "no_outcome": no_outcome,
                "value_pico": value, "wasted_pico": wasted, "tool_calls": tools, "step_blocks": blocks,
                "tool_cost_pico": tcost, "ranked": {}, "sums": [0] * len(SUM_COLUMNS),
            }
        group["ranked"][rank] = cost
    # The calls' sums, per group: summed from each run's totals (by model when grouped by one).
    if part_column is None:
        source, part_key = "run_sums", []
    else:
        source, part_key = "run_totals", [f"s.{part_column}"]
    sums_keys = [f"k.g{task_keys.index(k)}" if k != "part" else part_key[0] for k in keys]
    sums = x(
        f"SELECT {', '.join(sums_keys) or 'NULL'}, {', '.join(f'SUM(s.{c})' for c in SUM_COLUMNS)} "
        f"FROM {source} s JOIN uc_run u ON u.run_id = s.run_id JOIN uc_kept k ON k.tid = u.tid"
        + (f" GROUP BY {', '.join(sums_keys)}" if sums_keys else "")
    )
    for row in sums:
        group = groups.get(tuple(row[: len(g)]))
        if group is not None:  # (a group with calls always has a task)
            group["sums"] = [v or 0 for v in row[width:]]
    yield from groups.items()


def outside_sums(conn: sqlite3.Connection, per_model: bool) -> tuple[int, list[int]]:
    """How many run totals belong to no task (their run never reached the store), and their sums."""
    source = "run_totals" if per_model else "run_sums"
    row = conn.execute(
        f"SELECT COUNT(*), {', '.join(f'SUM(s.{c})' for c in SUM_COLUMNS)} FROM {source} s "
        "WHERE NOT EXISTS (SELECT 1 FROM uc_run u WHERE u.run_id = s.run_id)"
    ).fetchone()
    return row[0], [v or 0 for v in row[1:]]

