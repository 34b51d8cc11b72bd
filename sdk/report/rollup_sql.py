"""Reports read from the per-task rollups (`unitcost.store.rollups`): one text for SQLite and PostgreSQL.

A report that groups by kind, outcome, model, provider and time bucket, filtered by kind, outcome and
time window, needs of each task only what ``task_rollup`` holds (its kind, first start, runs, sums,
tools and winning outcome) and, by model or provider, ``task_model_rollup`` (by provider, each (task,
provider)'s cost on the row of its first model, m019). So the groups are summed
and their task costs ranked straight from those rows (~100k for a million calls) instead of joining
runs, per-run sums, steps and outcomes first (`unitcost.report.sql`, `unitcost.report.pg_sql`, still
used for task attributes in --by/--where, and by the tests as the rollups' reference).

Requests and stores it does not take raise `Unfit`: task attributes, a task identity of kind ''
that meets a run id, a task started before 1970 in a bucketed report, and rollups still marked
dirty (a store that could not be refreshed: read-only, or a sum past 2**63).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import date
from typing import Any

from ..store.rollups import (
    MODEL_INDEXES,
    OUTCOME_INDEXES,
    PROVIDER_INDEXES,
    SUM_COLUMNS,
    is_dirty,
    month_of_day,
    week_of_day,
)
from .sql import ODD_TASK_IDENTITIES_SQL, PART, Unfit, nearest_rank

__all__ = ["DAY_COUNTS_SQL", "DAY_OUTCOME_SQL", "day_filters", "group_rows", "outside_sums", "window_sql"]


def _check_fits(execute: Callable[..., Any], bucketed: bool) -> None:
    if is_dirty(execute):
        raise Unfit("rollups not current")
    odd = execute(ODD_TASK_IDENTITIES_SQL).fetchone()[0]
    if odd:
        raise Unfit("task identities of kind ''")
    if bucketed and execute("SELECT MIN(started_ns) < 0 FROM runs").fetchone()[0]:  # (a task starts with its first run)
        raise Unfit("a task started before 1970")


def group_rows(
    execute: Callable[..., Any],
    *,
    keys: Sequence[str],
    per_model: str | None,
    kind: str | None,
    outcome: str | None,
    since_ns: int | None,
    until_ns: int | None,
    percentiles: Sequence[int],
    bucket: Callable[[int], str] | None = None,
    in_process: bool = False,
    only: Collection[tuple[Any, ...]] | None = None,
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(group key, its counts, sums and ranked costs) for each group of kept tasks, as `sql.group_rows`.

    ``execute``: the store's (``?`` placeholders), inside one consistent read. ``keys``: "kind",
    "outcome" or `PART` (the model or provider: ``per_model``), in the report's order; ``bucket``
    (ns -> label) puts the task's time bucket first; ``in_process``: the database runs in this
    process (SQLite: a statement costs no round trip). The tasks kept: of ``kind``, with the outcome
    ``outcome``, started in [``since_ns``, ``until_ns``). ``only``: the groups wanted (keys without
    the bucket); the others are counted (a statement reads them all) but neither ranked nor yielded.

    The groups' counts and sums come from the per-day rows (``rollup_days``) unless a time window
    cuts through days (then from the task rows); the percentiles from an index or from the task costs,
    ranked here."""
    _check_fits(execute, bucket is not None)
    with_cte, cte_params = "", []
    days_of: dict[str, list[int]] = {}
    if bucket is not None:
        days = [d for (d,) in execute("SELECT DISTINCT start_day FROM rollup_days")]
        if not days:
            return
        # Each distinct day named once in Python (time_bucket), joined as a small table.
        with_cte = "WITH b (day, label) AS (VALUES " + ", ".join("(?, ?)" for _ in days) + ") "
        labels = [bucket(d * 86_400 * 10**9) for d in days]
        cte_params = [v for pair in zip(days, labels, strict=True) for v in pair]
        for day, label in zip(days, labels, strict=True):
            days_of.setdefault(label, []).append(day)
    order = (["bucket"] if bucket is not None else []) + [k for k in keys]
    # (whether some task's model went by two providers: then its per-model rows are summed by task and
    # model before use, else they are used as they are)
    split = per_model is not None and bool(
        execute("SELECT COALESCE(SUM(split_tasks), 0) FROM rollup_days WHERE part_kind = ''").fetchone()[0]
    )
    width = len(order)
    # A group's ranked costs: read at their rank from an index where one holds the group's costs in
    # order (a kind's tasks, an outcome's, a model's, a provider's, each also by day, week or month,
    # a model's or provider's also of a kind), else all read and sorted here (a model under two
    # providers in one task, a run without a key by kind and model).
    unwindowed = since_ns is None and until_ns is None
    of_outcome = outcome is not None or "outcome" in order
    # (the buckets' days, whether each bucket is a day, a week or a month: the index that holds each
    # bucket's costs in order)
    bucket_at = _bucket_column(days_of)
    named = [{PART: "model"}.get(k, k) for k in order if k != "bucket"]
    # (a model's or a provider's entries of a kind are those of its index with that task_kind, a column
    # each entry carries (SQLite: the table's key): the task's kind, unless some task is a run without
    # a key, of identity ('', run id))
    of_kind = kind is not None or "kind" in order
    keyless = of_kind and per_model is not None and bool(
        execute("SELECT EXISTS (SELECT 1 FROM task_model_rollup WHERE task_kind = '')").fetchone()[0]
    )
    indexed = bucket_at is not None and (
        (per_model is None and (of_outcome or of_kind))
        or (per_model is not None and not (per_model == "model" and split) and not keyless
            and set(named) - {"kind", "outcome"} == {"model"})
    )
    # A time window: its whole days (every task of them in the window) are read as the report without
    # a window reads every day, the tasks of its edge days from their rows.
    inner = None if unwindowed or not indexed else _inner_days(execute, since_ns, until_ns)
    if unwindowed:
        counted = _counted_from_days(execute, order, per_model, kind, outcome, with_cte, cte_params)
    elif inner is None:
        counted = _counted_from_tasks(execute, order, per_model, kind, outcome, since_ns, until_ns, with_cte,
                                      cte_params, split)
    else:
        whole_days, edges = inner
        at_edges = [row for lower, upper in edges for row in _counted_from_tasks(
            execute, order, per_model, kind, outcome, lower, upper, with_cte, cte_params, split, whole_days)]
        counted = _added(width, [
            *_counted_from_days(execute, order, per_model, kind, outcome, with_cte, cte_params, whole_days),
            *at_edges])
        # (the edges' tasks' costs are read only if there are some)
        inner = whole_days, edges if any(row[width] for row in at_edges) else []
    if only is not None:
        counted = [row for row in counted if tuple(row[1 if bucket is not None else 0:width]) in only]
    by_index = indexed and (unwindowed or inner is not None)
    costs = {} if by_index else _entry_costs(
        execute, order, per_model, kind, outcome, since_ns, until_ns, with_cte, cte_params, split
    )
    if by_index and bucket_at is not None:  # (by_index implies it: said again for mypy)
        groups = [(tuple(row[:width]), row[width], {nearest_rank(row[width], p) for p in percentiles})
                  for row in counted if row[width]]
        if inner is None:
            from_index = _ranked_from_index(execute, order, groups, kind, outcome, bucket_at, in_process, per_model)
        else:
            from_index = _ranked_in_window(execute, order, groups, kind, outcome, bucket_at, days_of, inner,
                                           in_process, per_model, with_cte, cte_params, split)
    for row in counted:
        key = tuple(row[:width])
        n, runs, succeeded, failed, value, wasted, tools, blocks, tcost, rcost, *sums = row[width:]
        if not n:
            continue
        ranks = {nearest_rank(n, p) for p in percentiles}
        if by_index:
            ranked = from_index[key]
        else:
            ordered = sorted(costs.get(key, ()))
            ranked = {r: ordered[r - 1] for r in ranks} if ordered else {}
        yield key, {
            "tasks": n, "runs": runs, "succeeded": succeeded, "failed": failed,
            "no_outcome": n - succeeded - failed, "value_pico": value, "wasted_pico": wasted, "tool_calls": tools,
            "step_blocks": blocks, "tool_cost_pico": tcost, "runtime_cost_pico": rcost,
            "ranked": ranked,
            "sums": [v or 0 for v in sums],
        }


