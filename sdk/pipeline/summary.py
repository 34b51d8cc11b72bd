"""The opt-in summary printed when an instrumented program exits (``UNITCOST_SUMMARY=1``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["print_summary", "wanted"]


def wanted() -> bool:
    return os.environ.get("UNITCOST_SUMMARY", "") not in ("", "0", "false", "False")


def print_summary(db_path: Path, since_ns: int) -> None:
    """One screen: per task kind, what the tasks started since `since_ns` cost and achieved.

    Other processes writing the same store in the same period are included: the store does not
    tell processes apart.
    """
    # Here: the report engine, the store and the CLI's table fitting (rich) are needed only when a summary
    # is printed (start-up time).
    from ..cli.fit import Column, console, fitted_table, left_out_note
    from ..common.money import format_usd
    from ..report.engine import report
    from ..store.connect import open_backend

    with open_backend(db_path, create=False) as db:
        rows = report(db, since_ns=since_ns)
    out = console(stderr=True)
    if not rows:
        out.print("unitcost: no tasks or LLM calls recorded by this run.")
        return
    columns = [
        Column("kind", "left"), Column("tasks"), Column("ok"), Column("failed", priority=2), Column("cost"),
        Column("cost/success"), Column("LLM calls", priority=1), Column("tool calls", priority=3),
        Column("unpriced", priority=1),
    ]
    lines = []
    for r in rows:
        marked = r["unpriced_calls"] > 0
        lines.append([
            "(no task)" if not r["runs"] else str(r["group"]["kind"]), str(r["tasks"]), str(r["succeeded"]),
            str(r["failed"]), format_usd(r["cost_usd"], marked=marked),
            format_usd(r["cost_per_success_usd"], marked=marked), str(r["llm_calls"]), str(r["tool_calls"]),
            str(r["unpriced_calls"]),
        ])
    table, left_out = fitted_table(f"unitcost summary ({db_path})", columns, lines, out.width)
    out.print(table)
    note = left_out_note(left_out, out.width)
    if note:
        out.print(note.replace("; --wide shows all", "; `unitcost report` shows all"))
    if any(r["unpriced_calls"] for r in rows):
        out.print("* leaves out unpriced LLM calls (unknown model or no usage reported).")
    out.print(f"Explore: unitcost tasks --db {db_path}")
