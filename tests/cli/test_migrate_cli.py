"""`unitcost migrate`: a store brought up to this unitcost ahead of a rollout, on both stores; one a
newer unitcost migrated is refused, one another process holds locked is said so, and one that is not
there is not made."""

from __future__ import annotations

import sqlite3

from click.testing import CliRunner
from conftest import make_older_postgres_store

from unitcost.cli.main import cli
from unitcost.store.connect import open_backend
from unitcost.store.postgres_schema import MIGRATIONS, connect
from unitcost.store.schema import database, migrations


def _migrate(db: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["migrate", "--db", db])
    return result.exit_code, result.output


def test_an_older_sqlite_store_is_migrated_once_then_up_to_date(tmp_path):
    path = tmp_path / "old.db"
    older = sqlite3.connect(path, isolation_level=None)
    stop = migrations._migrations[-2].name
    migrations.apply(database(older), stop_before=stop)  # two migrations behind
    older.execute("INSERT INTO runs (run_id, trace_id, kind, started_ns, ended_ns) VALUES ('r', 't', 'k', 1, 2)")
    older.close()
    code, out = _migrate(str(path))
    last_two = [m.name for m in migrations._migrations[-2:]]
    assert code == 0 and out.startswith("applied 2 migration(s) in ") and out.rstrip().endswith(", ".join(last_two))
    store = open_backend(str(path), create=False)
    assert store.migrations()[-2:] == last_two
    assert store.execute("SELECT run_id FROM runs").fetchall() == [("r",)]
    store.close()
    assert _migrate(str(path)) == (0, "the store is up to date: nothing to apply\n")


def test_a_store_a_newer_unitcost_migrated_is_refused(tmp_path):
    path = tmp_path / "newer.db"
    open_backend(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO _sqlite_migrations (migration_set, name) VALUES ('unitcost', 'm999_next')")
    code, out = _migrate(str(path))
    assert code == 1 and "upgraded by a newer unitcost" in out and "m999_next" in out


def test_a_damaged_file_is_a_clear_error_and_left_as_it_is(tmp_path):
    path = tmp_path / "damaged.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 12)
    before = path.read_bytes()
    code, out = _migrate(str(path))
    assert code == 1 and "is not a usable unitcost store" in out and "Traceback" not in out
    assert path.read_bytes() == before


def test_no_store_is_made_where_there_is_none(tmp_path):
    code, out = _migrate(str(tmp_path / "none.db"))
    assert code == 1 and "no unitcost store" in out
    assert not (tmp_path / "none.db").exists()


def test_an_older_postgres_store_is_migrated_in_place(pg_url):
    with connect(pg_url) as conn:
        make_older_postgres_store(conn)  # the first four migrations
    code, out = _migrate(pg_url)
    assert code == 0 and out.rstrip().endswith(", ".join(name for name, _ in MIGRATIONS[4:])), out
    assert f"applied {len(MIGRATIONS) - 4} migration(s)" in out
    assert _migrate(pg_url) == (0, "the store is up to date: nothing to apply\n")


def test_a_store_another_process_holds_locked_is_said_so_and_left_as_it_is(tmp_path, monkeypatch):
    from unitcost.store import schema

    monkeypatch.setattr(schema, "LOCK_WAIT_S", 0.2)  # (10 s in use)
    path = tmp_path / "locked.db"
    older = sqlite3.connect(path, isolation_level=None)
    migrations.apply(database(older), stop_before=migrations._migrations[-1].name)  # one migration behind
    older.execute("BEGIN EXCLUSIVE")  # another process mid-write: the migration cannot start
    try:
        code, out = _migrate(str(path))
    finally:
        older.execute("ROLLBACK")
        older.close()
    assert code == 1 and "is locked by another process" in out and "try again" in out, out
    assert "not a usable" not in out and "Traceback" not in out
    assert _migrate(str(path))[0] == 0  # once it is free
