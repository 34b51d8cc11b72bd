"""The marks that say which runs' sums are stale (`unitcost.store.stale_runs`), on both stores: the
writer's own calls mark nothing, anyone else's insert, change, replace or delete marks the runs it
touches, and `ensure_fresh` sums exactly those runs again and takes their marks away. With them, what
a batch carries besides its rows on both stores: rollups left for later (`Batch.rollups`) and counts an
earlier writer kept beside the store (`Batch.earlier_drops`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from unitcost.pricing.book import PriceBook
from unitcost.store.backend import CALL_COLUMNS, TABLES, Batch
from unitcost.store.connect import open_backend

SUMS_SQL = "SELECT run_id, calls, input_tokens, cost_pico FROM run_sums ORDER BY run_id"
_INSERT = (
    "INSERT INTO calls (span_id, trace_id, run_id, started_ns, ended_ns, provider, operation, model, input_tokens, "
    "cost_pico) VALUES (?, 't', ?, ?, ?, 'openai', 'chat', 'gpt-4o-mini-2024-07-18', ?, ?)"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        db = open_backend(str(tmp_path / "marks.db"))
    else:
        db = open_backend(request.getfixturevalue("pg_url"))
    yield db
    db.close()


def call_row(n: int, run_id: str) -> tuple[Any, ...]:
    values = dict.fromkeys(CALL_COLUMNS) | {
        "span_id": f"{n:016x}", "trace_id": f"{n:032x}", "run_id": run_id, "started_ns": 1_764_061_200_000_000_000 + n,
        "ended_ns": 1_764_061_200_000_000_500 + n, "provider": "openai", "operation": "chat",
        "model": "gpt-4o-mini-2024-07-18", "input_tokens": 1000 + n, "cost_pico": 10_000 * n if n % 4 else None,
    }
    for column in ("cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "output_tokens",
                   "reasoning_tokens", "estimated", "streamed", "incomplete", "web_search_requests",
                   "web_fetch_requests", "retries", "cache_write_30m_tokens", "cache_write_12h_tokens"):
        values[column] = 0
    return tuple(values[c] for c in CALL_COLUMNS)


def _batch(calls: list[tuple[Any, ...]], rollups: bool = True) -> Batch:
    rows: list[list[tuple[Any, ...]]] = [[] for _ in TABLES]
    rows[1] = calls
    return Batch(tuple(rows), rollups=rollups)


def _marks(db: Any) -> list[str]:
    return [r for (r,) in db.execute("SELECT run_id FROM run_sums_dirty ORDER BY run_id")]


def _expected(db: Any) -> list[tuple[Any, ...]]:
    """The sums as a full recomputation from the calls gives them (count, input, cost)."""
    return [tuple(r) for r in db.execute(
        "SELECT run_id, COUNT(*), SUM(input_tokens), SUM(COALESCE(cost_pico, 0)) FROM calls "
        "WHERE run_id IS NOT NULL GROUP BY run_id ORDER BY run_id")]


def test_the_writers_calls_mark_nothing_and_others_mark_their_runs(store: Any) -> None:
    prices = PriceBook()
    store.write_batch(_batch([call_row(n, f"r{n % 3}") for n in range(1, 10)]), prices)
    assert _marks(store) == []
    store.ensure_fresh(prices)
    assert [tuple(r) for r in store.execute(SUMS_SQL)] == _expected(store)

    with store.transaction():  # another writer: a new call of r1, a call of r0 deleted, one moved r2 -> r3
        store.execute(_INSERT, [f"{100:016x}", "r1", 1_764_061_200_000_000_100, 1_764_061_200_000_000_200, 7, 70])
        store.execute("DELETE FROM calls WHERE span_id = ?", [f"{3:016x}"])
        store.execute("UPDATE calls SET run_id = 'r3' WHERE span_id = ?", [f"{2:016x}"])
    assert _marks(store) == ["r0", "r1", "r2", "r3"]
    assert [tuple(r) for r in store.execute(SUMS_SQL)] != _expected(store)

    store.ensure_fresh(prices)
    assert _marks(store) == []
    assert [tuple(r) for r in store.execute(SUMS_SQL)] == _expected(store)

    # The writer's batch of a marked run leaves the mark: its sums may still miss the other writer's calls
    # (until a batch that makes rollups, which on SQLite sums the marked runs first).
    with store.transaction():
        store.execute(_INSERT, [f"{200:016x}", "r9", 1_764_061_200_000_000_300, 1_764_061_200_000_000_400, 5, 50])
    store.write_batch(_batch([call_row(201, "r9")], rollups=False), prices)
    assert _marks(store) == ["r9"]
    store.ensure_fresh(prices)
    assert [tuple(r) for r in store.execute(SUMS_SQL)] == _expected(store)


def test_sqlite_insert_or_replace_marks_the_run_the_replaced_row_had(tmp_path: Path) -> None:
    db = open_backend(str(tmp_path / "replace.db"))
    prices = PriceBook()
    db.write_batch(_batch([call_row(1, "a"), call_row(2, "a")]), prices)
    with db.transaction():  # SQLite deletes the replaced row without a delete trigger
        db.execute(
            "INSERT OR REPLACE INTO calls (span_id, trace_id, run_id, started_ns, ended_ns, provider, operation, "
            "model) VALUES (?, 't', 'b', 1, 2, 'openai', 'chat', 'm')", [f"{1:016x}"])
    assert _marks(db) == ["a", "b"]
    db.ensure_fresh(prices)
    assert [tuple(r) for r in db.execute(SUMS_SQL)] == _expected(db)
    db.close()


def test_a_batch_that_leaves_the_rollups_leaves_them_marked_until_a_reader_makes_them(store: Any) -> None:
    prices = PriceBook()
    rows: list[list[tuple[Any, ...]]] = [[] for _ in TABLES]
    rows[0] = [("r1", "t", None, None, "ticket", "T-1", "svc", 1_764_061_200_000_000_000, 1_764_061_200_000_000_900,
                None, "{}", None)]
    rows[1] = [call_row(1, "r1")]
    store.write_batch(Batch(tuple(rows), rollups=False), prices)
    assert store.execute("SELECT task_kind, task_key FROM rollup_dirty").fetchall() == [("ticket", "T-1")]
    assert store.execute("SELECT COUNT(*) FROM task_rollup").fetchone()[0] == 0
    store.ensure_fresh(prices)
    assert store.execute("SELECT COUNT(*) FROM rollup_dirty").fetchone()[0] == 0
    assert [tuple(r) for r in store.execute("SELECT kind, key, runs, calls FROM task_rollup")] == [
        ("ticket", "T-1", 1, 1)]


def test_counts_an_earlier_writer_kept_beside_the_store_are_moved_into_it(store: Any) -> None:
    # (unitcost.store.losses: the store writer hands them over with its first batch, then deletes its side file)
    earlier = [(1_764_061_200_000_000_000, "queue_full", 7, "svc"), (1_764_061_201_000_000_000, "exit", 2, "svc")]
    rows: list[list[tuple[Any, ...]]] = [[] for _ in TABLES]
    store.write_batch(Batch(tuple(rows), {"export_failed": 1}, "svc", earlier_drops=earlier), PriceBook())
    assert store.dropped_spans() == 10
    assert sorted(tuple(r) for r in store.execute("SELECT reason, count FROM dropped_spans")) == [
        ("exit", 2), ("export_failed", 1), ("queue_full", 7)]
