"""Commands about single tasks: `tasks`, `show` and `outcome`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from unitcost.common.money import parse_usd
from unitcost.query import import_outcomes
from unitcost.report import add_outcome, recent_runs, show_run

from . import _render
from ._options import console, db_option, progress_bar


@click.command(name="tasks")
@db_option
@click.option("--kind", help="Only runs of this kind.")
@click.option("--limit", type=click.IntRange(1, 10**9), default=20, show_default=True, help="How many runs to list.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def tasks_command(db: Any, kind: str | None, limit: int, fmt: str) -> None:
    """Recent runs with their task id, kind, key, cost and outcome.

    \b
    Example:
      unitcost tasks --kind support_ticket --limit 5
    """
    rows = recent_runs(db, limit=limit, kind=kind)
    if fmt == "json":
        click.echo(json.dumps([{**r, "cost_usd": float(r["cost_usd"])} for r in rows], indent=2))
    else:
        _render.tasks_table(rows, console())


@click.command(name="show")
@db_option
@click.argument("task_id")
def show_command(db: Any, task_id: str) -> None:
    """One run's span tree with tokens and cost on every node (totals include children).

    \b
    Example:
      unitcost show 3f2a9c01b7d4e865
    """
    _render.run_tree(show_run(db, task_id), console())


@click.command(name="outcome")
@db_option
@click.argument("ref", required=False)
@click.argument("label", required=False)
@click.option("--kind", help="The task kind, needed when the key exists in several kinds.")
@click.option("--success/--failure", "success", default=None, help="Override whether LABEL counts as a success.")
@click.option("--value", type=str, help="What the outcome was worth, in USD.")
@click.option(
    "--import", "import_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Add every outcome of a CSV or JSONL file with columns kind, key, label, success, value "
    "(or task_id instead of kind and key; recorded_at optional).",
)
def outcome_command(
    db: Any, ref: str | None, label: str | None, kind: str | None, success: bool | None, value: str | None,
    import_path: Path | None,
) -> None:
    """Record the outcome of a task: REF is a task id or a key. Or import many with --import.

    The latest outcome of a task wins; earlier ones stay in its history (`unitcost show`).

    \b
    Examples:
      unitcost outcome T-1042 resolved --kind support_ticket --value 12
      unitcost outcome 3f2a9c01b7d4e865 escalated
      unitcost outcome --import zendesk-export.csv
    """
    if import_path is not None:
        if ref or label:
            raise click.UsageError("give either REF LABEL or --import FILE, not both")
        with progress_bar("importing outcomes") as advance:
            count = import_outcomes(db, import_path, progress=advance)
        click.echo(f"imported {count} outcome(s) from {import_path}")
        return
    if not ref or not label:
        raise click.UsageError("give REF and LABEL (or --import FILE)")
    if value is not None:
        try:
            parse_usd(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--value") from None
    matched, warning = add_outcome(db, ref, label, kind=kind, success=success, value=value)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"recorded {label!r} for {matched}")
