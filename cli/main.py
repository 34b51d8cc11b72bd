"""``unitcost``: reports over the local store. Each command opens the store, calls the library and
prints; domain errors become one clear line and a non-zero exit. Commands live in small modules
by theme and are registered here."""

from __future__ import annotations

import click

from .demo_cmd import demo_command
from .doctor_cmd import doctor_command
from .export_cmds import export_command
from .report_cmds import check_command, compare_command, report_command, whatif_command
from .serve_cmd import serve_command
from .store_cmds import prune_command
from .task_cmds import outcome_command, show_command, tasks_command
from .ui_cmd import ui_command


@click.group()
@click.version_option(package_name="unitcost")
def cli() -> None:
    """unitcost: what one successful outcome of your LLM agent costs.

    Instrument your agent with the unitcost Python package, then read its cost per task and per
    successful task here.

    Example: unitcost demo
    """


for command in (
    report_command, compare_command, whatif_command, check_command, tasks_command, show_command, outcome_command,
    prune_command, demo_command, export_command, serve_command, doctor_command, ui_command,
):
    cli.add_command(command)
