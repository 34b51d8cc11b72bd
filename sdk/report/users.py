"""Heavy users: how a group's cost spreads over its users, and what a usage cap per user would save.

A task attribute names the user (`configure(user_attribute="customer")`, kept in the store, or
`--user-attr`). A user's cost is the cost of all their tasks (LLM, tools and runtime), failed and
pending ones included, as everywhere else in the reports.

- *Top 1% / top 10% share*: the cost of the ceil(1%) / ceil(10%) costliest users (at least one) over
  the group's cost of tasks that name a user.
- *Gini*: of cost per user, 0 when all users cost the same, towards 1 when one user costs it all:
  sum over sorted costs x_1 <= ... <= x_n of (2i - n - 1) x_i, over n * sum(x).
- *Cost per user p50/p95/p99*: nearest rank, as the report's percentiles.
- *A cap* (`20/month`): each user's tasks, in start order, run while the user's spend in that UTC
  day/week/month (or in the whole window) is below the cap; the task that crosses it runs (it was
  already under way), later ones are stopped. Savings are the stopped tasks' cost. Outcomes of the
  tasks that still run are assumed unchanged: the stopped tasks simply do not happen.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ..common.money import from_pico, to_pico
from ..store.connect import open_backend
from ..store.settings import recall
from .engine import CostedTask, ReportError, costed_tasks, time_bucket
from .sql import nearest_rank

__all__ = ["Cap", "cap_per_user", "gini", "parse_cap", "user_attribute", "users_report"]

PERIODS = ("day", "week", "month")


def user_attribute(db: Any, given: str | None) -> str:
    """The task attribute that names the user: ``given`` (``--user-attr``), else the store's setting
    (`configure(user_attribute=...)`)."""
    name = given or recall(open_backend(db), "user_attribute")
    if not name:
        raise ReportError(
            "which task attribute names the user? Pass --user-attr NAME, or configure(user_attribute=NAME)"
        )
    return name[5:] if name.startswith("attr.") else name


def _user_of(item: CostedTask, attribute: str) -> str | None:
    value = item.task.attributes.get(attribute)
    return None if value is None else str(value)


def _share(costs_desc: Sequence[int], total: int, percent: int) -> float | None:
    if not costs_desc or not total:
        return None
    top = max(1, math.ceil(len(costs_desc) * percent / 100))
    return sum(costs_desc[:top]) / total


def gini(costs: Sequence[int]) -> float | None:
    """The Gini coefficient of these amounts (None without any, 0 when all are zero)."""
    n = len(costs)
    if not n:
        return None
    ordered = sorted(costs)
    total = sum(ordered)
    if not total:
        return 0.0
    return sum((2 * i - n - 1) * x for i, x in enumerate(ordered, start=1)) / (n * total)


def users_report(
    db: Any,
    *,
    user_attr: str | None = None,
    by: str | Sequence[str] = "kind",
    heaviest: int = 5,
    since_ns: int | None = None,
    until_ns: int | None = None,
    kind: str | None = None,
    where: Mapping[str, str] | Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per group: users, the top users' share of cost, Gini, cost per user percentiles and
    the heaviest users (money as Decimal, as `report` gives it)."""
    attribute = user_attribute(db, user_attr)
    names, tasks = costed_tasks(db, by=by, since_ns=since_ns, until_ns=until_ns, kind=kind, where=where)
    groups: dict[tuple[Any, ...], list[CostedTask]] = {}
    for item in tasks:
        groups.setdefault(item.group, []).append(item)
    rows = []
    for key in sorted(groups, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        per_user: dict[str, list[int]] = {}  # user -> [cost, tasks]
        without_user = 0
        unpriced = 0
        for item in groups[key]:
            unpriced += item.unpriced_calls
            user = _user_of(item, attribute)
            if user is None:
                without_user += 1
                continue
            acc = per_user.setdefault(user, [0, 0])
            acc[0] += item.cost_pico
            acc[1] += 1
        ranked = sorted(per_user.items(), key=lambda kv: (-kv[1][0], kv[0]))
        desc = [cost for _, (cost, _) in ranked]
        asc = desc[::-1]
        total = sum(desc)
        row: dict[str, Any] = {
            "group": dict(zip(names, key, strict=True)),
            "user_attribute": attribute,
            "users": len(per_user),
            "tasks": len(groups[key]),
            "tasks_without_user": without_user,
            "cost_usd": from_pico(total) or Decimal(0),
            "cost_per_user_usd": None if not per_user else (from_pico(total) or Decimal(0)) / len(per_user),
            "top_1pct_users_cost_share": _share(desc, total, 1),
            "top_10pct_users_cost_share": _share(desc, total, 10),
            "gini_cost_per_user": gini(desc),
        }
        for p in (50, 95, 99):
            row[f"cost_per_user_p{p}_usd"] = from_pico(asc[nearest_rank(len(asc), p) - 1]) if asc else None
        row["heaviest_users"] = [
            {"user": user, "cost_usd": from_pico(cost) or Decimal(0), "tasks": n}
            for user, (cost, n) in ranked[:heaviest]
        ]
        row["unpriced_calls"] = unpriced
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Cap:
    """A usage cap: at most ``usd`` of cost per user per ``period`` (day, week, month, or None: the window)."""

    usd: Decimal
    period: str | None

    def __str__(self) -> str:
        return f"${self.usd} per user" + (f" per {self.period}" if self.period else " over the window")


def parse_cap(text: str) -> Cap:
    """`20/month`, `5/day`, `100/week`, or `20` (over the report's whole window)."""
    match = re.fullmatch(r"\s*\$?([0-9.]+)\s*(?:/\s*(day|week|month))?\s*", text)
    if not match:
        raise ReportError(f"--cap-per-user takes USD/PERIOD (20/month, 5/day, 100/week) or USD, not {text!r}")
    try:
        amount = Decimal(match.group(1))
    except InvalidOperation:
        raise ReportError(f"--cap-per-user: {match.group(1)!r} is not an amount") from None
    if not amount.is_finite() or amount <= 0:
        raise ReportError("--cap-per-user must be a positive amount")
    return Cap(amount, match.group(2))


def cap_per_user(
    db: Any,
    cap: Cap,
    *,
    user_attr: str | None = None,
    by: str | Sequence[str] = "kind",
    since_ns: int | None = None,
    until_ns: int | None = None,
    kind: str | None = None,
    where: Mapping[str, str] | Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Per group: cost now and with the cap, the savings, and the users and tasks the cap stops.
    Each user's spend counts across groups (a cap is per user, whatever the task's kind)."""
    attribute = user_attribute(db, user_attr)
    names, tasks = costed_tasks(db, by=by, since_ns=since_ns, until_ns=until_ns, kind=kind, where=where)
    limit = to_pico(cap.usd)
    spent: dict[tuple[str, str | None], int] = {}  # (user, period bucket) -> cost of the tasks that ran
    stopped: set[int] = set()
    for item in sorted(tasks, key=lambda t: t.task.started_ns):
        user = _user_of(item, attribute)
        if user is None:
            continue  # a task without a user is never capped
        bucket = (user, time_bucket(item.task.started_ns, cap.period) if cap.period else None)
        before = spent.get(bucket, 0)
        if before >= limit:
            stopped.add(id(item))
            continue
        spent[bucket] = before + item.cost_pico
    groups: dict[tuple[Any, ...], list[CostedTask]] = {}
    for item in tasks:
        groups.setdefault(item.group, []).append(item)
    rows = []
    for key in sorted(groups, key=lambda k: tuple("" if v is None else str(v) for v in k)):
        items = groups[key]
        now = sum(i.cost_pico for i in items)
        saved = sum(i.cost_pico for i in items if id(i) in stopped)
        users = {_user_of(i, attribute) for i in items} - {None}
        capped = {_user_of(i, attribute) for i in items if id(i) in stopped}
        rows.append({
            "group": dict(zip(names, key, strict=True)),
            "cap": str(cap),
            "cap_usd": cap.usd,
            "cap_period": cap.period,
            "user_attribute": attribute,
            "users": len(users),
            "users_capped": len(capped),
            "tasks": len(items),
            "tasks_stopped": sum(1 for i in items if id(i) in stopped),
            "cost_usd": from_pico(now) or Decimal(0),
            "cost_with_cap_usd": from_pico(now - saved) or Decimal(0),
            "savings_usd": from_pico(saved) or Decimal(0),
            "savings_share": None if not now else saved / now,
            "assumes": "success rates of the tasks that still run unchanged; stopped tasks do not happen",
        })
    return rows
