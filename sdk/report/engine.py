"""Reports over the store: what tasks cost, what one success costs, and where the money went.

Words (as in docs/instrument.md): a *run* is one execution of a task; runs of one kind with the same *key*
are one *task*; the latest *outcome* of a task wins; *cost per success* is the cost of all tasks in a
group divided by its successes; *success rate* is succeeded / (succeeded + failed).

SQLite sums the calls (a million of them) per run and model; the task, outcome and grouping rules
run here over one row per run, in integers (pico-dollars), turned into Decimal at the end.
"""

from __future__ import annotations

import functools
import itertools
import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..common.attributes import task_key
from ..common.money import from_pico, usd_for_json
from ..pricing.call import PRICE_CONTEXT_KEYS
from ..pricing.usage import Buckets
from ..store.backend import StoreBackend
from ..store.connect import open_backend
from ..store.run_totals import SUMS, call_sums, resent_tokens
from ..store.schema import SESSION_COST_SQL, TOOL_COST_SQL
from ..store.sqlite import SqliteBackend
from . import attr_rollup_sql, pg_sql, rollup_sql, sql
from .errors import ReportError
from .notes import format_energy
from .routing import CallFacts
from .sql import nearest_rank as _rank
from .tasks import Store, Task

__all__ = [
    "EVERY", "GROUP_FIELDS", "CostedTask", "ReportError", "TaskSelector", "costed_tasks", "format_energy",
    "parse_where", "report", "row_for_json", "time_bucket", "window_clause",
]

GROUP_FIELDS = ("kind", "model", "provider", "outcome")
EVERY = ("day", "week", "month")
PERCENTILES = (50, 90, 95, 99)

# Per (run, provider, model) sums, in the order of unitcost.store.run_totals.SUMS (the one list).
_SUMS = tuple(s.name for s in SUMS)
# The same sums, as `run_totals` (kept by the exporter) names them.
_RUN_TOTALS_SUMS = ", ".join(s.column for s in SUMS)
_N = len(_SUMS)
_I = {name: i for i, name in enumerate(_SUMS)}
_ZERO = (0,) * _N


def _calls_sql(has_retries: bool) -> str:
    """SUMS per (run, provider, model) of the calls outside any run, summed by the database: a call
    outside any run re-sends nothing (unitcost.store.run_totals.resent_tokens)."""
    retries = "" if has_retries else ", 0 AS retries"
    return f"""
        WITH c AS (
            SELECT *, 0 AS resent, 0 AS resent_uncached, 0 AS resend_cost_pico, 0 AS resend_savings_pico{retries}
            FROM calls
        )
        SELECT run_id, provider, model, {', '.join(f'SUM({s.sql})' for s in SUMS)}
        FROM c {{where}} GROUP BY run_id, provider, model
    """


def _repriced_rows(db: StoreBackend, reprice: Repricer, where: str, params: Sequence[Any]) -> Iterable[tuple[Any, ...]]:
    """(run_id, provider, model, *SUMS) of each call, priced anew by ``reprice``; the re-send estimated
    by the writer's rule (unitcost.store.run_totals), each run's calls in start order."""
    retries = "retries" if "retries" in db.columns("calls") else "0"
    rate_cache: dict[Any, Any] = {}
    previous: dict[str, int] = {}  # run -> input + output of its previous call
    with_context = getattr(reprice, "needs_context", False)
    # A routing rule may look at the call's task kind and attributes and the step it was made in.
    context_sql = (
        ", (SELECT kind FROM runs WHERE runs.run_id = c.run_id), (SELECT attributes FROM runs WHERE "
        "runs.run_id = c.run_id), (SELECT name FROM steps WHERE steps.span_id = c.parent_span_id)"
        if with_context else ", NULL, NULL, NULL"
    )
    attributes_of: dict[Any, dict[str, Any]] = {}
    for (
        run_id, provider, model, started, ended, inp, cr, cw, cw1h, out, reasoning, searches, fetches, estimated,
        sdk_retries, tier, modifiers, span_id, e_min, e_max, g_min, g_max, kind_, attrs, step,
    ) in db.execute(
        "SELECT run_id, provider, model, started_ns, ended_ns, input_tokens, cache_read_tokens, cache_write_tokens, "
        "cache_write_1h_tokens, output_tokens, reasoning_tokens, web_search_requests, web_fetch_requests, estimated, "
        f"{retries}, service_tier, price_modifiers, span_id, energy_uwh_min, energy_uwh_max, gwp_ug_min, gwp_ug_max"
        f"{context_sql} FROM calls c {where} ORDER BY run_id, started_ns, span_id",
        params,
    ):
        all_in = inp + cr + cw + cw1h
        resent = resent_tokens(previous.get(run_id, 0), all_in) if run_id is not None else 0
        previous[run_id] = all_in + out + reasoning
        context = None
        if modifiers:
            context = {k: v for k, v in json.loads(modifiers).items() if k in PRICE_CONTEXT_KEYS} or None
        buckets = Buckets(inp, cr, cw, cw1h, out, reasoning, searches, fetches)
        facts = None
        if with_context:
            if attrs not in attributes_of:
                attributes_of[attrs] = _parse_attributes(attrs)
            facts = CallFacts(
                provider, model, kind_, step, attributes_of[attrs], buckets.input_total, buckets.output_total, span_id
            )
        cost, reasoning_cost, buckets = reprice(
            provider, model, started, ended, buckets, resent, tier, context, **({"call": facts} if facts else {})
        )
        # (energy as recorded: a what-if re-prices, it does not re-estimate)
        call = (run_id, provider, model, buckets.uncached_input, buckets.cache_read, buckets.cache_write,
                buckets.cache_write_1h, buckets.visible_output, buckets.reasoning, cost, reasoning_cost, estimated,
                sdk_retries, e_min, e_max, g_min, g_max)
        yield (run_id, provider, model, *call_sums(call, resent, reprice.prices, rate_cache))


