"""The opt-in summary printed when an instrumented program exits (``UNITCOST_SUMMARY=1``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["print_summary", "wanted"]


def wanted() -> bool:
    return os.environ.get("UNITCOST_SUMMARY", "") not in ("", "0", "false", "False")


def print_summary(db_path: Path, since_ns: int) -> None:
    """One screen: per task kind, what the tasks started since `since_ns` cost and achieved.

    Other processes writing the same store in the same period are included: the store does not
    tell processes apart.
    """
    # Here: rich, the report engine and the store are needed only when a summary is printed (start-up time).
    from rich.console import Console
    from rich.table import Table

    from ..report.engine import report
    from ..store.connect import open_backend

    with open_backend(db_path, create=False) as db:
        rows = report(db, since_ns=since_ns)
    console = Console(file=sys.stderr)
    if not rows:
        console.print("unitcost: no tasks or LLM calls recorded by this run.")
        return
    table = Table(title=f"unitcost summary ({db_path})", title_justify="left")
    for title in ("kind", "tasks", "ok", "failed", "cost", "cost/success", "LLM calls", "tool calls", "unpriced"):
        table.add_column(title, justify="left" if title == "kind" else "right")
    for r in rows:
        per_success = r["cost_per_success_usd"]
        table.add_row(
            "(no task)" if not r["runs"] else str(r["group"]["kind"]), str(r["tasks"]), str(r["succeeded"]),
            str(r["failed"]), f"${r['cost_usd']:.6f}", "-" if per_success is None else f"${per_success:.6f}",
            str(r["llm_calls"]), str(r["tool_calls"]), str(r["unpriced_calls"]),
        )
    console.print(table)
    console.print(f"Explore: unitcost tasks --db {db_path}")
