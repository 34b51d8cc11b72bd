"""`unitcost report --html`: one self-contained page with the report table and its charts.

The page loads nothing at view time (no script, font, stylesheet or image from anywhere, which its
Content-Security-Policy enforces): charts are inline SVG drawn by `unitcost.report.charts`. Its numbers come
from the report engine (`report()`: the table, cost per success over time, cost by model) or from
the same store rows and task selection (the per-task distribution, cost by step), so they agree with
`unitcost report --format json`, which the page also carries as an inert JSON block.

Charts are drawn per task kind: a cost per success that mixes kinds means little.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any

from ..common.money import from_pico, usd_for_json
from ..store.backend import StoreBackend
from . import charts
from .charts import Bar, Column
from .engine import ReportError, TaskSelector, parse_where, report, row_for_json, window_clause
from .notes import format_energy
from .tasks import Store, Task, TaskId

__all__ = ["html_report", "write_html_report"]

MAX_KINDS = 6  # panels per chart; the page says when kinds were left out
NO_TASK = "(no task)"
IN_TASK = "(task)"  # calls directly under their task, in no step or tool


def write_html_report(
    db: StoreBackend,
    path: str | os.PathLike[str],
    *,
    rows: Sequence[dict[str, Any]] | None = None,
    by: str | Sequence[str] = "kind",
    since_ns: int | None = None,
    until_ns: int | None = None,
    kind: str | None = None,
    where: Mapping[str, str] | Sequence[str] | None = None,
) -> None:
    """Write the page to ``path`` (see `html_report`); raises ReportError when it cannot be written."""
    page = html_report(db, rows=rows, by=by, since_ns=since_ns, until_ns=until_ns, kind=kind, where=where)
    try:
        Path(path).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write the HTML report to {path}: {exc.strerror or exc}") from exc


def html_report(
    db: StoreBackend,
    *,
    rows: Sequence[dict[str, Any]] | None = None,
    by: str | Sequence[str] = "kind",
    since_ns: int | None = None,
    until_ns: int | None = None,
    kind: str | None = None,
    where: Mapping[str, str] | Sequence[str] | None = None,
) -> str:
    """The page as text. ``rows`` are `report()` rows for the table (computed when not given)."""
    if rows is None:
        rows = report(db, by=by, since_ns=since_ns, until_ns=until_ns, kind=kind, where=where)
    data = chart_data(db, since_ns=since_ns, until_ns=until_ns, kind=kind, where=where)
    filters = _describe_filters(by, since_ns, until_ns, kind, where)
    return _page(rows, data, filters)


# --- the numbers behind the charts ---------------------------------------------------------------------


@dataclass
class TaskCost:
    """One task of the selection: its kind, start, cost (LLM + tools) and how it ended."""

    kind: str
    started_ns: int
    cost_pico: int = 0
    unpriced_calls: int = 0
    estimated_calls: int = 0
    status: str = "no_outcome"  # succeeded | failed | no_outcome


@dataclass
class StepCost:
    """Cost attributed to one step or tool name: calls under it, and its own tool cost."""

    name: str
    llm_pico: int = 0
    tool_pico: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    unpriced_calls: int = 0
    estimated_calls: int = 0

    @property
    def cost_pico(self) -> int:
        return self.llm_pico + self.tool_pico


@dataclass
class ChartData:
    """What the charts draw, for the tasks the report's filters keep."""

    every: str  # the time bucket of the over-time chart: day, week or month
    kinds: list[str]  # the kinds drawn, costliest first (at most MAX_KINDS)
    kinds_left_out: int
    over_time: dict[str, list[dict[str, Any]]]  # kind -> report rows, one per time bucket
    tasks: dict[str, list[TaskCost]]  # kind -> its tasks
    by_model: list[dict[str, Any]]  # report rows grouped by model, costliest first
    by_step: list[StepCost] = field(default_factory=list)  # costliest first


def _selection(
    db: StoreBackend,
    since_ns: int | None,
    until_ns: int | None,
    kind: str | None,
    where: Mapping[str, str] | Sequence[str] | None,
) -> tuple[Store, dict[TaskId, Task]]:
    """The tasks `report()` keeps for these filters, by the same rules (start window, kind, --where)."""
    store = Store(db)
    tasks = store.tasks()
    known = store.known_attributes(tasks)
    selector = TaskSelector(known, since_ns=since_ns, until_ns=until_ns, kind=kind, where=where)
    return store, {ident: task for ident, task in tasks.items() if selector.keeps(task)}


