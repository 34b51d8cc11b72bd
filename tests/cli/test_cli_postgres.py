"""Every command on a PostgreSQL store gives what it gives on SQLite: the economics workload recorded
into both, then export, --html, outcome --import, doctor, prune, check, serve and unitcost.query."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "report"))
from test_economics import record_workload  # noqa: E402

import unitcost.query  # noqa: E402
from unitcost.cli.main import cli  # noqa: E402


def run(*args: str, expect: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result.output


@pytest.fixture
def both(tmp_path: Path, pg_url: str) -> tuple[str, str]:
    sqlite_db = tmp_path / "econ.db"
    record_workload(sqlite_db, "tests")
    record_workload(pg_url, "tests")
    return str(sqlite_db), pg_url


def _spans(jsonl: str) -> list[dict]:
    # ids and times differ between the two recordings; names, kinds and numbers do not
    drop = re.compile(r"(trace_id|span_id|parent_span_id|start_time|end_time|task_id|unitcost\.task\.id|"
                      r"unitcost\.outcome\.task_id|time)", re.I)
    spans = []
    for line in (x for x in jsonl.splitlines() if x.startswith("{")):
        span = json.loads(line)
        spans.append({k: v for k, v in span.items() if not drop.search(k)}
                     | {"attributes": {k: v for k, v in (span.get("attributes") or {}).items() if not drop.search(k)},
                        "events": [{k: v for k, v in e.items() if not drop.search(k)} for e in span.get("events", [])]})
    return sorted(spans, key=lambda s: json.dumps(s, sort_keys=True))


def test_export_check_and_query_agree(both: tuple[str, str], tmp_path: Path) -> None:
    sqlite_db, pg_url = both
    assert _spans(run("export", "--db", pg_url)) == _spans(run("export", "--db", sqlite_db))
    assert run("check", "--db", pg_url, "--max-cost-per-success", "0.009", expect=1) == run(
        "check", "--db", sqlite_db, "--max-cost-per-success", "0.009", expect=1)
    assert unitcost.query.report(db=pg_url, by="model") == unitcost.query.report(db=sqlite_db, by="model")
    html = tmp_path / "report.html"
    run("report", "--db", pg_url, "--html", str(html))
    assert "ticket" in html.read_text() and "postgresql" not in html.read_text().lower().replace("postgres://", "")


def test_outcome_import_prune_and_doctor(both: tuple[str, str], tmp_path: Path) -> None:
    sqlite_db, pg_url = both
    imported = tmp_path / "outcomes.csv"
    imported.write_text("key,kind,outcome,success,value\nT4,ticket,resolved,true,5\n")
    for db in both:
        run("outcome", "--import", str(imported), "--db", db)
    assert run("report", "--db", pg_url, "--format", "json") == run("report", "--db", sqlite_db, "--format", "json")
    doctor = json.loads(run("doctor", "--db", pg_url, "--format", "json"))
    assert doctor["backend"] == "postgresql" and doctor["server_version"] and doctor["role"]
    assert doctor["schema"]["pending"] == [] and doctor["rows"]["calls"] == 6 and doctor["dropped_spans"] == 0
    for db in both:
        run("prune", "--db", db, "--before", "2100-01-01", "--yes")
    assert json.loads(run("report", "--db", pg_url, "--format", "json")) == []
    assert json.loads(run("doctor", "--db", pg_url, "--format", "json"))["rows"]["calls"] == 0

