"""The store seam (unitcost.store.backend): which backend a `db` opens, and what it may show of it."""

from __future__ import annotations

import sys

import pytest

from unitcost.common.errors import ConfigurationError, StoreError
from unitcost.store.backend import Batch, StoreBackend, is_url, redact_url
from unitcost.store.connect import open_backend
from unitcost.store.sqlite import SqliteBackend


def test_a_path_opens_sqlite_and_a_url_opens_postgres(tmp_path, monkeypatch):
    with open_backend(tmp_path / "a.db") as store:
        assert isinstance(store, SqliteBackend) and store.dialect == "sqlite"
        assert {"runs", "calls", "steps", "outcomes", "run_totals", "run_sums", "dropped_spans"} <= store.tables()
    assert is_url("postgresql://u@h/db") and is_url("postgres://h/db") and is_url("POSTGRESQL://h/db")
    assert not is_url("postgresql.db") and not is_url(tmp_path / "postgresql://x")
    # Without the postgres backend's driver, the error names the extra to install (and no password).
    monkeypatch.setitem(sys.modules, "unitcost.store.postgres", None)
    with pytest.raises(ConfigurationError, match=r"unitcost\[postgres\]") as raised:
        open_backend("postgresql://me:s3cret@db.example/unitcost")
    assert "s3cret" not in str(raised.value)


def test_a_url_password_is_never_shown():
    assert redact_url("postgresql://me:s3cret@db:5432/x?sslmode=require") == "postgresql://me:***@db:5432/x?sslmode=require"
    assert redact_url("postgresql://me@db/x") == "postgresql://me@db/x"
    assert redact_url("postgresql://db/x") == "postgresql://db/x"


def test_readers_never_create_and_doctor_never_migrates(tmp_path):
    with pytest.raises(StoreError, match="no unitcost store"):
        open_backend(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(StoreError, match="no unitcost store"):
        open_backend(tmp_path / "missing.db", create=False, migrate=False)
    open_backend(tmp_path / "s.db").close()
    with open_backend(tmp_path / "s.db", create=False, migrate=False) as store:
        assert store.health(full_check=False)["schema"]["pending"] == []


def test_a_batch_is_one_transaction_with_its_drops(tmp_path):
    from unitcost.pricing.book import PriceBook
    from unitcost.store.backend import CALL_COLUMNS, TABLES

    call = dict.fromkeys(CALL_COLUMNS, 0) | {
        "span_id": "a" * 16, "trace_id": "b" * 32, "parent_span_id": None, "run_id": "c" * 16, "provider": "openai",
        "operation": "chat", "model": "gpt-4o-mini", "response_model": None, "cost_pico": 5, "reasoning_cost_pico": 0,
        "price_source": "x", "error_type": None, "service_tier": None, "price_modifiers": None, "input_tokens": 10,
    }
    rows: tuple[list[tuple], ...] = tuple([] for _ in TABLES)
    rows[1].append(tuple(call.values()))
    with open_backend(tmp_path / "s.db") as store:
        assert isinstance(store, StoreBackend)
        store.write_batch(Batch(rows, {"queue_full": 3}, "svc"), PriceBook())
        assert store.execute("SELECT calls, input_tokens, cost_pico FROM run_sums").fetchall() == [(1, 10, 5)]
        assert store.dropped_spans() == 3
        assert store.run("nope") is None
        # A batch the store refuses leaves nothing behind (one transaction).
        bad = tuple([] for _ in TABLES)
        bad[1].append(tuple(call.values()))
        bad[0].append((None,) * len(TABLES[0].columns))  # runs.run_id is the primary key, trace_id NOT NULL
        with pytest.raises(Exception) as refused:
            store.write_batch(Batch(bad, {"queue_full": 1}), PriceBook())
        assert not store.is_refusal(refused.value)
        assert store.dropped_spans() == 3
