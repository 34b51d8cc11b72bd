"""Per-task rollups: one row a task with what the report engines need of it, kept current in the
store so a report over a million calls reads ~100k task rows instead of joining runs, per-run sums,
steps and outcomes on every request.

Tables (the same on SQLite and PostgreSQL):

- ``task_rollup``: one row a task, named by its identity (``task_kind``, ``task_key``): (kind, key),
  or ('', run_id) for a run without a key, as `unitcost.report.tasks.task_identity`. It holds the
  task's kind, key, first start (and its UTC day, as `unitcost.report.engine.time_bucket` reads
  nanoseconds), runs, runs with calls, every per-run sum (`run_totals.SUMS`) added over its runs,
  tools, step blocks, tool and [[runtime]] costs, and its winning outcome (the latest, by recorded
  time then id, naming one of its runs, else its kind and key, else its key alone): id, label,
  success and value.
- ``task_model_rollup``: the same sums per task, provider and model (what ``--by model`` reads), and
  on the row of each (task, provider)'s first model the provider's cost in the task (what ``--by
  provider`` ranks, m019).
- ``rollup_dirty``: the identities of tasks whose rows are to be made again.

How they stay exact: triggers on ``runs``, ``steps``, ``run_sums`` and ``outcomes`` put the identity
of every task a written, changed or deleted row touches into ``rollup_dirty``, whoever writes (the
store writer, ``serve``, prune, outcome import, ``unitcost outcome``, a test or an older unitcost).
`refresh` makes the dirty tasks' rows again from those tables and empties ``rollup_dirty``: the store
writer calls it at the end of each batch's transaction (so a committed batch leaves nothing dirty),
and readers call it (through the backends' ``ensure_fresh``) before reading, for rows written by
something else. A task is always summed again whole, so calls arriving late, runs replaced by later
spans, outcomes recorded later and prune all give the rows a full recomputation would.

The SQL is one text for both backends but for the day of a start (`day_sql`) and the triggers
(`sqlite_triggers`, `postgres_triggers`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from .attr_rollups import days_sql as attribute_days_sql
from .attr_rollups import has_tables as has_attribute_tables
from .attr_rollups import refresh_attributes
from .run_totals import COLUMNS

__all__ = [
    "BUCKET_COLUMNS", "MODEL_INDEXES", "OUTCOME_INDEXES", "PROVIDER_INDEXES", "ROLLUP_TABLES", "SUM_COLUMNS",
    "TASK_COLUMNS", "create_tables_sql", "day_sql", "duration_sql", "ended_and_buckets_sql", "is_dirty",
    "mark_all_sql", "month_of_day", "month_sql", "outcome_ranks_sql", "postgres_triggers", "provider_parts_sql",
    "refresh", "refresh_statements", "sqlite_triggers", "week_of_day", "week_sql",
]

SUM_COLUMNS = COLUMNS[3:]
ROLLUP_LOCK = 0x756E6974726F6C6C  # "unitroll": the PostgreSQL advisory lock of `refresh`
ROLLUP_TABLES = ("task_rollup", "task_model_rollup", "rollup_days", "rollup_dirty")
# rollup_days' counts before the sums: tasks, their runs and runs with calls, outcome values, entry
# costs (LLM, tools and runtime for a whole task; that model's LLM cost for a model), tools, step
# blocks, tool and runtime costs, and the tasks with one model under two providers (a report by model
# then reads the per-model rows task by task).
DAY_COUNTS = ("tasks", "runs", "runs_with_calls", "value_pico", "entry_cost_pico", "tool_calls", "step_blocks",
              "tool_cost_pico", "runtime_cost_pico", "split_tasks")
_DAY_KEY = ("kind", "start_day", "outcome_label", "state", "part_kind", "part", "has_part")
# task_rollup's columns after the identity, in the order `refresh` writes them.
TASK_COLUMNS = (
    "kind", "key", "started_ns", "start_day", "runs", "runs_with_calls", *SUM_COLUMNS,
    "tool_calls", "step_blocks", "tool_cost_pico", "runtime_cost_pico", "ended_ns", "start_week", "start_month",
)
# A task's time bucket beside its start day, for each `report --every`: the day; its week, named by the
# day number of its Monday; its month, as year * 12 + month - 1. A bucket's k-th cost is then read from
# an index in order (kind or model, bucket, cost) whatever the bucket's length (m017).
BUCKET_COLUMNS = {"day": "start_day", "week": "start_week", "month": "start_month"}
# The task's duration as the task list shows it (its runs' last end after its first start, else 0).
_DURATION = "(CASE WHEN ended_ns > started_ns THEN ended_ns - started_ns ELSE 0 END)"


def create_tables_sql(dialect: str) -> list[str]:
    """The tables and indexes."""
    integer = "INTEGER" if dialect == "sqlite" else "BIGINT"
    # (SQLite: the narrow per-model rows are stored in key order, without a rowid, so a report by model
    # reads them grouped with no sort)
    without_rowid = " WITHOUT ROWID" if dialect == "sqlite" else ""
    sums = ", ".join(f"{c} {integer} NOT NULL DEFAULT 0" for c in SUM_COLUMNS)
    return [
        f"CREATE TABLE task_rollup (task_kind TEXT NOT NULL, task_key TEXT NOT NULL, kind TEXT NOT NULL, key TEXT, "
        f"started_ns {integer} NOT NULL, start_day {integer} NOT NULL, runs {integer} NOT NULL, "
        f"runs_with_calls {integer} NOT NULL, {sums}, tool_calls {integer} NOT NULL DEFAULT 0, "
        f"step_blocks {integer} NOT NULL DEFAULT 0, tool_cost_pico {integer} NOT NULL DEFAULT 0, "
        f"runtime_cost_pico {integer} NOT NULL DEFAULT 0, task_cost_pico {integer} NOT NULL DEFAULT 0, "
        f"split_models {integer} NOT NULL DEFAULT 0, "
        f"outcome_id {integer}, outcome_label TEXT, "
        f"outcome_success {integer}, outcome_value_pico {integer}, {_LATER_TASK_COLUMNS.format(integer=integer)}, "
        "PRIMARY KEY (task_kind, task_key))",
        # (an outcome by key alone finds its tasks by key)
        "CREATE INDEX task_rollup_key ON task_rollup(task_key)",
        # A group's k-th cost is read from these in order, without a sort: a kind's, a kind's on a
        # day, a model's (see unitcost.report.rollup_sql).
        "CREATE INDEX task_rollup_cost ON task_rollup(kind, task_cost_pico)",
        "CREATE INDEX task_rollup_day_cost ON task_rollup(kind, start_day, task_cost_pico)",
        f"CREATE TABLE task_model_rollup (task_kind TEXT NOT NULL, task_key TEXT NOT NULL, provider TEXT NOT NULL, "
        f"model TEXT NOT NULL, start_day {integer} NOT NULL, {sums}, "
        f"{_LATER_MODEL_COLUMNS.format(integer=integer)}, "
        f"PRIMARY KEY (task_kind, task_key, model, provider)){without_rowid}",
        "CREATE INDEX task_model_rollup_cost ON task_model_rollup(model, cost_pico)",
        "CREATE INDEX task_model_rollup_day_cost ON task_model_rollup(model, start_day, cost_pico)",
        *_later_indexes(dialect),
        # Per kind, start day, outcome and part (the whole task, or one model of it): the
        # tasks' counts and sums, what a report's rows add up (its percentiles come from the task rows).
        f"CREATE TABLE rollup_days (kind TEXT NOT NULL, start_day {integer} NOT NULL, outcome_label TEXT NOT NULL, "
        f"state {integer} NOT NULL, part_kind TEXT NOT NULL, part TEXT NOT NULL, has_part {integer} NOT NULL, "
        + ", ".join(f"{c} {integer} NOT NULL DEFAULT 0" for c in DAY_COUNTS)
        + f", {sums}, PRIMARY KEY (kind, start_day, outcome_label, state, part_kind, part, has_part))",
        "CREATE TABLE rollup_dirty (task_kind TEXT NOT NULL, task_key TEXT NOT NULL, PRIMARY KEY (task_kind, task_key))"
        + without_rowid,
    ]


# (m017's columns, m018's outcome_label and m019's provider_cost_pico of a task and model: a new store
# has them from m015 on, an older one gets them added by m017, m018 and m019)
_LATER_TASK_COLUMNS = ("ended_ns {integer} NOT NULL DEFAULT 0, start_week {integer} NOT NULL DEFAULT 0, "
                       "start_month {integer} NOT NULL DEFAULT 0")
_LATER_MODEL_COLUMNS = ("start_week {integer} NOT NULL DEFAULT 0, start_month {integer} NOT NULL DEFAULT 0, "
                        "outcome_label TEXT, provider_cost_pico {integer}")


def _later_indexes(dialect: str) -> list[str]:
    # (PostgreSQL sorts text by the database's collation unless told: the task list orders by code point)
    text = ' COLLATE "C"' if dialect == "postgresql" else ""
    return [
        # The task list by duration reads its page from here in order (ties newest first, then by identity).
        f"CREATE INDEX IF NOT EXISTS task_rollup_duration ON task_rollup({_DURATION}, started_ns, "
        f"task_kind{text}, task_key{text})",
        # A time window's tasks found by range (compare's sides, report --since/--until), and the task
        # list's default order (newest first, then by identity) read in order: deep pages walk it.
        f"CREATE INDEX IF NOT EXISTS task_rollup_started ON task_rollup(started_ns, task_kind{text}, task_key{text})",
        # A week's or month's k-th cost, of a kind or a model, read in order as a day's is.
        "CREATE INDEX IF NOT EXISTS task_rollup_week_cost ON task_rollup(kind, start_week, task_cost_pico)",
        "CREATE INDEX IF NOT EXISTS task_rollup_month_cost ON task_rollup(kind, start_month, task_cost_pico)",
        "CREATE INDEX IF NOT EXISTS task_model_rollup_week_cost ON task_model_rollup(model, start_week, cost_pico)",
        "CREATE INDEX IF NOT EXISTS task_model_rollup_month_cost ON task_model_rollup(model, start_month, cost_pico)",
    ]


def duration_sql(alias: str) -> str:
    """A task_rollup row's duration in ns, as the index on it reads it (``alias``: the row's name)."""
    return _DURATION.replace("ended_ns", f"{alias}.ended_ns").replace("started_ns", f"{alias}.started_ns")


def week_sql(day: str) -> str:
    """The week of a day number (`day_sql`), as the day number of its Monday (1970-01-01 was a Thursday):
    `week_of_day` in SQL, for days from 1970 on."""
    return f"(({day}) - (({day}) + 3) % 7)"


def month_sql(dialect: str, day: str) -> str:
    """The month of a day number as year * 12 + month - 1 (`month_of_day` in SQL)."""
    if dialect == "sqlite":
        moment = f"({day}) * 86400, 'unixepoch'"
        return (f"(CAST(strftime('%Y', {moment}) AS INTEGER) * 12 "
                f"+ CAST(strftime('%m', {moment}) AS INTEGER) - 1)")
    date = f"(DATE '1970-01-01' + CAST(({day}) AS integer))"
    return f"(CAST(EXTRACT(YEAR FROM {date}) AS bigint) * 12 + CAST(EXTRACT(MONTH FROM {date}) AS bigint) - 1)"


def week_of_day(day: int) -> int:
    """The week column's value for a day number (days since 1970-01-01, UTC)."""
    return day - (day + 3) % 7


