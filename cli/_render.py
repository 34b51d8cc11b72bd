"""Turning report rows into what a person reads (rich tables) or a program reads (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from unitcost.common.money import format_usd, usd_for_json
from unitcost.report import (
    Node,
    RunDetail,
    dropped_note,
    estimated_note,
    format_energy,
    group_label,
    unpriced_calls_note,
    unpriced_note,
)

from .fit import Column, fitted_table, left_out_note

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

usd = format_usd  # one formatter for the table, the page and the tree


def _num(value: float) -> str:
    """One number format for every token and call count: 1,234 or 1,234.5."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _per(total: int, tasks: int) -> str:
    """Per task in a task row; the total in the (no task) row, which has no tasks to divide by."""
    return _num(total / tasks) if tasks else _num(total)


_group_label = group_label


def _print_fitted(
    console: Console, title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]],
    sections: Sequence[bool] = (),
) -> None:
    table, left_out = fitted_table(title, columns, rows, console.width, sections=sections)
    console.print(table)
    note = left_out_note(left_out, console.width)
    if note:
        console.print(note)


def _group_columns(rows: Sequence[dict[str, Any]]) -> list[Column]:
    return [Column(name, "left") for name in rows[0]["group"]]


def report_table(rows: Sequence[dict[str, Any]], console: Console) -> None:
    """Three tables: what tasks cost and achieved, the tokens behind it, and where the money went."""
    if not rows:
        console.print("No tasks in this window. Run an instrumented program, or widen --since/--until.")
        return
    dropped = dropped_note(rows)
    if dropped:
        console.print(dropped)
    groups = _group_columns(rows)
    money_columns = [*groups, *(Column(h, priority=p) for h, p in (
        ("tasks", 0), ("runs", 3), ("ok", 2), ("success", 0), ("total cost", 0), ("cost/task", 0),
        ("cost/success", 0), ("LLM/task", 4), ("tools/task", 5), ("steps/task", 6), ("reasoning", 4),
    ))]
    token_columns = [*groups, *(Column(h, priority=p) for h, p in (
        ("input", 0), ("cache read", 1), ("cache write", 2), ("output", 0), ("reasoning", 2), ("LLM calls", 1),
    ))]
    spend_columns = [*groups, *(Column(h, priority=p) for h, p in (
        ("wasted", 0), ("p50/task", 2), ("p95/task", 1), ("reasoning", 3), ("tools", 3), ("runtime", 5),
        ("re-send~", 4), ("cache would save~", 4), ("margin/task", 2), ("energy", 6),
    ))]
    money, tokens, spend = [], [], []
    for row in rows:
        marked = row["unpriced_calls"] > 0
        tasks = row["tasks"]
        label = _group_label(row)
        # Wasted spend is the cost of failed tasks: with none failed it is exactly $0, unpriced calls or not.
        spend.append([
            *label,
            usd(row["wasted_usd"], marked=marked and bool(row["failed"])),
            usd(row["cost_per_task_p50_usd"], marked=marked),
            usd(row["cost_per_task_p95_usd"], marked=marked),
            usd(row["reasoning_cost_usd"], marked=marked),
            usd(row["tool_cost_usd"]),
            usd(row["runtime_cost_usd"]),
            usd(row["resend_cost_usd_estimated"]),
            usd(row["resend_cache_savings_usd_estimated"]),
            usd(row["margin_per_task_usd"], marked=marked),
            format_energy(row),
        ])
        rate = "-" if row["success_rate"] is None else f"{row['success_rate']:.0%}"
        share = "-" if row["reasoning_cost_share"] is None else f"{row['reasoning_cost_share']:.0%}"
        money.append([
            *label,
            str(tasks) if row["runs"] else "-",
            str(row["runs"]) if row["runs"] else "-",
            str(row["succeeded"]),
            rate,
            usd(row["cost_usd"], marked=marked) + ("~" if row["estimated_calls"] else ""),
            usd(row["cost_per_task_usd"], marked=marked),
            usd(row["cost_per_success_usd"], marked=marked),
            _per(row["llm_calls"], tasks),
            _per(row["tool_calls"], tasks),
            _per(row["steps"], tasks),
            share,
        ])
        tokens.append([
            *label,
            *(_per(row[f], tasks) for f in (
                "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens",
                "llm_calls",
            )),
        ])
    _print_fitted(console, "Cost per task and per successful task", money_columns, money)
    outside = any(not r["runs"] for r in rows)
    _print_fitted(
        console, "Tokens per task" + (" ((no task): totals)" if outside else ""), token_columns, tokens
    )
    _print_fitted(console, "Where the money went", spend_columns, spend)
    console.print(
        "ok = tasks whose latest outcome is a success; success = ok / (ok + failed), tasks without an "
        "outcome left out; cost/success = all cost in the group / ok. Input counts cached tokens too; "
        "output counts reasoning too. (no task) rows are calls made outside any task, totals not per task. "
        "wasted = cost of failed tasks. runtime = what [[runtime]] prices charge for task and session time. "
        "energy = the calls' estimated energy (midpoint; + some calls unestimated, ? none). "
        "~ re-send: input a call repeats from the previous call of its run, "
        "an estimate at today's prices, and what prompt caching would save on it."
    )
    for note in (unpriced_note(rows), estimated_note(rows)):
        if note:
            console.print(note)


