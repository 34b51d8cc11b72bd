"""`unitcost export`: replay stored tasks to an OTLP endpoint, or write them as JSONL or CSV."""

from __future__ import annotations

import contextlib
import csv
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from unitcost.common.errors import ConfigurationError

from ._options import db_option, progress_bar, time_option

FORMATS = ("jsonl", "csv", "otlp")


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    if path is None or str(path) == "-":
        yield sys.stdout
        return
    try:
        # Created readable by its owner only, as the store is.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        stream = open(fd, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from exc
    with stream:
        yield stream


def _headers(values: tuple[str, ...]) -> dict[str, str]:
    headers = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{value!r}: use NAME=VALUE", param_hint="--header")
        headers[name.strip()] = text.strip()
    return headers


@click.command(name="export")
@db_option
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True,
              help="jsonl: one span per line; csv: one row per span; otlp: send to an OTLP endpoint.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File for jsonl and csv (default: standard output).")
@time_option("--since", "Tasks that started at or after this (ISO date/time, or 30m, 24h, 7d, 2w back).")
@time_option("--until", "Tasks that started before this.")
@click.option("--kind", default=None, help="Only tasks of this kind (calls outside any task are left out).")
@click.option("--endpoint", default=None,
              help="otlp: base URL (http://collector:4318; gRPC: http://collector:4317). "
              "Default: $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / $OTEL_EXPORTER_OTLP_ENDPOINT, else localhost.")
@click.option("--protocol", type=click.Choice(["http/protobuf", "grpc"]), default=None,
              help="otlp: default $OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf.")
@click.option("--header", "header_values", multiple=True, metavar="NAME=VALUE",
              help="otlp: a header for each request (repeatable). Default: $OTEL_EXPORTER_OTLP_HEADERS.")
@click.option("--timeout", type=float, default=None, help="otlp: seconds per request.")
def export_command(
    db: Any, fmt: str, output: Path | None, since: int | None, until: int | None, kind: str | None,
    endpoint: str | None, protocol: str | None, header_values: tuple[str, ...], timeout: float | None,
) -> None:
    """Replay stored tasks as OpenTelemetry spans: to an OTLP endpoint, or as JSONL or CSV.

    Every run, LLM call, tool call and step comes back with the trace and span ids it was
    stored with, its tokens and cost, each task with its totals and outcome: exporting the same
    window twice gives the same spans, which a tracing backend keeps once.

    \b
    Examples:
      unitcost export --since 7d -o spans.jsonl
      unitcost export --since 2026-11-01 --until 2026-12-01 \\
        --format csv -o november.csv
      unitcost export --format otlp --endpoint http://collector:4318 --since 24h
      unitcost export --format otlp --protocol grpc \\
        --endpoint http://collector:4317 --header "x-api-key=..."
    """
    from unitcost.exporters.replay import CSV_COLUMNS, count_spans, csv_row, stored_spans

    total = count_spans(db, since, until, kind)
    batches = stored_spans(db, since, until, kind)
    sent = 0
    if fmt == "otlp":
        from opentelemetry.sdk.trace.export import SpanExportResult

        from unitcost.exporters import otlp

        try:
            exporter = otlp.span_exporter(otlp.resolve_protocol(protocol), endpoint, _headers(header_values), timeout)
        except ConfigurationError as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            with progress_bar("exporting", total) as advance:
                for done, spans in batches:
                    if spans and exporter.export(spans) is not SpanExportResult.SUCCESS:
                        raise click.ClickException(
                            f"the OTLP endpoint did not accept the spans after {sent} were sent "
                            "(exporting again is safe: the same spans keep their ids)"
                        )
                    sent += len(spans)
                    advance(done)
        finally:
            exporter.shutdown()
    else:
        with _output(output) as stream, progress_bar("exporting", total) as advance:
            if fmt == "csv":
                writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, lineterminator="\n")
                writer.writeheader()
                for done, spans in batches:
                    writer.writerows(csv_row(span) for span in spans)
                    sent += len(spans)
                    advance(done)
            else:
                from unitcost.exporters.jsonl import JsonlSpanExporter

                jsonl = JsonlSpanExporter(stream)
                for done, spans in batches:
                    jsonl.export(spans)
                    sent += len(spans)
                    advance(done)
    click.echo(f"exported {sent} span(s)" + (f" to {output}" if output else ""), err=True)
