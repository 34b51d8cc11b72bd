"""Options shared by several commands: one decorator each, not copies."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from unitcost._errors import StoreError
from unitcost._reports import ReportError
from unitcost._store import default_db_path, open_store
from unitcost._timewindow import parse_time


def db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
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


def time_option(name: str, help: str) -> Callable[..., Any]:
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc

    return click.option(name, callback=convert, help=help)


def console() -> Console:
    return Console(soft_wrap=False, width=max(Console().width, 160))


