"""Retention: drop what happened before a date."""

from __future__ import annotations

from .backend import StoreBackend
from .connect import open_backend

__all__ = ["prune"]


def prune(db: StoreBackend, before_ns: int, *, vacuum: bool = False) -> dict[str, int]:
    """Delete runs that started before `before_ns` with their calls and steps, calls and steps outside
    any task from before then, and outcomes recorded before then. Returns how many rows of each went."""
    db = open_backend(db)  # an open sqlite_utils.Database is taken too
    x = db.execute
    counts: dict[str, int] = {}
    with db.transaction():
        old_runs = "SELECT run_id FROM runs WHERE started_ns < ?"
        # Captured prompt and completion text goes with its call, never outliving it.
        x(
            f"DELETE FROM call_content WHERE span_id IN (SELECT span_id FROM calls WHERE run_id IN ({old_runs}) "
            "OR (run_id IS NULL AND started_ns < ?))",
            [before_ns, before_ns],
        )
        counts["calls"] = x(
            f"DELETE FROM calls WHERE run_id IN ({old_runs}) OR (run_id IS NULL AND started_ns < ?)",
            [before_ns, before_ns],
        ).rowcount
        counts["steps"] = x(
            f"DELETE FROM steps WHERE run_id IN ({old_runs}) OR (run_id IS NULL AND started_ns < ?)",
            [before_ns, before_ns],
        ).rowcount
        x(f"DELETE FROM run_totals WHERE run_id IN ({old_runs})", [before_ns])
        x(f"DELETE FROM run_sums WHERE run_id IN ({old_runs})", [before_ns])
        counts["runs"] = x("DELETE FROM runs WHERE started_ns < ?", [before_ns]).rowcount
        counts["outcomes"] = x("DELETE FROM outcomes WHERE recorded_ns < ?", [before_ns]).rowcount
        x("DELETE FROM dropped_spans WHERE recorded_ns < ?", [before_ns])
    if vacuum:
        db.compact()
    return counts