# Each bucket column's value for a day number (unitcost.store.rollups.BUCKET_COLUMNS).
_BUCKET_OF_DAY: dict[str, Callable[[int], int]] = {
    "start_day": lambda day: day, "start_week": week_of_day, "start_month": month_of_day,
}


def _bucket_column(days_of: dict[str, list[int]]) -> tuple[str, dict[str, int]] | None:
    """(the rollups' column that names each bucket, {bucket label: its value}) when one does: each
    label's days all of one day, week or month, no two labels of the same (`--every` day, week or
    month); ("", {}) for a report without buckets; None when no column fits."""
    if not days_of:
        return "", {}
    for column, of_day in _BUCKET_OF_DAY.items():
        values = {label: {of_day(d) for d in days} for label, days in days_of.items()}
        if all(len(v) == 1 for v in values.values()) and len({min(v) for v in values.values()}) == len(values):
            return column, {label: min(v) for label, v in values.items()}
    return None


def _ranked_from_index(
    execute: Callable[..., Any], order: Sequence[str], groups: list[tuple[tuple[Any, ...], int, set[int]]],
    kind: str | None, outcome: str | None, bucket_at: tuple[str, dict[str, int]], in_process: bool,
    per_model: str | None = None,
) -> dict[tuple[Any, ...], dict[int, int]]:
    """{group key: {rank: cost}}, each cost read at its place in an index (task_rollup_cost, and by day,
    week or month task_rollup_day_cost, _week_cost, _month_cost; the same of task_model_rollup and of
    an outcome, `OUTCOME_INDEXES`; a provider's (task, provider) costs, `PROVIDER_INDEXES`): no sort,
    only the entries before it walked, and a few hundred of them a statement (one round trip to a
    server).

    A group of one outcome and kind walks the outcome's entries counting those of the kind, and a
    model's (or a provider's) of one outcome or kind the model's entries counting those of the outcome
    or kind (each index carries the other column after the cost; SQLite's, the table's key, the task's
    identity, too): the walk is longer by the share of the entries the group leaves out, and reads no
    table row (PostgreSQL reads a model's entry's row for its task's kind)."""
    column_of_bucket, bucket_values = bucket_at
    found: dict[tuple[Any, ...], dict[int, int]] = {}
    lookups: list[tuple[tuple[Any, ...], int, str, list[Any]]] = []
    texts: dict[tuple[str, str, tuple[bool, ...]], str] = {}
    for key, n, ranks in groups:
        values = dict(zip(order, key, strict=True))
        entries = _index_entries(values, kind, outcome, column_of_bucket, in_process, per_model)
        if entries is None:  # the tasks without calls: each costs 0 here
            found[key] = dict.fromkeys(ranks, 0)
            continue
        column, where, params = entries
        if "bucket" in values:
            where += f" AND {column_of_bucket} = ?"
            params.append(bucket_values[values["bucket"]])
        # (a rank past the middle is read from the other end: fewer entries walked)
        ranked = sorted(ranks)
        ascending = tuple(r <= n - r for r in ranked)
        offsets = [r - 1 if up else n - r for r, up in zip(ranked, ascending, strict=True)]
        read = f"SELECT {column} AS c {where} ORDER BY {column}"
        if in_process:
            # A group's ranks in one statement, one scalar subquery a rank (a few thousand small groups
            # by day: a statement a group, 9% less CPU than a statement a rank). Its text is the same for
            # every group of the same shape (prepared once).
            shape = (column, where, ascending)
            text = texts.get(shape)
            if text is None:
                text = texts[shape] = "SELECT " + ", ".join(
                    f"({read}{'' if up else ' DESC'} LIMIT 1 OFFSET ?)" for up in ascending)
            row = execute(text, [p for offset in offsets for p in (*params, offset)]).fetchone()
            if None in row:  # (an index holds fewer entries than the group's count)
                raise Unfit("a group's entries and its count differ")
            found[key] = dict(zip(ranked, row, strict=True))
            continue
        found[key] = {}
        for r, up, offset in zip(ranked, ascending, offsets, strict=True):
            lookups.append((key, r, f"{read} LIMIT 1 OFFSET ?" if up else f"{read} DESC LIMIT 1 OFFSET ?",
                            [*params, offset]))
    costs = _read_all(execute, [(text, params) for _, _, text, params in lookups], in_process)
    for (key, r, _, _), (cost,) in zip(lookups, costs, strict=True):  # (each statement: LIMIT 1)
        found[key][r] = cost
    return found


