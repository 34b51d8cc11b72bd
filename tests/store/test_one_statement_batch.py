"""The SQLite writer's batch in one statement (unitcost.store.sqlite: tagged rows into a TEMP table whose
trigger moves them into every table) stores what a statement per table stores: every table, value and type, the per-run
sums and the rollups, whatever the batches hold, odd values too."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from unitcost.pricing.book import PriceBook
from unitcost.store.backend import CALL_COLUMNS, Batch
from unitcost.store.sqlite import SqliteBackend

DAY0 = 1_764_028_800 * 10**9
RUNS = [f"{n:016x}" for n in range(1, 7)]
MODELS = [("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("acme", "unknown-1")]
TEXTS = ["", "plain", "ünïcödé ✓", "quote ' and \" and \\ backslash", "line\nbreak\ttab", "emoji 🦜", "[1, 2]", "{}"]
# Every table the writer fills, and what the sums and rollups make of them; typeof() too: 1 is not '1'.
TABLES = ("runs", "calls", "steps", "outcomes", "call_content", "run_totals", "run_sums", "task_rollup",
          "task_model_rollup", "rollup_days", "dropped_spans", "run_sums_dirty", "rollup_dirty")


def _call(rng: random.Random, number: int) -> tuple[Any, ...]:
    provider, model = rng.choice(MODELS)
    values: dict[str, Any] = {
        "span_id": f"{number:016x}", "trace_id": f"{number % 3:032x}", "parent_span_id": rng.choice([None, "00ff"]),
        "run_id": rng.choice([*RUNS, None]), "started_ns": DAY0 + number * 10**9 + rng.choice([0, 1]),
        "provider": provider, "operation": "chat", "model": model,
        "response_model": rng.choice([None, model + "-2025"]), "price_source": rng.choice([None, "genai-prices"]),
        "error_type": rng.choice([None, None, "RateLimitError"]), "service_tier": rng.choice([None, "flex"]),
        "price_modifiers": rng.choice([None, '{"batch":true}']),
        "usage_parts": rng.choice([None, '[{"kind":"text","cost_pico":null}]']),
        "energy_source": rng.choice([None, "ecologits"]),
    }
    values["ended_ns"] = values["started_ns"] + rng.randrange(10**9)
    row = []
    for column in CALL_COLUMNS:
        if column in values:
            row.append(values[column])
        elif column.startswith(("energy_", "gwp_")) or column.endswith("_cost_pico") or column == "cost_pico":
            row.append(rng.choice([None, 0, rng.randrange(10**15), 2**53 if column == "cost_pico" else 7]))
        else:  # token counts and flags
            row.append(rng.choice([0, 1, rng.randrange(10**6)]))
    return tuple(row)


def _batch(rng: random.Random, first: int, size: int, **kw: Any) -> Batch:
    calls = [_call(rng, n) for n in range(first, first + size)]
    runs = [
        (run, f"{i:032x}", None, rng.choice([None, RUNS[0]]), rng.choice(["ticket", "triage"]),
         rng.choice([None, *TEXTS]), "svc", DAY0 + i, DAY0 + i + 10**9, rng.choice([None, "ValueError"]),
         rng.choice(["{}", '{"user":"ü"}']), rng.choice([None, 12_345]))
        for i, run in enumerate(rng.sample(RUNS, rng.randrange(len(RUNS))))
    ]
    steps = [
        (f"{first + 500 + i:016x}", f"{i:032x}", None, rng.choice(RUNS), rng.choice(["tool", "step"]),
         rng.choice(TEXTS) or "name", DAY0 + i, DAY0 + i + 5, rng.choice([None, 0, 10**12]), None)
        for i in range(rng.randrange(4))
    ]
    outcomes = [
        (DAY0 + first + i, rng.choice([None, *RUNS]), "ticket", rng.choice([None, "k1"]), rng.choice(TEXTS) or "ok",
         rng.choice([0, 1]), rng.choice([None, -5 * 10**12, 10**12]), "late", f"{first + 900 + i:016x}")
        for i in range(rng.randrange(3))
    ]
    content = [(row[0], rng.choice([None, *TEXTS]), rng.choice(TEXTS)) for row in calls if rng.random() < 0.3]
    return Batch(([*runs], calls, steps, outcomes, content), **kw)


def _stores(tmp_path: Path) -> tuple[SqliteBackend, SqliteBackend]:
    one = SqliteBackend.open(tmp_path / "one.db")
    one.prepare_writer()
    per_table = SqliteBackend.open(tmp_path / "per_table.db")  # (no TEMP objects: a statement per table)
    assert one._one_statement and not per_table._one_statement
    return one, per_table


def _contents(db: SqliteBackend) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in TABLES:
        columns = [r[1] for r in db.conn.execute(f"PRAGMA table_info({table})")]
        typed = ", ".join(f"{c}, typeof({c})" for c in columns if c != "id")  # (ids: the order of insertion)
        out[table] = sorted(db.conn.execute(f"SELECT {typed} FROM {table}").fetchall(), key=repr)
    return out


@pytest.mark.parametrize("seed", range(12))
def test_batches_in_one_statement_store_what_a_statement_per_table_stores(tmp_path, monkeypatch, seed):
    monkeypatch.setattr(time, "time_ns", lambda: DAY0)  # (when a batch's drops are recorded)
    rng = random.Random(seed)
    one, per_table = _stores(tmp_path)
    prices = PriceBook()
    first = 1
    for number in range(rng.randrange(1, 6)):
        size = rng.randrange(0, 40)
        kw = {"rollups": rng.random() < 0.5, "sums": number > 0 or rng.random() < 0.5,
              "drops": rng.choice([{}, {"queue_full": 3}]), "service": "svc",
              "earlier_drops": rng.choice([(), [(DAY0, "exit_timeout", 2, "old")]])}
        state = rng.getstate()
        one.write_batch(_batch(rng, first, size, **kw), prices)
        rng.setstate(state)
        per_table.write_batch(_batch(rng, first, size, **kw), prices)
        first += size
    for db in (one, per_table):  # what every reader does first: the marked runs and tasks made
        db.ensure_fresh(prices)
    ours, theirs = _contents(one), _contents(per_table)
    for table in TABLES:
        assert ours[table] == theirs[table], table
    assert ours["calls"], "nothing was written"


def test_a_batch_is_three_statements_and_one_with_rollups_seven(tmp_path):
    seen: list[str] = []

    def statements(db: SqliteBackend, batch: Batch) -> list[str]:
        seen.clear()
        db.conn.set_trace_callback(seen.append)
        db.write_batch(batch, PriceBook())
        db.conn.set_trace_callback(None)
        return [s.split()[0] for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]  # (a trigger's repeat it)

    one, _ = _stores(tmp_path)
    assert statements(one, _batch(random.Random(1), 1, 30, rollups=False)) == ["BEGIN", "INSERT", "COMMIT"]
    # With the rollups: the runs marked to sum again (none, in a new store), and the refresh in a savepoint.
    fresh = SqliteBackend.open(tmp_path / "fresh.db")
    fresh.prepare_writer()
    assert statements(fresh, _batch(random.Random(1), 1, 30, rollups=True)) == [
        "BEGIN", "INSERT", "SELECT", "SAVEPOINT", "INSERT", "RELEASE", "COMMIT",
    ]


@pytest.mark.parametrize("odd", ["nul", "huge outcome", "huge tool cost", "bytes"])
def test_odd_values_are_stored_or_refused_as_a_statement_per_table_does(tmp_path, odd):
    one, per_table = _stores(tmp_path)
    rng = random.Random(5)
    batch = _batch(rng, 1, 5)
    runs, calls, steps, outcomes, content = batch.rows
    if odd == "nul":
        content.append((calls[0][0], "a\x00b", None))
    elif odd == "huge outcome":
        outcomes.append((DAY0, RUNS[0], "ticket", None, "ok", 1, 2**63, "late", "ff01"))
    elif odd == "huge tool cost":
        steps.append(("ff02", "0" * 32, None, RUNS[0], "tool", "t", DAY0, DAY0, -(2**63) - 1, None))
    else:
        content.append((calls[0][0], b"\x00\x01", None))
    outcomes_before = list(outcomes)
    errors = []
    for db in (one, per_table):
        try:
            db.write_batch(batch, PriceBook())
        except Exception as exc:  # noqa: BLE001 - both ways must fail alike
            errors.append(type(exc))
    assert outcomes == outcomes_before
    assert errors in ([], [OverflowError, OverflowError])
    assert _contents(one) == _contents(per_table)
    if odd == "nul":
        assert ("a\x00b",) in one.conn.execute("SELECT input_messages FROM call_content").fetchall()
