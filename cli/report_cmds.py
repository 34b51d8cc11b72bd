"""`unitcost report` and the commands that compare, re-price and check reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from unitcost.report import report

from . import _render
from ._options import Number, console, db_option, reading, time_option, wide_option
from .fit import say


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
@click.option(
    "--where", multiple=True, metavar="NAME=VALUE",
    help="Only tasks whose attribute has this value; key=KEY: the task with this key.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown"]), default="table", show_default=True
)
@click.option(
    "--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML page with the table and charts.",
)
@click.option(
    "--users", "per_user", is_flag=True,
    help="Per group: users, the top 1%/10% users' share of cost, Gini, cost per user p50/p95/p99, heaviest users.",
)
@click.option(
    "--user-attr", metavar="NAME",
    help="The task attribute naming the user (default: configure(user_attribute=...), kept in the store).",
)
@click.option("--heaviest", type=click.IntRange(0, 1000), default=5, show_default=True, help="With --users.")
@wide_option
def report_command(
    db: Any,
    since: int | None,
    until: int | None,
    kind: str | None,
    by: str,
    every: str | None,
    where: tuple[str, ...],
    fmt: str,
    html_path: Path | None,
    per_user: bool,
    user_attr: str | None,
    heaviest: int,
    wide: bool,
) -> None:
    """Cost per task and per successful task, grouped.

    \b
    Examples:
      unitcost report
      unitcost report --since 7d --by kind,customer
      unitcost report --by model --format json
      unitcost report --every week --where customer=acme
      unitcost report --html report.html
      unitcost report --users --user-attr customer --since 30d
    """
    if per_user:
        _users_report(db, by, user_attr, heaviest, since, until, kind, where, fmt, wide)
        return
    with reading():
        rows = report(db, by=by, every=every, since_ns=since, until_ns=until, kind=kind, where=where)
    if html_path is not None:
        from unitcost.report import write_html_report

        write_html_report(
            db, html_path, rows=rows, by=by, since_ns=since, until_ns=until, kind=kind, where=where
        )
        click.echo(f"wrote {html_path}", err=True)
    if fmt == "json":
        click.echo(_render.report_json(rows))
    elif fmt == "csv":
        click.echo(_render.report_csv(rows), nl=False)
    elif fmt == "markdown":
        click.echo(_render.report_markdown(rows), nl=False)
    else:
        _render.report_table(rows, console(wide=wide))




def _users_report(
    db: Any, by: str, user_attr: str | None, heaviest: int, since: int | None, until: int | None,
    kind: str | None, where: tuple[str, ...], fmt: str, wide: bool,
) -> None:
    from unitcost.report import users_report

    from . import _render_users

    if fmt not in ("table", "json"):
        raise click.UsageError("--users renders as --format table or json")
    with reading():
        rows = users_report(
            db, user_attr=user_attr, by=by, heaviest=heaviest, since_ns=since, until_ns=until, kind=kind, where=where
        )
    if fmt == "json":
        click.echo(_render_users.users_json(rows))
    else:
        _render_users.users_table(rows, console(wide=wide))


def _side_by_side(
    rows: list[dict[str, Any]], a_label: str, b_label: str, title: str, fmt: str, wide: bool
) -> None:
    if fmt == "json":
        click.echo(_render.side_by_side_json(rows))
    else:
        _render.side_by_side_table(rows, a_label, b_label, title, console(wide=wide))


@click.command(name="compare")
@db_option
@click.argument("a")
@click.argument("b")
@click.option("--by", default="kind", show_default=True, help="Group by, as in `unitcost report`.")
@click.option("--kind", help="Only tasks of this kind.")
@time_option("--since", "Window for both sides when comparing attribute values.")
@time_option("--until", "Window for both sides when comparing attribute values.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@wide_option
def compare_command(
    db: Any, a: str, b: str, by: str, kind: str | None, since: int | None, until: int | None, fmt: str, wide: bool
) -> None:
    """Two attribute values or two time windows side by side, with the change in cost per success.

    A and B are each NAME=VALUE (a task attribute) or SINCE..UNTIL (a window; an end may be empty).

    \b
    Examples:
      unitcost compare prompt_version=v1 prompt_version=v2
      unitcost compare 14d..7d 7d.. --kind support_ticket
    """
    from unitcost.report import compare, parse_side  # the price book (pydantic): only when comparing

    side_a, side_b = parse_side(a), parse_side(b)
    with reading():
        rows = compare(db, side_a, side_b, by=by, kind=kind, since_ns=since, until_ns=until)
    _side_by_side(rows, a, b, f"{a} (A) vs {b} (B)", fmt, wide)


@click.command(name="whatif")
@db_option
@click.option("--model", help="Re-price every call as if this model had made it (same tokens).")
@click.option("--from-model", help="With --model: re-price only the calls of this model.")
@click.option("--prices", "price_file", type=click.Path(exists=True, dir_okay=False), help="Another price table.")
@click.option("--cache", "assume_cache", is_flag=True, help="Assume prompt caching of the re-sent context.")
@click.option(
    "--route", "routes", multiple=True, metavar="CONDITIONS:MODEL",
    help="Re-price the calls matching the conditions on MODEL, e.g. 'input_tokens<2000:gpt-4o-mini' or "
    "'kind=support_ticket,step=classify:gpt-4o-mini' (conditions: kind=, step=, model=, provider=, NAME=VALUE, "
    "input_tokens/output_tokens with < <= > >= =). Repeat it: the first matching rule wins.",
)
@click.option(
    "--batch", "batch_kinds", multiple=True, metavar="KIND",
    help="Price the calls of this task kind at the provider's Batch API prices (genai-prices). Repeatable.",
)
@click.option(
    "--cap-per-user", "cap", metavar="USD/PERIOD",
    help="A usage cap per user (20/month, 5/day, 100/week, or 20 for the window): savings, users and tasks stopped.",
)
@click.option("--user-attr", metavar="NAME", help="With --cap-per-user: the task attribute naming the user.")
@click.option("--by", default="kind", show_default=True, help="Group by, as in `unitcost report`.")
@click.option("--kind", help="Only tasks of this kind.")
@click.option(
    "--where", multiple=True, metavar="NAME=VALUE",
    help="Only tasks whose attribute has this value; key=KEY: the task with this key.",
)
@time_option("--since", "Only tasks that started at or after this.")
@time_option("--until", "Only tasks that started before this.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@wide_option
def whatif_command(
    db: Any, model: str | None, from_model: str | None, price_file: str | None, assume_cache: bool,
    routes: tuple[str, ...], batch_kinds: tuple[str, ...], cap: str | None, user_attr: str | None, by: str,
    kind: str | None, where: tuple[str, ...], since: int | None, until: int | None, fmt: str, wide: bool,
) -> None:
    """Re-price the stored workload: another model, another price table, or prompt caching assumed.

    Token counts are kept as recorded; success rates are ASSUMED UNCHANGED, which a cheaper model
    may not deliver: check with `unitcost compare` after trying it for real.

    \b
    Examples:
      unitcost whatif --model gpt-4o-mini --from-model o4-mini
      unitcost whatif --cache
      unitcost whatif --prices negotiated.toml
      unitcost whatif --route 'input_tokens<2000:gpt-4o-mini' --cache
      unitcost whatif --batch nightly_report --batch backfill
      unitcost whatif --cap-per-user 20/month --user-attr customer
    """
    from unitcost.report import Repricer, whatif

    if cap is not None:
        if model or price_file or assume_cache or routes or batch_kinds:
            raise click.UsageError(
                "--cap-per-user is a what-if of its own: not with --model, --prices, --cache, --route or --batch"
            )
        from unitcost.report import cap_per_user, parse_cap

        from . import _render_users

        with reading():
            capped = cap_per_user(
                db, parse_cap(cap), user_attr=user_attr, by=by, kind=kind, where=where, since_ns=since, until_ns=until
            )
        if fmt == "json":
            click.echo(_render_users.cap_json(capped))
        else:
            _render_users.cap_table(capped, console(wide=wide))
        return

    repricer = Repricer(
        model=model, from_model=from_model, price_file=price_file, assume_cache=assume_cache, routes=routes,
        batch_kinds=batch_kinds,
    )
    with reading("re-pricing every call"):
        rows = whatif(db, repricer, by=by, kind=kind, where=where, since_ns=since, until_ns=until)
    assumes = repricer.assumptions(price_file)
    what = " + ".join(
        p for p in (
            f"{from_model or 'every model'} -> {model}" if model else "",
            f"prices from {price_file}" if price_file else "",
            "prompt caching assumed" if assume_cache else "",
            *(f"route {r}" for r in routes),
            f"Batch API for {', '.join(batch_kinds)}" if batch_kinds else "",
        ) if p
    )
    notes = repricer.notes()
    for note in notes:
        say(note, err=True)
    if fmt == "json":
        click.echo(_render.side_by_side_json([
            {**r, "assumes": assumes, "routed_calls": repricer.routed_calls, "batched_calls": repricer.batched_calls}
            for r in rows
        ]))
        return
    if notes and not (price_file or assume_cache or routes or batch_kinds):
        return  # a table of +0% would read as "no change" when nothing was re-priced
    _side_by_side(rows, "now", "what if", f"What if: {what}", fmt, wide)
    if routes or batch_kinds:
        say(f"{repricer.routed_calls} call(s) routed, {repricer.batched_calls} call(s) at Batch API prices.")
    say("Assumed: " + "; ".join(a for a in assumes if a != "success rates unchanged") + ".")
    say("Success rates are assumed unchanged: a cheaper model may resolve fewer tasks.")


@click.command(name="check")
@db_option
@time_option("--since", "Only tasks that started at or after this (for cron: 24h, 7d).")
@time_option("--until", "Only tasks that started before this.")
@click.option("--kind", help="Only tasks of this kind.")
@click.option("--by", default="kind", show_default=True, help="Check each group of this grouping.")
@click.option(
    "--where", multiple=True, metavar="NAME=VALUE",
    help="Only tasks whose attribute has this value; key=KEY: the task with this key.",
)
@click.option("--max-cost", type=Number(min=0), help="Total cost of a group, USD.")
@click.option("--max-cost-per-task", type=Number(min=0), help="USD.")
@click.option("--max-cost-per-success", type=Number(min=0), help="USD.")
@click.option("--max-cost-per-task-p50", type=Number(min=0), help="USD.")
@click.option("--max-cost-per-task-p95", type=Number(min=0), help="USD.")
@click.option("--max-cost-per-task-p99", type=Number(min=0), help="USD.")
@click.option("--max-wasted", type=Number(min=0), help="Cost of failed tasks, USD.")
@click.option("--min-success-rate", type=Number(0, 1), help="A fraction, e.g. 0.8.")
def check_command(
    db: Any, since: int | None, until: int | None, kind: str | None, by: str, where: tuple[str, ...],
    **limits: float | None,
) -> None:
    """Exit 1, with one line per breach, when a group breaks a threshold (for CI and cron).

    Exit 2 when nothing was checked (no task matched): a gate that judged nothing did not pass.

    \b
    Examples:
      unitcost check --since 24h --max-cost-per-success 0.40 \\
        --max-cost-per-task-p95 1.00
      unitcost check --since 7d --by customer --max-cost 50
    """
    from unitcost.report import breaches, warnings_for

    if all(v is None for v in limits.values()):
        raise click.UsageError("give at least one threshold, e.g. --max-cost-per-success 0.40")
    rows = report(db, by=by, kind=kind, where=where, since_ns=since, until_ns=until)
    reasons = breaches(rows, limits)
    checked, notes = warnings_for(rows)
    for note in notes:
        say(note, err=True)
    for reason in reasons:
        say(reason)
    if reasons:
        raise SystemExit(1)
    if not checked:
        raise SystemExit(2)
    click.echo(f"ok: {checked} group(s) within the thresholds")
