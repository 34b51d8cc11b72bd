"""The per-run sums made by the database (`unitcost.store.run_sums_sql`) equal the Python rule's
(`unitcost.store.run_totals.add_up`) to the pico-dollar, on SQLite and PostgreSQL: tokens, costs,
counts and the re-send estimate, with cache reads, several models a run, unpriced models, calls that
start at the same nanosecond, and a model whose rates SQL cannot multiply exactly."""

from __future__ import annotations

import json
from random import Random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from unitcost.pricing.book import PriceBook
from unitcost.store.backend import TABLES
from unitcost.store.postgres_schema import open_connection
from unitcost.store.postgres_writer import refresh_totals
from unitcost.store.run_sums_sql import RunSumsSql
from unitcost.store.run_totals import refresh
from unitcost.store.schema import open_store

CALL_COLUMNS = TABLES[1].columns
PRICES = PriceBook()
RUNS = ["00000000000000a1", "00000000000000a2", "00000000000000a3", None]
MODELS = [
    ("openai", "gpt-4o"), ("openai", "gpt-4o-mini-2024-07-18"), ("anthropic", "claude-sonnet-4-5"),
    ("nobody", "unpriced-model"),
]
FRACTIONAL = ("huggingface_together", "Qwen/Qwen3-VL-8B-Instruct")  # 0.18000000000000002 USD per million
T0 = 1_764_061_200_000_000_000

call = st.fixed_dictionaries({
    "run_id": st.sampled_from(RUNS), "model": st.sampled_from(MODELS), "start": st.integers(0, 6),  # ties
    "input_tokens": st.integers(0, 5000), "cache_read_tokens": st.integers(0, 3000),
    "cache_write_tokens": st.integers(0, 400), "cache_write_1h_tokens": st.integers(0, 100),
    "output_tokens": st.integers(0, 900), "reasoning_tokens": st.integers(0, 300),
    "cost_pico": st.none() | st.integers(0, 10**9), "estimated": st.integers(0, 1), "retries": st.integers(0, 2),
    "energy": st.none() | st.integers(0, 10**6),
})


def _row(n: int, c: dict[str, Any]) -> tuple[Any, ...]:
    values = dict.fromkeys(CALL_COLUMNS, 0) | {
        "span_id": f"{n:016x}", "trace_id": f"{n:032x}", "parent_span_id": None, "run_id": c["run_id"],
        "started_ns": T0 + c["start"], "ended_ns": T0 + 10**6, "provider": c["model"][0], "operation": "chat",
        "model": c["model"][1], "response_model": None, "price_source": "genai-prices", "error_type": None,
        "service_tier": None, "price_modifiers": None, "usage_parts": None, "energy_source": None,
        "reasoning_cost_pico": None if c["cost_pico"] is None else c["cost_pico"] // 7,
        "energy_uwh_min": c["energy"], "energy_uwh_max": None if c["energy"] is None else 2 * c["energy"],
        "gwp_ug_min": c["energy"], "gwp_ug_max": c["energy"],
    } | {k: v for k, v in c.items() if k in CALL_COLUMNS and k != "model"}
    return tuple(values[name] for name in CALL_COLUMNS)


def _insert(execute_many: Any, mark: str, rows: list[tuple[Any, ...]]) -> None:
    execute_many(
        f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) VALUES ({', '.join([mark] * len(CALL_COLUMNS))})", rows
    )


def _sqlite_sums(tmp_path: Any, rows: list[tuple[Any, ...]], in_sql: RunSumsSql | None) -> tuple[list[Any], ...]:
    db = open_store(tmp_path)
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    _insert(conn.executemany, "?", rows)
    refresh(conn, {r for (r,) in conn.execute("SELECT run_id FROM calls")}, PRICES, in_sql)
    conn.execute("COMMIT")
    try:
        return (
            conn.execute("SELECT * FROM run_totals ORDER BY run_id, provider, model").fetchall(),
            conn.execute("SELECT * FROM run_sums ORDER BY run_id").fetchall(),
        )
    finally:
        conn.close()


@settings(max_examples=80, deadline=None)
@given(calls=st.lists(call, min_size=1, max_size=25))
def test_sqlite_sums_in_sql_equal_the_python_rule(tmp_path_factory: Any, calls: list[dict[str, Any]]) -> None:
    rows = [_row(n, c) for n, c in enumerate(calls, 1)]
    folder = tmp_path_factory.mktemp("sums")
    in_sql = RunSumsSql("sqlite")
    made = _sqlite_sums(folder / "sql.db", rows, in_sql)
    assert made == _sqlite_sums(folder / "python.db", rows, None)
    assert len(made[1]) == len({c["run_id"] for c in calls} - {None})
    assert not in_sql._fractional  # every sum above was made in SQL


