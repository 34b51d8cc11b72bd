"""The warnings that go with a report's numbers, worded once for the terminal table and the UI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "NO_TASK", "dropped_note", "estimated_note", "format_energy", "group_label", "unpriced_calls_note", "unpriced_note",
]

NO_TASK = "(no task)"


def group_label(row: dict[str, Any]) -> list[str]:
    """A report row's group values as shown: "(none)" for a missing value, "(no task)" for the row of
    calls made outside any task."""
    group = row["group"]
    if all(v is None for v in group.values()) and row["runs"] == 0:
        return [NO_TASK] + [""] * (len(group) - 1)
    return ["(none)" if v is None else str(v) for v in group.values()]


def dropped_note(rows: Sequence[dict[str, Any]]) -> str | None:
    """Spans that never reached the store: every number of the report is too low."""
    dropped = (rows[0].get("dropped_spans") or 0) if rows else 0
    if not dropped:
        return None
    return (
        f"! {dropped} span(s) never reached the store (its queue was full, or it refused a write): "
        "the numbers below are too low. `unitcost doctor` says more."
    )


def unpriced_note(rows: Sequence[dict[str, Any]]) -> str | None:
    return unpriced_calls_note(sum(r["unpriced_calls"] for r in rows))


def unpriced_calls_note(unpriced: int) -> str | None:
    """The one explanation of `*`, the same under every table (report, tasks, compare, whatif) that marks it."""
    if not unpriced:
        return None
    return (
        f"* {unpriced} LLM call(s) are unpriced (unknown model or no usage reported): costs marked * "
        "leave them out. Add their prices to unitcost.toml (docs/prices.md)."
    )


def estimated_note(rows: Sequence[dict[str, Any]]) -> str | None:
    estimated = sum(r["estimated_calls"] for r in rows)
    if not estimated:
        return None
    return f"~ {estimated} LLM call(s) have estimated token counts (the provider reported none)."


def format_energy(row: Mapping[str, Any]) -> str:
    """A group's energy as tables and pages print it: the midpoint in Wh; `+` when some calls are
    unestimated (so the figure is too low), `?` when none is estimated."""
    if row["llm_calls"] == row["unestimated_energy_calls"]:
        return "?" if row["llm_calls"] else "-"
    text = f"{row['energy_kwh'] * 1000:.3g} Wh"
    return text + "+" if row["unestimated_energy_calls"] else text
