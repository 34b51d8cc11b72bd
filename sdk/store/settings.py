"""Settings kept in the store, so that the CLI reading it later knows what the program configured:
today the task attribute that names the user (`configure(user_attribute="customer")`)."""

from __future__ import annotations

from typing import Any

__all__ = ["recall", "remember"]


def remember(store: Any, name: str, value: str) -> None:
    """Keep ``name = value`` in a `StoreBackend` (the latest `configure()` wins)."""
    with store.transaction():
        store.execute(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [name, value],
        )


def recall(store: Any, name: str) -> str | None:
    """The value kept for ``name`` in a `StoreBackend`, or None (also for a store from before settings)."""
    if "settings" not in store.tables():
        return None
    row = store.execute("SELECT value FROM settings WHERE name = ?", [name]).fetchone()
    return None if row is None else str(row[0])
