"""``unitcost``: reports over the local store. Each command opens the store, calls the library and
prints; domain errors become one clear line and a non-zero exit."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from unitcost._errors import StoreError
from unitcost._inspect import add_outcome, recent_runs, show_run
from unitcost._reports import ReportError, report
from unitcost._store import default_db_path, open_store
from unitcost._timewindow import parse_time

from . import _render


def _db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--db, shared by every command that reads the store; opens it and passes `db`."""

    @click.option(
        "--db",
        "db_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="The store to read (default: $UNITCOST_DB, else the per-user unitcost.db).",
    )
    @functools.wraps(fn)
    def wrapper(*args: Any, db_path: Path | None, **kwargs: Any) -> Any:
        path = db_path or default_db_path()
        try:
            db = open_store(path, create=False)
        except StoreError as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            return fn(*args, db=db, **kwargs)
        except (ReportError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            db.conn.close()

    return wrapper


def _time_option(name: str, help: str) -> Callable[..., Any]:
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc

    return click.option(name, callback=convert, help=help)


def _console() -> Console:
    return Console(soft_wrap=False, width=max(Console().width, 160))


@click.group()
@click.version_option(package_name="unitcost")
def cli() -> None:
    """unitcost: what one successful outcome of your LLM agent costs.

    Instrument your agent with the unitcost Python package, then read its cost per task and per
    successful task here.

    Example: unitcost demo
    """


@cli.command(name="report")
@_db_option
@_time_option("--since", "Only tasks that started at or after this: ISO date/time (UTC) or 7d, 24h, 30m.")
@_time_option("--until", "Only tasks that started before this: ISO date/time (UTC) or 7d, 24h, 30m.")
@click.option("--kind", help="Only tasks of this kind.")
@click.option(
    "--by", default="kind", show_default=True,
    help="Group by a comma list of: kind, model, provider, outcome, or a task attribute "
    "(attr.NAME for an attribute called like one of those).",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
def report_command(db: Any, since: int | None, until: int | None, kind: str | None, by: str, fmt: str) -> None:
    """Cost per task and per successful task, grouped.

    \b
    Examples:
      unitcost report
      unitcost report --since 7d --by kind,customer
      unitcost report --by model --format json
    """
    rows = report(db, by=by, since_ns=since, until_ns=until, kind=kind)
    if fmt == "json":
        click.echo(_render.report_json(rows))
    elif fmt == "csv":
        click.echo(_render.report_csv(rows), nl=False)
    else:
        _render.report_table(rows, _console())


@cli.command(name="tasks")
@_db_option
@click.option("--kind", help="Only runs of this kind.")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True, help="How many runs to list.")
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
        _render.tasks_table(rows, _console())


@cli.command(name="show")
@_db_option
@click.argument("task_id")
def show_command(db: Any, task_id: str) -> None:
    """One run's span tree with tokens and cost on every node (totals include children).

    \b
    Example:
      unitcost show 3f2a9c01b7d4e865
    """
    _render.run_tree(show_run(db, task_id), _console())


@cli.command(name="outcome")
@_db_option
@click.argument("ref")
@click.argument("label")
@click.option("--kind", help="The task kind, needed when the key exists in several kinds.")
@click.option("--success/--failure", "success", default=None, help="Override whether LABEL counts as a success.")
@click.option("--value", type=str, help="What the outcome was worth, in USD.")
def outcome_command(
    db: Any, ref: str, label: str, kind: str | None, success: bool | None, value: str | None
) -> None:
    """Record the outcome of a task: REF is a task id or a key.

    The latest outcome of a task wins; earlier ones stay in its history (`unitcost show`).

    \b
    Examples:
      unitcost outcome T-1042 resolved --kind support_ticket --value 12
      unitcost outcome 3f2a9c01b7d4e865 escalated
    """
    if value is not None:
        try:
            from decimal import Decimal, InvalidOperation

            Decimal(value)
        except InvalidOperation:
            raise click.BadParameter(f"{value!r} is not an amount in USD", param_hint="--value") from None
    matched, warning = add_outcome(db, ref, label, kind=kind, success=success, value=value)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"recorded {label!r} for {matched}")


@cli.command(name="demo")
@click.option(
    "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=Path("unitcost-demo.db"),
    show_default=True, help="Where to write the demo's store (replaced on each run; never your own store).",
)
def demo_command(db_path: Path) -> None:
    """Run a support-ticket agent against a local fake OpenAI server and report its costs.

    No network and no API key: the agent uses the real openai client against a server on
    127.0.0.1 that answers with fixed, realistic responses.

    \b
    Example:
      unitcost demo --db /tmp/demo.db
    """
    try:
        from unitcost.demo import run_demo
    except ImportError as exc:
        raise click.ClickException(f"the demo needs openai: pip install 'unitcost[openai]' ({exc})") from exc
    run_demo(db_path)
    db = open_store(db_path, create=False)
    try:
        _render.report_table(report(db), _console())
    finally:
        db.conn.close()
    click.echo(
        "\nExplore further:\n"
        f"  unitcost tasks --db {db_path}\n"
        f"  unitcost show TASK_ID --db {db_path}\n"
        f"  unitcost report --db {db_path} --by model\n"
        f"  unitcost report --db {db_path} --by kind,customer --format json"
    )