def month_of_day(day: int) -> int:
    """The month column's value for a day number."""
    moment = date(1970, 1, 1) + timedelta(days=day)
    return moment.year * 12 + moment.month - 1


def ended_and_buckets_sql(dialect: str) -> list[str]:
    """m017 for a store whose rollups were made before it: each task's last end, week and month (and
    each task and model's week and month) from the rows already there, and their indexes. (The
    columns themselves are added by the migration, when missing.)"""
    last_end = ("(SELECT MAX(x.ended_ns) FROM runs x WHERE task_rollup.key IS NOT NULL AND x.kind = task_rollup.kind "
                "AND x.key = task_rollup.key)")
    own_end = "(SELECT x.ended_ns FROM runs x WHERE x.run_id = task_rollup.task_key)"
    return [
        f"UPDATE task_rollup SET ended_ns = COALESCE(CASE WHEN task_kind = '' THEN {own_end} ELSE {last_end} END, 0), "
        f"start_week = {week_sql('start_day')}, start_month = {month_sql(dialect, 'start_day')}",
        f"UPDATE task_model_rollup SET start_week = {week_sql('start_day')}, "
        f"start_month = {month_sql(dialect, 'start_day')}",
        *_later_indexes(dialect),
    ]


# The indexes a group's k-th cost is read from when the group is of one outcome (m018), by bucket
# column ("" for a report without buckets): the tasks of an outcome in cost order, with their kind
# beside (a kind's tasks of an outcome are those entries of that kind, counted in the walk); and a
# model's, with the task's outcome beside (a model's calls in tasks of an outcome, the same way).
OUTCOME_INDEXES = {"": "task_rollup_outcome_cost", "start_day": "task_rollup_outcome_day_cost",
                   "start_week": "task_rollup_outcome_week_cost", "start_month": "task_rollup_outcome_month_cost"}