def _parse_attributes(text: str | None) -> dict[str, Any]:
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


@dataclass(slots=True)
class _Facts:
    """What one task did: call sums per (provider, model), and its tools."""

    task: Task
    slices: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    tool_calls: int = 0
    step_blocks: int = 0
    tool_cost_pico: int = 0
    runtime_cost_pico: int = 0  # [[runtime]] charges: the runs' wall time and their session blocks


# unitcost.report.sides.Repricer: (provider, model, started_ns, ended_ns, Buckets, resent, tier, context)
# -> (cost_pico | None, reasoning_pico, Buckets); its `prices` price the re-send estimate.
Repricer = Any


def _call_rows(
    db: StoreBackend, reprice: Repricer, where: str = "", params: Sequence[Any] = (), by_model: bool = True
) -> Iterable[tuple[Any, ...]]:
    """(run_id, provider, model, *sums) rows: from the per-run totals, summed by SQLite from the calls
    (with `where`: the calls outside any task), or per call when re-pricing."""
    has_retries = "retries" in db.columns("calls")
    if reprice is None:
        if not where:
            if by_model:
                yield from db.execute(f"SELECT run_id, provider, model, {_RUN_TOTALS_SUMS} FROM run_totals")
            else:
                yield from db.execute(f"SELECT run_id, '', '', {_RUN_TOTALS_SUMS} FROM run_sums")
            return
        yield from db.execute(_calls_sql(has_retries).format(where=where), params)
        return
    yield from _repriced_rows(db, reprice, where, params)


def _load(
    db: StoreBackend, reprice: Repricer = None, by_model: bool = True
) -> tuple[dict[Any, _Facts], dict[tuple[str, str], list[int]]]:
    """Every task's facts, and the sums of calls made outside any task (by provider and model)."""
    if reprice is None:
        db.ensure_fresh()
    store = Store(db)
    tasks = store.tasks()
    facts = {ident: _Facts(task) for ident, task in tasks.items()}
    outside: dict[tuple[str, str], list[int]] = {}
    rows = _call_rows(db, reprice, by_model=by_model)
    if reprice is None:  # the totals hold runs only: add the calls outside any task
        rows = itertools.chain(rows, _call_rows(db, None, "WHERE run_id IS NULL"))
    for row in rows:
        run_id, provider, model, sums = row[0], row[1], row[2], [v or 0 for v in row[3:]]  # SUM() of none is NULL
        # Calls outside any task (or whose run never reached the store) are reported apart.
        ident = store.run_task.get(run_id) if run_id is not None else None
        target = outside if ident is None else facts[ident].slices
        current = target.get((provider, model))
        target[(provider, model)] = sums if current is None else [a + b for a, b in zip(current, sums, strict=True)]
    for run_id, tools, blocks, cost, runtime in db.execute(
        "SELECT run_id, SUM(CASE WHEN type = 'tool' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN type = 'step' THEN 1 ELSE 0 END), {TOOL_COST_SQL}, {SESSION_COST_SQL} FROM steps "
        "WHERE run_id IS NOT NULL GROUP BY run_id"
    ):
        ident = store.run_task.get(run_id)
        if ident is not None:
            f = facts[ident]
            f.tool_calls += tools or 0
            f.step_blocks += blocks or 0
            f.tool_cost_pico += cost or 0
            f.runtime_cost_pico += runtime or 0
    for run_id, runtime in db.execute("SELECT run_id, runtime_cost_pico FROM runs WHERE runtime_cost_pico IS NOT NULL"):
        ident = store.run_task.get(run_id)
        if ident is not None:
            facts[ident].runtime_cost_pico += runtime
    return facts, outside


def _resolve_names(names: Iterable[str], known: set[str], option: str) -> list[tuple[str, str]]:
    """Names as given -> [(name, field)]: a GROUP_FIELDS name, or 'attr:NAME' for a task attribute."""
    fields = []
    for name in names:
        if name in GROUP_FIELDS:
            fields.append((name, name))
            continue
        attribute = name[5:] if name.startswith("attr.") else name
        if attribute not in known:
            choices = ", ".join(list(GROUP_FIELDS) + (["key"] if option == "--where" else []) + sorted(known))
            raise ReportError(f"unknown {option} name {name!r}: no task has that attribute (known: {choices})")
        fields.append((name, "attr:" + attribute))
    return fields


