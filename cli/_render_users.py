"""Rendering the per-user reports: `report --users` and `whatif --cap-per-user`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from unitcost.common.money import format_usd, usd_for_json

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


def users_table(rows: Sequence[dict[str, Any]], console: Console) -> None:
    if not rows:
        console.print("No tasks in this window.")
        return
    table = Table(title=f"Cost per user (user = task attribute {rows[0]['user_attribute']!r})", title_justify="left")
    for name in rows[0]["group"]:
        table.add_column(name)
    for column in ("users", "cost", "top 1%", "top 10%", "gini", "p50/user", "p95/user", "p99/user", "heaviest"):
        table.add_column(column, justify="left" if column == "heaviest" else "right")
    for row in rows:
        heaviest = ", ".join(f"{u['user']} {format_usd(u['cost_usd'])}" for u in row["heaviest_users"][:3])
        table.add_row(
            *_label(row), str(row["users"]), format_usd(row["cost_usd"]),
            _pct(row["top_1pct_users_cost_share"]), _pct(row["top_10pct_users_cost_share"]),
            "-" if row["gini_cost_per_user"] is None else f"{row['gini_cost_per_user']:.2f}",
            format_usd(row["cost_per_user_p50_usd"]), format_usd(row["cost_per_user_p95_usd"]),
            format_usd(row["cost_per_user_p99_usd"]), heaviest or "-",
        )
    console.print(table)
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
    table = Table(title=f"What if: a cap of {rows[0]['cap']}", title_justify="left")
    for name in rows[0]["group"]:
        table.add_column(name)
    for column in ("users", "users capped", "tasks", "tasks stopped", "cost now", "with cap", "savings"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            *_label(row), str(row["users"]), str(row["users_capped"]), str(row["tasks"]), str(row["tasks_stopped"]),
            format_usd(row["cost_usd"]), format_usd(row["cost_with_cap_usd"]),
            f"{format_usd(row['savings_usd'])} ({_pct(row['savings_share'])})",
        )
    console.print(table)
    console.print(
        "Assumed: a user's tasks run while their spend in the period is below the cap (the task that crosses it "
        "still runs); later tasks are stopped and do not happen. Success rates of the tasks that still run are "
        "assumed unchanged."
    )