MODEL_INDEXES = {"": "task_model_rollup_cost", "start_day": "task_model_rollup_day_cost",
                  "start_week": "task_model_rollup_week_cost", "start_month": "task_model_rollup_month_cost"}


def outcome_ranks_sql() -> list[str]:
    """m018: each task and model's row gets its task's winning outcome label (kept by `refresh` from
    then on), the per-model cost indexes carry it after the cost, and the per-outcome cost indexes are
    made. (The column itself is added by the migration, when missing.)"""
    statements = [
        "UPDATE task_model_rollup SET outcome_label = (SELECT r.outcome_label FROM task_rollup r "
        "WHERE r.task_kind = task_model_rollup.task_kind AND r.task_key = task_model_rollup.task_key)",
    ]
    for column, name in MODEL_INDEXES.items():
        statements += [f"DROP INDEX IF EXISTS {name}",
                       f"CREATE INDEX {name} ON task_model_rollup(model, {column + ', ' if column else ''}"
                       "cost_pico, outcome_label)"]
    for column, name in OUTCOME_INDEXES.items():
        statements.append(f"CREATE INDEX IF NOT EXISTS {name} ON task_rollup(outcome_label, "
                          f"{column + ', ' if column else ''}task_cost_pico, kind)")
    return statements


# The indexes a provider's k-th (task, provider) cost is read from (m019), by bucket column as
# `OUTCOME_INDEXES`: one entry a (task, provider), on the row of its first model, with the task's
# outcome beside as the per-model indexes have it.
PROVIDER_INDEXES = {"": "task_model_rollup_provider_cost", "start_day": "task_model_rollup_provider_day_cost",
                    "start_week": "task_model_rollup_provider_week_cost",
                    "start_month": "task_model_rollup_provider_month_cost"}


def _provider_costs_sql(where: str) -> str:
    """Each task and model row's provider_cost_pico: on the row of the (task, provider)'s first model,
    the sum of the provider's models' costs in the task; NULL on the others."""
    same = ("m.task_kind = task_model_rollup.task_kind AND m.task_key = task_model_rollup.task_key "
            "AND m.provider = task_model_rollup.provider")
    return (f"UPDATE task_model_rollup SET provider_cost_pico = CASE WHEN model = (SELECT MIN(m.model) "
            f"FROM task_model_rollup m WHERE {same}) THEN (SELECT SUM(m.cost_pico) FROM task_model_rollup m "
            f"WHERE {same}) END{where}")


# The dirty tasks' (task, provider)s with more than one model: the only rows whose provider_cost_pico is
# not their own cost (`_model_rows_sql` writes that), made again by `_provider_costs_sql`.
_SHARED_PROVIDERS = (
    " WHERE (task_kind, task_key, provider) IN (SELECT m.task_kind, m.task_key, m.provider FROM rollup_dirty d "
    "CROSS JOIN task_model_rollup m WHERE m.task_kind = d.task_kind AND m.task_key = d.task_key "
    "GROUP BY m.task_kind, m.task_key, m.provider HAVING COUNT(*) > 1)"
)


