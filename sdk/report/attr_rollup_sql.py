"""Reports by or filtered by a task attribute, read from the task attributes' rollups
(`unitcost.store.attr_rollups`, m020): one text for SQLite and PostgreSQL.

A report that groups by one task attribute (with kind, outcome and a time bucket) or keeps one value of
it, filtered by kind, outcome and a time window, needs of each task its merged value of that attribute
(``task_attributes``, as the Python engine keys it) and what ``task_rollup`` holds. So:

- the groups' counts and sums come from ``attribute_days`` (by value, kind, day, outcome) over whole
  days; the tasks without a value (the ``None`` group) are every task's counts (``rollup_days``) less
  those. A window that does not fall on whole days is counted from the task rows (``task_rollup`` joined
  to the task's value);
- the percentiles from the tasks' costs: a value's ranked costs read at their place in the
  (name, value, cost) index when nothing else splits the group, else the kept tasks' costs read from
  ``task_attributes`` (the ``None`` group's from ``task_rollup``) and ranked here.

Requests and stores it does not take raise `Unfit` (the caller then merges every run's attributes,
`unitcost.report.sql` or the Python engine): a task whose attributes the rollup does not hold (see
`unitcost.store.attr_rollups`), rollups still marked dirty, a task identity of kind '' that meets a run
id, a task started before 1970 in a bucketed report, and anything but one attribute name.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from ..store.attr_rollups import UNFIT_NAME
from ..store.rollups import SUM_COLUMNS, is_dirty
from .rollup_sql import DAY_COUNTS_SQL, DAY_OUTCOME_SQL, day_filters
from .sql import ODD_TASK_IDENTITIES_SQL, Unfit, nearest_rank

__all__ = ["ATTRIBUTE", "group_rows", "known_names"]

# The attribute among a report's group keys (the others: "bucket", "kind", "outcome").
ATTRIBUTE = "attribute"
DAY_NS = 86_400 * 10**9
_STATE = "CASE WHEN t.outcome_id IS NULL THEN 0 WHEN t.outcome_success <> 0 THEN 1 ELSE 2 END"
_WIDTH = 10  # counts before the sums: tasks, runs, succeeded, failed, value, wasted, tools, blocks, costs


def known_names(execute: Callable[..., Any]) -> set[str]:
    """Every attribute name some task has (each found by the name index: a few statements); Unfit when
    some task's attributes are not held (see `unitcost.store.attr_rollups`) or the rollups are dirty."""
    if is_dirty(execute):
        raise Unfit("rollups not current")
    names: set[str] = set()
    last = None
    while True:
        (name,) = execute("SELECT MIN(name) FROM task_attributes" + ("" if last is None else " WHERE name > ?"),
                          [] if last is None else [last]).fetchone()
        if name is None:
            break
        names.add(name)
        last = name
    if UNFIT_NAME in names:
        raise Unfit("a task's attributes not held by the rollup")
    return names


