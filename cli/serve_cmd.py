"""`unitcost serve`: receive OTLP traces from any instrumentation into the store."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import click

from unitcost.common.errors import ConfigurationError, StoreError
from unitcost.query import open_store, store_location

from ._options import DB_HELP


@click.command(name="serve")
@click.option(
    "--db", "db_path", default=None, metavar="PATH|URL", help=f"The store to write, created if missing {DB_HELP}."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=4318, show_default=True, type=click.IntRange(0, 65535), help="Port (OTLP/HTTP's).")
@click.option(
    "--token", envvar="UNITCOST_SERVE_TOKEN", default=None,
    help="Bearer token clients must send (Authorization: Bearer TOKEN); required off 127.0.0.1. "
    "Default: $UNITCOST_SERVE_TOKEN.",
)
@click.option(
    "--prices", "price_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Price overrides (default: $UNITCOST_PRICES, else ./unitcost.toml).",
)
@click.option(
    "--root-wait", default=60.0, show_default=True, type=click.FloatRange(0),
    help="Seconds an LLM call waits for its trace's root span before it is stored outside any task.",
)
@click.option("--quiet", is_flag=True, help="Do not print a line per request.")
def serve_command(
    db_path: str | None, host: str, port: int, token: str | None, price_file: Path | None, root_wait: float,
    quiet: bool,
) -> None:
    """Receive OpenTelemetry traces over OTLP/HTTP and store their LLM calls, priced, grouped into tasks.

    Point any instrumentation's OTLP exporter at it: unitcost's own, the official OpenTelemetry
    GenAI instrumentations, the anthropic SDK's own spans, OpenLLMetry, OpenInference. Their LLM
    and tool spans are stored like unitcost's; each trace's root span is their task (named after
    its agent or workflow), then `unitcost report` works as usual. Protobuf and JSON bodies,
    gzip or not, on POST /v1/traces.

    \b
    Examples:
      unitcost serve --db agents.db
      OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 python my_agent.py
      unitcost report --db agents.db
      unitcost serve --host 0.0.0.0 --token "$(openssl rand -hex 16)"
    """
    from unitcost.exporters import StoreSpanExporter
    from unitcost.exporters.receiver import OTLPReceiver, check_bind
    from unitcost.pricing.book import PriceBook

    try:
        check_bind(host, token)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    path = store_location(db_path)
    try:
        with open_store(path, create=True) as opened:
            where = opened.location  # a URL's password is not shown
        prices = PriceBook.from_price_file(price_file)
    except (StoreError, ConfigurationError) as exc:
        raise click.ClickException(str(exc)) from exc
    store = StoreSpanExporter(path, prices, service="unitcost-serve")

    def write(spans: list[Any]) -> bool:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return store.export(spans) is SpanExportResult.SUCCESS

    log = None if quiet else (lambda line: click.echo(line, err=True))
    try:
        server = OTLPReceiver((host, port), write, token=token, root_wait=root_wait, log=log)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
    click.echo(
        f"unitcost serve: OTLP/HTTP on http://{bound_host}:{bound_port}/v1/traces, writing to {where}"
        + (" (bearer token required)" if token else ""),
        err=True,
    )

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if os.name == "posix":
        signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        store.shutdown()
        click.echo(f"unitcost serve: stopped after {server.received} span(s)", err=True)
