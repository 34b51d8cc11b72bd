"""`unitcost doctor`: the health of a store, read without changing it.

Where it is, how big, which schema migrations it has (and which this unitcost would add), how many
rows each table holds, how many spans were dropped instead of stored (and why), whether it is in
WAL mode, whether SQLite finds it intact, and whether anyone but its owner can read it.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing
from pathlib import Path
from typing import Any

from ..common.errors import StoreError
from .backend import NEWER_WARNING
from .losses import dropped_by_reason, loss_file_for
from .schema import UNITCOST_TABLES, migrations, unusable

__all__ = ["store_health"]

_TABLES = ("runs", "calls", "steps", "outcomes", "call_content")


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def store_health(path: str | os.PathLike[str], *, full_check: bool = True) -> dict[str, Any]:
    """Facts about the store at ``path`` as a JSON-ready dict; ``ok`` is False when something is wrong
    (``problems``: the store is damaged); ``warnings`` are what makes its numbers or its privacy
    doubtful (dropped spans, loose permissions). Raises StoreError when there is no store there."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"no unitcost store at {path} (run an instrumented program first, or pass --db)")
    problems: list[str] = []
    warnings: list[str] = []
    mode = stat.S_IMODE(path.stat().st_mode)
    health: dict[str, Any] = {
        "path": str(path.resolve()),
        "size_bytes": _size(path),
        "wal_bytes": _size(path.with_name(path.name + "-wal")),
        "shm_bytes": _size(path.with_name(path.name + "-shm")),
        "permissions": oct(mode),
    }
    if mode & 0o077:
        warnings.append(f"readable or writable by others than its owner ({oct(mode)}): chmod 600 {path}")
    # Plain reads on a connection that sets nothing: doctor never migrates, converts or repairs.
    try:
        uri = path.resolve().as_uri() + "?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=10.0)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not (tables & UNITCOST_TABLES) and "_sqlite_migrations" not in tables:
                raise StoreError(f"{path} is an SQLite database but not a unitcost store")
            applied: list[str] = []
            if "_sqlite_migrations" in tables:
                applied = [
                    r[0] for r in conn.execute(
                        "SELECT name FROM _sqlite_migrations WHERE migration_set = ? ORDER BY rowid", [migrations.name]
                    )
                ]
            known = [m.name for m in migrations._migrations]
            health["schema"] = {
                "applied": applied,
                "pending": [name for name in known if name not in applied],
                "unknown": [name for name in applied if name not in known],  # from a newer unitcost
            }
            health["rows"] = {
                table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # names from _TABLES only
                for table in _TABLES
                if table in tables
            }
            # With what writers that could not reach the store counted beside it (unitcost.store.losses).
            dropped, last_drop_ns = dropped_by_reason(conn.execute, "dropped_spans" in tables, loss_file_for(path))
            health["dropped_spans"] = sum(dropped.values())
            health["dropped_by_reason"] = dropped
            health["last_drop_ns"] = last_drop_ns
            if dropped:
                warnings.append(
                    f"{sum(dropped.values())} span(s) were dropped instead of stored: reports are too low"
                )
            health["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if health["journal_mode"] != "wal":
                warnings.append(f"journal mode is {health['journal_mode']}, not wal: writers will wait on readers")
            check = "integrity_check" if full_check else "quick_check"
            result = [r[0] for r in conn.execute(f"PRAGMA {check}")]
            health["integrity"] = "ok" if result == ["ok"] else result[:20]
            if result != ["ok"]:
                problems.append(f"SQLite's {check} found problems: {'; '.join(result[:3])}")
    except sqlite3.DatabaseError as exc:
        raise unusable(path, exc) from exc
    if health.get("schema", {}).get("unknown"):
        warnings.append(NEWER_WARNING.format(", ".join(health["schema"]["unknown"])))
    if health.get("schema", {}).get("pending"):
        warnings.append("schema migrations pending (applied when an instrumented program next opens the store)")
    health["problems"] = problems
    health["warnings"] = warnings
    health["ok"] = not problems
    return health
