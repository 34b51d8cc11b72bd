"""Tables that fit the terminal they are printed in.

The width is $COLUMNS when set, else the terminal's, else 100 (output piped to a file or a program).
Every column has a priority; below the width the least important columns are left out, and a line
says which and that `--wide` shows them all. What is left is wrapped by rich, never cut. JSON and
CSV output never pass through here.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = ["NOT_A_TERMINAL_WIDTH", "Column", "console", "fitted_table", "left_out_note", "say", "terminal_width"]

NOT_A_TERMINAL_WIDTH = 100
WIDE = 10_000  # --wide: as wide as the table is; a pager or the terminal wraps it


def terminal_width(stream: Any = None) -> int:
    """$COLUMNS when set, else the terminal's width, else 100 when not a terminal."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    stream = sys.stdout if stream is None else stream
    try:
        if stream.isatty():
            return shutil.get_terminal_size((NOT_A_TERMINAL_WIDTH, 24)).columns
    except (AttributeError, ValueError, OSError):  # a closed or unusual stream
        pass
    return NOT_A_TERMINAL_WIDTH


def console(*, wide: bool = False, stderr: bool = False) -> Console:
    # No markup: kinds, keys, names and attribute values are the user's text and may hold [brackets].
    from rich.console import Console  # here: `--format json` and `csv` print without rich (start-up time)

    width = WIDE if wide else terminal_width(sys.stderr if stderr else None)
    return Console(soft_wrap=False, width=width, markup=False, highlight=False, stderr=stderr)


@dataclass(frozen=True)
class Column:
    """A column and how much it matters: 0 is always shown; higher numbers are left out first."""

    header: str
    justify: str = "right"
    priority: int = 0


def _widths(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> list[int]:
    """Each column's width unwrapped: its widest line, header included, in terminal cells."""
    from rich.cells import cell_len  # here: as rich.console (start-up time)

    return [
        max([cell_len(c.header), *(max((cell_len(line) for line in row[i].split("\n")), default=0) for row in rows)])
        for i, c in enumerate(columns)
    ]


def _natural_width(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> int:
    # rich's default box: one border left, then per column its text, a space each side and a border.
    return 1 + sum(w + 3 for w in _widths(columns, rows))


def fitted_table(
    title: str | None,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    width: int,
    *,
    sections: Sequence[bool] = (),
) -> tuple[Table, list[str]]:
    """A rich Table of the columns that fit in `width`, and the headers left out to make it fit."""
    keep = list(range(len(columns)))
    left_out: list[str] = []
    by_priority = sorted((c.priority, -i) for i, c in enumerate(columns) if c.priority > 0)
    while by_priority and _natural_width([columns[i] for i in keep], [[r[i] for i in keep] for r in rows]) > width:
        _, minus_i = by_priority.pop()
        keep.remove(-minus_i)
        left_out.insert(0, columns[-minus_i].header)
    from rich.table import Table  # here: as rich.console (start-up time)

    table = Table(title=title, title_justify="left")
    kept_rows = [[r[i] for i in keep] for r in rows]
    widths = _widths([columns[i] for i in keep], kept_rows)
    # When the table fits, each column gets its widest cell's width, fixed: rich then draws the very
    # same table without measuring every cell again (most of the time `report --every day` spent).
    fixed = 1 + sum(w + 3 for w in widths) <= width
    for i, w in zip(keep, widths, strict=True):
        col = columns[i]
        table.add_column(
            col.header, justify=col.justify, overflow="fold", width=w if fixed else None,  # type: ignore[arg-type]
        )
    for n, row in enumerate(rows):
        table.add_row(*(row[i] for i in keep), end_section=bool(sections and sections[n]))
    left_out.sort(key=lambda h: [c.header for c in columns].index(h))
    return table, left_out


def left_out_note(left_out: Sequence[str], width: int) -> str | None:
    if not left_out:
        return None
    return f"({len(left_out)} column(s) left out to fit {width} columns: {', '.join(left_out)}; --wide shows all)"


def say(text: str, *, err: bool = False) -> None:
    """A note or message, wrapped to the width tables get (click.echo does not wrap)."""
    import click  # here: this module is also used by the exit summary, which has no other use for click

    width = terminal_width(sys.stderr if err else None)
    for line in text.split("\n"):
        click.echo("\n".join(textwrap.wrap(line, width, break_on_hyphens=False)) or "", err=err)
