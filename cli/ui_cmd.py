"""`unitcost ui`: the local web dashboard."""

from __future__ import annotations

import click

from unitcost.common.errors import StoreError, UnitcostError
from unitcost.query import open_store, store_location

from ._options import DB_HELP


@click.command(name="ui")
@click.option("--db", "db_path", default=None, metavar="PATH|URL", help=f"The store to show {DB_HELP}.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free one).")
@click.option(
    "--token", envvar="UNITCOST_UI_TOKEN", default=None,
    help="A secret every request must carry (the printed URL has it); required off 127.0.0.1. "
    "Default: $UNITCOST_UI_TOKEN.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard in the default browser.")
@click.option(
    "--prices", "price_files", multiple=True, type=click.Path(exists=True, dir_okay=False), metavar="FILE",
    help="A price table the what-if page offers (as `unitcost whatif --prices FILE`). Repeatable.",
)
def ui_command(
    db_path: str | None, host: str, port: int, token: str | None, open_browser: bool, price_files: tuple[str, ...]
) -> None:
    """A live dashboard in the browser: overview and trends, tasks, span trees, compare and what-if.

    Needs the `ui` extra: pip install 'unitcost[ui]'. It reads the store (the numbers are those of
    `unitcost report`) and updates as new tasks arrive; the only write is an outcome you record on a
    task page, as `unitcost outcome` records it.

    \b
    Examples:
      unitcost ui --db unitcost-demo.db --open
      unitcost ui --host 0.0.0.0 --token "$(openssl rand -hex 16)"
      unitcost ui --prices negotiated.toml
    """
    try:
        from unitcost.ui.server import check_ui_bind, serve
    except ImportError as exc:
        raise click.ClickException(f"the UI needs its extra: pip install 'unitcost[ui]' ({exc})") from exc
    try:
        check_ui_bind(host, token)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    path = store_location(db_path)
    try:
        open_store(path).close()
    except (StoreError, UnitcostError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        serve(path, host=host, port=port, token=token, open_browser=open_browser, prices=price_files,
              announce=lambda line: click.echo(line, err=True))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
