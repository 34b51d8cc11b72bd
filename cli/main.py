"""``unitcost``: reports over the local store. Each command opens the store, calls the library and
prints; domain errors become one clear line and a non-zero exit. Commands live in small modules
by theme and are registered here."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping

import click

__all__ = ["cli"]

# Each command's module, imported when the command is looked up: `unitcost show` does not load what
# `demo`, `serve` or `whatif` need (the start-up time of every command; `--help` loads them all).
COMMANDS = {
    "report": ("report_cmds", "report_command"),
    "compare": ("report_cmds", "compare_command"),
    "whatif": ("report_cmds", "whatif_command"),
    "check": ("report_cmds", "check_command"),
    "tasks": ("task_cmds", "tasks_command"),
    "show": ("task_cmds", "show_command"),
    "outcome": ("task_cmds", "outcome_command"),
    "prune": ("store_cmds", "prune_command"),
    "migrate": ("store_cmds", "migrate_command"),
    "demo": ("demo_cmd", "demo_command"),
    "export": ("export_cmds", "export_command"),
    "serve": ("serve_cmd", "serve_command"),
    "doctor": ("doctor_cmd", "doctor_command"),
    "ui": ("ui_cmd", "ui_command"),
}


class LazyCommands(MutableMapping[str, click.Command]):
    """The group's commands by name (what click keeps in ``Group.commands``), each loaded on first use."""

    def __init__(self, where: dict[str, tuple[str, str]]) -> None:
        self._where = dict(where)
        self._loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        command = self._loaded.get(name)
        if command is None:
            module, attribute = self._where[name]  # KeyError: no such command (click says so)
            command = getattr(importlib.import_module(f"{__package__}.{module}"), attribute)
            self._loaded[name] = command
        return command

    def __setitem__(self, name: str, command: click.Command) -> None:
        self._loaded[name] = command
        self._where.setdefault(name, ("", ""))

    def __delitem__(self, name: str) -> None:
        del self._where[name]
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


@click.group()
@click.version_option(package_name="unitcost")
def cli() -> None:
    """unitcost: what one successful outcome of your LLM agent costs.

    Instrument your agent with the unitcost Python package, then read its cost per task and per
    successful task here.

    Example: unitcost demo
    """


cli.commands = LazyCommands(COMMANDS)
