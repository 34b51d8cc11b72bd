"""`unitcost demo`."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

import click

from unitcost import StoreError
from unitcost.query import open_store, redact_url, store_location
from unitcost.report import report

from . import _render
from ._options import console
from .fit import say


def how_to_run_unitcost() -> tuple[str, str | None]:
    """The word that runs this `unitcost` from the user's shell, and a hint when it is not on PATH.

    After `python3 -m venv .venv && .venv/bin/pip install -e .` the command is `.venv/bin/unitcost`
    until the environment is activated: say so instead of printing commands that do not run."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name in ("unitcost", "unitcost.exe") and os.sep in argv0:
        ours = Path(argv0)  # as the user typed it: .venv/bin/unitcost
    else:
        ours = Path(sys.prefix) / ("Scripts" if os.name == "nt" else "bin") / (
            "unitcost.exe" if os.name == "nt" else "unitcost"
        )
    found = shutil.which("unitcost")
    if not ours.exists() or (found and Path(found).resolve() == ours.resolve()):
        return "unitcost", None
    shown = argv0 if ours == Path(argv0) else _short(ours)
    activate = _short(ours.parent / ("activate.bat" if os.name == "nt" else "activate"))
    hint = (
        f"`unitcost` is not on your PATH: run it as {shown}, or first `source {activate}`."
        if os.name != "nt" else f"`unitcost` is not on your PATH: run it as {shown}, or first run {activate}."
    )
    return shown, hint


def _short(path: Path) -> str:
    """`path` relative to here when it is below here (.venv/bin/unitcost), else in full."""
    try:
        shown = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    if shown.startswith(".."):
        return str(path)
    return shown if os.sep in shown else f".{os.sep}{shown}"


@click.command(name="demo")
@click.option(
    "--db", "db_path", default="unitcost-demo.db", show_default=True, metavar="PATH|URL",
    help="Where to write the demo's store: a new file, or an earlier demo store (replaced). Any other file "
    "is left alone and the demo stops. A postgresql:// URL: an empty store there (nothing is deleted).",
)
def demo_command(db_path: str) -> None:
    """Run a support-ticket agent against a local fake OpenAI server and report its costs.

    No network and no API key: the agent uses the real openai client against a server on
    127.0.0.1 that answers with fixed, realistic responses.

    \b
    Example:
      unitcost demo --db /tmp/demo.db
    """
    try:
        from unitcost.demo import NotADemoStore, demo_price_file, run_demo
    except ImportError as exc:
        raise click.ClickException(f"the demo needs openai: pip install 'unitcost[openai]' ({exc})") from exc
    location = store_location(db_path)
    try:
        run_demo(location)
    except (NotADemoStore, StoreError) as exc:
        raise click.ClickException(str(exc)) from exc
    with open_store(location) as db:
        _render.report_table(report(db), console())
    prog, hint = how_to_run_unitcost()
    # (a server's URL without its password: type it in again)
    db_arg = f" --db {shlex.quote(redact_url(db_path))}"
    lines = [
        "",
        "Next: the dashboard (pip install 'unitcost[ui]'); the runs with their task ids;",
        "one run's tree; cost per model; cost per customer; another model's prices;",
        "the classify step on a cheaper model; a cost gate for CI:",
        f"  {prog} ui{db_arg} --open",
        f"  {prog} tasks{db_arg}",
        f"  {prog} show TASK_ID{db_arg}",
        f"  {prog} report --by model{db_arg}",
        f"  {prog} report --users{db_arg}",
        f"  {prog} whatif --model gpt-4o-mini --from-model o4-mini{db_arg}",
        f"  {prog} whatif --route 'step=classify:gpt-4.1-nano'{db_arg}",
        f"  {prog} check --max-cost-per-success 0.01{db_arg}",
        f"(the prices of the agent's runtime: {demo_price_file(location)})",
    ]
    click.echo("\n".join(lines))
    if hint:
        say(hint)
