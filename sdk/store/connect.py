"""`open_backend`: the store a ``db`` names, behind the store seam (`unitcost.store.backend`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..common.errors import ConfigurationError
from .backend import StoreBackend, is_url, redact_url
from .sqlite import SqliteBackend

__all__ = ["open_backend"]


def open_backend(
    db: str | os.PathLike[str] | StoreBackend | Any, *, create: bool = True, migrate: bool = True
) -> StoreBackend:
    """The store ``db`` names, opened: created when missing (with ``create``) and migrated.

    ``migrate=False`` (doctor) opens it to read only, changing nothing, not even its settings.

    ``db``: a ``postgresql://`` / ``postgres://`` URL, an SQLite file's path, an open `StoreBackend`
    (returned as it is), or an open ``sqlite_utils.Database`` (wrapped; the caller keeps closing it).
    Raises `StoreError` when the store cannot be opened, `ConfigurationError` when the backend's
    driver is not installed.
    """
    if isinstance(db, StoreBackend):
        return db
    if is_url(db):
        try:
            # Here: only a PostgreSQL store needs psycopg, an optional extra.
            from . import postgres  # type: ignore[attr-defined,unused-ignore]
        except ImportError as exc:
            raise ConfigurationError(
                f"a PostgreSQL store ({redact_url(str(db))}) needs psycopg: pip install 'unitcost[postgres]' ({exc})"
            ) from exc
        backend: StoreBackend = postgres.PostgresBackend(str(db), create=create, migrate=migrate)
        return backend
    if hasattr(db, "conn") and hasattr(db, "execute"):  # an open sqlite_utils.Database
        return SqliteBackend.wrap(db)  # type: ignore[arg-type]
    return SqliteBackend.open(Path(db), create=create, migrate=migrate)
