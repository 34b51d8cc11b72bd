"""Reports summed by SQLite: the task, outcome and grouping rules of `unitcost.report.engine`, in SQL.

A store of a million calls holds some 100k tasks. Python that touches every task's sixteen sums costs
seconds; SQLite does the same joins and sums in a fraction of that. So here SQLite joins runs into
tasks, picks each task's winning outcome, groups the tasks, sums each group and ranks each group's
task costs, in temporary tables that live inside one savepoint (one consistent read of the store,
rolled back at the end, so the tables vanish and the store is untouched). Python gets one row per
group, plus the few ranked costs the percentiles need.

The Python engine (`engine._load` and `_group_in_python`) stays the reference: re-pricing (`unitcost
whatif`) needs each call, and a store this SQL would read differently from it (see `Unfit`) is
reported by it too. tests/report/test_report_engines.py checks that both give the same rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..store.run_totals import COLUMNS

__all__ = [
    "ODD_TASK_IDENTITIES_SQL", "PART", "TaskTables", "Unfit", "add_buckets", "group_rows", "nearest_rank", "one_read",
    "reading",
]

# run_sums / run_totals columns, in the order of `engine._SUMS`.
SUM_COLUMNS = COLUMNS[3:]
_SAVEPOINT = "unitcost_report"
_CACHE_KIB = -256 * 1024  # negative: KiB, as PRAGMA cache_size takes it


def nearest_rank(n: int, p: int) -> int:
    """Nearest rank: the smallest rank with at least p% of n values at or below it (1-based)."""
    return max(1, -(-p * n // 100))


# A task's identity is (kind, key), or ("", run_id) for a run without a key: a run of kind "" whose
# key is another run's id, or an outcome of kind "" by key, would meet such a task. The SQL engines
# (SQLite's, PostgreSQL's, the rollups') join tasks the simple way, so such a store is Unfit for them.
ODD_TASK_IDENTITIES_SQL = (
    "SELECT EXISTS (SELECT 1 FROM runs a WHERE a.kind = '' AND a.key IS NOT NULL"
    "  AND EXISTS (SELECT 1 FROM runs b WHERE b.run_id = a.key AND b.key IS NULL))"
    " OR EXISTS (SELECT 1 FROM outcomes WHERE run_id IS NULL AND kind = '' AND key IS NOT NULL)"
)


class Unfit(Exception):
    """This store (or this request) is one the SQL rules would read differently: use the Python engine."""


# The model or provider among a report's group keys.
PART = _PART = "part"
# A run's task id, for a run `r` joined with `_ALIAS_JOIN`.
_TASK_OF_RUN = "COALESCE(a.tid, r.rowid)"
_ALIAS_JOIN = "LEFT JOIN uc_alias a ON a.rid = r.rowid"


class TaskTables:
    """The store's tasks as temporary tables: `uc_alias` (a run -> its task, when not itself),
    `uc_task` (one row a task: kind, key, start, runs and, unless grouped by model, its calls' sums),
    `uc_tools` (its tools and step blocks, unless grouped by model), `uc_won` (its winning outcome)
    and, for reports by attribute, `uc_task_attributes`."""

    def __init__(self, conn: sqlite3.Connection, *, with_attributes: bool, per_model: bool) -> None:
        self.conn = conn
        self.with_attributes = with_attributes
        self.per_model = per_model
        self._merged: dict[tuple[str, int], dict[str, Any]] | None = None
        self._runs_with_calls: int | None = None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def runs_with_calls(self) -> int:
        """How many runs (that reached the store) have calls: their run_sums rows."""
        if self._runs_with_calls is None:
            self._runs_with_calls = self.execute(
                "SELECT COUNT(*) FROM run_sums s WHERE EXISTS (SELECT 1 FROM runs r WHERE r.run_id = s.run_id)"
            ).fetchone()[0]
        return self._runs_with_calls

    def outside_sums(self) -> tuple[int, list[int]]:
        """How many runs with calls belong to no task (the run never reached the store), and their
        calls' sums (from run_sums: a run has a row there exactly when it has some in run_totals)."""
        if self.execute("SELECT COUNT(*) FROM run_sums").fetchone()[0] == self.runs_with_calls():
            return 0, [0] * len(SUM_COLUMNS)
        row = self.execute(
            f"SELECT COUNT(*), {', '.join(f'SUM(s.{c})' for c in SUM_COLUMNS)} FROM run_sums s "
            "WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = s.run_id)"
        ).fetchone()
        return row[0], [v or 0 for v in row[1:]]

    def check_fits(self) -> None:
        """Raise Unfit for the stores whose tasks the SQL below would join differently."""
        odd = self.execute(ODD_TASK_IDENTITIES_SQL).fetchone()[0]
        if odd:
            raise Unfit("task identities of kind ''")

    def build(self) -> None:
        self.check_fits()
        x = self.execute
        # A task is named by the rowid of its first run (the smallest): a run's task is its own rowid
        # unless `uc_alias` says otherwise. uc_alias holds every run of a retried task (runs of one
        # kind and key), found from the runs_kind_key index alone. Tables keyed by run id reach a
        # run's rowid through the runs' own run_id index.
        x("CREATE TEMP TABLE uc_alias (rid INTEGER PRIMARY KEY, tid INTEGER NOT NULL)")
        x(
            "INSERT INTO uc_alias SELECT r.rowid, m.tid FROM ("
            " SELECT kind, key, MIN(rowid) AS tid FROM runs WHERE key IS NOT NULL GROUP BY kind, key"
            " HAVING COUNT(*) > 1) AS m JOIN runs r ON r.kind = m.kind AND r.key = m.key"
        )
        # One row a task: its first run's kind and key, its start, runs and (unless grouped by model)
        # the sums of its calls, added run by run.
        sums = not self.per_model
        x(
            "CREATE TEMP TABLE uc_task (tid INTEGER PRIMARY KEY, kind TEXT, key TEXT, started_ns INTEGER, "
            "runs INTEGER NOT NULL, has_calls INTEGER NOT NULL DEFAULT 0"
            + "".join(f", {c} INTEGER" for c in SUM_COLUMNS if sums) + ")"
        )
        # (a run has a run_sums row when it made calls; grouped by model, when every run has one,
        # the task's calls are not looked up: they come from run_totals later)
        with_sums = sums or self.runs_with_calls() != x("SELECT COUNT(*) FROM runs").fetchone()[0]
        x(
            "INSERT INTO uc_task (tid, kind, key, started_ns, runs, has_calls"
            + "".join(f", {c}" for c in SUM_COLUMNS if sums)
            + f") SELECT {_TASK_OF_RUN}, r.kind, r.key, r.started_ns, 1, "
            + ("s.run_id IS NOT NULL" if with_sums else "1")
            + "".join(f", COALESCE(s.{c}, 0)" for c in SUM_COLUMNS if sums)
            + f" FROM runs r {_ALIAS_JOIN}" + (" LEFT JOIN run_sums s ON s.run_id = r.run_id" if with_sums else "")
            + " WHERE true ON CONFLICT (tid) DO UPDATE SET runs = runs + 1, "
            "started_ns = MIN(started_ns, excluded.started_ns), has_calls = MAX(has_calls, excluded.has_calls)"
            + "".join(f", {c} = {c} + excluded.{c}" for c in SUM_COLUMNS if sums)
        )
        if sums:  # tools are no model's cost: read only when not grouped by model
            # (a table of their own: adding into uc_task's wide rows costs more)
            x(
                "CREATE TEMP TABLE uc_tools (tid INTEGER PRIMARY KEY, tool_calls INTEGER, step_blocks INTEGER, "
                "tool_cost INTEGER, runtime_cost INTEGER)"
            )
            # (`WHERE true`: SQLite's upsert after a SELECT needs a WHERE to parse)
            upsert = (
                " ON CONFLICT (tid) DO UPDATE SET tool_calls = tool_calls + excluded.tool_calls, "
                "step_blocks = step_blocks + excluded.step_blocks, tool_cost = tool_cost + excluded.tool_cost, "
                "runtime_cost = runtime_cost + excluded.runtime_cost"
            )
            x(
                "INSERT INTO uc_tools "
                f"SELECT {_TASK_OF_RUN}, s.type = 'tool', s.type = 'step', "
                "CASE WHEN s.type = 'session' THEN 0 ELSE COALESCE(s.cost_pico, 0) END, "
                "CASE WHEN s.type = 'session' THEN COALESCE(s.cost_pico, 0) ELSE 0 END "
                f"FROM steps s JOIN runs r ON r.run_id = s.run_id {_ALIAS_JOIN} WHERE true" + upsert
            )
            # A run's own [[runtime]] charge (its wall time), beside its session blocks'.
            x(
                f"INSERT INTO uc_tools SELECT {_TASK_OF_RUN}, 0, 0, 0, r.runtime_cost_pico "
                f"FROM runs r {_ALIAS_JOIN} WHERE r.runtime_cost_pico IS NOT NULL" + upsert
            )
        if self.with_attributes:
            self._merge_attribute_texts()
        # The latest outcome of a task wins: outcomes go in oldest first, each replacing the one
        # before. An outcome names a run (any run of the task), else a kind and key, else a key alone
        # (every kind with that key).
        by_key_alone = ""
        if x(
            "SELECT EXISTS (SELECT 1 FROM outcomes WHERE run_id IS NULL AND kind IS NULL AND key IS NOT NULL)"
        ).fetchone()[0]:
            x(
                "CREATE TEMP TABLE uc_key (key TEXT NOT NULL, kind TEXT NOT NULL, tid INTEGER NOT NULL, "
                "PRIMARY KEY (key, kind)) WITHOUT ROWID"
            )
            x("INSERT INTO uc_key SELECT key, kind, MIN(rowid) FROM runs WHERE key IS NOT NULL GROUP BY kind, key")
            by_key_alone = (
                " UNION ALL SELECT k.tid, o.id, o.recorded_ns FROM outcomes o "
                "JOIN uc_key k ON k.key = o.key WHERE o.run_id IS NULL AND o.kind IS NULL"
            )
        x("CREATE TEMP TABLE uc_won (tid INTEGER PRIMARY KEY, outcome INTEGER NOT NULL)")
        x(
            "INSERT INTO uc_won (tid, outcome) SELECT tid, id FROM ("
            f" SELECT {_TASK_OF_RUN} AS tid, o.id AS id, o.recorded_ns AS recorded_ns FROM outcomes o"
            f"  JOIN runs r ON r.run_id = o.run_id {_ALIAS_JOIN}"
            " UNION ALL SELECT (SELECT MIN(rowid) FROM runs WHERE kind = o.kind AND key = o.key), o.id, o.recorded_ns"
            "  FROM outcomes o WHERE o.run_id IS NULL AND o.kind IS NOT NULL AND o.key IS NOT NULL"
            f"{by_key_alone}"
            ") WHERE tid IS NOT NULL ORDER BY recorded_ns, id "
            "ON CONFLICT (tid) DO UPDATE SET outcome = excluded.outcome"
        )

    def _merge_attribute_texts(self) -> None:
        # Attributes merge run after run, later runs winning: the runs go in by start, then run id (as
        # the Python engine reads them, `tasks.Store.tasks`), and a task of several runs keeps their
        # texts as a JSON array.
        self.execute(
            "CREATE TEMP TABLE uc_task_attributes (tid INTEGER PRIMARY KEY, attributes TEXT, "
            "attribute_runs INTEGER NOT NULL)"
        )
        self.execute(
            "INSERT INTO uc_task_attributes SELECT COALESCE(a.tid, r.rid), r.text, 1 FROM ("
            " SELECT run_id, started_ns, rowid AS rid, attributes AS text FROM runs"
            " WHERE attributes IS NOT NULL AND attributes NOT IN ('', '{}')) AS r "
            "LEFT JOIN uc_alias a ON a.rid = r.rid WHERE true ORDER BY r.started_ns, r.run_id "
            "ON CONFLICT (tid) DO UPDATE SET attribute_runs = attribute_runs + 1, attributes = "
            "CASE WHEN attribute_runs = 1 THEN json_array(attributes, excluded.attributes) "
            "ELSE json_insert(attributes, '$[#]', excluded.attributes) END"
        )

    # --- attributes ---------------------------------------------------------------------------

    def merged_attributes(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Each distinct attributes text of a task (one run's JSON, or a JSON array of several) ->
        the attributes merged as the Python engine merges them (later runs win)."""
        if self._merged is None:
            merged: dict[tuple[str, int], dict[str, Any]] = {}
            for text, runs in self.execute("SELECT DISTINCT attributes, attribute_runs FROM uc_task_attributes"):
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
        try:
            self.conn.executemany(f"INSERT INTO uc_attr VALUES ({marks})", rows)
        except UnicodeEncodeError as exc:  # (a lone surrogate in a value: no SQLite text holds it)
            raise Unfit("an attribute value SQLite cannot hold") from exc


def add_buckets(tables: TaskTables, label: Callable[[int], str]) -> str:
    """SQL for a task's time bucket, named by `label` (ns -> name, `engine.time_bucket`).

    SQLite finds the UTC day each task starts on; Python names each distinct day once (date
    functions over 100k rows cost more), into `uc_bucket`. `time_bucket` reads ns / 1e9 as a float
    rounded to the microsecond (half to even): the second is the float's whole part, plus one when
    its fraction rounds up to a whole second."""
    seconds = "(t.started_ns / 1e9)"
    whole = f"CAST({seconds} AS INTEGER)"
    day = f"(({whole} + (({seconds} - {whole}) * 1e6 >= 999999.5)) / 86400)"
    days = [d for (d,) in tables.execute(f"SELECT DISTINCT {day} FROM uc_task t")]
    tables.execute("CREATE TEMP TABLE uc_bucket (day INTEGER PRIMARY KEY, label TEXT NOT NULL)")
    tables.conn.executemany("INSERT INTO uc_bucket VALUES (?, ?)", [(d, label(d * 86_400 * 10**9)) for d in days])
    return f"(SELECT b.label FROM uc_bucket b WHERE b.day = {day})"


@contextmanager
def reading(conn: sqlite3.Connection) -> Iterator[None]:
    """One consistent read of the store; the temporary tables made inside vanish at the end.

    The sorts and temporary tables of 100k tasks need more than SQLite's default 2 MB of cache, or
    they spill to files: the cache grows for the report and is put back after it. (temp_store=MEMORY
    would make them slower: SQLite's sorter then allocates each record apart.)"""
    (cache_size,) = conn.execute("PRAGMA cache_size").fetchone()
    (temp_cache_size,) = conn.execute("PRAGMA temp.cache_size").fetchone()
    conn.execute(f"PRAGMA cache_size = {_CACHE_KIB}")
    conn.execute(f"SAVEPOINT {_SAVEPOINT}")
    conn.execute(f"PRAGMA temp.cache_size = {_CACHE_KIB}")
    try:
        yield
    finally:
        conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
        conn.execute(f"RELEASE {_SAVEPOINT}")
        conn.execute(f"PRAGMA cache_size = {int(cache_size)}")
        # (0 when the connection had no temporary database yet: it then starts with the default)
        conn.execute(f"PRAGMA temp.cache_size = {int(temp_cache_size or cache_size)}")


@contextmanager
def one_read(db: Any) -> Iterator[None]:
    """One consistent read of a store (a `unitcost.store.backend.StoreBackend`): SQLite's savepoint
    (`reading`), PostgreSQL's snapshot (a repeatable-read transaction)."""
    if db.dialect == "sqlite":
        with reading(db.conn):
            yield
        return
    with db.transaction():
        db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def group_rows(
    tables: TaskTables,
    *,
    keys: Sequence[str],
    per_model: str | None,
    where: Sequence[str],
    params: Sequence[Any],
    percentiles: Sequence[int],
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(group key, the group's counts, sums and ranked costs) for the kept tasks.

    ``keys`` are SQL expressions over uc_task `t`, its outcome `o` and its attribute values `a`, or
    `PART` for the model or provider; ``where`` are conditions over the same but `PART`."""
    x = tables.execute
    attributes_join = (
        " LEFT JOIN uc_task_attributes ta ON ta.tid = t.tid LEFT JOIN uc_attr a"
        " ON a.attributes = ta.attributes AND a.attribute_runs = ta.attribute_runs"
        if tables.with_attributes else ""
    )
    task_keys = [k for k in keys if k != _PART]
    state = "CASE WHEN o.id IS NULL THEN 0 WHEN o.success THEN 1 ELSE 2 END"  # none, succeeded, failed
    # The kept tasks, with their group values (but the model or provider), outcome and costs.
    x(
        "CREATE TEMP TABLE uc_kept AS SELECT t.tid AS tid"
        + "".join(f", {k} AS g{i}" for i, k in enumerate(task_keys))
        + f", t.runs AS runs, {state} AS state, COALESCE(o.value_pico, 0) AS value"
        + (
            ", t.has_calls AS has_calls" if per_model else
            ", t.cost_pico + COALESCE(tl.tool_cost, 0) + COALESCE(tl.runtime_cost, 0) AS cost, "
            "COALESCE(tl.tool_calls, 0) AS tools, COALESCE(tl.step_blocks, 0) AS blocks, "
            "COALESCE(tl.tool_cost, 0) AS tcost, COALESCE(tl.runtime_cost, 0) AS rcost"
            + "".join(f", t.{c} AS {c}" for c in SUM_COLUMNS)
        )
        + " FROM uc_task t LEFT JOIN uc_won w ON w.tid = t.tid LEFT JOIN outcomes o ON o.id = w.outcome"
        + ("" if per_model else " LEFT JOIN uc_tools tl ON tl.tid = t.tid")
        + f"{attributes_join} WHERE {' AND '.join(where) or 'true'}",
        params,
    )
    g = [f"g{i}" for i in range(len(keys))]
    # Grouped by model, a task counts in each of its models' rows with only that model's calls (and
    # no tools). Those entries are read twice (summed, then their costs kept in order) rather than
    # stored once with their sixteen sums: storing wide rows costs more.
    entries = "uc_kept" if per_model is None else _model_entries(tables, per_model, keys, task_keys)
    order = ", ".join(g)
    counted = x(
        # (each aggregate costs: no_outcome is what is left of the tasks; the cost range is read only
        # where `_cost_order` can use it)
        f"SELECT {''.join(f'{c}, ' for c in g)}"
        + ("MIN(cost), MAX(cost)" if len(g) == 1 else "NULL, NULL")
        + ", COUNT(*), SUM(runs), SUM(state = 1), SUM(state = 2), SUM(value), "
        "SUM(CASE WHEN state = 2 THEN cost ELSE 0 END), "
        + ("SUM(tools), SUM(blocks), SUM(tcost), SUM(rcost)" if per_model is None else "0, 0, 0, 0")  # no model's
        + "".join(f", SUM({c})" for c in SUM_COLUMNS)
        + f" FROM {entries}" + (f" GROUP BY {order} ORDER BY {order}" if g else "")
    ).fetchall()
    # Every cost, in group order then cost order: a group's k-th cost is k rows after its start.
    order_by, order_params = _cost_order(g, counted)
    x("CREATE TEMP TABLE uc_cost (cost INTEGER)")
    x(f"INSERT INTO uc_cost (cost) SELECT cost FROM {entries} ORDER BY {order_by}", order_params)
    counted = [(*row[: len(g)], *row[len(g) + 2 :]) for row in counted]
    groups: list[tuple[Any, dict[int, int]]] = []  # (row, {rank: rowid of that cost})
    start = 0
    for row in counted:
        n = row[len(g)]
        if n:  # (no task at all: one row of NULL sums, without GROUP BY)
            groups.append((row, {rank: start + rank for rank in {nearest_rank(n, p) for p in percentiles}}))
            start += n
    rowids = [rowid for _, ranks in groups for rowid in ranks.values()]
    cost_at: dict[int, int] = {}
    for chunk in range(0, len(rowids), 500):
        some = rowids[chunk : chunk + 500]
        cost_at.update(x(f"SELECT rowid, cost FROM uc_cost WHERE rowid IN ({', '.join('?' * len(some))})", some))
    for row, ranks in groups:
        key, (n, runs, succeeded, failed, value, wasted, tools, blocks, tcost, rcost, *sums) = (
            tuple(row[: len(g)]), row[len(g) :]
        )
        no_outcome = n - succeeded - failed
        ranked = {rank: cost_at[rowid] for rank, rowid in ranks.items()}
        yield key, {
            "tasks": n, "runs": runs, "succeeded": succeeded, "failed": failed, "no_outcome": no_outcome,
            "value_pico": value, "wasted_pico": wasted, "tool_calls": tools, "step_blocks": blocks,
            "tool_cost_pico": tcost, "runtime_cost_pico": rcost, "ranked": ranked, "sums": [v or 0 for v in sums],
        }


def _cost_order(g: Sequence[str], counted: Sequence[Any]) -> tuple[str, list[Any]]:
    """ORDER BY for the costs, in group order then cost order, and its parameters.

    With one group column and costs in [0, 2**50) (over a thousand dollars a task), the key is one
    integer, the group's place times 2**50 plus the cost: SQLite sorts a few hundred thousand of
    those faster than (text, cost) pairs."""
    if len(g) != 1 or not counted or len(counted) > 64:
        return ", ".join([*g, "cost"]), []
    lows, highs = [row[1] for row in counted], [row[2] for row in counted]
    if None in lows or None in highs or min(lows) < 0 or max(highs) >= 2**50:
        return ", ".join([*g, "cost"]), []
    places = " ".join(f"WHEN {g[0]} IS ? THEN {i}" for i in range(len(counted)))
    return f"(CASE {places} END) * {2**50} + cost", [row[0] for row in counted]


def _model_entries(tables: TaskTables, part: str, keys: Sequence[str], task_keys: Sequence[str]) -> str:
    """SQL for the entries grouped by model or provider: one row a (kept task, part), with its
    group values g0..., cost, runs, state, value and sums."""
    x = tables.execute
    sums = "".join(f", SUM(s.{c}) AS {c}" for c in SUM_COLUMNS)
    plain = "".join(f", s.{c} AS {c}" for c in SUM_COLUMNS)
    kept = ", ".join(f"k.g{task_keys.index(k)} AS g{task_keys.index(k)}" for k in task_keys)
    kept = (kept + ", " if kept else "") + "k.state AS state, k.value AS value"

    def select(table: str, part_sql: str | None, cost: str, runs: str = "") -> str:
        # the entry's columns, in `keys` order, from a row of `table` that has the kept task's values
        g = ", ".join(
            f"{part_sql or 'NULL'} AS g{i}" if k == _PART else f"{table}.g{task_keys.index(k)} AS g{i}"
            for i, k in enumerate(keys)
        )
        return f"{g}, {cost} AS cost, {runs or table + '.runs'} AS runs, {table}.state AS state, {table}.value AS value"

    # A task of one run whose parts each come from one row of run_totals has that run's rows as they
    # are (a model under two providers makes two rows; by provider the run's rows are summed, and
    # they lie together in run_totals' key order). Its values are found by run id, in the same order
    # as run_totals. A retried task's runs are summed apart, in a table keyed by task and part.
    unique = part == "provider" or x(
        "SELECT COUNT(*) = COUNT(DISTINCT model) FROM (SELECT DISTINCT provider, model FROM run_totals)"
    ).fetchone()[0]
    x(
        "CREATE TEMP TABLE uc_part (tid INTEGER NOT NULL, part TEXT NOT NULL"
        + "".join(f", {c} INTEGER" for c in SUM_COLUMNS) + ", PRIMARY KEY (tid, part)) WITHOUT ROWID"
    )
    x(
        f"INSERT INTO uc_part SELECT {_TASK_OF_RUN}, s.{part}" + "".join(f", s.{c}" for c in SUM_COLUMNS)
        + (
            # (CROSS JOIN: SQLite then reads the tables in this order, from the few retried runs)
            " FROM uc_alias a CROSS JOIN runs r ON r.rowid = a.rid CROSS JOIN run_totals s ON s.run_id = r.run_id"
            " WHERE true"
            if unique else f" FROM run_totals s JOIN runs r ON r.run_id = s.run_id {_ALIAS_JOIN} WHERE true"
        )
        + " ON CONFLICT (tid, part) DO UPDATE SET " + ", ".join(f"{c} = {c} + excluded.{c}" for c in SUM_COLUMNS)
    )
    entries = []
    if unique:
        x(
            "CREATE TEMP TABLE uc_run_kept (run_id TEXT PRIMARY KEY, "
            + "".join(f"g{task_keys.index(k)}, " for k in task_keys) + "state, value) WITHOUT ROWID"
        )
        x(
            # (in run id order, read from the runs' run_id index: the table is then written in its own order)
            f"INSERT INTO uc_run_kept SELECT r.run_id, {kept} FROM runs r JOIN uc_kept k ON k.tid = r.rowid "
            "WHERE k.runs = 1 AND k.has_calls ORDER BY r.run_id"
        )
        if part == "model":
            entries.append(
                f"SELECT {select('u', 's.model', 's.cost_pico', runs='1')}{plain} "
                "FROM run_totals s JOIN uc_run_kept u ON u.run_id = s.run_id"
            )
        else:
            entries.append(
                f"SELECT {select('u', 's.provider', 'SUM(s.cost_pico)', runs='1')}{sums} "
                "FROM run_totals s JOIN uc_run_kept u ON u.run_id = s.run_id GROUP BY s.run_id, s.provider"
            )
    # (the branches without rows are left out: a single branch is read without a UNION in between)
    if x("SELECT EXISTS (SELECT 1 FROM uc_part)").fetchone()[0]:
        entries.append(
            f"SELECT {select('k', 'p.part', 'p.cost_pico')}" + "".join(f", p.{c} AS {c}" for c in SUM_COLUMNS)
            + " FROM uc_part p JOIN uc_kept k ON k.tid = p.tid"
        )
    no_calls = (
        f"SELECT {select('k', None, '0')}" + "".join(f", 0 AS {c}" for c in SUM_COLUMNS)
        + " FROM uc_kept k WHERE NOT k.has_calls"
    )
    if not entries or x("SELECT EXISTS (SELECT 1 FROM uc_kept WHERE NOT has_calls)").fetchone()[0]:
        entries.append(no_calls)  # a task without calls counts once, in the (none) row
    return "(" + " UNION ALL ".join(entries) + ")"