def provider_parts_sql() -> list[str]:
    """m019: each (task, provider)'s cost on its first model's row and the index of them in cost order,
    and rollup_days' provider part (kept by `refresh` from then on; made again here from every task, so
    a store whose m015 ran after this was written ends the same). (The column itself is added by the
    migration, when missing.)"""
    return [
        _provider_costs_sql(""),
        *(f"CREATE INDEX IF NOT EXISTS {name} ON task_model_rollup(provider, {column + ', ' if column else ''}"
          "provider_cost_pico, outcome_label) WHERE provider_cost_pico IS NOT NULL"
          for column, name in PROVIDER_INDEXES.items()),
        "DELETE FROM rollup_days WHERE part_kind = 'provider'",
        _day_rows_sql("", everyone=True, parts=("provider",)),
    ]


def day_sql(dialect: str, column: str) -> str:
    """The UTC day (days since 1970) a start in ns falls on, as `engine.time_bucket` reads it: a float
    of seconds rounded to the microsecond (a fraction at or past 999999.5 us is the next second). Only
    read for starts from 1970 on (the report engines send earlier ones to the Python engine)."""
    if dialect == "sqlite":
        seconds = f"({column} / 1e9)"
        whole = f"CAST({seconds} AS INTEGER)"
        return f"(({whole} + (({seconds} - {whole}) * 1e6 >= 999999.5)) / 86400)"
    seconds = f"({column}::double precision / 1e9)"
    whole = f"floor({seconds})"
    return f"((({whole})::bigint + CASE WHEN ({seconds} - {whole}) * 1e6 >= 999999.5 THEN 1 ELSE 0 END) / 86400)"


# A run's task identity, over a runs row `x`.
_IDENT = "CASE WHEN {x}.key IS NULL THEN '' ELSE {x}.kind END, COALESCE({x}.key, {x}.run_id)"
_IN_DIRTY = "(task_kind, task_key) IN (SELECT task_kind, task_key FROM rollup_dirty)"
# A dirty task `d` of one run: a run without a key is a task of its own, ('', run id), but for a run of
# kind '' whose key is that run id (the two are then one task).
_ONE_RUN = ("d.task_kind = '' AND NOT EXISTS (SELECT 1 FROM runs y WHERE y.kind = '' AND y.key = d.task_key)")
# The runs of the dirty tasks with a keyed run (`plain`: of every dirty task), with their identity (two
# joins: each can use an index).
def _dirty_runs(plain: bool) -> str:
    return (
        "dr AS MATERIALIZED (SELECT d.task_kind, d.task_key, x.run_id, x.kind, x.key, x.started_ns, x.ended_ns, "
        "x.runtime_cost_pico "
        # (CROSS JOIN: SQLite then reads the few dirty tasks first and finds their rows by index, whatever
        # its statistics say of an often empty table; PostgreSQL plans as it likes)
        "FROM rollup_dirty d CROSS JOIN runs x WHERE x.kind = d.task_kind AND x.key = d.task_key "
        "UNION ALL SELECT d.task_kind, d.task_key, x.run_id, x.kind, x.key, x.started_ns, x.ended_ns, "
        "x.runtime_cost_pico FROM rollup_dirty d CROSS JOIN runs x WHERE d.task_kind = '' "
        + ("" if plain else "AND EXISTS (SELECT 1 FROM runs y WHERE y.kind = '' AND y.key = d.task_key) ")
        + "AND x.run_id = d.task_key AND x.key IS NULL)"
    )


# tools and steps of runs (session blocks are a [[runtime]] charge, not tool cost), by run: the steps `s`
# of the runs `{runs}` joins them to
_STEPS = (
    "st AS (SELECT s.run_id, SUM(CASE WHEN s.type = 'tool' THEN 1 ELSE 0 END) AS tools, "
    "SUM(CASE WHEN s.type = 'step' THEN 1 ELSE 0 END) AS blocks, "
    "SUM(CASE WHEN s.type = 'session' THEN 0 ELSE COALESCE(s.cost_pico, 0) END) AS tcost, "
    "SUM(CASE WHEN s.type = 'session' THEN COALESCE(s.cost_pico, 0) ELSE 0 END) AS rcost "
    "FROM {runs} GROUP BY s.run_id)"
)