def _print_unpriced(unpriced: int, console: Console) -> None:
    """The one explanation of `*`, the same under every table that marks it."""
    note = unpriced_calls_note(unpriced)
    if note:
        console.print(note)


def _for_json(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    from unitcost.report import row_for_json  # here: the report engine is not loaded for `unitcost show`

    return [row_for_json(r) for r in rows]


def report_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(_for_json(rows), indent=2)


def report_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    if not rows:
        return ""
    flat = _for_json(rows)
    group_names = list(flat[0]["group"])
    fields = group_names + [k for k in flat[0] if k != "group"]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in flat:
        writer.writerow({**row.pop("group"), **row})
    return out.getvalue()


def report_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Every field of the JSON format, as a Markdown table (same numbers)."""
    if not rows:
        return ""
    flat = _for_json(rows)
    names = list(flat[0]["group"]) + [k for k in flat[0] if k != "group"]
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    for row in flat:
        values = [*row["group"].values(), *(v for k, v in row.items() if k != "group")]
        lines.append("| " + " | ".join("" if v is None else str(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


_SIDE_FIELDS = (
    ("tasks", "tasks"), ("success_rate", "success rate"), ("cost_usd", "total cost"),
    ("cost_per_task_usd", "cost/task"), ("cost_per_success_usd", "cost/success"), ("wasted_usd", "wasted"),
)


def _side_value(field: str, value: Any) -> str:
    if value is None:
        return "-"
    if field == "tasks":
        return str(value)
    if field == "success_rate":
        return f"{value:.1%}"
    return usd(value)


def _side_change(field: str, change: Any, relative: float | None) -> str:
    if change is None:
        return "-"
    if field == "success_rate":
        return f"{change * 100:+.1f} pts"
    text = f"{change:+d}" if field == "tasks" else ("+" if change >= 0 else "") + usd(change)
    return text + (f" ({relative:+.1%})" if relative is not None else "")


def side_by_side_table(
    rows: Sequence[dict[str, Any]], a_label: str, b_label: str, title: str, console: Console
) -> None:
    if not rows:
        console.print("No tasks on either side.")
        return
    columns = [
        *_group_columns(rows), Column("metric", "left"), Column(a_label), Column(b_label), Column("change"),
    ]
    lines, sections = [], []
    for row in rows:
        label = ["(none)" if v is None else str(v) for v in row["group"].values()]
        marks = {side: bool(row[side].get("unpriced_calls")) for side in ("a", "b")}
        for i, (field, words) in enumerate(_SIDE_FIELDS):
            money = field.endswith("_usd")

            def star(value: Any, marked: bool, field: str = field, money: bool = money) -> str:
                return "*" if money and marked and value is not None else ""

            a, b, change = row["a"][field], row["b"][field], row["change"][field]
            lines.append([
                *(label if i == 0 else [""] * len(label)), words,
                _side_value(field, a) + star(a, marks["a"]),
                _side_value(field, b) + star(b, marks["b"]),
                _side_change(field, change, row["relative_change"][field]) + star(change, marks["a"] or marks["b"]),
            ])
            sections.append(i == len(_SIDE_FIELDS) - 1)
    _print_fitted(console, title, columns, lines, sections)
    unpriced = max(
        (sum(r[side].get("unpriced_calls") or 0 for r in rows) for side in ("a", "b")), default=0
    )
    _print_unpriced(unpriced, console)


def side_by_side_json(rows: Sequence[dict[str, Any]]) -> str:
    def money(d: dict[str, Any]) -> dict[str, Any]:
        return {k: (usd_for_json(v) if isinstance(v, Decimal) else v) for k, v in d.items()}

    return json.dumps(
        [{**r, "a": money(r["a"]), "b": money(r["b"]), "change": money(r["change"])} for r in rows], indent=2
    )


def when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def tasks_table(rows: Sequence[dict[str, Any]], console: Console) -> None:
    if not rows:
        console.print("No runs recorded yet.")
        return
    columns = [
        Column("task id", "left"), Column("kind", "left"), Column("key", "left", priority=1),
        Column("started (UTC)", "left", priority=3), Column("duration", priority=2), Column("LLM calls", priority=1),
        Column("cost"), Column("outcome", "left"),
    ]
    lines = []
    for r in rows:
        outcome = r["outcome"] or ("error" if r["error"] else "-")
        lines.append([
            r["task_id"], r["kind"], r["key"] or "", when(r["started_ns"]), f"{r['duration_s']:.2f}s",
            str(r["llm_calls"]), usd(r["cost_usd"], marked=r["unpriced_calls"] > 0), outcome,
        ])
    _print_fitted(console, "Recent runs (newest first)", columns, lines)
    _print_unpriced(sum(r["unpriced_calls"] for r in rows), console)


def _node_label(node: Node) -> Text:
    # Text, not markup: names and errors come from the user's program and may contain [brackets].
    from rich.text import Text  # here: `--format json` and `csv` print without rich (start-up time)

    seconds = (node.ended_ns - node.started_ns) / 1e9
    parts = [usd(node.cost_usd, marked=node.total("unpriced") > 0)]
    inp, out = node.total("input_tokens"), node.total("output_tokens")
    if inp or out:
        tokens = f"{inp:,} in / {out:,} out"
        cached, written = node.total("cache_read_tokens"), node.total("cache_write_tokens")
        reasoning = node.total("reasoning_tokens")
        extras = [
            f"{cached:,} cached" if cached else "", f"{written:,} written to cache" if written else "",
            f"{reasoning:,} reasoning" if reasoning else "",
        ]
        extras = [e for e in extras if e]
        parts.append(tokens + (f" ({', '.join(extras)})" if extras else ""))
    if node.total("estimated"):
        parts.append("~estimated")
    parts.append(f"{seconds:.2f}s")
    label = Text.assemble((node.type, "bold"), " ", node.name, "  ", "  ".join(parts))
    if node.error:
        label.append(f"  error: {node.error}", style="red")
    return label


def run_tree(detail: RunDetail, console: Console) -> None:
    head = f"{detail.kind}" + (f" key={detail.key}" if detail.key else "") + f"  task id {detail.run_id}"
    if len(detail.runs_of_task) > 1:
        head += f"  (run {detail.runs_of_task.index(detail.run_id) + 1} of {len(detail.runs_of_task)} of this task)"
    from rich.text import Text  # here: as in _node_label (start-up time)
    from rich.tree import Tree

    console.print(head)
    if detail.attributes:
        console.print("attributes: " + ", ".join(f"{k}={v}" for k, v in sorted(detail.attributes.items())))
    tree = Tree(_node_label(detail.tree))

    def add(parent: Tree, node: Node) -> None:
        for part in node.usage_parts:  # already in the call's totals: shown, not added again
            cost = part.get("cost_pico")
            price = "unpriced" if cost is None else usd(Decimal(cost) / 10**12)
            parent.add(Text.assemble(
                ("part", "dim"), f" {part.get('kind')} {part.get('model') or node.name}  {price}  "
                f"{part.get('input_tokens', 0):,} in / {part.get('output_tokens', 0):,} out",
            ))
        for child in node.children:
            add(parent.add(_node_label(child)), child)

    add(tree, detail.tree)
    console.print(tree)
    if detail.outcome_history:
        console.print("outcomes (latest wins):")
        for o in detail.outcome_history:
            value = f"  value {usd(Decimal(o.value_pico) / 10**12)}" if o.value_pico is not None else ""
            flag = "success" if o.success else "failure"
            console.print(f"  {when(o.recorded_ns)}  {o.label} ({flag}){value}  [{o.source}]")
    else:
        console.print("outcome: none recorded")
