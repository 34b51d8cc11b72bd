"""Guarantee 5, store faults: a store made by an older unitcost migrates forward with its data; a corrupt
or non-unitcost file gives a clear error and is never changed; a read-only location is refused at
``configure()`` time with a clear message. `unitcost doctor` reports on all of it without writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
import sqlite_utils
from conftest import report_json, run_cli, store_rows

import unitcost
from unitcost.common.errors import ConfigurationError, StoreError
from unitcost.store.schema import migrations, open_store


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- an older store migrates forward -------------------------------------------------------------------


def _old_store(path: Path) -> None:
    """A store as the first release of unitcost left it: only m001 applied, with a run, a call, a
    tool step and an outcome in the columns m001 had."""
    db = sqlite_utils.Database(path)
    migrations.apply(db, stop_before="m002_calls_retries")
    db.execute(
        "INSERT INTO runs (run_id, trace_id, kind, key, service, started_ns, ended_ns, attributes) "
        "VALUES ('00000000000000a1', 'f' , 'support_ticket', 'T-1', 'old', 1764061200000000000, "
        "1764061201000000000, '{\"customer\": \"acme\"}')"
    )
    db.execute(
        "INSERT INTO calls (span_id, trace_id, run_id, started_ns, ended_ns, provider, operation, model, input_tokens, "
        "cache_read_tokens, output_tokens, reasoning_tokens, cost_pico, reasoning_cost_pico, price_source) VALUES "
        "('00000000000000c1', 'f', '00000000000000a1', 1764061200100000000, 1764061200900000000, 'openai', 'chat', "
        "'gpt-4o-mini', 800, 200, 400, 100, 435000000, 60000000, 'genai-prices')"
    )
    db.execute(
        "INSERT INTO steps (span_id, trace_id, run_id, type, name, started_ns, ended_ns, cost_pico) VALUES "
        "('00000000000000d1', 'f', '00000000000000a1', 'tool', 'search', 1764061200200000000, 1764061200300000000, "
        "2000000000)"
    )
    db.execute(
        "INSERT INTO outcomes (recorded_ns, run_id, kind, key, label, success, source, origin) VALUES "
        "(1764061201000000000, '00000000000000a1', 'support_ticket', 'T-1', 'resolved', 1, 'inline', 'x')"
    )
    db.conn.commit()
    db.conn.close()


def test_a_store_from_an_older_unitcost_migrates_forward_with_its_data(tmp_path):
    path = tmp_path / "old.db"
    _old_store(path)
    before = sqlite_utils.Database(path)
    assert "retries" not in before["calls"].columns_dict
    before.conn.close()

    db = open_store(path)  # what configure() and every CLI command do
    applied = [m.name for m in migrations.applied(db)]
    assert applied == [m.name for m in migrations._migrations]  # every migration this unitcost knows
    calls = db["calls"].columns_dict
    for column, kind in (("retries", int), ("cache_write_30m_tokens", int), ("cache_write_12h_tokens", int),
                         ("web_search_requests", int), ("web_fetch_requests", int), ("price_modifiers", str)):
        assert calls[column] is kind, column
    assert db["dropped_spans"].columns_dict == {"id": int, "recorded_ns": int, "reason": str, "count": int,
                                                "service": str}
    assert db["call_content"].columns_dict == {"span_id": str, "input_messages": str, "output_messages": str}
    (call,) = db["calls"].rows
    assert (call["input_tokens"], call["cost_pico"], call["retries"], call["web_search_requests"]) == (
        800, 435000000, 0, 0,
    )
    db.conn.close()

    # The migrated store takes new records and reports old and new together.
    unitcost.configure(db=path)
    with unitcost.task("support_ticket", key="T-2"):
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1000, cache_read_tokens=200, output_tokens=500,
                              reasoning_tokens=100)
    (row,) = report_json(path)
    assert (row["tasks"], row["succeeded"], row["llm_calls"], row["tool_calls"]) == (2, 1, 2, 1)
    assert row["cost_usd"] == pytest.approx(2 * 0.000435 + 0.002)
    unitcost.shutdown()


def test_two_processes_migrating_an_old_store_at_once_apply_each_migration_once(tmp_path):
    path = tmp_path / "old.db"
    _old_store(path)
    code = "import sys; from unitcost.store.schema import open_store; open_store(sys.argv[1]).conn.close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)]) for _ in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    with closing(sqlite3.connect(path)) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM _sqlite_migrations")]
    assert sorted(names) == sorted(m.name for m in migrations._migrations)


# --- corrupt or foreign files: a clear error, never a change -----------------------------------------------


def _a_real_store(path: Path) -> None:
    unitcost.configure(db=path)
    for i in range(200):
        with unitcost.task("t", key=f"T-{i}", attributes={"pad": "x" * 500}):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
    unitcost.shutdown()
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _corrupt(kind: str, path: Path) -> None:
    if kind == "random bytes":
        path.write_bytes(os.urandom(8192))
    elif kind == "text file":
        path.write_text("kind,key,label\nsupport_ticket,T-1,resolved\n")
    elif kind == "truncated store":
        _a_real_store(path)
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "store with a mangled header":
        _a_real_store(path)
        data = bytearray(path.read_bytes())
        data[16:24] = b"\xff" * 8  # page size and format bytes
        path.write_bytes(bytes(data))
    elif kind == "another application's SQLite":
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
            conn.execute("INSERT INTO invoices (total) VALUES (12.5)")
            conn.commit()


KINDS = ["random bytes", "text file", "truncated store", "store with a mangled header", "another application's SQLite"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_corrupt_or_foreign_file_is_a_clear_error_and_is_never_changed(tmp_path, kind):
    path = tmp_path / "store.db"
    _corrupt(kind, path)
    for leftover in tmp_path.glob("store.db-*"):
        leftover.unlink()
    before = digest(path)

    with pytest.raises(ConfigurationError) as raised:
        unitcost.configure(db=path)
    message = str(raised.value)
    assert str(path) in message and ("not a unitcost store" in message or "not a usable unitcost store" in message)
    for command in (["report"], ["tasks"], ["doctor"], ["prune", "--before", "1d", "--yes"]):
        result = run_cli(*command, "--db", str(path), expect=1)
        assert str(path) in result.output and "Traceback" not in result.output, command
    assert digest(path) == before  # not a byte changed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]  # no WAL or journal left beside it


def test_damage_deep_inside_a_store_is_reported_clearly(tmp_path):
    path = tmp_path / "store.db"
    _a_real_store(path)
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    for page in range(3, len(data) // page_size):  # every page after the schema's
        data[page * page_size + 8: page * page_size + 64] = os.urandom(56)
    path.write_bytes(bytes(data))

    result = run_cli("doctor", "--db", str(path), "--format", "json", expect=None)
    assert result.exit_code == 1
    if result.output.lstrip().startswith("{"):
        assert json.loads(result.output)["integrity"] != "ok"
    for command in (["report"], ["tasks"]):
        result = run_cli(*command, "--db", str(path), expect=1)
        assert "Traceback" not in result.output and ("damaged" in result.output or "malformed" in result.output)


# --- read-only locations -------------------------------------------------------------------------------------


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` read-only for this process, even as root (chattr +i), else by its mode bits."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)]).returncode != 0:
            pytest.skip("running as root without chattr: permission bits do not bind root")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)


def test_a_read_only_directory_is_refused_at_configure_time(tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    with read_only(directory):
        with pytest.raises(ConfigurationError, match="cannot (create|write) the store") as raised:
            unitcost.configure(db=directory / "unitcost.db")
        assert str(directory / "unitcost.db") in str(raised.value)
    assert list(directory.iterdir()) == []


def test_a_read_only_directory_holding_a_store_is_refused_at_configure_time(tmp_path):
    directory = tmp_path / "ro"
    directory.mkdir()
    path = directory / "unitcost.db"
    _a_real_store(path)
    for leftover in directory.glob("unitcost.db-*"):
        leftover.unlink()
    with read_only(directory), pytest.raises(ConfigurationError, match="directory .* is read-only"):
        unitcost.configure(db=path)


def test_a_read_only_store_file_is_refused_at_configure_time(tmp_path):
    path = tmp_path / "unitcost.db"
    _a_real_store(path)
    before = digest(path)
    with read_only(path):
        with pytest.raises(ConfigurationError, match="the file is read-only"):
            unitcost.configure(db=path)
        # Reading still works: reports over a store someone made read-only.
        assert run_cli("tasks", "--db", str(path), "--format", "json").exit_code == 0
    assert digest(path) == before


def test_a_path_under_a_file_is_refused_with_the_reason(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(ConfigurationError, match=r"cannot create the store at .*not-a-dir/unitcost.db"):
        unitcost.configure(db=blocker / "unitcost.db")
    with pytest.raises(StoreError):
        open_store(blocker / "unitcost.db")


# --- doctor on a healthy store ------------------------------------------------------------------------------


def test_doctor_reports_a_healthy_store(store_db):
    with unitcost.task("t", key="T-1"):
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
        with unitcost.tool("search"):
            pass
    assert unitcost.flush()
    health = json.loads(run_cli("doctor", "--db", str(store_db), "--format", "json").stdout)
    assert health["path"] == str(store_db.resolve())
    assert health["schema"]["pending"] == [] and health["schema"]["applied"][-1] == migrations._migrations[-1].name
    assert health["rows"] == {"runs": 1, "calls": 1, "steps": 1, "outcomes": 0, "call_content": 0}
    assert (health["dropped_spans"], health["journal_mode"], health["integrity"]) == (0, "wal", "ok")
    assert health["permissions"] == "0o600" and health["size_bytes"] > 0
    assert health["ok"] and health["problems"] == [] and health["warnings"] == []
    table = run_cli("doctor", "--db", str(store_db)).stdout
    for word in ("store", "schema", "size", "rows", "dropped spans", "journal mode", "integrity"):
        assert word in table
    assert store_rows(store_db, "SELECT COUNT(*) AS n FROM runs") == [{"n": 1}]
    assert run_cli("doctor", "--db", str(store_db.with_name("nope.db")), expect=1).output.startswith("Error: no ")