def _task_rows_sql(dialect: str, *, one_run: bool = False, plain: bool = False) -> str:
    """The dirty tasks' task_rollup rows: of those with a keyed run (their runs summed; ``plain``: every
    dirty task's), or (``one_run``) of the others, each one run whose sums are the task's as they are (no
    grouping: most new tasks')."""
    columns = ", ".join(("task_kind", "task_key", *TASK_COLUMNS, "task_cost_pico"))
    updates = ", ".join(f"{c} = excluded.{c}" for c in (*TASK_COLUMNS, "task_cost_pico"))
    upsert = f"ON CONFLICT (task_kind, task_key) DO UPDATE SET {updates}"
    if one_run:
        day = day_sql(dialect, "x.started_ns")
        runtime_cost = "(COALESCE(st.rcost, 0) + COALESCE(x.runtime_cost_pico, 0))"
        return (
            "WITH " + _STEPS.format(runs="rollup_dirty d CROSS JOIN steps s WHERE d.task_kind = '' "
                                         "AND s.run_id = d.task_key")
            + f" INSERT INTO task_rollup ({columns}) "
            f"SELECT d.task_kind, d.task_key, x.kind, x.key, x.started_ns, {day}, 1, "
            "CASE WHEN s.run_id IS NULL THEN 0 ELSE 1 END" + "".join(f", COALESCE(s.{c}, 0)" for c in SUM_COLUMNS)
            + ", COALESCE(st.tools, 0), COALESCE(st.blocks, 0), COALESCE(st.tcost, 0), "
            f"{runtime_cost}, x.ended_ns, {week_sql(day)}, {month_sql(dialect, day)}, "
            f"COALESCE(s.cost_pico, 0) + COALESCE(st.tcost, 0) + {runtime_cost} "
            "FROM rollup_dirty d CROSS JOIN runs x LEFT JOIN run_sums s ON s.run_id = x.run_id "
            f"LEFT JOIN st ON st.run_id = x.run_id WHERE {_ONE_RUN} AND x.run_id = d.task_key AND x.key IS NULL "
            + upsert
        )
    sums = "".join(f", SUM(COALESCE(s.{c}, 0))" for c in SUM_COLUMNS)
    tool_cost = "SUM(COALESCE(st.tcost, 0))"
    runtime_cost = "(SUM(COALESCE(st.rcost, 0)) + SUM(COALESCE(dr.runtime_cost_pico, 0)))"
    day = day_sql(dialect, "MIN(dr.started_ns)")
    return (
        f"WITH {_dirty_runs(plain)}, " + _STEPS.format(runs="dr CROSS JOIN steps s WHERE s.run_id = dr.run_id")
        + f" INSERT INTO task_rollup ({columns}) "
        "SELECT dr.task_kind, dr.task_key, MIN(dr.kind), MIN(dr.key), MIN(dr.started_ns), "
        f"{day}, COUNT(*), COUNT(s.run_id){sums}, "
        f"SUM(COALESCE(st.tools, 0)), SUM(COALESCE(st.blocks, 0)), {tool_cost}, {runtime_cost}, "
        # (the runs' last end: the task list's duration; the start's week and month: the buckets' ranks)
        f"MAX(dr.ended_ns), {week_sql(day)}, {month_sql(dialect, day)}, "
        # the task's cost: its calls', tools' and runtime's (what its percentiles rank)
        f"SUM(COALESCE(s.cost_pico, 0)) + {tool_cost} + {runtime_cost} "
        "FROM dr LEFT JOIN run_sums s ON s.run_id = dr.run_id LEFT JOIN st ON st.run_id = dr.run_id "
        # (`WHERE true`: SQLite's upsert after a SELECT needs a WHERE to parse)
        f"WHERE true GROUP BY dr.task_kind, dr.task_key {upsert}"
    )