def parse_where(where: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
    """`--where NAME=VALUE` options as a dict; raises ReportError on a malformed one."""
    if not where:
        return {}
    if isinstance(where, Mapping):
        return {str(k): str(v) for k, v in where.items()}
    result = {}
    for item in where:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ReportError(f"--where takes NAME=VALUE, not {item!r}")
        result[name.strip()] = value.strip()
    return result


class TaskSelector:
    """Which tasks a report keeps: started in [since, until), of a kind, with --where values."""

    def __init__(
        self,
        known_attributes: set[str],
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        kind: str | None = None,
        where: Mapping[str, str] | Sequence[str] | None = None,
    ) -> None:
        wanted = parse_where(where)
        # --where key=KEY: the task with this key, as the SDK stored it (a long key: prefix and digest).
        key = wanted.pop("key", None)
        fields = _resolve_names(wanted, known_attributes, "--where")
        for name, fld in fields:
            if fld in ("model", "provider"):
                # --where keeps or drops whole tasks, and one task may call several models.
                raise ReportError(
                    f"--where {name}=... cannot select tasks: a task may call several models. Use --by {fld} "
                    f"(or name a task attribute attr.{fld})"
                )
        self.filters = [(f, value) for (_, f), value in zip(fields, wanted.values(), strict=True)]
        if key is not None:
            self.filters.append(("key", task_key(key)))
        self.since_ns, self.until_ns, self.kind = since_ns, until_ns, kind

    def keeps(self, task: Task) -> bool:
        if self.kind is not None and task.kind != self.kind:
            return False
        if self.since_ns is not None and task.started_ns < self.since_ns:
            return False
        if self.until_ns is not None and task.started_ns >= self.until_ns:
            return False
        if self.filters:
            values = {"kind": task.kind, "outcome": task.outcome.label if task.outcome else None, "key": task.key}
            return all(_field_value(fld, values, task) == value for fld, value in self.filters)
        return True


def window_clause(since_ns: int | None, until_ns: int | None, column: str = "started_ns") -> tuple[str, list[int]]:
    """`run_id IS NULL AND <column> in [since, until)`: rows outside any task, in a window."""
    clauses, params = ["run_id IS NULL"], []
    if since_ns is not None:
        clauses.append(f"{column} >= ?")
        params.append(since_ns)
    if until_ns is not None:
        clauses.append(f"{column} < ?")
        params.append(until_ns)
    return " AND ".join(clauses), params


def time_bucket(ns: int, every: str) -> str:
    moment = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    if every == "day":
        return moment.strftime("%Y-%m-%d")
    if every == "week":  # named by its Monday
        return (moment - timedelta(days=moment.weekday())).strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m")


@dataclass
class _Acc:
    tasks: int = 0
    runs: int = 0
    succeeded: int = 0
    failed: int = 0
    no_outcome: int = 0
    tool_calls: int = 0
    step_blocks: int = 0
    tool_cost_pico: int = 0
    runtime_cost_pico: int = 0
    value_pico: int = 0
    wasted_pico: int = 0
    task_costs: list[int] = field(default_factory=list)
    sums: list[int] = field(default_factory=lambda: list(_ZERO))
    sum_rows: list[Sequence[int]] = field(default_factory=list)  # added into `sums` at the end, in one go
    # The percentiles' ranked costs when SQLite ranked them: {rank: cost} (`task_costs` is empty then).
    ranked: dict[int, int] | None = None

    def total_sums(self) -> list[int]:
        if self.sum_rows:
            self.sums = [sum(col) for col in zip(self.sums, *self.sum_rows, strict=True)]
            self.sum_rows = []
        return self.sums


def _percentile(sorted_values: Sequence[int], p: int) -> int | None:
    if not sorted_values:
        return None
    return sorted_values[_rank(len(sorted_values), p) - 1]


def _usd(pico: int | None) -> Decimal | None:
    return from_pico(pico)


def _div(a: Decimal, b: int) -> Decimal | None:
    return None if not b else a / b


def _finish(group: dict[str, Any], acc: _Acc) -> dict[str, Any]:
    totals = acc.total_sums()
    s = {name: totals[i] for name, i in _I.items()}
    llm_cost = from_pico(s["cost_pico"]) or Decimal(0)
    tool_cost = from_pico(acc.tool_cost_pico) or Decimal(0)
    runtime_cost = from_pico(acc.runtime_cost_pico) or Decimal(0)
    cost = llm_cost + tool_cost + runtime_cost
    value = from_pico(acc.value_pico) or Decimal(0)
    reasoning_cost = from_pico(s["reasoning_cost_pico"]) or Decimal(0)
    decided = acc.succeeded + acc.failed
    costs = sorted(acc.task_costs)
    ranked = acc.ranked
    row: dict[str, Any] = {
        "group": group,
        "tasks": acc.tasks,
        "runs": acc.runs,
        "retries": acc.runs - acc.tasks,
        "succeeded": acc.succeeded,
        "failed": acc.failed,
        "no_outcome": acc.no_outcome,
        "success_rate": None if not decided else acc.succeeded / decided,
        "cost_usd": cost,
        "cost_per_task_usd": _div(cost, acc.tasks),
        "cost_per_success_usd": _div(cost, acc.succeeded),
        "wasted_usd": from_pico(acc.wasted_pico) or Decimal(0),
    }
    for p in PERCENTILES:
        pico = _percentile(costs, p) if ranked is None else ranked[_rank(acc.tasks, p)]
        row[f"cost_per_task_p{p}_usd"] = _usd(pico)
    row.update(
        {
            "llm_cost_usd": llm_cost,
            "tool_cost_usd": tool_cost,
            "runtime_cost_usd": runtime_cost,
            "reasoning_cost_usd": reasoning_cost,
            "reasoning_cost_share": None if not cost else float(reasoning_cost / cost),
            "value_usd": value,
            "margin_usd": value - cost,
            "margin_per_task_usd": _div(value - cost, acc.tasks),
            "margin_per_success_usd": _div(value - cost, acc.succeeded),
            "input_tokens": s["input_uncached"] + s["cache_read"] + s["cache_write"] + s["cache_write_1h"],
            "cache_read_tokens": s["cache_read"],
            "cache_write_tokens": s["cache_write"] + s["cache_write_1h"],
            "output_tokens": s["output_visible"] + s["reasoning"],
            "reasoning_tokens": s["reasoning"],
            "llm_calls": s["llm_calls"],
            "tool_calls": acc.tool_calls,
            "steps": s["llm_calls"] + acc.tool_calls + acc.step_blocks,
            "sdk_retries": s["sdk_retries"],
            "resend_tokens_estimated": s["resent"],
            "resend_cost_usd_estimated": from_pico(s["resend_cost_pico"]) or Decimal(0),
            "resend_cache_savings_usd_estimated": from_pico(s["resend_savings_pico"]) or Decimal(0),
            "unpriced_calls": s["unpriced_calls"],
            "estimated_calls": s["estimated_calls"],
        }
    )
    row.update(_energy_fields(s, acc.succeeded))
    return row


def _energy_fields(s: Mapping[str, int], succeeded: int) -> dict[str, Any]:
    """Energy (kWh) and emissions (kgCO2eq): the midpoint of the estimates' ranges, and the range."""
    # (sums in integer µWh and µg, divided once: no float noise in the midpoints)
    e_min, e_max, g_min, g_max = s["energy_uwh_min"], s["energy_uwh_max"], s["gwp_ug_min"], s["gwp_ug_max"]
    energy = (e_min + e_max) / 2e9
    return {
        "energy_kwh": energy, "energy_kwh_min": e_min / 1e9, "energy_kwh_max": e_max / 1e9,
        "gwp_kgco2eq": (g_min + g_max) / 2e9, "gwp_kgco2eq_min": g_min / 1e9, "gwp_kgco2eq_max": g_max / 1e9,
        "energy_kwh_per_success": None if not succeeded else energy / succeeded,
        "unestimated_energy_calls": s["unestimated_energy_calls"],
    }


MONEY_FIELDS = tuple(
    ["cost_usd", "cost_per_task_usd", "cost_per_success_usd", "wasted_usd"]
    + [f"cost_per_task_p{p}_usd" for p in PERCENTILES]
    + ["llm_cost_usd", "tool_cost_usd", "runtime_cost_usd", "reasoning_cost_usd", "value_usd", "margin_usd",
       "margin_per_task_usd", "margin_per_success_usd", "resend_cost_usd_estimated",
       "resend_cache_savings_usd_estimated"]
)


def row_for_json(row: dict[str, Any]) -> dict[str, Any]:
    """A report row with money as JSON numbers rounded to 9 places (computed in Decimal)."""
    out = dict(row)
    for name in MONEY_FIELDS:
        out[name] = usd_for_json(row[name])
    return out


def report(
    db: StoreBackend,
    *,
    by: str | Sequence[str] = "kind",
    every: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    kind: str | None = None,
    where: Mapping[str, str] | Sequence[str] | None = None,
    reprice: Repricer = None,
    only_groups: Collection[tuple[Any, ...]] | None = None,
) -> list[dict[str, Any]]:
    """One row per group, with the JSON contract's fields (money as Decimal; see `row_for_json`).

    ``by`` lists group names (kind, model, provider, outcome or task attributes); ``every`` adds a
    UTC time bucket (day, week or month) by task start; ``where`` keeps tasks whose attributes
    (or kind/outcome) have the given values. ``reprice`` (used by `unitcost whatif`) prices each
    call anew instead of using the cost stored with it. ``only_groups``: the rows of these groups
    only, each named by its values in ``by``'s order (the time bucket left out); the rollups then
    rank no other group's costs (the UI asks for the trends of the groups it draws).
    """
    if every is not None and every not in EVERY:
        raise ReportError(f"--every takes day, week or month, not {every!r}")
    names = [n.strip() for n in (by.split(",") if isinstance(by, str) else by) if n.strip()]
    request = _Request(names, every, since_ns, until_ns, kind, where,
                       None if only_groups is None else frozenset(map(tuple, only_groups)))
    request.check()
    db = open_backend(db)  # an open sqlite_utils.Database is taken too
    grouped = None
    if reprice is None:
        db.ensure_fresh()
        grouped = _group_in_store(db, request)
    if grouped is None:
        grouped = _group_in_python(db, request, reprice)
    fields, selector, groups, outside = grouped

    group_names = ([every] if every else []) + [name for name, _ in fields]
    if request.only is not None:  # (the engines that cannot skip the others' work: their rows left out here)
        groups = {key: acc for key, acc in groups.items() if key[1 if every else 0:] in request.only}
    rows = [
        _finish(dict(zip(group_names, key, strict=True)), acc)
        for key, acc in sorted(groups.items(), key=lambda kv: tuple("" if v is None else str(v) for v in kv[0]))
    ]
    if kind is None and not selector.filters:
        no_task: _Acc | None
        if since_ns is None and until_ns is None:
            no_task = outside
        else:
            no_task = _outside_in_window(db, since_ns, until_ns, reprice)
        no_task = _add_tools_outside(db, since_ns, until_ns, no_task)
        if no_task is not None and (request.only is None or (None,) * len(fields) in request.only):
            rows.append(_finish({name: None for name in group_names}, no_task))
    # Spans that never reached the store make every number here too low: each row says how many.
    dropped = db.dropped_spans(since_ns, until_ns)
    for row in rows:
        row["dropped_spans"] = dropped
    return rows


@dataclass
class _Request:
    """What a report asks for, as given."""

    names: list[str]
    every: str | None
    since_ns: int | None
    until_ns: int | None
    kind: str | None
    where: Mapping[str, str] | Sequence[str] | None
    only: frozenset[tuple[Any, ...]] | None = None  # (`report`'s only_groups)

    @property
    def by_model(self) -> bool:
        # A "model" or "provider" name groups by model unless a task attribute is escaped as attr.model.
        return any(n in ("model", "provider") for n in self.names)

    @property
    def needs_attributes(self) -> bool:
        # Task attributes are parsed only when a --by or --where name may be one.
        return any(n not in GROUP_FIELDS for n in self.names) or bool(parse_where(self.where))

    @property
    def names_no_attribute(self) -> bool:
        # --by and --where name only kind, outcome, model or provider (what the rollups can answer).
        return all(n in GROUP_FIELDS for n in self.names) and all(
            name in ("kind", "outcome") for name in parse_where(self.where)
        )

    def check(self) -> None:
        """Raise now the errors that need no task attribute (by model and provider, --where model=...):
        `resolve` would say them only after the store's attributes were read, seconds on a big store."""
        named = [n for n in self.names if n in GROUP_FIELDS]
        if sum(n in ("model", "provider") for n in named) > 1:
            raise ReportError("--by can group by model or by provider, not both")
        TaskSelector(set(), where={n: v for n, v in parse_where(self.where).items() if n in GROUP_FIELDS})

    def resolve(self, known: set[str]) -> tuple[list[tuple[str, str]], TaskSelector, str | None]:
        """(name, field) pairs to group by, the task selector, and "model"/"provider" or None."""
        fields = _resolve_names(self.names, known, "--by")  # (by model and provider: refused by `check`)
        selector = TaskSelector(
            known, since_ns=self.since_ns, until_ns=self.until_ns, kind=self.kind, where=self.where
        )
        per_model = next((f for _, f in fields if f in ("model", "provider")), None)
        return fields, selector, per_model


_Grouped = tuple[list[tuple[str, str]], "TaskSelector", dict[tuple[Any, ...], "_Acc"], "_Acc | None"]


def _group_in_python(db: StoreBackend, request: _Request, reprice: Repricer) -> _Grouped:
    """The reference engine: every task's facts in Python, grouped here (and the only one that re-prices)."""
    facts, outside = _load(db, reprice, by_model=request.by_model)
    known = (
        {name for f in facts.values() if f.task._attribute_json for name in f.task.attributes}
        if request.needs_attributes else set()
    )
    fields, selector, per_model = request.resolve(known)
    every = request.every
    groups: dict[tuple[Any, ...], _Acc] = {}
    for f in facts.values():
        task = f.task
        if not selector.keeps(task):
            continue
        outcome = task.outcome
        values: dict[str, Any] = {"kind": task.kind, "outcome": outcome.label if outcome else None}
        bucket = time_bucket(task.started_ns, every) if every else None
        # Grouped by model, a task counts in each model's row with only that model's calls.
        if per_model:
            parts: dict[str | None, list[int]] = {}
            for (provider, model), sums in f.slices.items():
                part = model if per_model == "model" else provider
                current = parts.get(part)  # most tasks have one slice a model: no copy then
                parts[part] = sums if current is None else [a + b for a, b in zip(current, sums, strict=True)]
            entries: list[tuple[str | None, list[int], bool]] = [
                (part, sums, False) for part, sums in parts.items()
            ] or [(None, list(_ZERO), False)]
        else:
            slices = list(f.slices.values())
            if len(slices) == 1:
                total = slices[0]
            else:
                total = [sum(c) for c in zip(*slices, strict=True)] if slices else list(_ZERO)
            entries = [(None, total, True)]
        for name, sums, with_tools in entries:
            values["model"] = values["provider"] = name
            key = ((bucket,) if every else ()) + tuple(_field_value(fld, values, task) for _, fld in fields)
            acc = groups.get(key)
            if acc is None:
                acc = groups[key] = _Acc()
            cost = sums[_I["cost_pico"]] + (f.tool_cost_pico + f.runtime_cost_pico if with_tools else 0)
            acc.tasks += 1
            acc.runs += len(task.run_ids)
            acc.task_costs.append(cost)
            if outcome is None:
                acc.no_outcome += 1
            elif outcome.success:
                acc.succeeded += 1
            else:
                acc.failed += 1
                acc.wasted_pico += cost
            if outcome is not None and outcome.value_pico:
                acc.value_pico += outcome.value_pico
            acc.sum_rows.append(sums)
            if with_tools:  # tools and runtimes are no model's cost
                acc.tool_calls += f.tool_calls
                acc.step_blocks += f.step_blocks
                acc.tool_cost_pico += f.tool_cost_pico
                acc.runtime_cost_pico += f.runtime_cost_pico
    no_task = _Acc() if outside else None
    for sums in outside.values():
        no_task.sums = [a + b for a, b in zip(no_task.sums, sums, strict=True)]  # type: ignore[union-attr]
    return fields, selector, groups, no_task


@dataclass(frozen=True, slots=True)
class CostedTask:
    """A kept task with its group values and its whole cost (LLM + tools + runtime), in pico-dollars."""

    group: tuple[Any, ...]
    task: Task
    cost_pico: int
    unpriced_calls: int


def costed_tasks(
    db: StoreBackend | Any,
    *,
    by: str | Sequence[str] = "kind",
    since_ns: int | None = None,
    until_ns: int | None = None,
    kind: str | None = None,
    where: Mapping[str, str] | Sequence[str] | None = None,
) -> tuple[list[str], list[CostedTask]]:
    """The group names and every kept task with its cost: what per-user reports and caps work from.
    ``by`` takes kind, outcome and task attributes (a task's cost is not split by model here)."""
    names = [n.strip() for n in (by.split(",") if isinstance(by, str) else by) if n.strip()]
    db = open_backend(db)  # an open sqlite_utils.Database is taken too
    facts, _ = _load(db)
    known = {name for f in facts.values() if f.task._attribute_json for name in f.task.attributes}
    fields = _resolve_names(names, known, "--by")
    if any(fld in ("model", "provider") for _, fld in fields):
        raise ReportError("per-user numbers group tasks by kind, outcome or attributes, not by model or provider")
    selector = TaskSelector(known, since_ns=since_ns, until_ns=until_ns, kind=kind, where=where)
    kept = []
    cost_at, unpriced_at = _I["cost_pico"], _I["unpriced_calls"]
    for f in facts.values():
        task = f.task
        if not selector.keeps(task):
            continue
        values = {"kind": task.kind, "outcome": task.outcome.label if task.outcome else None}
        group = tuple(_field_value(fld, values, task) for _, fld in fields)
        llm = sum(s[cost_at] for s in f.slices.values())
        unpriced = sum(s[unpriced_at] for s in f.slices.values())
        kept.append(CostedTask(group, task, llm + f.tool_cost_pico + f.runtime_cost_pico, unpriced))
    return [name for name, _ in fields], kept


def _group_in_store(db: StoreBackend, request: _Request) -> _Grouped | None:
    """The same groups, summed by SQLite (see unitcost.report.sql); None when this store or request
    is one for the Python engine (or the store is not SQLite: the SQL is SQLite's)."""
    if request.names_no_attribute and isinstance(db, StoreBackend) and "task_rollup" in db.tables():
        grouped = _group_in_rollups(db, request)
        if grouped is not None:
            return grouped
    elif isinstance(db, StoreBackend) and "task_attributes" in db.tables():
        grouped = _group_in_attribute_rollups(db, request)
        if grouped is not None:
            return grouped
    if getattr(db, "dialect", None) == "postgresql":  # (a test may hand over a bare sqlite_utils.Database)
        return _group_in_postgres(db, request)
    if not isinstance(db, SqliteBackend):
        return None
    conn = db.conn
    with_attributes = request.needs_attributes
    try:
        with sql.reading(conn):
            tables = sql.TaskTables(conn, with_attributes=with_attributes, per_model=request.by_model)
            tables.build()
            known = tables.known_attributes() if with_attributes else set()
            fields, selector, per_model = request.resolve(known)
            keys: list[str] = []
            conditions: list[str] = []
            params: list[Any] = []
            if request.every:
                if conn.execute("SELECT MIN(started_ns) < 0 FROM runs").fetchone()[0]:
                    raise sql.Unfit("a task started before 1970")
                every = request.every
                keys.append(sql.add_buckets(tables, lambda ns: time_bucket(ns, every)))
            attribute_names: list[str] = []
            for _, fld in fields:
                if fld.startswith("attr:"):
                    if fld[5:] not in attribute_names:
                        attribute_names.append(fld[5:])
                    keys.append(f"a.a{attribute_names.index(fld[5:])}")
                else:
                    keys.append({"kind": "t.kind", "outcome": "o.label"}.get(fld, sql.PART))
            if selector.kind is not None:
                conditions.append("t.kind = ?")
                params.append(selector.kind)
            if selector.since_ns is not None:
                conditions.append("t.started_ns >= ?")
                params.append(selector.since_ns)
            if selector.until_ns is not None:
                conditions.append("t.started_ns < ?")
                params.append(selector.until_ns)
            attribute_filters = []
            for fld, value in selector.filters:
                if fld.startswith("attr:"):
                    attribute_filters.append((fld[5:], value))
                elif fld in ("kind", "outcome", "key"):
                    conditions.append({"kind": "t.kind = ?", "outcome": "o.label = ?", "key": "t.key = ?"}[fld])
                    params.append(value)
                else:  # --where model=...: the Python engine says what that does
                    raise sql.Unfit(f"--where {fld}")
            if attribute_filters:
                conditions.append("a.keep")
            if with_attributes:
                tables.add_attribute_values(attribute_names, attribute_filters)
            groups = {
                key: _Acc(**fields_)
                for key, fields_ in sql.group_rows(
                    tables, keys=keys, per_model=per_model, where=conditions, params=params, percentiles=PERCENTILES
                )
            }
            outside = None
            if request.kind is None and not selector.filters and request.since_ns is None and request.until_ns is None:
                found, sums = tables.outside_sums()
                for row in _call_rows(db, None, "WHERE run_id IS NULL"):
                    found += 1
                    sums = [a + (b or 0) for a, b in zip(sums, row[3:], strict=True)]
                outside = _Acc(sums=sums) if found else None
    except sql.Unfit:
        return None
    except sqlite3.OperationalError as exc:
        if "overflow" not in str(exc):  # sums past 2**63 pico-dollars ($9.2M): Python's integers have no limit
            raise
        return None
    return fields, selector, groups, outside


def _none_when_unfit(
    read: Callable[[StoreBackend, _Request], _Grouped | None],
) -> Callable[[StoreBackend, _Request], _Grouped | None]:
    """An engine that answers None (the callers then take another) for what it cannot read
    (`sql.Unfit`), or for sums past 2**63 pico-dollars (SQLite's integers overflow; Python's do not)."""
    @functools.wraps(read)
    def reading(db: StoreBackend, request: _Request) -> _Grouped | None:
        try:
            return read(db, request)
        except sql.Unfit:
            return None
        except sqlite3.OperationalError as exc:
            if "overflow" not in str(exc):
                raise
            return None
    return reading


@_none_when_unfit
def _group_in_rollups(db: StoreBackend, request: _Request) -> _Grouped | None:
    """The same groups, read from the per-task and per-day rollups the store keeps
    (unitcost.report.rollup_sql), on either backend; None for what they cannot answer (the callers
    then join the rows)."""
    fields, selector, per_model = request.resolve(set())
    wanted = dict(selector.filters)  # (kind or outcome: task attributes never come here)
    if "kind" in wanted and selector.kind is not None and wanted["kind"] != selector.kind:
        return None  # (two kinds asked for: the Python engine keeps no task)
    every = request.every
    with sql.one_read(db):
        groups = {
            key: _Acc(**fields_)
            for key, fields_ in rollup_sql.group_rows(
                db.execute, keys=[{"kind": "kind", "outcome": "outcome"}.get(f, sql.PART) for _, f in fields],
                per_model=per_model, kind=selector.kind if selector.kind is not None else wanted.get("kind"),
                outcome=wanted.get("outcome"), since_ns=selector.since_ns, until_ns=selector.until_ns,
                percentiles=PERCENTILES, bucket=(lambda ns: time_bucket(ns, every)) if every else None,
                in_process=db.dialect == "sqlite", only=request.only,
            )
        }
        outside = _outside_from_rollups(db, request, selector)
    return fields, selector, groups, outside


def _outside_from_rollups(db: StoreBackend, request: _Request, selector: TaskSelector) -> _Acc | None:
    """The calls made in no task, summed (the per-run sums' part of them and the calls of no run), for a
    report that keeps every task (no kind, filter or window); else None."""
    if request.kind is not None or selector.filters or request.since_ns is not None or request.until_ns is not None:
        return None
    found, sums = rollup_sql.outside_sums(db.execute)
    for row in _call_rows(db, None, "WHERE run_id IS NULL"):
        found += 1
        sums = [a + (b or 0) for a, b in zip(sums, row[3:], strict=True)]
    return _Acc(sums=sums) if found else None


@_none_when_unfit
def _group_in_attribute_rollups(db: StoreBackend, request: _Request) -> _Grouped | None:
    """The same groups for a request by or filtered by one task attribute, read from the task attributes'
    rollups (unitcost.report.attr_rollup_sql), on either backend; None for what they cannot answer (model
    or provider, two attributes, --where key=...: the callers then merge every run's attributes)."""
    if request.by_model:
        return None
    every = request.every
    with sql.one_read(db):
        fields, selector, _ = request.resolve(attr_rollup_sql.known_names(db.execute))
        by_attribute = [fld[5:] for _, fld in fields if fld.startswith("attr:")]
        filtered = [(fld[5:], value) for fld, value in selector.filters if fld.startswith("attr:")]
        names = set(by_attribute) | {name for name, _ in filtered}
        wanted = dict(selector.filters)
        values = {value for _, value in filtered}
        if (len(names) != 1 or len(by_attribute) > 1 or len(values) > 1 or "key" in wanted
                or (selector.kind is not None and wanted.get("kind", selector.kind) != selector.kind)):
            return None  # (two kinds asked for: the Python engine keeps no task)
        (name,) = names
        rows = attr_rollup_sql.group_rows(
            db.execute, name=name,
            keys=[attr_rollup_sql.ATTRIBUTE if fld.startswith("attr:") else fld for _, fld in fields],
            value=next(iter(values), None),
            kind=selector.kind if selector.kind is not None else wanted.get("kind"),
            outcome=wanted.get("outcome"), since_ns=selector.since_ns, until_ns=selector.until_ns,
            percentiles=PERCENTILES, bucket=(lambda ns: time_bucket(ns, every)) if every else None,
            in_process=db.dialect == "sqlite", only=request.only,
        )
        groups = {key: _Acc(**fields_) for key, fields_ in rows}
        outside = _outside_from_rollups(db, request, selector)
    return fields, selector, groups, outside


def _group_in_postgres(db: StoreBackend, request: _Request) -> _Grouped | None:
    """The same groups, summed by PostgreSQL (see unitcost.report.pg_sql); None for what only the
    Python engine answers (task attributes in --by or --where)."""
    if any(n not in GROUP_FIELDS for n in request.names) or any(
        name not in ("kind", "outcome") for name in parse_where(request.where)
    ):
        return None
    fields, selector, per_model = request.resolve(set())
    conditions: list[str] = []
    params: list[Any] = []
    for column, value in (("t.kind = %s", selector.kind), ("t.started_ns >= %s", selector.since_ns),
                          ("t.started_ns < %s", selector.until_ns)):
        if value is not None:
            conditions.append(column)
            params.append(value)
    for fld, value in selector.filters:  # (kind or outcome: attributes were sent to Python above)
        conditions.append("t.kind = %s" if fld == "kind" else "o.label = %s")
        params.append(value)
    every = request.every
    conn = db.connection()  # type: ignore[attr-defined]
    try:
        rows = list(pg_sql.group_rows(
            conn, keys=[{"kind": "kind", "outcome": "outcome"}.get(f, sql.PART) for _, f in fields],
            per_model=per_model, where=conditions, params=params, percentiles=PERCENTILES,
            bucket=(lambda ns: time_bucket(ns, every)) if every else None,
        ))
    except sql.Unfit:
        return None
    groups = {key: _Acc(**fields_) for key, fields_ in rows}
    outside = None
    if request.kind is None and not selector.filters and request.since_ns is None and request.until_ns is None:
        found, sums = pg_sql.outside_sums(conn)
        for row in _call_rows(db, None, "WHERE run_id IS NULL"):
            found += 1
            sums = [a + (b or 0) for a, b in zip(sums, row[3:], strict=True)]
        outside = _Acc(sums=sums) if found else None
    return fields, selector, groups, outside


def _add_tools_outside(
    db: StoreBackend, since_ns: int | None, until_ns: int | None, acc: _Acc | None
) -> _Acc | None:
    """Tool calls and steps made outside any task belong in the (no task) row too."""
    where, params = window_clause(since_ns, until_ns)
    tools, blocks, sessions, cost, runtime = db.execute(
        f"SELECT COUNT(*) FILTER (WHERE type = 'tool'), COUNT(*) FILTER (WHERE type = 'step'), "
        f"COUNT(*) FILTER (WHERE type = 'session'), {TOOL_COST_SQL}, {SESSION_COST_SQL} FROM steps WHERE {where}",
        params,
    ).fetchone()
    if not tools and not blocks and not sessions:
        return acc
    acc = acc or _Acc()
    acc.tool_calls += tools
    acc.step_blocks += blocks
    acc.tool_cost_pico += cost or 0
    acc.runtime_cost_pico += runtime or 0
    return acc


def _field_value(fld: str, values: Mapping[str, Any], task: Task) -> Any:
    if fld.startswith("attr:"):
        value = task.attributes.get(fld[5:])
        return None if value is None else str(value)
    return values[fld]


def _outside_in_window(
    db: StoreBackend, since_ns: int | None, until_ns: int | None, reprice: Repricer
) -> _Acc | None:
    where, params = window_clause(since_ns, until_ns)
    acc = _Acc()
    found = False
    for row in _call_rows(db, reprice, "WHERE " + where, params):
        acc.sums = [a + (b or 0) for a, b in zip(acc.sums, row[3:], strict=True)]
        found = True
    return acc if found else None
