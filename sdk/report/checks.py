"""`unitcost check`: thresholds over a report, for CI and cron. One line per breach."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

__all__ = ["breaches", "warnings_for"]

# threshold option -> (report field, "max" or "min", how the number reads)
THRESHOLDS = {
    "max_cost": ("cost_usd", "max", "total cost"),
    "max_cost_per_task": ("cost_per_task_usd", "max", "cost per task"),
    "max_cost_per_success": ("cost_per_success_usd", "max", "cost per success"),
    "max_cost_per_task_p50": ("cost_per_task_p50_usd", "max", "p50 cost per task"),
    "max_cost_per_task_p95": ("cost_per_task_p95_usd", "max", "p95 cost per task"),
    "max_cost_per_task_p99": ("cost_per_task_p99_usd", "max", "p99 cost per task"),
    "max_wasted": ("wasted_usd", "max", "wasted spend"),
    "min_success_rate": ("success_rate", "min", "success rate"),
}


def _show(field: str, value: Any) -> str:
    if field == "success_rate":
        return f"{value:.1%}"
    # Exact to the micro-dollar, not the tables' 4 places past a cent: a breach must read as one.
    amount = Decimal(value)
    return ("-" if amount < 0 else "") + f"${abs(amount):,.6f}".rstrip("0").rstrip(".")


def breaches(rows: Sequence[dict[str, Any]], limits: Mapping[str, Decimal | float | None]) -> list[str]:
    """A one-line reason for each group and threshold it breaks.

    A group with no success breaks a cost-per-success limit (its cost buys nothing). A group
    without any decided outcome is not judged on success rate.
    """
    reasons = []
    for row in rows:
        if not row["runs"]:
            continue  # calls outside any task have no per-task numbers
        group = ", ".join(f"{k}={'(none)' if v is None else v}" for k, v in row["group"].items()) or "all tasks"
        for option, limit in limits.items():
            if limit is None:
                continue
            field, direction, words = THRESHOLDS[option]
            value = row[field]
            if value is None:
                if field == "cost_per_success_usd" and row["cost_usd"] > 0:
                    spent = _show("cost_usd", row["cost_usd"])
                    reasons.append(f"{group}: {words} is unbounded (no success, {spent} spent)")
                continue
            limit_d = Decimal(str(limit))
            value_d = Decimal(str(value)) if field == "success_rate" else value
            if (direction == "max" and value_d > limit_d) or (direction == "min" and value_d < limit_d):
                sign = ">" if direction == "max" else "<"
                reasons.append(f"{group}: {words} {_show(field, value)} {sign} limit {_show(field, limit_d)}")
    return reasons


def warnings_for(rows: Sequence[dict[str, Any]]) -> tuple[int, list[str]]:
    """(how many groups a check judges, what the person running it must know about the numbers).

    A gate that judged nothing did not pass: with no group (a typo in --kind, a window with no task,
    only calls made outside any task) the caller exits 2, not 0."""
    checked = sum(1 for r in rows if r["runs"])
    notes = []
    dropped = rows[0].get("dropped_spans") if rows else 0
    if dropped:  # the numbers checked are too low: say so, whether or not a threshold broke
        notes.append(f"warning: {dropped} span(s) never reached the store; see `unitcost doctor`")
    unpriced = sum(r["unpriced_calls"] for r in rows if r["runs"])
    if unpriced:
        notes.append(
            f"warning: {unpriced} LLM call(s) are unpriced (unknown model or no usage): the costs checked leave "
            "them out, so they may be too low. Add their prices to unitcost.toml (docs/prices.md)."
        )
    outside = sum(r["llm_calls"] for r in rows if not r["runs"])
    if not checked:
        why = (
            f"only {outside} LLM call(s) made outside any task, which have no per-task numbers"
            if outside else "no task matched the filters (check --kind, --where, --since and --until)"
        )
        notes.append(f"nothing checked: {why}. `unitcost tasks` lists what the store holds.")
    return checked, notes
