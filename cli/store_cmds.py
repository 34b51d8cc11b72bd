"""Commands that look after the store itself: `prune`."""

from __future__ import annotations

from typing import Any

import click

from unitcost.query import prune

from ._options import db_option, time_option


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
