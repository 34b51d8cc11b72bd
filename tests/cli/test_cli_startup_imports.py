"""What a command loads in a fresh process: only what it draws with (issue 16: a report over a million
calls in 1 s, `show` in 0.3 s, most of which is start-up). Module lists, not times: a module that comes
back into a command's imports shows here whatever the machine's speed."""

from __future__ import annotations

import ast
import subprocess
import sys

import unitcost

# Never needed to read a store and print a report or a run's tree.
NOT_FOR_READING = (
    "sqlite_utils", "pydantic", "genai_prices", "opentelemetry.sdk", "wrapt", "openai", "anthropic",
    "unitcost.exporters", "unitcost.pricing.book", "unitcost.demo", "unitcost.ui",
)
# Not needed by `show` either: it reads one run by its indexes and draws it.
NOT_FOR_SHOW = (*NOT_FOR_READING, "unitcost.report.engine", "unitcost.report.sql", "unitcost.report.rollup_sql")


def _loaded_by(*args: str) -> list[str]:
    code = (
        "import sys\nfrom unitcost.cli.main import cli\n"
        f"try:\n    cli({list(args)!r})\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(repr(sorted(sys.modules)), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return ast.literal_eval(done.stderr.strip().splitlines()[-1])


def _among(loaded: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in loaded if any(m == n or m.startswith(n + ".") for n in names)]


def test_report_and_show_load_only_what_they_draw_with(store_db):
    with unitcost.task("ticket", key="T-1") as run:
        unitcost.outcome("resolved")
    assert unitcost.flush()

    for args in (["report"], ["report", "--by", "model"], ["report", "--every", "day", "--format", "json"]):
        loaded = _loaded_by(*args, "--db", str(store_db))
        assert "unitcost.report.engine" in loaded  # (the probe sees what a command loads)
        assert _among(loaded, NOT_FOR_READING) == [], args
        if "json" in args:  # output for a program: no rich
            assert _among(loaded, ("rich",)) == []
    loaded = _loaded_by("show", run.id, "--db", str(store_db))
    assert "unitcost.report.inspect" in loaded
    assert _among(loaded, NOT_FOR_SHOW) == []


def test_a_store_that_lacks_a_migration_is_still_migrated_on_open(tmp_path):
    # Opening a store reads the names of the migrations it has; sqlite-utils applies the ones it lacks.
    import sqlite3

    from unitcost.store.schema import database, migrations, open_connection

    path = tmp_path / "old.db"
    last = migrations._migrations[-1].name
    older = sqlite3.connect(path, isolation_level=None)
    migrations.apply(database(older), stop_before=last)  # a store made by the unitcost before this one
    older.close()
    conn = open_connection(path)
    applied = [m.name for m in migrations.applied(database(conn))]
    conn.close()
    assert applied[-1] == last and sorted(applied) == sorted(m.name for m in migrations._migrations)