def test_a_model_with_rates_sql_cannot_multiply_exactly_is_summed_in_python(tmp_path: Any) -> None:
    calls = [{"run_id": RUNS[0], "model": model, "start": n, "input_tokens": 3000 + n, "cache_read_tokens": 100,
              "cache_write_tokens": 0, "cache_write_1h_tokens": 0, "output_tokens": 77, "reasoning_tokens": 0,
              "cost_pico": 5, "estimated": 0, "retries": 0, "energy": None}
             for n, model in enumerate([MODELS[0], FRACTIONAL, FRACTIONAL, MODELS[0]])]
    rows = [_row(n, c) for n, c in enumerate(calls, 1)]
    in_sql = RunSumsSql("sqlite")
    made = _sqlite_sums(tmp_path / "sql.db", rows, in_sql)
    assert in_sql._fractional == {FRACTIONAL}
    assert made == _sqlite_sums(tmp_path / "python.db", rows, None)
    resend = [r for r in made[0] if (r[1], r[2]) == FRACTIONAL][0]
    assert resend[3 + 14] > 0  # resend_cost_pico: the fractional model's re-send was priced, not left at 0


def test_a_rolled_back_batch_leaves_the_next_one_summed(tmp_path: Any) -> None:
    db = open_store(tmp_path / "s.db")
    conn, in_sql = db.conn, RunSumsSql("sqlite")
    row = _row(1, {"run_id": RUNS[0], "model": MODELS[0], "start": 0, "input_tokens": 10, "cost_pico": 1,
                   "energy": None})
    conn.execute("BEGIN IMMEDIATE")
    _insert(conn.executemany, "?", [row])
    assert in_sql.refresh(conn.execute, conn.executemany, json.dumps([RUNS[0]]), PRICES)
    conn.execute("ROLLBACK")  # the rates table went with it
    in_sql.forget()
    conn.execute("BEGIN IMMEDIATE")
    _insert(conn.executemany, "?", [row])
    assert in_sql.refresh(conn.execute, conn.executemany, json.dumps([RUNS[0]]), PRICES)
    conn.execute("COMMIT")
    assert conn.execute("SELECT run_id, calls, input_tokens FROM run_sums").fetchall() == [(RUNS[0], 1, 10)]
    conn.close()


def test_postgresql_sums_in_sql_equal_sqlite_python_rule(pg_url: str, tmp_path: Any) -> None:
    rng = Random(20261203)
    strategy_examples = []
    for case in range(20):
        calls = [
            {"run_id": f"{case:04d}{rng.choice(RUNS) or 'none'}", "model": rng.choice([*MODELS, FRACTIONAL]),
             "start": rng.randint(0, 2), "input_tokens": rng.randint(0, 5000),
             "cache_read_tokens": rng.randint(0, 3000),
             "cache_write_tokens": rng.randint(0, 400), "cache_write_1h_tokens": rng.randint(0, 100),
             "output_tokens": rng.randint(0, 900), "reasoning_tokens": rng.randint(0, 300),
             "cost_pico": rng.choice([None, rng.randint(0, 10**9)]), "estimated": rng.randint(0, 1),
             "retries": rng.randint(0, 2), "energy": rng.choice([None, rng.randint(0, 10**6)])}
            for _ in range(rng.randint(1, 25))
        ]
        strategy_examples.append([_row(case * 100 + n, c) for n, c in enumerate(calls, 1)])
    conn = open_connection(pg_url)
    in_sql = RunSumsSql("postgresql")
    try:
        for case, rows in enumerate(strategy_examples):
            with conn.transaction():
                with conn.cursor() as cur:
                    _insert(cur.executemany, "%s", rows)
                runs = sorted({r[CALL_COLUMNS.index("run_id")] for r in rows})
                refresh_totals(conn, runs, PRICES, in_sql)
            expected = _sqlite_sums(tmp_path / f"python{case}.db", rows, None)
            got = (
                conn.execute("SELECT * FROM run_totals WHERE run_id = ANY(%s) ORDER BY run_id, provider, model",
                             (runs,)).fetchall(),
                conn.execute("SELECT * FROM run_sums WHERE run_id = ANY(%s) ORDER BY run_id", (runs,)).fetchall(),
            )
            assert got == expected
    finally:
        conn.close()
