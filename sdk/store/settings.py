"""Settings kept in the store, so that the CLI reading it later knows what the program configured:
today the task attribute that names the user (`configure(user_attribute="customer")`)."""

from __future__ import annotations

from typing import Any

__all__ = ["recall", "remember"]


def remember(db: Any, name: str, value: str) -> None:
    """Keep ``name = value`` (the latest `configure()` wins)."""
    db.execute(
        "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        [name, value],
    )


def recall(db: Any, name: str) -> str | None:
    """The value kept for ``name``, or None (also for a store from before settings were kept)."""
    if "settings" not in db.table_names():
        return None
    row = db.execute("SELECT value FROM settings WHERE name = ?", [name]).fetchone()
    return None if row is None else str(row[0])