def _model_rows_sql(*, one_run: bool = False, plain: bool = False) -> str:
    """The dirty tasks' task_model_rollup rows, after their task rows (whose first day, week and month and
    winning outcome they copy: what a report by model and bucket, or of an outcome, ranks by): of the
    tasks with a keyed run (``plain``: of every dirty task), or (``one_run``) of the others (a task_rollup
    row without a key: one run, whose per-model sums are the task's)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in SUM_COLUMNS)
    head = ("INSERT INTO task_model_rollup (task_kind, task_key, provider, model, start_day, start_week, "
            "start_month, outcome_label" + "".join(f", {c}" for c in SUM_COLUMNS) + ", provider_cost_pico) ")
    upsert = (
        "ON CONFLICT (task_kind, task_key, model, provider) DO UPDATE SET start_day = excluded.start_day, "
        "start_week = excluded.start_week, start_month = excluded.start_month, "
        f"outcome_label = excluded.outcome_label, {updates}, provider_cost_pico = excluded.provider_cost_pico"
    )
    # (provider_cost_pico: the provider's cost in the task when this is its only model, as it most often
    # is; a provider with two models in a task has its rows made again by `_provider_costs_sql`)
    if one_run:
        return (
            head + "SELECT r.task_kind, r.task_key, t.provider, t.model, r.start_day, r.start_week, r.start_month, "
            "r.outcome_label" + "".join(f", t.{c}" for c in SUM_COLUMNS) + ", t.cost_pico "
            "FROM rollup_dirty d CROSS JOIN task_rollup r CROSS JOIN run_totals t WHERE r.task_kind = d.task_kind "
            "AND r.task_key = d.task_key AND r.key IS NULL AND t.run_id = r.task_key " + upsert
        )
    return (
        f"WITH {_dirty_runs(plain)} " + head + "SELECT dr.task_kind, dr.task_key, t.provider, t.model, "
        "MIN(r.start_day), MIN(r.start_week), MIN(r.start_month), MIN(r.outcome_label)"
        + "".join(f", SUM(t.{c})" for c in SUM_COLUMNS) + ", SUM(t.cost_pico) "
        "FROM dr JOIN run_totals t ON t.run_id = dr.run_id "
        "JOIN task_rollup r ON r.task_kind = dr.task_kind AND r.task_key = dr.task_key WHERE true "
        "GROUP BY dr.task_kind, dr.task_key, t.provider, t.model " + upsert
    )


# The outcomes that could win for a task_rollup row: those naming one of its runs, its kind and key, or
# its key alone (as unitcost.report.tasks.Store.tasks picks them).
_CANDIDATES = (
    "SELECT o.id, o.recorded_ns FROM runs x JOIN outcomes o ON o.run_id = x.run_id"
    " WHERE task_rollup.key IS NOT NULL AND x.kind = task_rollup.kind AND x.key = task_rollup.key"
    " UNION ALL SELECT o.id, o.recorded_ns FROM outcomes o"
    " WHERE task_rollup.key IS NULL AND o.run_id = task_rollup.task_key"
    " UNION ALL SELECT o.id, o.recorded_ns FROM outcomes o"
    " WHERE o.run_id IS NULL AND o.kind = task_rollup.kind AND o.key = task_rollup.key"
    " UNION ALL SELECT o.id, o.recorded_ns FROM outcomes o"
    " WHERE o.run_id IS NULL AND o.kind IS NULL AND o.key = task_rollup.key"
)
# The winning outcome of each dirty task: the latest of its candidates (recorded time, then id), written
# on the rows ``where`` names.
def _winners_sql(where: str) -> str:
    return (
        # (with the winner's label, success and value beside its id: a report reads no outcome row)
        "UPDATE task_rollup SET (outcome_id, outcome_label, outcome_success, outcome_value_pico) = "
        "(SELECT o.id, o.label, o.success, o.value_pico FROM outcomes o WHERE o.id = (SELECT w.id FROM "
        f"({_CANDIDATES}) AS w ORDER BY w.recorded_ns DESC, w.id DESC LIMIT 1)) WHERE {where}"
    )


# (only the dirty tasks with a candidate are written: `_task_rows_sql` made every dirty task's row just
# before, with no outcome (NULLs), which is what a task without one keeps)
_WINNERS = _winners_sql(f"{_IN_DIRTY} AND EXISTS ({_CANDIDATES})")


def _split_models_sql(where: str) -> str:
    """The models a task calls under two providers (a report by model then sums them task by task),
    counted on the task rows ``where`` names."""
    return ("UPDATE task_rollup SET split_models = (SELECT COUNT(*) FROM (SELECT m.model FROM task_model_rollup m "
            "WHERE m.task_kind = task_rollup.task_kind AND m.task_key = task_rollup.task_key GROUP BY m.model "
            f"HAVING COUNT(*) > 1) AS x) WHERE {where}")


# The dirty tasks with a model under two providers (found in the order of task_model_rollup's key): the
# others keep the 0 their new row has.
_SPLIT_TASKS = ("(task_kind, task_key) IN (SELECT m.task_kind, m.task_key FROM rollup_dirty d "
                "CROSS JOIN task_model_rollup m WHERE m.task_kind = d.task_kind AND m.task_key = d.task_key "
                "GROUP BY m.task_kind, m.task_key, m.model HAVING COUNT(*) > 1)")


def _day_rows_sql(sign: str, *, everyone: bool = False, parts: tuple[str, ...] = ("", "model", "provider")) -> str:
    """Add (sign "+") or take away ("-") the dirty tasks' part of rollup_days (``everyone``: every
    task's), of the parts named: the whole task (""), by model, by provider."""
    state = "CASE WHEN t.outcome_id IS NULL THEN 0 WHEN t.outcome_success <> 0 THEN 1 ELSE 2 END"
    head = f"t.kind, t.start_day, COALESCE(t.outcome_label, ''), {state}"
    task = "COUNT(*), SUM(t.runs), SUM(t.runs_with_calls), SUM(COALESCE(t.outcome_value_pico, 0))"
    dirty = "true" if everyone else "(t.task_kind, t.task_key) IN (SELECT task_kind, task_key FROM rollup_dirty)"
    sums = "".join(f", SUM(t.{c})" for c in SUM_COLUMNS)
    branches = [] if "" not in parts else [
        f"SELECT {head}, '', '', 1, {task}, SUM(t.cost_pico + t.tool_cost_pico + t.runtime_cost_pico), "
        f"SUM(t.tool_calls), SUM(t.step_blocks), SUM(t.tool_cost_pico), SUM(t.runtime_cost_pico), "
        f"SUM(t.split_models){sums} FROM task_rollup t WHERE {dirty} GROUP BY 1, 2, 3, 4",
    ]
    # By provider and by model, from each task's per-model rows (read once, in key order, beside their
    # task's row): the part's sums are those of its rows; the task's counts and sums are counted once a
    # part, on one row of it (`weighted`, 1 on that row, 0 on the others).
    model_sums = "".join(f", SUM(m.{c})" for c in SUM_COLUMNS)
    rows = ("task_rollup t CROSS JOIN task_model_rollup m WHERE true" if everyone else
            "rollup_dirty d CROSS JOIN task_rollup t CROSS JOIN task_model_rollup m "
            "WHERE t.task_kind = d.task_kind AND t.task_key = d.task_key")
    rows += " AND m.task_kind = t.task_kind AND m.task_key = t.task_key"

    def weighted(one: str) -> str:
        return (f"SUM({one}), SUM({one} * t.runs), SUM({one} * t.runs_with_calls), "
                f"SUM({one} * COALESCE(t.outcome_value_pico, 0))")

    if "provider" in parts:
        # (a provider's row of a task: the row of its first model, the one with provider_cost_pico (m019))
        first_model = "(CASE WHEN m.provider_cost_pico IS NULL THEN 0 ELSE 1 END)"
        branches += [
            f"SELECT {head}, 'provider', m.provider, 1, {weighted(first_model)}, SUM(m.cost_pico), 0, 0, 0, 0, 0"
            f"{model_sums} FROM {rows} GROUP BY 1, 2, 3, 4, 6",
            f"SELECT {head}, 'provider', '', 0, {task}, 0, 0, 0, 0, 0, 0" + ", 0" * len(SUM_COLUMNS)
            + f" FROM task_rollup t WHERE {dirty} AND t.runs_with_calls = 0 GROUP BY 1, 2, 3, 4",
        ]
    if "model" in parts:
        if everyone:  # (the model part is only ever made again for the dirty tasks: its SQL reads them)
            raise ValueError("the model part of rollup_days is made for the dirty tasks only")
        # (a model's row of a task: its only one, but for a task with one model under two providers
        # (split_models), the row of the model's first provider)
        first_provider = ("(CASE WHEN t.split_models = 0 OR m.provider = (SELECT MIN(x.provider) FROM "
                          "task_model_rollup x WHERE x.task_kind = m.task_kind AND x.task_key = m.task_key "
                          "AND x.model = m.model) THEN 1 ELSE 0 END)")
        branches += [
            f"SELECT {head}, 'model', m.model, 1, {weighted(first_provider)}, SUM(m.cost_pico), 0, 0, 0, 0, 0"
            f"{model_sums} FROM {rows} GROUP BY 1, 2, 3, 4, 6",
            # (a task without calls counts once, in the (none) part)
            f"SELECT {head}, 'model', '', 0, {task}, 0, 0, 0, 0, 0, 0" + ", 0" * len(SUM_COLUMNS)
            + f" FROM task_rollup t WHERE {dirty} AND t.runs_with_calls = 0 GROUP BY 1, 2, 3, 4",
        ]
    values = ("tasks", *DAY_COUNTS[1:], *SUM_COLUMNS)
    columns = ", ".join((*_DAY_KEY, *values))
    named = ", ".join((*(f"k{i}" for i in range(len(_DAY_KEY))), *(f"v{i}" for i in range(len(values)))))
    keys = ", ".join(f"k{i}" for i in range(len(_DAY_KEY)))
    signed = ", ".join((keys, *(f"{sign}SUM(v{i})" for i in range(len(values)))))
    return (
        # (summed by key first: a model's split and unsplit tasks of one day come from two branches, and
        # PostgreSQL's upsert takes one row a key)
        f"WITH c ({named}) AS (" + " UNION ALL ".join(branches) + ") "
        f"INSERT INTO rollup_days ({columns}) SELECT {signed} FROM c WHERE true GROUP BY {keys} "
        f"ON CONFLICT ({', '.join(_DAY_KEY)}) DO UPDATE SET "
        + ", ".join(f"{c} = rollup_days.{c} + excluded.{c}" for c in values)
    )


