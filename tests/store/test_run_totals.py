"""The per-run totals the exporter keeps (`run_totals`, `run_sums`) always equal a sum over the calls
stored, however the calls of a run are split into batches and in whatever order the batches come."""

from __future__ import annotations

import sqlite3
from random import Random

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags

from unitcost.exporters.store import StoreSpanExporter
from unitcost.pricing.book import PriceBook
from unitcost.store.run_totals import SUMS, refresh
from unitcost.store.schema import open_store

DAY0 = 1_764_028_800 * 10**9  # 2025-11-25 UTC
RUNS = ["00000000000000a1", "00000000000000a2", "00000000000000a3"]
RESENT = 1 + [s.name for s in SUMS].index("resent")  # its column in run_sums
MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5")]

call = st.tuples(
    st.sampled_from(RUNS), st.sampled_from(MODELS), st.integers(0, 5000), st.integers(0, 2000), st.integers(0, 900)
)


def _span(
    number: int, run_id: str, model: tuple[str, str], prompt: int, cached: int, completion: int,
    start: int | None = None,
) -> ReadableSpan:
    provider, name = model
    attributes = {
        "unitcost.span.type": "llm", "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider,
        "gen_ai.request.model": name, "unitcost.task.id": run_id, "gen_ai.usage.input_tokens": prompt + cached,
        "gen_ai.usage.cache_read.input_tokens": cached, "gen_ai.usage.output_tokens": completion,
    }
    if start is None:
        start = DAY0 + number * 10**9  # distinct start times: the re-send estimate follows start order
    return ReadableSpan(
        name=f"chat {name}", context=SpanContext(7, number + 1, False, TraceFlags(1)), attributes=attributes,
        start_time=start, end_time=start + 10**8,
    )


def _totals(path: str) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with sqlite3.connect(path) as conn:
        return (
            conn.execute("SELECT * FROM run_totals ORDER BY run_id, provider, model").fetchall(),
            conn.execute("SELECT * FROM run_sums ORDER BY run_id").fetchall(),
        )


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(call, min_size=1, max_size=30), cuts=st.lists(st.integers(0, 30), max_size=4),
       order=st.randoms(use_true_random=False), again=st.booleans())
@example(calls=[(RUNS[0], MODELS[0], 1000 + 100 * n, 0, 50) for n in range(4)], cuts=[], order=Random(0),
         again=False)
def test_totals_kept_batch_by_batch_equal_a_sum_over_the_stored_calls(tmp_path_factory, calls, cuts, order, again):
    path = str(tmp_path_factory.mktemp("totals") / "store.db")
    spans = [_span(number, *c) for number, c in enumerate(calls)]
    bounds = sorted({0, len(spans), *(min(c, len(spans)) for c in cuts)})
    batches = [spans[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    order.shuffle(batches)  # a late batch may hold a run's earlier calls
    exporter = StoreSpanExporter(path, PriceBook())
    for batch in batches:
        exporter.export(batch + batch[:1] if again else batch)  # a span written twice counts once
    exporter.shutdown()
    kept = _totals(path)

    db = open_store(path)
    db.conn.execute("BEGIN IMMEDIATE")
    refresh(db.conn, RUNS, PriceBook())  # every run summed again from the calls table alone
    db.conn.execute("COMMIT")
    db.conn.close()
    assert kept == _totals(path)
    assert sum(row[3] for row in kept[0]) == len(spans)


def test_calls_started_at_the_same_nanosecond_are_taken_in_span_id_order(tmp_path):
    # The re-send estimate depends on which call came first: with equal start times the span id decides,
    # whether the run's calls are summed as the batch wrote them or read back from the store.
    path = str(tmp_path / "store.db")
    first = _span(1, RUNS[0], MODELS[0], 1000, 0, 10, start=DAY0)
    second = _span(2, RUNS[0], MODELS[0], 100, 0, 10, start=DAY0)
    exporter = StoreSpanExporter(path, PriceBook())
    exporter.export([second, first])  # the batch holds them in the other order
    exporter.shutdown()
    kept = _totals(path)
    assert kept[1][0][RESENT] == 100  # the second re-sends its 100 of the first's 1,010 (not the first 110 of 110)

    db = open_store(path)
    db.conn.execute("BEGIN IMMEDIATE")
    refresh(db.conn, RUNS, PriceBook())
    db.conn.execute("COMMIT")
    db.conn.close()
    assert _totals(path) == kept


@pytest.fixture
def as_a_user(monkeypatch):
    """UNITCOST_STRICT unset: unitcost's own errors are logged and swallowed, as for a user."""
    from unitcost.common import errors as _errors

    monkeypatch.delenv("UNITCOST_STRICT", raising=False)
    monkeypatch.setattr(_errors, "_already_logged", set())


def test_a_cost_too_large_to_store_leaves_the_call_unpriced_and_the_store_working(tmp_path, as_a_user):
    path = str(tmp_path / "store.db")
    huge = _span(0, RUNS[0], ("openai", "gpt-4o"), 10**12, 0, 10**12)  # tokens within the sanity bound
    exporter = StoreSpanExporter(path, PriceBook())
    exporter.export([huge, _span(1, RUNS[0], MODELS[0], 100, 0, 10)])
    exporter.shutdown()
    with sqlite3.connect(path) as conn:
        costs = conn.execute("SELECT cost_pico FROM calls ORDER BY started_ns").fetchall()
    assert costs == [(None,), (21_000_000,)]  # 100 in x $0.15 + 10 out x $0.60 per MTok


def test_a_batch_refused_for_its_contents_is_counted_not_retried_forever(tmp_path, monkeypatch, as_a_user):
    from unitcost.store import sqlite as store  # where the SQLite backend writes a batch

    path = str(tmp_path / "store.db")
    exporter = StoreSpanExporter(path, PriceBook())
    real = store.insert_rows
    monkeypatch.setattr(store, "insert_rows", lambda *a, **k: (_ for _ in ()).throw(OverflowError("bad row")))
    exporter.export([_span(0, RUNS[0], MODELS[0], 100, 0, 10)])
    monkeypatch.setattr(store, "insert_rows", real)
    exporter.export([_span(1, RUNS[1], MODELS[0], 100, 0, 10)])  # the next batch goes in
    exporter.shutdown()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT run_id FROM calls").fetchall() == [(RUNS[1],)]
        assert conn.execute("SELECT reason, count FROM dropped_spans").fetchall() == [("export_failed", 1)]


def test_a_locked_store_keeps_the_batch_for_the_next_export(tmp_path, monkeypatch, as_a_user):
    from unitcost.store import sqlite as store  # where the SQLite backend writes a batch

    path = str(tmp_path / "store.db")
    exporter = StoreSpanExporter(path, PriceBook())
    real = store.insert_rows
    monkeypatch.setattr(
        store, "insert_rows", lambda *a, **k: (_ for _ in ()).throw(sqlite3.OperationalError("database is locked"))
    )
    exporter.export([_span(0, RUNS[0], MODELS[0], 100, 0, 10)])
    monkeypatch.setattr(store, "insert_rows", real)
    exporter.export([_span(1, RUNS[1], MODELS[0], 100, 0, 10)])
    exporter.shutdown()
    with sqlite3.connect(path) as conn:
        assert sorted(conn.execute("SELECT run_id FROM calls").fetchall()) == [(RUNS[0],), (RUNS[1],)]
        assert conn.execute("SELECT COUNT(*) FROM dropped_spans").fetchone() == (0,)
