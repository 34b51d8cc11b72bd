"""Commands about single tasks: `tasks`, `show` and `outcome`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from unitcost.common.money import parse_usd
from unitcost.query import import_outcomes
from unitcost.report import add_outcome, outcome_words, recent_runs, show_run

from . import _render
from ._options import console, db_option, progress_bar, wide_option
from .fit import say


@click.command(name="tasks")
@db_option
@click.option("--kind", help="Only runs of this kind.")
@click.option("--limit", type=click.IntRange(1, 10**9), default=20, show_default=True, help="How many runs to list.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@wide_option
def tasks_command(db: Any, kind: str | None, limit: int, fmt: str, wide: bool) -> None:
    """Recent runs with their task id, kind, key, cost and outcome.

    \b
    Example:
      unitcost tasks --kind support_ticket --limit 5
    """
    rows = recent_runs(db, limit=limit, kind=kind)
    if fmt == "json":
        click.echo(json.dumps([{**r, "cost_usd": float(r["cost_usd"])} for r in rows], indent=2))
    else:
        _render.tasks_table(rows, console(wide=wide))


@click.command(name="show")
@db_option
@click.argument("ref")
@click.option("--kind", help="The task kind, needed when the key exists in several kinds.")
def show_command(db: Any, ref: str, kind: str | None) -> None:
    """One run's span tree with tokens and cost on every node (totals include children).

    REF is a task id (from `unitcost tasks`) or a key: a key shows its task's latest run.

    \b
    Examples:
      unitcost show 3f2a9c01b7d4e865
      unitcost show T-1004 --kind support_ticket
    """
    _render.run_tree(show_run(db, ref, kind=kind), console())


@click.command(name="outcome")
@db_option
@click.argument("ref", required=False)
@click.argument("label", required=False)
@click.option("--kind", help="The task kind, needed when the key exists in several kinds.")
@click.option("--success", "as_success", is_flag=True, help="LABEL counts as a success, whatever its word.")
@click.option("--failure", "as_failure", is_flag=True, help="LABEL counts as a failure, whatever its word.")
@click.option("--value", type=str, help="What the outcome was worth, in USD.")
@click.option(
    "--import", "import_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Add every outcome of a CSV or JSONL file with columns kind, key, label, success, value "
    "(or task_id instead of kind and key; recorded_at optional).",
)
def outcome_command(
    db: Any, ref: str | None, label: str | None, kind: str | None, as_success: bool, as_failure: bool,
    value: str | None, import_path: Path | None,
) -> None:
    """Record the outcome of a task: REF is a task id or a key. Or import many with --import.

    The latest outcome of a task wins; earlier ones stay in its history (`unitcost show`).
    resolved, success, succeeded, completed and passed are successes; any other label is a
    failure unless --success is given.

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
    if as_success and as_failure:
        raise click.UsageError("give --success or --failure, not both")
    success = True if as_success else (False if as_failure else None)
    if value is not None:
        try:
            parse_usd(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--value") from None
    matched, warning = add_outcome(db, ref, label, kind=kind, success=success, value=value)
    if warning:
        say(f"warning: {warning}", err=True)
    counted_as_success, note = outcome_words(label, success)
    click.echo(f"recorded {label!r} ({'success' if counted_as_success else 'failure'}) for {matched}")
    if note:
        say(note, err=True)