def refresh(execute: Callable[..., Any], dialect: str) -> bool:
    """Make the dirty tasks' rows again (inside the caller's write transaction); True when there were any.

    ``execute``: one statement and its parameters (an sqlite3 or psycopg connection's ``execute``; the
    task attributes' rows are written with parameters, ``?`` or ``%s`` by ``dialect``)."""
    if not execute("SELECT EXISTS (SELECT 1 FROM rollup_dirty)").fetchone()[0]:
        return False
    if dialect == "postgresql":
        # Writers on many hosts refresh one at a time (until commit): each then sees the rows and
        # marks every earlier refresh committed, and empties only the marks it has summed.
        execute(f"SELECT pg_advisory_xact_lock({ROLLUP_LOCK})")
    statements = refresh_statements(dialect)
    # Tasks none of which has rows yet (new tasks: most of a writer's) have nothing to take away.
    known = execute(_ANY_ROWS).fetchone()[0]
    # (the task attributes' rollups, m020: their part of attribute_days taken away while the task rows are
    # as they were, their rows made again after the task rows are; a store without m020 has none)
    attributes = has_attribute_tables(execute, dialect)
    if attributes and known:
        execute(attribute_days_sql("-"))
    for statement in statements[0 if known else _TAKE_AWAY:-1]:
        execute(statement)
    if attributes:
        refresh_attributes(execute, dialect)
    execute(statements[-1])  # (rollup_dirty emptied)
    return True


# Whether some dirty task has rows (task_rollup's; its per-model, per-day and attribute rows come with it).
_ANY_ROWS = ("SELECT EXISTS (SELECT 1 FROM rollup_dirty d CROSS JOIN task_rollup t "
             "WHERE t.task_kind = d.task_kind AND t.task_key = d.task_key)")
# `refresh_statements`' first three take the dirty tasks' rows away: nothing to do when they have none.
_TAKE_AWAY = 3


def refresh_statements(dialect: str, *, plain: bool = False) -> list[str]:
    """What `refresh` runs when some task is dirty, in order. (``plain``: the plain forms the narrower
    ones are checked against (tests): every dirty task summed from its runs, none taken as its one run,
    and its winning outcome, split models and providers' costs written whatever it has.)"""
    return [
        # The dirty tasks' part of the per-day rows goes, then comes back as they are now.
        _day_rows_sql("-"),
        # A task with no run left (pruned, or its runs now belong to another task) loses its rows; the
        # others are written again whole.
        f"DELETE FROM task_rollup WHERE {_IN_DIRTY}",
        f"DELETE FROM task_model_rollup WHERE {_IN_DIRTY}",
        _task_rows_sql(dialect, plain=plain),
        *([] if plain else [_task_rows_sql(dialect, one_run=True)]),
        _winners_sql(_IN_DIRTY) if plain else _WINNERS,  # (before the per-model rows: they copy the winner's label)
        _model_rows_sql(plain=plain),
        *([] if plain else [_model_rows_sql(one_run=True)]),
        # (each (task, provider)'s cost on its first model's row: what a report by provider ranks)
        _provider_costs_sql(f" WHERE {_IN_DIRTY}" if plain else _SHARED_PROVIDERS),
        _split_models_sql(_IN_DIRTY if plain else _SPLIT_TASKS),
        _day_rows_sql(""),
        "DELETE FROM rollup_days WHERE tasks = 0",  # (its sums are all 0 then: integers, added and taken away)
        "DELETE FROM rollup_dirty",
    ]


