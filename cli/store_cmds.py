"""Commands that look after the store itself: `prune`, `migrate`."""

from __future__ import annotations

import time
from typing import Any

import click

from unitcost.common.errors import StoreError
from unitcost.query import migrate, prune

from ._options import DB_HELP, db_option, time_option


@click.command(name="prune")
@db_option
@time_option("--before", "Delete what started (runs, calls) or was recorded (outcomes) before this.")
@click.option("--vacuum", is_flag=True, help="Then give the space back to the file system (slow on big stores).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for cron).")
def prune_command(db: Any, before: int | None, vacuum: bool, yes: bool) -> None:
    """Delete old runs with their calls and steps, and old outcomes (retention).

    \\b
    Examples:
      unitcost prune --before 90d
      unitcost prune --before 2026-01-01 --vacuum --yes
    """
    if before is None:
        raise click.UsageError("--before is required, e.g. --before 90d")
    if not yes:
        click.confirm("Delete everything from before that time? This cannot be undone", abort=True)
    counts = prune(db, before, vacuum=vacuum)
    click.echo("deleted " + ", ".join(f"{n} {table}" for table, n in counts.items()))


@click.command(name="migrate")
@click.option("--db", "db_path", default=None, metavar="PATH|URL", help=f"The store to migrate {DB_HELP}.")
def migrate_command(db_path: str | None) -> None:
    """Bring the store's schema up to this unitcost now, before rolling it out.

    Every instrumented program and command migrates the store when it first opens it; on a big store
    that takes a while (tens of seconds for a million calls), which a program would spend in
    configure(). Run this once, with the new unitcost, before the new version reaches your services.
    Exits 1 when a newer unitcost has migrated the store already.

    \b
    Examples:
      unitcost migrate
      unitcost migrate --db postgresql://unitcost@db.internal/unitcost
    """
    started = time.monotonic()
    try:
        applied = migrate(db_path)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    if applied:
        click.echo(f"applied {len(applied)} migration(s) in {time.monotonic() - started:.1f} s: {', '.join(applied)}")
    else:
        click.echo("the store is up to date: nothing to apply")