def group_rows(
    execute: Callable[..., Any],
    *,
    name: str,
    keys: Sequence[str],
    value: str | None,
    kind: str | None,
    outcome: str | None,
    since_ns: int | None,
    until_ns: int | None,
    percentiles: Sequence[int],
    bucket: Callable[[int], str] | None = None,
    in_process: bool = False,
    only: Collection[tuple[Any, ...]] | None = None,
) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """(group key, its counts, sums and ranked costs) for each group of kept tasks, as
    `unitcost.report.rollup_sql.group_rows` (``only``: the groups wanted, the others not ranked).

    ``keys``: `ATTRIBUTE` (the task's value of attribute ``name``), "kind" or "outcome", in the report's
    order; ``bucket`` (ns -> label) puts the task's time bucket first. The tasks kept: whose value of
    ``name`` is ``value`` (when not None), of ``kind``, with the outcome ``outcome``, started in
    [``since_ns``, ``until_ns``)."""
    if is_dirty(execute):
        raise Unfit("rollups not current")
    if execute(ODD_TASK_IDENTITIES_SQL).fetchone()[0]:
        raise Unfit("task identities of kind ''")
    before_1970 = bool(execute("SELECT COALESCE(MIN(started_ns), 0) < 0 FROM task_rollup").fetchone()[0])
    if bucket is not None and before_1970:
        raise Unfit("a task started before 1970")
    label_of: dict[int, str] = {}
    if bucket is not None:
        # (each day named once, time_bucket's label of its midnight)
        label_of = {d: bucket(d * DAY_NS) for (d,) in execute("SELECT DISTINCT start_day FROM rollup_days")}
        if not label_of:
            return
    order = (["bucket"] if bucket is not None else []) + list(keys)
    width = len(order)
    windowed = since_ns is not None or until_ns is not None
    days_range = None if not windowed or before_1970 else _whole_days(execute, since_ns, until_ns)
    if windowed and days_range is None:
        counted = _counted_from_tasks(execute, name, order, value, kind, outcome, since_ns, until_ns, label_of)
    else:
        counted = _counted_from_days(execute, name, order, value, kind, outcome, days_range, label_of)
    counted = [row for row in counted if row[width]]
    if only is not None:
        counted = [row for row in counted if tuple(row[1 if bucket is not None else 0:width]) in only]
    # The ranked costs.
    groups = {tuple(row[:width]): row[width] for row in counted}
    at = order.index(ATTRIBUTE) if ATTRIBUTE in order else None
    valued = {key: n for key, n in groups.items() if at is None or key[at] is not None}
    whole_days = not windowed or days_range is not None
    if in_process and at is not None and (
        (not windowed and "bucket" not in order) or (set(order) <= {ATTRIBUTE, "bucket"} and whole_days)
    ):
        # (the groups with a value from the indexes: at their place, or every cost in the day index's order)
        if not windowed and "bucket" not in order:
            ranked = _ranked_from_index(execute, name, order, valued, kind, outcome, percentiles)
        else:
            ranked = _ranked_in_order(execute, name, order, valued, value, kind, outcome, days_range, label_of,
                                      percentiles, some_values=only is not None)
        rest = {key: n for key, n in groups.items() if key not in valued}
        if rest:
            ranked.update(_ranked_from_costs(execute, name, order, rest, value, kind, outcome, since_ns,
                                             until_ns, label_of, percentiles, values=False))
    else:
        ranked = _ranked_from_costs(execute, name, order, groups, value, kind, outcome, since_ns, until_ns,
                                    label_of, percentiles, in_process=in_process)
    for row in counted:
        key = tuple(row[:width])
        n, runs, succeeded, failed, value_pico, wasted, tools, blocks, tcost, rcost, *sums = row[width:]
        yield key, {
            "tasks": n, "runs": runs, "succeeded": succeeded, "failed": failed,
            "no_outcome": n - succeeded - failed, "value_pico": value_pico, "wasted_pico": wasted,
            "tool_calls": tools, "step_blocks": blocks, "tool_cost_pico": tcost, "runtime_cost_pico": rcost,
            "ranked": ranked[key], "sums": [v or 0 for v in sums],
        }


