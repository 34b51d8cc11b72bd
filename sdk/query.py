"""Reports as Python data, for notebooks and dashboards: the same rows as ``--format json``.

Example::

    import unitcost.query

    for row in unitcost.query.report(by="kind,customer", since="7d"):
        print(row["group"], row["cost_per_success_usd"])
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .common.timewindow import parse_time
from .report.inspect import recent_runs
from .store.backend import StoreBackend, is_url, redact_url
from .store.connect import open_backend
from .store.outcome_import import ImportError_, import_outcomes
from .store.prune import prune
from .store.schema import default_db_path

__all__ = [
    "ImportError_", "import_outcomes", "migrate", "open_store", "prune", "redact_url", "report", "store_health",
    "store_location", "tasks",
]


def store_location(db: str | os.PathLike[str] | None = None) -> str | Path:
    """Where ``db`` points: a PostgreSQL URL as given, else a path ($UNITCOST_DB, else the per-user
    unitcost.db, when None)."""
    if db is None:
        return default_db_path()
    return str(db) if is_url(db) else Path(db).expanduser()


def open_store(
    db: str | os.PathLike[str] | None = None, *, create: bool = False, migrate: bool = True
) -> StoreBackend:
    """The store at ``db`` (a path or a ``postgresql://`` URL; see `store_location`), open; close it
    (or use it in a ``with``). ``create``: make it when missing; ``migrate=False``: read only, change
    nothing (what ``unitcost doctor`` does). Raises StoreError when it cannot be opened."""
    return open_backend(store_location(db), create=create, migrate=migrate)


def store_health(db: str | os.PathLike[str] | None = None, *, full_check: bool = True) -> dict[str, Any]:
    """What ``unitcost doctor`` shows, read without changing the store (see StoreBackend.health)."""
    with open_store(db, migrate=False) as store:
        return store.health(full_check=full_check)


def migrate(db: str | os.PathLike[str] | None = None) -> list[str]:
    """Bring the store's schema up to this unitcost now, and return the names of the migrations that
    applied (none when it was up to date). Every program and command does this when it first opens
    the store; doing it ahead of a rollout spares the programs' `configure()` the wait on a big store.
    Raises StoreError when there is no store there, or a newer unitcost has migrated it."""
    with open_store(db, migrate=False) as store:
        before = store.migrations()
        store.refuse_if_newer()
    with open_store(db) as store:
        return [name for name in store.migrations() if name not in before]


@contextmanager
def _open(db: str | os.PathLike[str] | None) -> Iterator[Any]:
    with open_store(db) as store:
        yield store


def _ns(value: str | int | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return parse_time(value)


def report(
    *,
    db: str | os.PathLike[str] | None = None,
    by: str | Sequence[str] = "kind",
    every: str | None = None,
    since: str | int | None = None,
    until: str | int | None = None,
    kind: str | None = None,
    where: Mapping[str, str] | Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """The rows of ``unitcost report --format json``: money as floats rounded to 9 places.

    ``since``/``until`` take what the CLI takes (``"7d"``, ``"2026-11-01"``) or Unix nanoseconds.
    """
    # Here: the report engine loads when a report is asked for, not for `unitcost show` (start-up time).
    from .report.engine import report as _report
    from .report.engine import row_for_json

    with _open(db) as store:
        rows = _report(store, by=by, every=every, since_ns=_ns(since), until_ns=_ns(until), kind=kind, where=where)
    return [row_for_json(r) for r in rows]


def tasks(
    *, db: str | os.PathLike[str] | None = None, limit: int = 20, kind: str | None = None
) -> list[dict[str, Any]]:
    """The newest runs, as ``unitcost tasks --format json`` lists them."""
    with _open(db) as store:
        rows = recent_runs(store, limit=limit, kind=kind)
    return [{**r, "cost_usd": float(r["cost_usd"])} for r in rows]