def _every(tasks: Sequence[TaskCost]) -> str:
    """Day buckets while that stays readable (about three months), then weeks, then months."""
    if not tasks:
        return "day"
    days = (max(t.started_ns for t in tasks) - min(t.started_ns for t in tasks)) / 86_400e9
    return "day" if days <= 92 else "week" if days <= 7 * 104 else "month"


# Each LLM call goes to its parent span when that is a step or tool, else to its task ("(task)").
_CALLS_BY_STEP = """
    SELECT c.run_id, s.name, SUM(COALESCE(c.cost_pico, 0)), COUNT(*) FILTER (WHERE c.cost_pico IS NULL),
    SUM(c.estimated), COUNT(*)
    FROM calls c LEFT JOIN steps s ON s.span_id = c.parent_span_id AND s.trace_id = c.trace_id
    {where} GROUP BY c.run_id, s.name
"""
_TOOLS_BY_STEP = """
    SELECT run_id, name, SUM(COALESCE(cost_pico, 0)), COUNT(*) FILTER (WHERE type = 'tool') FROM steps
    WHERE run_id IS NOT NULL GROUP BY run_id, name
"""


RUNTIME = "(runtime)"  # the cost-by-step bar of the runs' [[runtime]] charges


def chart_data(
    db: StoreBackend,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    kind: str | None = None,
    where: Mapping[str, str] | Sequence[str] | None = None,
) -> ChartData:
    """The charts' numbers, with `report()`'s filters: per-task costs, cost by step, and report rows by
    kind and time bucket and by model. Costs by step and per task add up to the table's totals."""
    store, selected = _selection(db, since_ns, until_ns, kind, where)
    task_costs: dict[TaskId, TaskCost] = {}
    for ident, task in selected.items():
        status = "no_outcome" if task.outcome is None else "succeeded" if task.outcome.success else "failed"
        task_costs[ident] = TaskCost(task.kind, task.started_ns, status=status)
    of_run = {run_id: task_costs[ident] for run_id, ident in store.run_task.items() if ident in task_costs}
    steps: dict[str, StepCost] = {}

    def step(name: str | None, outside: bool = False) -> StepCost:
        label = name if name is not None else NO_TASK if outside else IN_TASK
        return steps.setdefault(label, StepCost(label))

    # As in `report()`: calls outside any task count (as "(no task)") only without --kind and --where;
    # with a time window, those whose own start is in it.
    with_outside = kind is None and not parse_where(where)
    windowed = since_ns is not None or until_ns is not None
    for run_id, name, cost, unpriced, estimated, calls in db.execute(
        _CALLS_BY_STEP.format(where="WHERE c.run_id IS NOT NULL")
    ):
        if run_id not in store.run_task:  # its run never reached the store: outside any task, like report()
            if with_outside and not windowed:
                _add_calls(step(name, outside=True), cost, unpriced, estimated, calls)
            continue
        task_cost = of_run.get(run_id)
        if task_cost is None:  # not selected
            continue
        task_cost.cost_pico += cost
        task_cost.unpriced_calls += unpriced
        task_cost.estimated_calls += estimated
        _add_calls(step(name), cost, unpriced, estimated, calls)
    if with_outside:
        clause, params = window_clause(since_ns, until_ns, "c.started_ns")
        sql = _CALLS_BY_STEP.format(where="WHERE c." + clause)
        for _, name, cost, unpriced, estimated, calls in db.execute(sql, params):
            _add_calls(step(name, outside=True), cost, unpriced, estimated, calls)
    for run_id, name, cost, tools in db.execute(_TOOLS_BY_STEP):
        task_cost = of_run.get(run_id)
        if task_cost is None:
            continue
        task_cost.cost_pico += cost
        entry = step(name)
        entry.tool_pico += cost
        entry.tool_calls += tools
    # A [[runtime]] charge for a run's wall time belongs to no step: a bar of its own.
    for run_id, runtime in db.execute("SELECT run_id, runtime_cost_pico FROM runs WHERE runtime_cost_pico IS NOT NULL"):
        task_cost = of_run.get(run_id)
        if task_cost is None:
            continue
        task_cost.cost_pico += runtime
        step(RUNTIME).tool_pico += runtime

    by_kind: dict[str, list[TaskCost]] = defaultdict(list)
    for task_cost in task_costs.values():
        by_kind[task_cost.kind].append(task_cost)
    ranked = sorted(by_kind, key=lambda k: (-sum(t.cost_pico for t in by_kind[k]), k))
    kinds = ranked[:MAX_KINDS]
    every = _every(list(task_costs.values()))
    over_time: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for row in report(db, by="kind", every=every, since_ns=since_ns, until_ns=until_ns, kind=kind, where=where):
        if row["group"]["kind"] in over_time:
            over_time[row["group"]["kind"]].append(row)
    by_model = [
        row for row in report(db, by="model", since_ns=since_ns, until_ns=until_ns, kind=kind, where=where)
        if row["llm_cost_usd"] or row["unpriced_calls"]
    ]
    by_model.sort(key=lambda r: (-r["llm_cost_usd"], str(r["group"]["model"])))
    return ChartData(
        every=every,
        kinds=kinds,
        kinds_left_out=len(ranked) - len(kinds),
        over_time=over_time,
        tasks={k: by_kind[k] for k in kinds},
        by_model=by_model,
        by_step=sorted(
            (s for s in steps.values() if s.cost_pico or s.unpriced_calls),
            key=lambda s: (-s.cost_pico, s.name),
        ),
    )


