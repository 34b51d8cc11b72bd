"""`unitcost doctor`: is the store healthy, and are its numbers complete?"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from unitcost.common.errors import StoreError
from unitcost.query import store_health

from ._options import DB_HELP, console


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} B"


@click.command(name="doctor")
@click.option("--db", "db_path", default=None, metavar="PATH|URL", help=f"The store to examine {DB_HELP}.")
@click.option("--quick", is_flag=True, help="SQLite's quick_check instead of the full integrity_check (big stores).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def doctor_command(db_path: str | None, quick: bool, fmt: str) -> None:
    """The store's health: path, schema version, sizes, row counts, dropped spans, WAL mode, integrity.

    Reads only: it never migrates, repairs or rewrites the store. Exits 1 when SQLite finds the store
    damaged; dropped spans and loose file permissions are warnings.

    \b
    Examples:
      unitcost doctor
      unitcost doctor --db agent.db --format json
    """
    try:
        health = store_health(db_path, full_check=not quick)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    if fmt == "json":
        click.echo(json.dumps(health, indent=2))
    else:
        out = console()
        schema = health["schema"]
        last = schema["applied"][-1] if schema["applied"] else "none"
        last_drop = health["last_drop_ns"]
        lines = [
            ("store", health["path"]),
            ("schema", f"{len(schema['applied'])} migrations, latest {last}"
             + (f"; {len(schema['pending'])} pending" if schema["pending"] else "")),
            ("size", f"{_bytes(health['size_bytes'])} (+ WAL {_bytes(health['wal_bytes'])}, "
             f"shm {_bytes(health['shm_bytes'])})"),
            ("permissions", health["permissions"]),
            ("rows", ", ".join(f"{n:,} {table}" for table, n in health["rows"].items())),
            ("dropped spans", f"{health['dropped_spans']:,}"
             + (" (" + ", ".join(f"{n:,} {why}" for why, n in health["dropped_by_reason"].items()) + "; last "
                + datetime.fromtimestamp(last_drop / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC") + ")"
                if last_drop else "")),
            ("journal mode", health["journal_mode"]),
            ("integrity", "ok" if health["integrity"] == "ok" else "; ".join(health["integrity"])),
        ]
        width = max(len(name) for name, _ in lines)
        for name, value in lines:
            out.print(f"{name.ljust(width)}  {value}")
        for warning in health["warnings"]:
            out.print(f"warning: {warning}")
        for problem in health["problems"]:
            out.print(f"problem: {problem}")
    if not health["ok"]:
        raise SystemExit(1)
