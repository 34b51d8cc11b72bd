"""Every `unitcost` command explains itself with an example, and `--help` works for each."""

from __future__ import annotations

import click
import pytest
from conftest import run_cli

from unitcost.cli.main import cli


def walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            found += walk(sub, (*path, name))
    return found


COMMANDS = walk(cli)


def test_the_tree_has_the_documented_commands():
    assert {path for path, _ in COMMANDS} >= {(), ("report",), ("tasks",), ("show",), ("outcome",), ("demo",)}


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_help_with_an_example(path, command):
    assert command.help and "Example" in command.help
    # The first line is the summary shown in `unitcost --help`: it must say something.
    assert command.get_short_help_str().strip()

    assert "Example" in run_cli(*path, "--help").stdout
