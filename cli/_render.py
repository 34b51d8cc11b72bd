"""Turning report rows into what a person reads (rich tables) or a program reads (JSON, CSV)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from unitcost.common.money import format_usd, usd_for_json
from unitcost.report import Node, RunDetail, dropped_note, estimated_note, group_label, row_for_json, unpriced_note

usd = format_usd  # one formatter for the table, the page and the tree


def _per(total: int, tasks: int) -> str:
    return "-" if not tasks else f"{total / tasks:,.1f}"


_group_label = group_label


def _table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in rows[0]["group"]:
        table.add_column(name)
    for column in columns:
        table.add_column(column, justify="right")
    return table


def report_table(rows: Sequence[dict[str, Any]], console: Console) -> None:
    """Two tables: what tasks cost and achieved, then the tokens behind it, per task."""
    if not rows:
        console.print("No tasks in this window. Run an instrumented program, or widen --since/--until.")
        return
    dropped = dropped_note(rows)
    if dropped:
        console.print(dropped)
    money = _table(
        "Cost per task and per successful task", rows,
        ("tasks", "runs", "ok", "success", "total cost", "cost/task", "cost/success",
         "LLM/task", "tools/task", "steps/task", "reasoning"),
    )
    tokens = _table(
        "Tokens per task", rows, ("input", "cache read", "cache write", "output", "reasoning", "LLM calls")
    )
    spend = _table(
        "Where the money went", rows,
        ("wasted", "p50/task", "p95/task", "reasoning", "tools", "re-send~", "cache would save~", "margin/task"),
    )
    for row in rows:
        marked = row["unpriced_calls"] > 0
        tasks = row["tasks"]
        label = _group_label(row)
        spend.add_row(
            *label,
            usd(row["wasted_usd"], marked=marked),
            usd(row["cost_per_task_p50_usd"], marked=marked),
            usd(row["cost_per_task_p95_usd"], marked=marked),
            usd(row["reasoning_cost_usd"], marked=marked),
            usd(row["tool_cost_usd"]),
            usd(row["resend_cost_usd_estimated"]),
            usd(row["resend_cache_savings_usd_estimated"]),
            usd(row["margin_per_task_usd"], marked=marked),
        )
        rate = "-" if row["success_rate"] is None else f"{row['success_rate']:.0%}"
        share = "-" if row["reasoning_cost_share"] is None else f"{row['reasoning_cost_share']:.0%}"
        money.add_row(
            *label,
            str(tasks) if row["runs"] else "-",
            str(row["runs"]) if row["runs"] else "-",
            str(row["succeeded"]),
            rate,
            usd(row["cost_usd"], marked=marked) + ("~" if row["estimated_calls"] else ""),
            usd(row["cost_per_task_usd"], marked=marked),
            usd(row["cost_per_success_usd"], marked=marked),
            _per(row["llm_calls"], tasks) if tasks else str(row["llm_calls"]),
            _per(row["tool_calls"], tasks),
            _per(row["steps"], tasks),
            share,
        )
        tokens.add_row(
            *label,
            _per(row["input_tokens"], tasks) if tasks else f"{row['input_tokens']:,}",
            _per(row["cache_read_tokens"], tasks) if tasks else f"{row['cache_read_tokens']:,}",
            _per(row["cache_write_tokens"], tasks) if tasks else f"{row['cache_write_tokens']:,}",
            _per(row["output_tokens"], tasks) if tasks else f"{row['output_tokens']:,}",
            _per(row["reasoning_tokens"], tasks) if tasks else f"{row['reasoning_tokens']:,}",
            str(row["llm_calls"]),
        )
    console.print(money)
    console.print(tokens)
    console.print(spend)
    console.print(
        "ok = tasks whose latest outcome is a success; success = ok / (ok + failed), tasks without an "
        "outcome left out; cost/success = all cost in the group / ok. Input counts cached tokens too; "
        "output counts reasoning too. (no task) rows are calls made outside any task, totals not per task. "
        "wasted = cost of failed tasks. ~ re-send: input a call repeats from the previous call of its run, "
        "an estimate at today's prices, and what prompt caching would save on it."
    )
    for note in (unpriced_note(rows), estimated_note(rows)):
        if note:
            console.print(note)


def report_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps([row_for_json(r) for r in rows], indent=2)


def report_csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    if not rows:
        return ""
    flat = [row_for_json(r) for r in rows]
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
    flat = [row_for_json(r) for r in rows]
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
    text = f"{change:+d}" if field == "tasks" else ("+" if change >= 0 else "-") + usd(abs(change))
    return text + (f" ({relative:+.1%})" if relative is not None else "")


def side_by_side_table(
    rows: Sequence[dict[str, Any]], a_label: str, b_label: str, title: str, console: Console
) -> None:
    if not rows:
        console.print("No tasks on either side.")
        return
    table = Table(title=title, title_justify="left")
    for name in rows[0]["group"]:
        table.add_column(name)
    table.add_column("metric")
    table.add_column(a_label, justify="right")
    table.add_column(b_label, justify="right")
    table.add_column("change", justify="right")
    for row in rows:
        label = ["(none)" if v is None else str(v) for v in row["group"].values()]
        for i, (field, words) in enumerate(_SIDE_FIELDS):
            table.add_row(
                *(label if i == 0 else [""] * len(label)), words,
                _side_value(field, row["a"][field]), _side_value(field, row["b"][field]),
                _side_change(field, row["change"][field], row["relative_change"][field]),
                end_section=i == len(_SIDE_FIELDS) - 1,
            )
    console.print(table)


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
    table = Table(title="Recent runs (newest first)", title_justify="left")
    for title, justify in (("task id", "left"), ("kind", "left"), ("key", "left"), ("started (UTC)", "left"),
                           ("duration", "right"), ("LLM calls", "right"), ("cost", "right"), ("outcome", "left")):
        table.add_column(title, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        outcome = r["outcome"] or ("error" if r["error"] else "-")
        table.add_row(
            r["task_id"], r["kind"], r["key"] or "", when(r["started_ns"]), f"{r['duration_s']:.2f}s",
            str(r["llm_calls"]), usd(r["cost_usd"], marked=r["unpriced_calls"] > 0), outcome,
        )
    console.print(table)


def _node_label(node: Node) -> Text:
    # Text, not markup: names and errors come from the user's program and may contain [brackets].
    seconds = (node.ended_ns - node.started_ns) / 1e9
    parts = [usd(node.cost_usd, marked=node.total("unpriced") > 0)]
    inp, out = node.total("input_tokens"), node.total("output_tokens")
    if inp or out:
        tokens = f"{inp:,} in / {out:,} out"
        cached, reasoning = node.total("cache_read_tokens"), node.total("reasoning_tokens")
        extras = [f"{cached:,} cached" if cached else "", f"{reasoning:,} reasoning" if reasoning else ""]
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
