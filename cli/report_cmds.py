"""`unitcost report` and the commands that compare, re-price and check reports."""

from __future__ import annotations

from typing import Any

import click
from unitcost._reports import report

from . import _render
from ._options import console, db_option, time_option


@click.command(name="report")
@db_option
@time_option("--since", "Only tasks that started at or after this: ISO date/time (UTC) or 7d, 24h, 30m.")
@time_option("--until", "Only tasks that started before this: ISO date/time (UTC) or 7d, 24h, 30m.")
@click.option("--kind", help="Only tasks of this kind.")
@click.option(
    "--by", default="kind", show_default=True,
    help="Group by a comma list of: kind, model, provider, outcome, or a task attribute "
    "(attr.NAME for an attribute called like one of those).",
)
@click.option("--every", type=click.Choice(["day", "week", "month"]), help="Also group by UTC time bucket.")
@click.option("--where", multiple=True, metavar="NAME=VALUE", help="Only tasks whose attribute has this value.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown"]), default="table", show_default=True
)
def report_command(
    db: Any,
    since: int | None,
    until: int | None,
    kind: str | None,
    by: str,
    every: str | None,
    where: tuple[str, ...],
    fmt: str,
) -> None:
    """Cost per task and per successful task, grouped.

    \b
    Examples:
      unitcost report
      unitcost report --since 7d --by kind,customer
      unitcost report --by model --format json
      unitcost report --every week --where customer=acme
    """
    rows = report(db, by=by, every=every, since_ns=since, until_ns=until, kind=kind, where=where)
    if fmt == "json":
        click.echo(_render.report_json(rows))
    elif fmt == "csv":
        click.echo(_render.report_csv(rows), nl=False)
    elif fmt == "markdown":
        click.echo(_render.report_markdown(rows), nl=False)
    else:
        _render.report_table(rows, console())