def _index_entries(
    values: dict[str, Any], kind: str | None, outcome: str | None, column_of_bucket: str, in_process: bool,
    per_model: str | None,
) -> tuple[str, str, list[Any]] | None:
    """(the cost column, ``FROM <table> WHERE <conditions>``, its parameters): a
    group's entries (``values``: its key by name) in the index that holds them in cost order after
    ``column_of_bucket`` ("" for none; the bucket's own condition is the caller's); None for the group
    of tasks without calls (each costs 0)."""
    of_outcome = "outcome" in values or outcome is not None
    label = values.get("outcome", outcome)
    # (a task without an outcome has no label: the group of those is the NULL one)
    conditions, params = ([] if not of_outcome else ["outcome_label IS NULL"] if label is None
                          else ["outcome_label = ?"]), ([] if label is None else [label])
    table_of = ""
    if PART in values:
        if values[PART] is None:
            return None
        params.insert(0, values[PART])
        if per_model == "provider":
            # (one entry a (task, provider): on its first model's row)
            conditions[:0] = ["provider = ?", "provider_cost_pico IS NOT NULL"]
            column, table = "provider_cost_pico", "task_model_rollup"
            if in_process:  # (SQLite: the partial index is taken only when named)
                table_of = f" INDEXED BY {PROVIDER_INDEXES[column_of_bucket]}"
        else:
            conditions.insert(0, "model = ?")
            column, table = "cost_pico", "task_model_rollup"
        of_kind = values.get("kind", kind)
        if of_kind is not None:
            conditions.append("task_kind = ?")
            params.append(of_kind)
            if in_process and per_model != "provider":  # (SQLite would rather take the table's key)
                table_of = f" INDEXED BY {MODEL_INDEXES[column_of_bucket]}"
    else:
        column, table = "task_cost_pico", "task_rollup"
        of_kind = values.get("kind", kind)
        if of_kind is not None:
            conditions.append("kind = ?")
            params.append(of_kind)
        if of_outcome and in_process:
            # (SQLite would rather take the kind's index, with an equality on it too, and read each
            # entry's row for its outcome)
            table_of = f" INDEXED BY {OUTCOME_INDEXES[column_of_bucket]}"
    return column, f"FROM {table}{table_of} WHERE {' AND '.join(conditions)}", params


