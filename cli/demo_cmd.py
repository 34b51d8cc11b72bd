"""`unitcost demo`."""

from __future__ import annotations

from pathlib import Path

import click

from unitcost.query import open_store
from unitcost.report import report

from . import _render
from ._options import console


@click.command(name="demo")
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
    with open_store(db_path) as db:
        _render.report_table(report(db), console())
    click.echo(
        "\nExplore further:\n"
        f"  unitcost ui --db {db_path} --open   (the dashboard; pip install 'unitcost[ui]')\n"
        f"  unitcost tasks --db {db_path}\n"
        f"  unitcost show TASK_ID --db {db_path}\n"
        f"  unitcost report --db {db_path} --by model\n"
        f"  unitcost report --db {db_path} --by kind,customer --format json"
    )
