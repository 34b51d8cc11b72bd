"""Rendering the per-user reports: `report --users` and `whatif --cap-per-user`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from unitcost.common.money import format_usd, usd_for_json

from .fit import Column, fitted_table, left_out_note

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["cap_json", "cap_table", "users_json", "users_table"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return usd_for_json(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def users_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps([_jsonable(r) for r in rows], indent=2)


cap_json = users_json


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _label(row: dict[str, Any]) -> list[str]:
    return ["(none)" if v is None else str(v) for v in row["group"].values()]


def _print_fitted(console: Console, title: str, columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> None:
    # The report's rule: columns by priority to fit the terminal, a line naming those left out (--wide).
    table, left_out = fitted_table(title, columns, rows, console.width)
    console.print(table)
    note = left_out_note(left_out, console.width)
    if note:
        console.print(note)


def users_table(rows: Sequence[dict[str, Any]], console: Console) -> None:
    if not rows:
        console.print("No tasks in this window.")
        return
    columns = [*(Column(name, "left") for name in rows[0]["group"]), *(Column(h, j, p) for h, j, p in (
        ("users", "right", 0), ("cost", "right", 0), ("top 1%", "right", 1), ("top 10%", "right", 0),
        ("gini", "right", 2), ("p50/user", "right", 1), ("p95/user", "right", 2), ("p99/user", "right", 3),
        ("heaviest", "left", 1),
    ))]
    lines = []
    for row in rows:
        heaviest = ", ".join(f"{u['user']} {format_usd(u['cost_usd'])}" for u in row["heaviest_users"][:3])
        lines.append([
            *_label(row), str(row["users"]), format_usd(row["cost_usd"]),
            _pct(row["top_1pct_users_cost_share"]), _pct(row["top_10pct_users_cost_share"]),
            "-" if row["gini_cost_per_user"] is None else f"{row['gini_cost_per_user']:.2f}",
            format_usd(row["cost_per_user_p50_usd"]), format_usd(row["cost_per_user_p95_usd"]),
            format_usd(row["cost_per_user_p99_usd"]), heaviest or "-",
        ])
    _print_fitted(console, f"Cost per user (user = task attribute {rows[0]['user_attribute']!r})", columns, lines)
    without = sum(r["tasks_without_user"] for r in rows)
    console.print(
        "top 1% / top 10% = share of the cost paid for the costliest 1% / 10% of users (at least one); gini = "
        "inequality of cost per user (0 all equal, towards 1 one user costs it all)."
        + (f" {without} task(s) name no user and are left out of these." if without else "")
    )


def cap_table(rows: Sequence[dict[str, Any]], console: Console) -> None:
    if not rows:
        console.print("No tasks in this window.")
        return
    columns = [*(Column(name, "left") for name in rows[0]["group"]), *(Column(h, priority=p) for h, p in (
        ("users", 1), ("users capped", 0), ("tasks", 2), ("tasks stopped", 0), ("cost now", 1), ("with cap", 1),
        ("savings", 0),
    ))]
    lines = [
        [
            *_label(row), str(row["users"]), str(row["users_capped"]), str(row["tasks"]), str(row["tasks_stopped"]),
            format_usd(row["cost_usd"]), format_usd(row["cost_with_cap_usd"]),
            f"{format_usd(row['savings_usd'])} ({_pct(row['savings_share'])})",
        ]
        for row in rows
    ]
    _print_fitted(console, f"What if: a cap of {rows[0]['cap']}", columns, lines)
    console.print(
        "Assumed: a user's tasks run while their spend in the period is below the cap (the task that crosses it "
        "still runs); later tasks are stopped and do not happen. Success rates of the tasks that still run are "
        "assumed unchanged."
    )