def _add_calls(entry: StepCost, cost: int, unpriced: int, estimated: int, calls: int) -> None:
    entry.llm_pico += cost
    entry.unpriced_calls += unpriced
    entry.estimated_calls += estimated
    entry.llm_calls += calls


# --- the page -------------------------------------------------------------------------------------------


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _usd(pico: int) -> Decimal:
    return from_pico(pico) or Decimal(0)


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _describe_filters(
    by: str | Sequence[str],
    since_ns: int | None,
    until_ns: int | None,
    kind: str | None,
    where: Mapping[str, str] | Sequence[str] | None,
) -> str:
    names = [n.strip() for n in (by.split(",") if isinstance(by, str) else by) if n.strip()]
    parts = [f"grouped by {', '.join(names) or 'nothing'}"]
    if kind is not None:
        parts.append(f"kind {kind}")
    if since_ns is not None:
        parts.append(f"tasks started from {_when(since_ns)}")
    if until_ns is not None:
        parts.append(f"tasks started before {_when(until_ns)}")
    parts += [f"{name} = {value}" for name, value in parse_where(where).items()]
    return "; ".join(parts)


def _group_label(row: Mapping[str, Any]) -> list[str]:
    group = row["group"]
    if all(v is None for v in group.values()) and row["runs"] == 0:
        return [NO_TASK] + [""] * (len(group) - 1)
    return ["(none)" if v is None else str(v) for v in group.values()]


_COLUMNS = (
    # (heading, field, money?)
    ("total cost", "cost_usd", True),
    ("cost/task", "cost_per_task_usd", True),
    ("cost/success", "cost_per_success_usd", True),
    ("p50/task", "cost_per_task_p50_usd", True),
    ("p95/task", "cost_per_task_p95_usd", True),
    ("wasted", "wasted_usd", True),
    ("tools", "tool_cost_usd", False),
    ("runtime", "runtime_cost_usd", False),
)


