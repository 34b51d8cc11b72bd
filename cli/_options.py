"""Options shared by several commands: one decorator each, not copies."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from unitcost.common.errors import StoreError, UnitcostError
from unitcost.common.timewindow import parse_time
from unitcost.query import ImportError_, open_store, store_location
from unitcost.report import ReportError

from . import fit

if TYPE_CHECKING:
    from rich.console import Console

# --db: a file path or a postgresql:// URL (unitcost.query.store_location).
DB_HELP = "(default: $UNITCOST_DB, else the per-user unitcost.db; or a postgresql:// URL)"


def db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--db, shared by every command that reads the store; opens it and passes `db`."""

    @click.option("--db", "db_path", default=None, metavar="PATH|URL", help=f"The store to read {DB_HELP}.")
    @functools.wraps(fn)
    def wrapper(*args: Any, db_path: str | None, **kwargs: Any) -> Any:
        path = store_location(db_path)
        try:
            db = open_store(path)
        except (StoreError, UnitcostError) as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            return fn(*args, db=db, **kwargs)
        except (ReportError, ImportError_, UnitcostError, ValueError) as exc:
            raise click.ClickException(str(exc)) from exc
        except Exception as exc:
            if not db.is_damage(exc):
                raise
            # damage past the header, found by a read
            raise click.ClickException(
                f"the store at {db.location} is damaged ({exc}); `unitcost doctor --db {db.location}` says more"
            ) from exc
        finally:
            db.close()

    return wrapper


class Number(click.FloatRange):
    """A float in a range that is a number: FloatRange lets NaN through (every comparison with it is
    false), and a NaN threshold would never be breached."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


def time_option(name: str, help: str) -> Callable[..., Any]:
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc

    return click.option(name, callback=convert, help=help)


def console(*, wide: bool = False) -> Console:
    """The console tables are printed on: as wide as the terminal (see `unitcost.cli.fit`)."""
    return fit.console(wide=wide)


def wide_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--wide: every column, however wide the table gets (below 100 columns some are left out)."""
    return click.option("--wide", is_flag=True, help="Show every column, however wide the table gets.")(fn)



@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for long reads, imports and exports; silent when stderr is no terminal."""
    if not _maybe_terminal():
        yield lambda n: None
        return
    from rich.console import Console  # here: as in `reading` (start-up time)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    stderr = Console(stderr=True)
    if not stderr.is_terminal:
        yield lambda n: None
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=stderr, transient=True,
    ) as progress:
        task_id = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task_id, n)


@contextlib.contextmanager
def reading(description: str = "reading the store") -> Iterator[None]:
    """A spinner on stderr while a long read runs; silent when stderr is no terminal."""
    if not _maybe_terminal():
        yield
        return
    from rich.console import Console  # here: output for a program (stderr no terminal) needs no rich (start-up time)

    stderr = Console(stderr=True)
    if not stderr.is_terminal:
        yield
        return
    with stderr.status(description):
        yield


def _maybe_terminal() -> bool:
    """False when rich would surely find stderr no terminal (not a TTY, and neither FORCE_TERMINAL nor
    TTY_COMPATIBLE set): then it need not be imported to ask."""
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError, OSError):
        tty = False
    return tty or "FORCE_TERMINAL" in os.environ or "TTY_COMPATIBLE" in os.environ