def is_dirty(execute: Callable[..., Any]) -> bool:
    """True when some task's rows are still to be made (a reader that could not refresh them)."""
    return bool(execute("SELECT EXISTS (SELECT 1 FROM rollup_dirty)").fetchone()[0])


def mark_all_sql() -> str:
    """Every task marked dirty (the migration that builds the rollups for a store's existing rows)."""
    return f"INSERT INTO rollup_dirty (task_kind, task_key) SELECT DISTINCT {_IDENT.format(x='r')} FROM runs r"


# --- triggers ---------------------------------------------------------------------------------------
# Each marks the identity of the task a row belongs to, before and after the change. A runs row is
# marked before it is written too: an INSERT OR REPLACE that gives a run another kind or key (SQLite
# fires no delete trigger for the row it replaces) leaves its old task to be summed again.

def _sqlite_mark_run(ref: str) -> str:
    # (a steps or run_sums row: its run's task)
    return (f"INSERT OR IGNORE INTO rollup_dirty (task_kind, task_key) SELECT {_IDENT.format(x='x')} "
            f"FROM runs x WHERE x.run_id = {ref}.run_id;")


def _sqlite_mark_self(ref: str) -> str:
    # (a runs row: its own task, the row being gone already after a delete)
    return f"INSERT OR IGNORE INTO rollup_dirty (task_kind, task_key) VALUES ({_IDENT.format(x=ref)});"


def _sqlite_mark_outcome(ref: str) -> str:
    return (
        f"INSERT OR IGNORE INTO rollup_dirty (task_kind, task_key) SELECT {_IDENT.format(x='x')} FROM runs x "
        f"WHERE x.run_id = {ref}.run_id; "
        f"INSERT OR IGNORE INTO rollup_dirty (task_kind, task_key) SELECT {ref}.kind, {ref}.key "
        f"WHERE {ref}.run_id IS NULL AND {ref}.kind IS NOT NULL AND {ref}.key IS NOT NULL; "
        "INSERT OR IGNORE INTO rollup_dirty (task_kind, task_key) SELECT task_kind, task_key FROM task_rollup "
        f"WHERE {ref}.run_id IS NULL AND {ref}.kind IS NULL AND task_key = {ref}.key AND key IS NOT NULL;"
    )


def sqlite_triggers() -> list[str]:
    out = []
    for table, mark in (("runs", _sqlite_mark_self), ("steps", _sqlite_mark_run), ("run_sums", _sqlite_mark_run),
                        ("outcomes", _sqlite_mark_outcome)):
        out.append(f"CREATE TRIGGER {table}_rollup_insert AFTER INSERT ON {table} BEGIN {mark('NEW')} END")
        out.append(f"CREATE TRIGGER {table}_rollup_delete AFTER DELETE ON {table} BEGIN {mark('OLD')} END")
        out.append(
            f"CREATE TRIGGER {table}_rollup_update AFTER UPDATE ON {table} BEGIN {mark('OLD')} {mark('NEW')} END"
        )
    out.append(f"CREATE TRIGGER runs_rollup_replace BEFORE INSERT ON runs BEGIN {_sqlite_mark_run('NEW')} END")
    return out


def postgres_triggers() -> list[str]:
    """One function a table, fired for each row (PostgreSQL's INSERT ... ON CONFLICT DO UPDATE fires
    the update triggers for the rows it updates)."""
    def run_body(ref: str) -> str:
        return (f"INSERT INTO rollup_dirty (task_kind, task_key) SELECT {_IDENT.format(x='x')} FROM runs x "
                f"WHERE x.run_id = {ref}.run_id ON CONFLICT DO NOTHING;")

    def outcome_body(ref: str) -> str:
        return (
            run_body(ref)
            + f" IF {ref}.run_id IS NULL AND {ref}.kind IS NOT NULL AND {ref}.key IS NOT NULL THEN "
            f"INSERT INTO rollup_dirty (task_kind, task_key) VALUES ({ref}.kind, {ref}.key) ON CONFLICT DO NOTHING; "
            f"END IF; IF {ref}.run_id IS NULL AND {ref}.kind IS NULL THEN "
            "INSERT INTO rollup_dirty (task_kind, task_key) SELECT task_kind, task_key FROM task_rollup "
            f"WHERE task_key = {ref}.key AND key IS NOT NULL ON CONFLICT DO NOTHING; END IF;"
        )

    def self_body(ref: str) -> str:
        return (f"INSERT INTO rollup_dirty (task_kind, task_key) VALUES ({_IDENT.format(x=ref)}) "
                "ON CONFLICT DO NOTHING;")

    out = []
    for table, body in (("runs", self_body), ("steps", run_body), ("run_sums", run_body), ("outcomes", outcome_body)):
        out.append(
            f"CREATE FUNCTION {table}_rollup_mark() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF TG_OP IN ('UPDATE', 'DELETE') THEN {body('OLD')} END IF; "
            f"IF TG_OP IN ('INSERT', 'UPDATE') THEN {body('NEW')} END IF; RETURN NULL; END $$"
        )
        out.append(f"CREATE TRIGGER {table}_rollup AFTER INSERT OR UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {table}_rollup_mark()")
    return out
