"""`unitcost serve --db postgresql://...`: the spans of four instrumentations, received over OTLP/HTTP,
give the report SQLite gives for the same bodies."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

from conftest import run_cli
from test_serve import Serve, anthropic_sdk_trace, openai_v2_traces, openinference_trace, openllmetry_trace


def test_serve_into_postgres_gives_the_sqlite_report(tmp_path: Path, pg_url: str) -> None:
    bodies = [
        (openllmetry_trace().protobuf(), "application/x-protobuf", {}),
        (openinference_trace().json(), "application/json", {}),
        (gzip.compress(openai_v2_traces().protobuf()), "application/x-protobuf", {"Content-Encoding": "gzip"}),
        (anthropic_sdk_trace().json(), "application/json; charset=utf-8", {}),
    ]
    reports: list[Any] = []
    for db in (tmp_path / "received.db", pg_url):
        server = Serve(db)  # type: ignore[arg-type]
        try:
            for body, content_type, headers in bodies:
                status, reply = server.post(body, content_type, **headers)
                assert status == 200, reply
        finally:
            server.stop()
        reports.append([run_cli("report", "--db", str(db), "--by", by, "--format", "json").stdout
                        for by in ("kind", "model", "customer")])
    assert reports[1] == reports[0]
    assert '"support_flow"' in reports[1][0]