def _task_filter(kind: str | None, outcome: str | None, since_ns: int | None, until_ns: int | None,
                 days_out: tuple[int, int] | None = None) -> tuple[str, list[Any]]:
    """Conditions over a task_rollup row `t`, and their parameters; ``days_out``: the tasks of these
    days (first, last) left out."""
    conditions: list[str] = []
    params: list[Any] = []
    for condition, value in (("t.kind = ?", kind), ("t.outcome_label = ?", outcome)):
        if value is not None:
            conditions.append(condition)
            params.append(value)
    window, window_params = window_sql(since_ns, until_ns)
    window_params = [*window_params]
    if days_out is not None:
        window.append("(t.start_day < ? OR t.start_day > ?)")
        window_params.extend(days_out)
    return " AND ".join([*conditions, *window]) or "true", [*params, *window_params]


DAY_NS = 86_400 * 10**9
# How far from midnight a task's start_day may put it (`unitcost.store.rollups.day_sql` rounds a start
# to the microsecond through a float: ~1 us at most): a window's edge days are looked for this far in.
_EDGE_NS = 10**9


def _inner_days(execute: Callable[..., Any], since_ns: int | None, until_ns: int | None,
                ) -> tuple[tuple[int, int], list[tuple[int, int]]] | None:
    """((first, last): the whole days in [``since_ns``, ``until_ns``), those whose every task started in
    it, by their start_day; [(from, to)]: the spans of ns (at most two, at the window's edges) where
    the window's other tasks started), or None: no whole day, or a task started before 1970 (its
    start_day is not its day), or some task of those days started out of the window (start_day rounds
    a start within a microsecond of midnight to the next day)."""
    first = 0 if since_ns is None else max(0, -(-since_ns // DAY_NS))
    last = 10**7 if until_ns is None else min(10**7, until_ns // DAY_NS - 1)  # (10**7 days: past year 2262)
    if first > last or execute("SELECT MIN(started_ns) < 0 FROM task_rollup").fetchone()[0]:
        return None
    outside = []
    if since_ns is not None:
        outside.append(("t.start_day >= ?", [_int64(since_ns - _EDGE_NS), since_ns, first]))
    if until_ns is not None:
        outside.append(("t.start_day <= ?", [until_ns, _int64(until_ns + _EDGE_NS), last]))
    for condition, params in outside:
        if execute("SELECT EXISTS (SELECT 1 FROM task_rollup t WHERE t.started_ns >= ? AND t.started_ns < ? "
                   f"AND {condition})", params).fetchone()[0]:
            return None
    # (a task of an earlier day started before the first whole day's first second; of a later day,
    # after the last whole day's last second)
    lower, upper = _int64(first * DAY_NS + _EDGE_NS), (last + 1) * DAY_NS - _EDGE_NS
    edges = []
    if since_ns is not None:
        edges.append((since_ns, lower if until_ns is None else min(until_ns, lower)))
    if until_ns is not None:
        edges.append((upper, until_ns))
    return (first, last), [(a, b) for a, b in edges if a < b]


def _int64(value: int) -> int:
    return max(-(2**63), min(value, 2**63 - 1))


def _added(width: int, rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """Rows of counts and sums by group (the key: the first ``width`` columns) added by group."""
    found: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        key = tuple(row[:width])
        if key in found:
            found[key] = [None if a is None and b is None else (a or 0) + (b or 0)
                          for a, b in zip(found[key], row[width:], strict=True)]
        else:
            found[key] = list(row[width:])
    return [[*key, *sums] for key, sums in found.items()]


def _ranked_in_window(
    execute: Callable[..., Any], order: Sequence[str], groups: list[tuple[tuple[Any, ...], int, set[int]]],
    kind: str | None, outcome: str | None, bucket_at: tuple[str, dict[str, int]], days_of: dict[str, list[int]],
    inner: tuple[tuple[int, int], list[tuple[int, int]]], in_process: bool, per_model: str | None,
    with_cte: str, cte_params: list[Any], split: bool,
) -> dict[tuple[Any, ...], dict[int, int]]:
    """{group key: {rank: cost}} in a time window (`_inner_days`): a group whose bucket's days are all
    whole days of the window is ranked as without the window (`_ranked_from_index`); another's entries
    are those of the window's whole days, ranked in their per-day, per-week and per-month indexes
    (`_ranked_over_days`: no task row read), and those of the tasks of its edges, read from their rows."""
    (first, last), edges = inner
    whole: list[tuple[tuple[Any, ...], int, set[int]]] = []
    cut: list[tuple[tuple[Any, ...], int, set[int]]] = []
    for group in groups:
        label = dict(zip(order, group[0], strict=True)).get("bucket")
        days = days_of.get(label, []) if label is not None else []
        (whole if days and first <= min(days) and max(days) <= last else cut).append(group)
    found = _ranked_from_index(execute, order, whole, kind, outcome, bucket_at, in_process, per_model)
    if not cut:
        return found
    at_edges: dict[tuple[Any, ...], list[int]] = {}
    for lower, upper in edges:
        for key, costs in _entry_costs(execute, order, per_model, kind, outcome, lower, upper, with_cte, cte_params,
                                       split, (first, last)).items():
            at_edges.setdefault(tuple(key), []).extend(costs)
    # (each group's entries on each whole day: its tasks there, or by model or provider its (task, part)s)
    on_days: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
    width = len(order)
    for row in _counted_from_days(execute, [*order, "day"], per_model, kind, outcome, with_cte, cte_params,
                                  (first, last)):
        if row[width + 1]:
            on_days.setdefault(tuple(row[:width]), []).append((row[width], row[width + 1]))
    for key, n, ranks in cut:
        values = dict(zip(order, key, strict=True))
        entries = {column: _index_entries(values, kind, outcome, column, in_process, per_model)
                   for column in _BUCKET_OF_DAY}
        if entries["start_day"] is None:  # the tasks without calls: each costs 0 here
            found[key] = dict.fromkeys(ranks, 0)
            continue
        # (the days whose entries it may read by week or month: the window's whole days in its bucket)
        days = days_of[values["bucket"]] if "bucket" in values else [first, last]
        found[key] = _ranked_over_days(execute, entries, sorted(on_days.get(key, [])),
                                       (max(first, min(days)), min(last, max(days))), at_edges.get(key, []), n,
                                       ranks, in_process)
    return found


def _runs(counts: list[tuple[int, int]], allowed: tuple[int, int]) -> list[tuple[str, int, int]]:
    """(bucket column, its value, entries): the days of ``counts`` ((day, its entries)) as whole months
    and whole weeks where those lie in ``allowed`` (first, last day), else as days."""
    first, last = allowed

    def whole_month(day: int) -> bool:
        month = month_of_day(day)
        begins = (date(month // 12, month % 12 + 1, 1) - _EPOCH).days
        ends = (date(month // 12 + (month % 12 == 11), (month + 1) % 12 + 1, 1) - _EPOCH).days - 1
        return first <= begins and ends <= last

    runs: dict[tuple[str, int], int] = {}
    for day, count in counts:
        week = week_of_day(day)
        # (a week, when none of its days is in a whole month: each entry in one run)
        run = (("start_month", month_of_day(day)) if whole_month(day)
               else ("start_week", week) if first <= week and week + 6 <= last
               and not whole_month(week) and not whole_month(week + 6) else ("start_day", day))
        runs[run] = runs.get(run, 0) + count
    return [(column, value, count) for (column, value), count in runs.items()]


_EPOCH = date(1970, 1, 1)


def _ranked_over_days(
    execute: Callable[..., Any], entries: dict[str, tuple[str, str, list[Any]] | None],
    counts: list[tuple[int, int]], allowed: tuple[int, int], others: list[int], n: int, ranks: set[int],
    in_process: bool,
) -> dict[int, int]:
    """{rank: cost} among a group's ``n`` entries: those of its indexes (``entries``: `_index_entries`
    by bucket column) on the days of ``counts`` ((day, its entries), by day; none for a bucket of the
    window's edge days), and ``others``; each rank read from the indexes, no entry read but a few
    around it. ``allowed`` (first, last day): where whole weeks and months may be read by their index.

    The days' entries are runs in cost order (a whole month's or week's in its index, `_runs`, else a
    day's), and so are ``others`` once sorted. For the r-th of all, each run's entries at ranks i and
    i + 1, i = r * (its entries) // n, are read at their place: the r-th lies between the least of the
    first and the greatest of the second (fewer than r entries are below the one, at least r at or
    below the other). Those below the bracket are counted and those in it read (one statement each,
    the days joined to the per-day index: each day's entries entered at the bracket), and the r-th is
    found among them."""
    day_entries = entries["start_day"]
    if day_entries is None:  # (said again for mypy: the caller ranks those without calls)
        return dict.fromkeys(ranks, 0)
    column, where, params = day_entries
    others = sorted(others)
    if sum(count for _, count in counts) + len(others) != n:
        raise Unfit("a window's entries and its count differ")
    if not counts:
        return {r: others[r - 1] for r in ranks}
    on_days = f"WITH dd (d) AS (VALUES {', '.join('(?)' for _ in counts)}) SELECT {{}} FROM dd CROSS JOIN " + \
        where.removeprefix("FROM ") + " AND start_day = dd.d"
    day_params = [day for day, _ in counts]
    found = {}
    for r in ranks:
        # (1-based ranks a <= b of each run, and the statements that read them at their place, from the
        # nearer end)
        lookups: list[tuple[str, list[Any]]] = []
        for bucket_column, value, count in _runs(counts, allowed):
            i = r * count // n
            a, b = max(1, i), min(count, i + 1)
            ascending = a - 1 <= count - b
            _, run_where, run_params = entries[bucket_column] or day_entries
            lookups.append((f"SELECT {column} AS c {run_where} AND {bucket_column} = ? ORDER BY {column}"
                            f"{'' if ascending else ' DESC'} LIMIT ? OFFSET ?",
                            [*run_params, value, b - a + 1, a - 1 if ascending else count - b]))
        read = _read_all(execute, lookups, in_process)
        low, high = min(min(costs) for costs in read), max(max(costs) for costs in read)
        if others:
            i = r * len(others) // n
            low, high = min(low, others[max(1, i) - 1]), max(high, others[min(len(others), i + 1) - 1])
        # (the entries below the bracket, counted from the nearer end)
        if r <= n - r:
            below = execute(on_days.format("COUNT(*)") + f" AND {column} < ?", [*day_params, *params, low])
            below_count = below.fetchone()[0]
        else:
            at_or_above = execute(on_days.format("COUNT(*)") + f" AND {column} >= ?", [*day_params, *params, low])
            below_count = sum(count for _, count in counts) - at_or_above.fetchone()[0]
        below_count += bisect_left(others, low)
        if low == high:  # (a bracket of one value, often many entries alike: counted, not read)
            in_bracket = execute(on_days.format("COUNT(*)") + f" AND {column} = ?", [*day_params, *params, low])
            bracket = [low] * (in_bracket.fetchone()[0] + bisect_right(others, high) - bisect_left(others, low))
        else:
            bracket = [c for (c,) in execute(on_days.format(column) + f" AND {column} >= ? AND {column} <= ?",
                                             [*day_params, *params, low, high])]
            bracket += others[bisect_left(others, low):bisect_right(others, high)]
            bracket.sort()
        if not below_count < r <= below_count + len(bracket):
            raise Unfit("a rank out of its bracket")
        found[r] = bracket[r - below_count - 1]
    return found


def _read_all(execute: Callable[..., Any], lookups: list[tuple[str, list[Any]]], in_process: bool,
              ) -> list[list[Any]]:
    """Each statement's first column's values: SQLite runs each (prepared once, ~35 us a run: a compound
    costs more to prepare than to run in process), a server a few hundred in one compound (one round trip)."""
    if in_process:
        return [[c for (c,) in execute(text, params)] for text, params in lookups]
    found: list[list[Any]] = [[] for _ in lookups]
    for chunk in range(0, len(lookups), 200):  # (SQLite takes up to 500 SELECTs in one compound)
        some = lookups[chunk : chunk + 200]
        statement = " UNION ALL ".join(f"SELECT {i} AS i, s{i}.c FROM ({text}) AS s{i}"
                                       for i, (text, _) in enumerate(some))
        for i, cost in execute(statement, [p for _, params in some for p in params]):
            found[chunk + i].append(cost)
    return found


def window_sql(since_ns: int | None, until_ns: int | None) -> tuple[list[str], list[int]]:
    """Conditions over a task_rollup row `t` keeping the tasks started in [since, until), and their
    parameters. A window open at one end is closed at the integers' end: SQLite without statistics
    guesses a one-sided range keeps a quarter of the rows and would rather walk an index in group
    order, reading every task, than find the window's tasks by task_rollup_started (150 ms against
    0.1 ms for a week past the store's end on 100,000 tasks)."""
    if since_ns is None and until_ns is None:
        return [], []
    upper = ("t.started_ns <= ?", 2**63 - 1) if until_ns is None else ("t.started_ns < ?", until_ns)
    return ["t.started_ns >= ?", upper[0]], [-(2**63) if since_ns is None else since_ns, upper[1]]


# Of the per-day rows `d` (rollup_days, and attribute_days, which has the same columns): a group's
# outcome, and what `group_rows` counts and sums of them, in its order.
DAY_OUTCOME_SQL = "CASE WHEN d.state = 0 THEN NULL ELSE d.outcome_label END"
DAY_COUNTS_SQL = (
    "SUM(d.tasks), SUM(d.runs), SUM(CASE WHEN d.state = 1 THEN d.tasks ELSE 0 END), "
    "SUM(CASE WHEN d.state = 2 THEN d.tasks ELSE 0 END), SUM(d.value_pico), "
    "SUM(CASE WHEN d.state = 2 THEN d.entry_cost_pico ELSE 0 END), SUM(d.tool_calls), SUM(d.step_blocks), "
    "SUM(d.tool_cost_pico), SUM(d.runtime_cost_pico)" + "".join(f", SUM(d.{c})" for c in SUM_COLUMNS)
)


def day_filters(kind: str | None, outcome: str | None, days: tuple[int, int] | None) -> tuple[list[str], list[Any]]:
    """(conditions, parameters) keeping the per-day rows `d` of a kind, of an outcome, of days [first, last]."""
    conditions: list[str] = []
    params: list[Any] = []
    if kind is not None:
        conditions.append("d.kind = ?")
        params.append(kind)
    if outcome is not None:
        conditions.append("d.state <> 0 AND d.outcome_label = ?")
        params.append(outcome)
    if days is not None:
        conditions.append("d.start_day >= ? AND d.start_day <= ?")
        params.extend(days)
    return conditions, params


def _counted_from_days(
    execute: Callable[..., Any], order: Sequence[str], per_model: str | None, kind: str | None,
    outcome: str | None, with_cte: str, cte_params: list[Any], days: tuple[int, int] | None = None,
) -> list[Any]:
    columns = {"bucket": "b.label", "kind": "d.kind", "day": "d.start_day", "outcome": DAY_OUTCOME_SQL,
               PART: "CASE WHEN d.has_part = 1 THEN d.part END"}
    g = [columns[k] for k in order]
    conditions, params = day_filters(kind, outcome, days)
    return execute(  # type: ignore[no-any-return]
        f"{with_cte}SELECT {''.join(f'{c}, ' for c in g)}{DAY_COUNTS_SQL}"
        + " FROM rollup_days d" + (" JOIN b ON b.day = d.start_day" if with_cte else "")
        + f" WHERE {' AND '.join(['d.part_kind = ?', *conditions])}" + (f" GROUP BY {', '.join(g)}" if g else ""),
        [*cte_params, per_model or "", *params],
    ).fetchall()


_STATE = "CASE WHEN t.outcome_id IS NULL THEN 0 WHEN t.outcome_success <> 0 THEN 1 ELSE 2 END"


def _task_groups(order: Sequence[str], windowed: bool) -> list[str]:
    columns = {"bucket": "b.label", "kind": "t.kind", "outcome": "t.outcome_label", PART: "p.part"}
    if windowed:
        # A window's tasks are found by task_rollup_started: each one's bucket is then looked up
        # from its row (SQLite joined the buckets first and walked the window once per day: 340 ms
        # against 50 ms for a week of 100,000 tasks). Over every task the join is the faster.
        columns["bucket"] = "(SELECT b.label FROM b WHERE b.day = t.start_day)"
    return [columns[k] for k in order]


def _bucket_join(with_cte: str, windowed: bool) -> str:
    """The join of the buckets' table `b` to a task row `t` (none when looked up, see `_task_groups`)."""
    return " JOIN b ON b.day = t.start_day" if with_cte and not windowed else ""


def _parts_sql(per_model: str, wide: bool, split: bool) -> str:
    """One row a (task, part): task_model_rollup's rows as they are when each (task, model) is one
    row, else summed by task and part. (By provider, `_counted_from_tasks` reads the rows as they are.)"""
    if not split and per_model == "model":
        return "task_model_rollup"
    sums = "".join(f", SUM({c}) AS {c}" for c in SUM_COLUMNS) if wide else ", SUM(cost_pico) AS cost_pico"
    return (f"(SELECT task_kind, task_key, {per_model} AS {per_model}{sums} FROM task_model_rollup "
            f"GROUP BY task_kind, task_key, {per_model})")


def _counted_from_tasks(
    execute: Callable[..., Any], order: Sequence[str], per_model: str | None, kind: str | None,
    outcome: str | None, since_ns: int | None, until_ns: int | None, with_cte: str, cte_params: list[Any],
    split: bool, days_out: tuple[int, int] | None = None,
) -> list[Any]:
    condition, params = _task_filter(kind, outcome, since_ns, until_ns, days_out)
    windowed = since_ns is not None or until_ns is not None
    g = _task_groups(order, windowed)
    bucket_join = _bucket_join(with_cte, windowed)
    # (n: 1 for an entry that counts its task in the group. By provider, the per-model rows are read as
    # they are, the task counted on its provider's first model's row only: summing them by task and
    # provider first took a sub-select over every task's rows whatever the window)
    task = "{n} AS n, t.runs * {n} AS runs, " + _STATE + " AS state, COALESCE(t.outcome_value_pico, 0) * {n} AS value"
    picked = "".join(f"{c} AS g{i}, " for i, c in enumerate(g))
    if per_model is None:
        entries = (
            f"SELECT {picked}t.cost_pico + t.tool_cost_pico + t.runtime_cost_pico AS cost, {task.format(n=1)}, "
            "t.tool_calls AS tools, t.step_blocks AS blocks, t.tool_cost_pico AS tcost, t.runtime_cost_pico AS rcost"
            + "".join(f", t.{c} AS {c}" for c in SUM_COLUMNS) + f" FROM task_rollup t{bucket_join} WHERE {condition}"
        )
        entry_params = params
        tools = "SUM(tools), SUM(blocks), SUM(tcost), SUM(rcost)"
    else:
        none = picked.replace("p.part", "NULL")
        parts, first = ((_parts_sql(per_model, True, split), "1") if per_model == "model"
                        else ("task_model_rollup", "CASE WHEN provider_cost_pico IS NULL THEN 0 ELSE 1 END"))
        entries = (
            f"SELECT {picked}p.cost_pico AS cost, {task.format(n='p.n')}"
            + "".join(f", p.{c} AS {c}" for c in SUM_COLUMNS)
            + f" FROM (SELECT task_kind, task_key, {per_model} AS part, {first} AS n"
            + "".join(f", {c}" for c in SUM_COLUMNS)
            + f" FROM {parts} AS m) p JOIN task_rollup t ON t.task_kind = p.task_kind "
            f"AND t.task_key = p.task_key{bucket_join} WHERE {condition}"
            f" UNION ALL SELECT {none}0 AS cost, {task.format(n=1)}" + "".join(f", 0 AS {c}" for c in SUM_COLUMNS)
            + f" FROM task_rollup t{bucket_join} WHERE t.runs_with_calls = 0 AND {condition}"
        )
        entry_params = [*params, *params]
        tools = "0, 0, 0, 0"
    group_by = ", ".join(f"g{i}" for i in range(len(g)))
    return execute(  # type: ignore[no-any-return]
        f"{with_cte}SELECT {group_by}{', ' if g else ''}SUM(n), SUM(runs), "
        "SUM(CASE WHEN state = 1 THEN n ELSE 0 END), SUM(CASE WHEN state = 2 THEN n ELSE 0 END), SUM(value), "
        f"SUM(CASE WHEN state = 2 THEN cost ELSE 0 END), {tools}" + "".join(f", SUM({c})" for c in SUM_COLUMNS)
        + f" FROM ({entries}) e" + (f" GROUP BY {group_by}" if g else ""),
        [*cte_params, *entry_params],
    ).fetchall()


def _entry_costs(
    execute: Callable[..., Any], order: Sequence[str], per_model: str | None, kind: str | None,
    outcome: str | None, since_ns: int | None, until_ns: int | None, with_cte: str, cte_params: list[Any],
    split: bool, days_out: tuple[int, int] | None = None,
) -> dict[tuple[Any, ...], list[int]]:
    """Each group's entry costs (a task's whole cost; by model or provider, each (task, part)'s LLM cost),
    read narrow and ranked in Python: a sort of 100k integers there costs less than SQL's window functions."""
    condition, params = _task_filter(kind, outcome, since_ns, until_ns, days_out)
    windowed = since_ns is not None or until_ns is not None
    g = _task_groups(order, windowed)
    bucket_join = _bucket_join(with_cte, windowed)
    lead = "".join(f"{c}, " for c in g)
    if per_model is None:
        statements = [(f"SELECT {lead}t.cost_pico + t.tool_cost_pico + t.runtime_cost_pico "
                       f"FROM task_rollup t{bucket_join} WHERE {condition}", params)]
    else:
        parts = (_parts_sql(per_model, False, split) if per_model == "model" else
                 "(SELECT task_kind, task_key, provider, provider_cost_pico AS cost_pico FROM task_model_rollup "
                 "WHERE provider_cost_pico IS NOT NULL)")
        needs_task = with_cte or condition != "true" or any(k != PART for k in order)
        if needs_task:
            read = (f"SELECT {lead}p.cost_pico FROM (SELECT task_kind, task_key, {per_model} AS part, cost_pico "
                    f"FROM {parts} AS m) p JOIN task_rollup t ON t.task_kind = p.task_kind AND t.task_key = p.task_key"
                    f"{bucket_join} WHERE {condition}")
        else:  # (by model or provider alone: the per-model rows are all it needs)
            read = f"SELECT {per_model}, cost_pico FROM {parts} AS m"
        statements = [
            (read, params),
            (f"SELECT {lead.replace('p.part', 'NULL')}0 FROM task_rollup t{bucket_join} "
             f"WHERE t.runs_with_calls = 0 AND {condition}", params),
        ]
    costs: dict[tuple[Any, ...], list[int]] = {}
    width = len(g)
    for sql_text, statement_params in statements:
        for row in execute(f"{with_cte}{sql_text}", [*cte_params, *statement_params]):
            key = row[:width]
            found = costs.get(key)
            if found is None:
                costs[key] = [row[width]]
            else:
                found.append(row[width])
    return costs


def outside_sums(execute: Callable[..., Any]) -> tuple[int, list[int]]:
    """How many runs with calls belong to no stored run (their task span never arrived), and their
    sums: none when every run_sums row is a stored run's (the rollups count those)."""
    stored = execute("SELECT COALESCE(SUM(runs_with_calls), 0) FROM rollup_days WHERE part_kind = ''").fetchone()[0]
    if execute("SELECT COUNT(*) FROM run_sums").fetchone()[0] == stored:
        return 0, [0] * len(SUM_COLUMNS)
    row = execute(
        f"SELECT COUNT(*), {', '.join(f'COALESCE(SUM(s.{c}), 0)' for c in SUM_COLUMNS)} FROM run_sums s "
        "WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = s.run_id)"
    ).fetchone()
    return row[0], list(row[1:])