def _whole_days(execute: Callable[..., Any], since_ns: int | None, until_ns: int | None) -> tuple[int, int] | None:
    """(first, last) day of a window that begins and ends at midnights (or is open), whose tasks are those
    of those start days: none started out of it within a second of its edges whose start_day rounds into
    it (a start within half a microsecond of midnight counts on the next day); else None."""
    if (since_ns is not None and since_ns % DAY_NS) or (until_ns is not None and until_ns % DAY_NS):
        return None
    first = 0 if since_ns is None else since_ns // DAY_NS
    last = 10**7 if until_ns is None else until_ns // DAY_NS - 1
    if first > last:
        return None
    for edge in (since_ns, until_ns):
        if edge is not None and execute(
            "SELECT EXISTS (SELECT 1 FROM task_rollup t WHERE t.started_ns >= ? AND t.started_ns < ? "
            "AND t.start_day >= ?)", [edge - 10**9, edge, edge // DAY_NS],
        ).fetchone()[0]:
            return None
    return first, last


def _sums_sql(alias: str) -> str:
    return "".join(f", SUM({alias}.{c})" for c in SUM_COLUMNS)


def _counted_from_days(
    execute: Callable[..., Any], name: str, order: Sequence[str], value: str | None, kind: str | None,
    outcome: str | None, days: tuple[int, int] | None, label_of: dict[int, str],
) -> list[list[Any]]:
    """Each group's counts and sums (the key first) from the per-day rows: the values' from
    attribute_days, and unless one value is kept, the tasks' without a value as every task's
    (rollup_days) less those. (Summed by day in SQL, in the table's key order; the days of a week or
    month added here.)"""
    columns = {"bucket": "d.start_day", "kind": "d.kind", ATTRIBUTE: "d.value", "outcome": DAY_OUTCOME_SQL}
    conditions, params = day_filters(kind, outcome, days)

    def read(table: str, first: list[str], more: list[Any], names: Sequence[str]) -> list[list[Any]]:
        g = [columns[k] for k in names]
        # (grouped in attribute_days' key order: value, day, kind, outcome)
        grouping = [columns[k] for k in (ATTRIBUTE, "bucket", "kind", "outcome") if k in names]
        where = " AND ".join([*first, *conditions]) or "true"
        rows = execute(
            f"SELECT {''.join(f'{c}, ' for c in g)}{DAY_COUNTS_SQL} FROM {table} d WHERE {where}"
            + (f" GROUP BY {', '.join(grouping)}" if g else ""),
            [*more, *params],
        ).fetchall()
        return _by_label(rows, names, label_of)

    at = order.index(ATTRIBUTE) if ATTRIBUTE in order else None
    valued = read("attribute_days", ["d.name = ?", *([] if value is None else ["d.value = ?"])],
                  [name, *([] if value is None else [value])], order)
    if at is None:
        if value is None:
            raise Unfit("no attribute in the request")  # (the caller sends such a request elsewhere)
        return valued
    if value is not None:
        return valued
    # The tasks without a value: every task's counts less the values' (none when they are as many).
    every_task = read("rollup_days", ["d.part_kind = ''"], [], [])
    if (every_task[0][0] or 0) == sum(row[len(order)] for row in valued):
        return valued
    rest = [k for k in order if k != ATTRIBUTE]
    width = len(rest)
    totals = {tuple(row[:width]): row[width:] for row in read("rollup_days", ["d.part_kind = ''"], [], rest)}
    for row in valued:
        other = tuple(row[:at] + row[at + 1 : len(order)])
        total = totals.get(other)
        if total is None:
            raise Unfit("a value's tasks not among every task's")
        totals[other] = [(a or 0) - (b or 0) for a, b in zip(total, row[len(order):], strict=True)]
    for other, left in totals.items():
        if left[0]:
            valued.append([*other[:at], None, *other[at:], *left])
    return valued


def _by_label(rows: Sequence[Sequence[Any]], names: Sequence[str], label_of: dict[int, str]) -> list[list[Any]]:
    """Rows of counts and sums whose "bucket" is a day (a column of ``names``, the key's): the day named
    by its bucket's label, and the rows of one key added."""
    if "bucket" not in names:
        return [list(row) for row in rows]
    at = names.index("bucket")
    width = len(names)
    found: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        key = (*row[:at], label_of[row[at]], *row[at + 1 : width])
        was = found.get(key)
        found[key] = list(row[width:]) if was is None else [
            None if a is None and b is None else (a or 0) + (b or 0) for a, b in zip(was, row[width:], strict=True)]
    return [[*key, *sums] for key, sums in found.items()]


def _counted_from_tasks(
    execute: Callable[..., Any], name: str, order: Sequence[str], value: str | None, kind: str | None,
    outcome: str | None, since_ns: int | None, until_ns: int | None, label_of: dict[int, str],
) -> list[list[Any]]:
    """Each group's counts and sums (the key first) from the window's task rows, each joined to its value."""
    columns = {"bucket": "t.start_day", "kind": "t.kind",
               "outcome": "t.outcome_label", ATTRIBUTE: "a.value"}
    g = [columns[k] for k in order]
    conditions, params = _task_conditions("t", kind, outcome, since_ns, until_ns)
    if value is not None:
        conditions.append("a.value = ?")
        params.append(value)
    return _by_label(execute(
        f"SELECT {''.join(f'{c}, ' for c in g)}COUNT(*), SUM(t.runs), SUM(CASE WHEN {_STATE} = 1 THEN 1 "
        f"ELSE 0 END), SUM(CASE WHEN {_STATE} = 2 THEN 1 ELSE 0 END), SUM(COALESCE(t.outcome_value_pico, 0)), "
        f"SUM(CASE WHEN {_STATE} = 2 THEN t.task_cost_pico ELSE 0 END), SUM(t.tool_calls), SUM(t.step_blocks), "
        f"SUM(t.tool_cost_pico), SUM(t.runtime_cost_pico){_sums_sql('t')} FROM task_rollup t "
        "LEFT JOIN task_attributes a ON a.task_kind = t.task_kind AND a.task_key = t.task_key AND a.name = ? "
        f"WHERE {' AND '.join(conditions) or 'true'}" + (f" GROUP BY {', '.join(g)}" if g else ""),
        [name, *params],
    ).fetchall(), order, label_of)


def _task_conditions(alias: str, kind: str | None, outcome: str | None, since_ns: int | None,
                     until_ns: int | None) -> tuple[list[str], list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    for condition, given in ((f"{alias}.kind = ?", kind), (f"{alias}.outcome_label = ?", outcome),
                             (f"{alias}.started_ns >= ?", since_ns), (f"{alias}.started_ns < ?", until_ns)):
        if given is not None:
            conditions.append(condition)
            params.append(given)
    return conditions, params


def _ranked_from_index(
    execute: Callable[..., Any], name: str, order: Sequence[str], groups: dict[tuple[Any, ...], int],
    kind: str | None, outcome: str | None, percentiles: Sequence[int],
) -> dict[tuple[Any, ...], dict[int, int]]:
    """{group key: {rank: cost}} for groups of one value (and kind, outcome), each cost read at its place in
    the (name, value, cost, kind, outcome) index (SQLite, in process: ~35 us a statement), from the nearer
    end: a group of one kind or outcome walks its value's entries counting those of it (the index carries
    both after the cost)."""
    found: dict[tuple[Any, ...], dict[int, int]] = {}
    for key, n in groups.items():
        values = dict(zip(order, key, strict=True))
        conditions, params = ["name = ?", "value = ?"], [name, values[ATTRIBUTE]]
        of_kind = values.get("kind", kind)
        if of_kind is not None:
            conditions.append("kind = ?")
            params.append(of_kind)
        if "outcome" in values or outcome is not None:
            label = values.get("outcome", outcome)
            conditions.append("outcome_label IS NULL" if label is None else "outcome_label = ?")
            params.extend([] if label is None else [label])
        read = (f"SELECT task_cost_pico FROM task_attributes INDEXED BY task_attributes_cost "
                f"WHERE {' AND '.join(conditions)} ORDER BY task_cost_pico")
        found[key] = {}
        for r in {nearest_rank(n, p) for p in percentiles}:
            if r <= n - r:
                row = execute(f"{read} LIMIT 1 OFFSET ?", [*params, r - 1]).fetchone()
            else:
                row = execute(f"{read} DESC LIMIT 1 OFFSET ?", [*params, n - r]).fetchone()
            if row is None:
                raise Unfit("a value's count and its index differ")
            found[key][r] = row[0]
    return found


def _ranked_in_order(
    execute: Callable[..., Any], name: str, order: Sequence[str], groups: dict[tuple[Any, ...], int],
    value: str | None, kind: str | None, outcome: str | None, days: tuple[int, int] | None,
    label_of: dict[int, str], percentiles: Sequence[int], some_values: bool = False,
) -> dict[tuple[Any, ...], dict[int, int]]:
    """{group key: {rank: cost}} for groups by value (and time bucket) with a value (SQLite, in process):
    every kept task's cost read in one statement in the order of the (name, value, day, cost) index, no
    sort, and how many there are of each (value, day) in the same order: a group's costs are then one
    slice of them (a week's or month's days' runs merged by a sort). ``some_values``: ``groups`` are
    some values' only (`group_rows`' ``only``): only theirs are read."""
    conditions = ["name = ?", "value IS NOT NULL"]
    params: list[Any] = [name]
    for condition, given in (("value = ?", value), ("kind = ?", kind), ("outcome_label = ?", outcome)):
        if given is not None:
            conditions.append(condition)
            params.append(given)
    if days is not None:
        conditions.append("start_day >= ? AND start_day <= ?")
        params.extend(days)
    if value is None and (days is not None or some_values):
        # (the groups' values named: each value's days then entered at the window, and no other value's read)
        of_groups = sorted({key[order.index(ATTRIBUTE)] for key in groups})
        conditions.append(f"value IN ({', '.join('?' for _ in of_groups)})")
        params.extend(of_groups)
    where = " AND ".join(conditions)
    index = "task_attributes_day_cost"
    runs = execute(f"SELECT value, start_day, COUNT(*) FROM task_attributes INDEXED BY {index} WHERE {where} "
                   "GROUP BY value, start_day ORDER BY value, start_day", params).fetchall()
    costs = [c for (c,) in execute(f"SELECT task_cost_pico FROM task_attributes INDEXED BY {index} WHERE {where} "
                                   "ORDER BY value, start_day, task_cost_pico", params)]
    if sum(count for _, _, count in runs) != len(costs):
        raise Unfit("the costs and their count differ")
    bucketed = "bucket" in order
    ranked: dict[tuple[Any, ...], dict[int, int]] = {}

    def rank(key: tuple[Any, ...], start: int, end: int, parts: int) -> None:
        n = groups.get(key)
        if n != end - start or key in ranked:
            raise Unfit("a group's costs and its count differ")
        ordered = costs[start:end]
        if parts > 1:
            ordered.sort()
        ranked[key] = {r: ordered[r - 1] for r in {nearest_rank(n, p) for p in percentiles}}

    current: tuple[Any, ...] | None = None
    start = end = parts = 0
    for of_value, day, count in runs:
        named = {ATTRIBUTE: of_value, "bucket": label_of[day] if bucketed else None}
        key = tuple(named[k] for k in order)
        if key != current:
            if current is not None:
                rank(current, start, end, parts)
            current, start, parts = key, end, 0
        end += count
        parts += 1
    if current is not None:
        rank(current, start, end, parts)
    if len(ranked) != len(groups):
        raise Unfit("a group without costs")
    return ranked


def _ranked_from_costs(
    execute: Callable[..., Any], name: str, order: Sequence[str], groups: dict[tuple[Any, ...], int],
    value: str | None, kind: str | None, outcome: str | None, since_ns: int | None, until_ns: int | None,
    label_of: dict[int, str], percentiles: Sequence[int], values: bool = True, in_process: bool = False,
) -> dict[tuple[Any, ...], dict[int, int]]:
    """{group key: {rank: cost}}: the kept tasks' costs read (with their value, kind, outcome and day)
    and ranked here; the tasks without a value read from task_rollup when that group is kept
    (``values``: False when ``groups`` are only those)."""
    conditions, params = _task_conditions("a", kind, outcome, since_ns, until_ns)
    if value is not None:
        conditions.append("a.value = ?")
        params.append(value)
    # (each row: the key's columns in order, the bucket as its day, then the cost; in the day index's order
    # in process, so each (value, day)'s costs come sorted and a group's sort merges its days' runs)
    columns = {"bucket": "{0}.start_day", ATTRIBUTE: "{0}.value", "kind": "{0}.kind", "outcome": "{0}.outcome_label"}
    ordered_by = " ORDER BY a.value, a.start_day, a.task_cost_pico" if in_process else ""
    statements = [(
        f"SELECT {''.join(columns[k].format('a') + ', ' for k in order)}a.task_cost_pico FROM task_attributes a "
        f"WHERE {' AND '.join(['a.name = ?', 'a.value IS NOT NULL', *conditions])}{ordered_by}", [name, *params],
    )] if values else []
    at = order.index(ATTRIBUTE) if ATTRIBUTE in order else None
    if at is not None and any(key[at] is None for key in groups):
        others, other_params = _task_conditions("t", kind, outcome, since_ns, until_ns)
        picked = "".join(("NULL" if k == ATTRIBUTE else columns[k].format("t")) + ", " for k in order)
        statements.append((
            f"SELECT {picked}t.task_cost_pico FROM task_rollup t WHERE "
            + " AND ".join([*others, "NOT EXISTS (SELECT 1 FROM task_attributes a WHERE a.task_kind = t.task_kind "
                            "AND a.task_key = t.task_key AND a.name = ? AND a.value IS NOT NULL)"]),
            [*other_params, name],
        ))
    width = len(order)
    by_day: dict[tuple[Any, ...], list[int]] = {}
    for text, statement_params in statements:
        for row in execute(text, statement_params):
            key = row[:width]
            found = by_day.get(key)
            if found is None:
                by_day[key] = [row[width]]
            else:
                found.append(row[width])
    costs = by_day
    if "bucket" in order:  # (each day named by its bucket's label: a week's or month's days' costs joined)
        day_at = order.index("bucket")
        costs = {}
        for key, found in by_day.items():
            labelled = (*key[:day_at], label_of[key[day_at]], *key[day_at + 1 :])
            if labelled in costs:
                costs[labelled] += found
            else:
                costs[labelled] = found
    ranked: dict[tuple[Any, ...], dict[int, int]] = {}
    for key, n in groups.items():
        ordered = costs.get(key, [])
        if len(ordered) != n:
            raise Unfit("a group's costs and its count differ")
        ordered.sort()
        ranked[key] = {r: ordered[r - 1] for r in {nearest_rank(n, p) for p in percentiles}}
    return ranked
