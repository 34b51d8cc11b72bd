"""A store a newer unitcost has upgraded (a fleet's rolling upgrade: some hosts run the new version,
some still the old), on both stores. The older unitcost's programs keep storing their spans, but rows
only: the sums and rollups it would make lack the newer one's columns, so it leaves them marked for the
newer one, which then reports exactly what it would had it written every row itself. The older
unitcost's reports refuse, saying why; doctor warns.

"A newer unitcost" is this one's store with one more migration on record than it knows."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from click.testing import CliRunner
from test_economics import record_workload
from test_economics_postgres import COMMANDS

from unitcost.cli.main import cli
from unitcost.store.connect import open_backend

NEWER = "m999_from_a_newer_unitcost"


def _run(db: str, *args: str) -> Any:
    return CliRunner().invoke(cli, [*args, "--db", db])


def _newer_migration(db: str, *, present: bool) -> None:
    """Put on record (or take away) a migration this unitcost does not know."""
    store = open_backend(db)
    table = "_sqlite_migrations" if store.dialect == "sqlite" else "_unitcost_migrations"
    with store.transaction():
        if present:
            store.execute(f"INSERT INTO {table} (migration_set, name) VALUES ('unitcost', ?)", [NEWER])
        else:
            store.execute(f"DELETE FROM {table} WHERE name = ?", [NEWER])
    store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def upgraded(request: pytest.FixtureRequest, tmp_path) -> str:
    db = str(tmp_path / "fleet.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    open_backend(db).close()  # made by this unitcost ...
    _newer_migration(db, present=True)  # ... then upgraded by a newer one
    return db


def test_an_older_unitcost_stores_rows_only_and_the_newer_one_reports_them_exactly(upgraded, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="unitcost"):
        record_workload(upgraded, "tests")  # the SDK's writer, `unitcost outcome` and a late outcome
    assert any(NEWER in r.getMessage() and "a newer unitcost upgraded" in r.getMessage() for r in caplog.records)

    store = open_backend(upgraded)
    assert store.newer_migrations == (NEWER,)
    # Nothing derived was made: every run is marked for its sums, every task for its rollups.
    runs = store.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert runs and store.execute("SELECT COUNT(*) FROM run_sums").fetchone()[0] == 0
    assert store.execute("SELECT COUNT(DISTINCT run_id) FROM run_sums_dirty").fetchone()[0] > 0
    assert store.execute("SELECT COUNT(*) FROM task_rollup").fetchone()[0] == 0
    assert store.execute("SELECT COUNT(*) FROM rollup_dirty").fetchone()[0] > 0
    store.close()

    # This unitcost's reports refuse, and say why; doctor warns.
    refused = _run(upgraded, "report")
    assert refused.exit_code != 0
    assert "upgraded by a newer unitcost" in refused.output and NEWER in refused.output, refused.output
    doctor = _run(upgraded, "doctor", "--format", "json")
    assert any(NEWER in w for w in json.loads(doctor.output)["warnings"]), doctor.output

    # The newer unitcost (this one, with the migration it knows) reads what a store written by it alone gives.
    _newer_migration(upgraded, present=False)
    alone = str(tmp_path / "alone.db")
    record_workload(alone, "tests")
    for args in COMMANDS:
        got = _run(upgraded, *args, "--format", "json")
        want = _run(alone, *args, "--format", "json")
        assert got.exit_code == 0 and want.exit_code == 0, (got.output, want.output)
        assert got.output == want.output, args
