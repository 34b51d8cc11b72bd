"""Retention: drop what happened before a date."""

from __future__ import annotations

import sqlite_utils

__all__ = ["prune"]


def prune(db: sqlite_utils.Database, before_ns: int, *, vacuum: bool = False) -> dict[str, int]:
    """Delete runs that started before `before_ns` with their calls and steps, calls and steps outside
    any task from before then, and outcomes recorded before then. Returns how many rows of each went."""
    conn = db.conn
    counts: dict[str, int] = {}
    conn.execute("BEGIN IMMEDIATE")
    try:
        old_runs = "SELECT run_id FROM runs WHERE started_ns < ?"
        # Captured prompt and completion text goes with its call, never outliving it.
        conn.execute(
            f"DELETE FROM call_content WHERE span_id IN (SELECT span_id FROM calls WHERE run_id IN ({old_runs}) "
            "OR (run_id IS NULL AND started_ns < ?))",
            [before_ns, before_ns],
        )
        counts["calls"] = conn.execute(
            f"DELETE FROM calls WHERE run_id IN ({old_runs}) OR (run_id IS NULL AND started_ns < ?)",
            [before_ns, before_ns],
        ).rowcount
        counts["steps"] = conn.execute(
            f"DELETE FROM steps WHERE run_id IN ({old_runs}) OR (run_id IS NULL AND started_ns < ?)",
            [before_ns, before_ns],
        ).rowcount
        conn.execute(f"DELETE FROM run_totals WHERE run_id IN ({old_runs})", [before_ns])
        conn.execute(f"DELETE FROM run_sums WHERE run_id IN ({old_runs})", [before_ns])
        counts["runs"] = conn.execute("DELETE FROM runs WHERE started_ns < ?", [before_ns]).rowcount
        counts["outcomes"] = conn.execute("DELETE FROM outcomes WHERE recorded_ns < ?", [before_ns]).rowcount
        conn.execute("DELETE FROM dropped_spans WHERE recorded_ns < ?", [before_ns])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if vacuum:
        conn.execute("VACUUM")
    return counts
