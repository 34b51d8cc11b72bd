"""The outcome-economics workload (tests/report/test_economics.py) recorded into a PostgreSQL store
gives the very bytes SQLite gives: `report --format json` in every grouping, and the other commands
that read reports."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from test_economics import record_workload

from unitcost.cli.main import cli

# Every grouping the economics tests read, and the commands built on reports.
COMMANDS = [
    ("report",),
    ("report", "--by", "model"),
    ("report", "--by", "provider"),
    ("report", "--by", "customer"),
    ("report", "--by", "outcome"),
    ("report", "--by", "kind,prompt"),
    ("report", "--every", "day"),
    ("report", "--every", "week", "--by", "model"),
    ("report", "--where", "customer=globex", "--by", "outcome"),
    ("report", "--kind", "ticket", "--since", "30d"),
    ("compare", "prompt=v1", "prompt=v2"),
    ("whatif", "--model", "gpt-4o-mini", "--from-model", "o4-mini"),
]


def _output(db: str, args: tuple[str, ...], fmt: str = "json") -> str:
    result = CliRunner().invoke(cli, [*args, "--db", db, "--format", fmt], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def both(tmp_path, pg_url):
    sqlite_db = tmp_path / "econ.db"
    record_workload(sqlite_db, "tests")
    record_workload(pg_url, "tests")
    return str(sqlite_db), pg_url


def test_report_json_is_byte_identical_on_sqlite_and_postgres(both):
    sqlite_db, pg_url = both
    for args in COMMANDS:
        assert _output(pg_url, args) == _output(sqlite_db, args), args
    assert _output(pg_url, ("report",), "csv") == _output(sqlite_db, ("report",), "csv")


def test_tasks_and_show_read_the_postgres_store(both):
    sqlite_db, pg_url = both
    import json

    pg_tasks = json.loads(_output(pg_url, ("tasks",)))
    sqlite_tasks = json.loads(_output(sqlite_db, ("tasks",)))
    strip = ("task_id", "started", "started_ns", "ended_ns", "duration_s", "duration_ms")
    assert [{k: v for k, v in t.items() if k not in strip} for t in pg_tasks] == [
        {k: v for k, v in t.items() if k not in strip} for t in sqlite_tasks]
    t2_first = [t for t in pg_tasks if t["key"] == "T2"][-1]
    shown = CliRunner().invoke(cli, ["show", t2_first["task_id"], "--db", pg_url])
    assert shown.exit_code == 0, shown.output
    history = shown.output.split("outcomes (latest wins):")[1]
    assert history.index("error") < history.index("escalated") < history.index("resolved")