def _table(rows: Sequence[dict[str, Any]]) -> str:
    groups = list(rows[0]["group"])
    head = [
        *groups, "tasks", "runs", "ok", "success", *(c[0] for c in _COLUMNS), "energy", "LLM calls/task", "steps/task"
    ]
    out = ['<table class="summary"><thead><tr>']
    out += [f'<th{"" if i < len(groups) else " class=num"}>{_e(h)}</th>' for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        exact = row_for_json(row)
        marked = row["unpriced_calls"] > 0
        tasks = row["tasks"]
        cells = [f"<td>{_e(v)}</td>" for v in _group_label(row)]
        rate = "-" if row["success_rate"] is None else f"{row['success_rate']:.0%}"
        for text in (str(tasks) if row["runs"] else "-", str(row["runs"]) if row["runs"] else "-",
                     str(row["succeeded"]), rate):
            cells.append(f'<td class="num">{_e(text)}</td>')
        for _, name, mark in _COLUMNS:
            text = charts.usd(row[name], marked=mark and marked)
            if name == "cost_usd" and row["estimated_calls"]:
                text += "~"
            cells.append(f'<td class="num" title="{_e(exact[name])}">{_e(text)}</td>')
        energy_range = f"{row['energy_kwh_min']:.3g}..{row['energy_kwh_max']:.3g} kWh, " + (
            f"{row['gwp_kgco2eq_min']:.3g}..{row['gwp_kgco2eq_max']:.3g} kgCO2eq, "
            f"{row['unestimated_energy_calls']} call(s) unestimated"
        )
        cells.append(f'<td class="num" title="{_e(energy_range)}">{_e(format_energy(row))}</td>')
        cells.append(f'<td class="num">{_e(_per(row["llm_calls"], tasks) if tasks else row["llm_calls"])}</td>')
        cells.append(f'<td class="num">{_e(_per(row["steps"], tasks))}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _per(total: int, tasks: int) -> str:
    return "-" if not tasks else f"{total / tasks:,.1f}"


def _over_time_chart(kind: str, rows: Sequence[dict[str, Any]], every: str) -> str:
    cols = []
    for row in rows:
        bucket = str(row["group"][every])
        per = row["cost_per_success_usd"]
        mark = "*" if row["unpriced_calls"] else ""
        tip = (f"{bucket}: cost per success {charts.usd(per)}{mark}; {row['succeeded']} of {row['tasks']} task(s) "
               f"succeeded; total {charts.usd(row['cost_usd'])}{mark}")
        if per is None:
            cols.append(Column(bucket, (Decimal(0),), tip, missing="no success"))
        else:
            cols.append(Column(bucket, (per,), tip))
    return charts.columns(cols, [charts.PER_SUCCESS], fmt=charts.usd_tick, label=f"cost per success of {kind}")


def _distribution_chart(kind: str, tasks: Sequence[TaskCost]) -> str:
    """A histogram of task costs, each bin stacked by how its tasks ended."""
    costs = [t.cost_pico for t in tasks]
    bins = max(6, min(30, round(len(costs) ** 0.5)))
    width = max(1, -(-max(costs) // bins))  # pico-dollars per bin, rounded up so the costliest task fits
    counts = [{"succeeded": 0, "failed": 0, "no_outcome": 0} for _ in range(bins)]
    for t in tasks:
        counts[min(bins - 1, t.cost_pico // width)][t.status] += 1
    # Bin i holds [i*width, (i+1)*width); the last bin ends at the costliest task, which it holds.
    edges = [_usd(i * width) for i in range(bins)] + [_usd(max(costs))]
    cols = []
    for i, c in enumerate(counts):
        low, high = edges[i], edges[i + 1]
        closing = "]" if i == bins - 1 else ")"
        tip = (f"[{charts.usd(low)}, {charts.usd(high)}{closing}: {sum(c.values())} task(s): {c['succeeded']} "
               f"succeeded, {c['failed']} failed, {c['no_outcome']} without outcome")
        cols.append(Column(f"{charts.usd(low)}-{charts.usd(high)}",
                           (Decimal(c["succeeded"]), Decimal(c["failed"]), Decimal(c["no_outcome"])), tip))
    return charts.columns(
        cols, [charts.SUCCEEDED, charts.FAILED, charts.NO_OUTCOME], fmt=charts.count_tick, integer=True,
        label=f"distribution of task costs of {kind} (bins labelled at their edges; the last edge is the maximum)",
        edges=[charts.usd(e) for e in edges],
    )


def _model_chart(rows: Sequence[dict[str, Any]]) -> str:
    items = []
    for row in rows:
        model = row["group"]["model"]
        name = (NO_TASK if row["runs"] == 0 else "(none)") if model is None else str(model)
        marked = row["unpriced_calls"] > 0
        text = charts.usd(row["llm_cost_usd"], marked=marked) + ("~" if row["estimated_calls"] else "")
        tip = f"{name}: {text} over {row['llm_calls']} LLM call(s) in {row['tasks']} task(s)"
        items.append(Bar(name, (row["llm_cost_usd"],), text, tip))
    return charts.bars(items, [charts.MODEL], label="cost by model")


def _step_chart(steps: Sequence[StepCost]) -> str:
    items = []
    for s in steps:
        llm, tool = _usd(s.llm_pico), _usd(s.tool_pico)
        text = charts.usd(llm + tool, marked=s.unpriced_calls > 0) + ("~" if s.estimated_calls else "")
        tip = (f"{s.name}: {text}: LLM {charts.usd(llm)} ({s.llm_calls} call(s)), "
               f"tools {charts.usd(tool)} ({s.tool_calls} call(s))")
        items.append(Bar(s.name, (llm, tool), text, tip))
    return charts.bars(items, [charts.STEP_LLM, charts.STEP_TOOL], label="cost by step")


def _section(title: str, note: str, body: str) -> str:
    return f'<section><h2>{_e(title)}</h2><p class="note">{_e(note)}</p>{body}</section>'


def _charts(data: ChartData) -> list[str]:
    sections = []
    left_out = (f" {data.kinds_left_out} cheaper kind(s) are not drawn: use --kind."
                if data.kinds_left_out else "")
    panels = "".join(
        f"<h3>{_e(k)}</h3>{_over_time_chart(k, data.over_time[k], data.every)}" for k in data.kinds
    )
    sections.append(_section(
        "Cost per success over time",
        f"Per {data.every} (UTC, by task start): all cost of the tasks started then, failed ones included, "
        f"divided by their successes.{left_out}",
        panels,
    ))
    panels = "".join(f"<h3>{_e(k)}</h3>{_distribution_chart(k, data.tasks[k])}" for k in data.kinds)
    legend = charts.legend([(charts.SUCCEEDED, "succeeded"), (charts.FAILED, "failed"),
                            (charts.NO_OUTCOME, "no outcome")])
    sections.append(_section(
        "Distribution of cost per task",
        "How many tasks cost how much (LLM calls and tools, all runs of a task)." + left_out,
        legend + panels,
    ))
    if data.by_model:
        sections.append(_section(
            "Cost by model", "LLM cost only: tool costs belong to no model.", _model_chart(data.by_model)
        ))
    if data.by_step:
        legend = charts.legend([(charts.STEP_LLM, "LLM calls"), (charts.STEP_TOOL, "tool cost")])
        sections.append(_section(
            "Cost by step",
            f"Each LLM call counts in the step or tool it was made in; {IN_TASK}: directly in its task; "
            f"{NO_TASK}: outside any task. A tool's own cost counts in the tool.",
            legend + _step_chart(data.by_step),
        ))
    return sections


_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #111827; background: #fff; margin: 24px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 0 0 2px; }
h3 { font-size: 13px; margin: 12px 0 2px; color: #374151; }
section { margin: 28px 0; } .note, .legend { color: #4b5563; font-size: 12px; margin: 2px 0 8px; }
.legend span { margin-right: 16px; white-space: nowrap; } .legend svg { display: inline-block; }
table.summary { border-collapse: collapse; font-size: 13px; }
table.summary th, table.summary td { padding: 4px 8px; border-bottom: 1px solid #e5e7eb; text-align: left; }
table.summary .num { text-align: right; font-variant-numeric: tabular-nums; }
svg { display: block; } svg text { font: 11px system-ui, sans-serif; }
"""
# Nothing may load at view time: no script at all, styles only from this page, images only inline.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _page(rows: Sequence[dict[str, Any]], data: ChartData, filters: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        "<title>unitcost report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>unitcost report</h1>",
        f'<p class="note">{_e(filters)}. Written {_e(_when(time.time_ns()))}.</p>',
    ]
    if not rows:
        parts.append("<p>No tasks in this window. Run an instrumented program, or widen --since/--until.</p>")
    else:
        parts.append(_section(
            "Cost per task and per successful task",
            "ok = tasks whose latest outcome is a success; success = ok / (ok + failed); cost/success = all cost "
            "in the group / ok; wasted = cost of failed tasks. (no task): calls made outside any task.",
            _table(rows),
        ))
        parts += _charts(data)
    unpriced = sum(r["unpriced_calls"] for r in rows)
    estimated = sum(r["estimated_calls"] for r in rows)
    if unpriced:
        parts.append(f'<p class="note">* {unpriced} LLM call(s) are unpriced (unknown model or no usage '
                     "reported): costs marked * leave them out. Add their prices to unitcost.toml.</p>")
    if estimated:
        parts.append(f'<p class="note">~ {estimated} LLM call(s) have estimated token counts '
                     "(the provider reported none).</p>")
    # The table's rows as `unitcost report --format json` writes them, for programs; never executed.
    payload = json.dumps([row_for_json(r) for r in rows], default=_json_default, indent=None)
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    parts.append(f'<script type="application/json" id="unitcost-report">{payload}</script>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return usd_for_json(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
