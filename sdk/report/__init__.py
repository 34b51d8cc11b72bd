"""Read-only reports over the store: the report engines (SQL and Python), compare and what-if, checks,
runs and their details (`unitcost show`), the HTML page and its charts.

Runs in the CLI and behind `unitcost.query`; it only reads the database (`unitcost outcome`'s
`add_outcome` aside). The names below are its public API (the CLI uses only these); each is loaded
when first used, so that importing one report does not load every other's dependencies (the price
book's pydantic for `whatif`, for one).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "EVERY", "GROUP_FIELDS", "NO_TASK", "Node", "ReportError", "Repricer", "RunDetail", "TASK_SORTS", "TaskSummary",
    "add_outcome", "all_tasks", "breaches", "cap_per_user", "compare", "dropped_note", "estimated_note",
    "format_energy", "group_label", "html_report", "outcome_words", "page_of_tasks", "parse_cap", "parse_side",
    "recent_runs", "report", "row_for_json", "show_run", "store_version", "task_page", "unpriced_calls_note",
    "unpriced_note", "users_report", "warnings_for", "whatif", "write_html_report",
]

_WHERE = {
    "EVERY": "engine", "GROUP_FIELDS": "engine", "ReportError": "errors", "report": "engine", "row_for_json": "engine",
    "format_energy": "notes", "cap_per_user": "users", "parse_cap": "users", "users_report": "users",
    "Repricer": "sides", "compare": "sides", "parse_side": "sides", "whatif": "sides",
    "Node": "inspect", "RunDetail": "inspect", "add_outcome": "inspect", "recent_runs": "inspect",
    "show_run": "inspect", "outcome_words": "inspect",
    "breaches": "checks", "warnings_for": "checks", "html_report": "html", "write_html_report": "html",
    "TASK_SORTS": "browse", "TaskSummary": "browse", "all_tasks": "browse", "page_of_tasks": "browse",
    "store_version": "browse", "task_page": "task_list",
    "NO_TASK": "notes", "dropped_note": "notes", "estimated_note": "notes", "group_label": "notes",
    "unpriced_calls_note": "notes", "unpriced_note": "notes",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'unitcost.report' has no attribute {name!r}")
    # Here: each report's dependencies load when it is used (start-up time of the CLI).
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
