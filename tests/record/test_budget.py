"""Task budgets: a warning once a run spends more than its budget, or a stop before the next call."""

from __future__ import annotations

import json
import warnings
from decimal import Decimal

import pytest
from conftest import mock_http_client, openai_http
from openai import OpenAI

import unitcost

USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
# gpt-4o-mini: 1000 * $0.15/M + 500 * $0.60/M = $0.00045 a call
CALL_COST = Decimal("0.00045")


def _client() -> OpenAI:
    def handler(request):
        return openai_http.Response(200, json={
            "id": "chatcmpl-b", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": USAGE,
        })

    return OpenAI(api_key="sk-test", max_retries=0, http_client=mock_http_client("openai", handler))


@pytest.fixture
def configured(tmp_path, monkeypatch):
    monkeypatch.setenv("UNITCOST_STRICT", "1")
    monkeypatch.chdir(tmp_path)
    unitcost.configure(service_name="budget-test", db=tmp_path / "b.db")
    unitcost.instrument()
    yield tmp_path / "b.db"
    unitcost.uninstrument()
    unitcost.shutdown()


def ask(client: OpenAI) -> str:
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    return r.choices[0].message.content or ""


def test_warns_once_when_a_run_goes_over_budget(configured):
    client = _client()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with unitcost.task("t", budget_usd="0.001") as run:
            for _ in range(4):  # 4 x 0.00045 = 0.0018: over after the third call
                assert ask(client) == "ok"
    over = [w for w in caught if issubclass(w.category, unitcost.BudgetWarning)]
    assert len(over) == 1
    assert "0.001" in str(over[0].message)
    assert run.spent == 4 * CALL_COST


def test_raise_stops_the_next_call_and_records_it(configured):
    client = _client()
    calls_made = 0
    with pytest.raises(unitcost.BudgetExceeded) as raised, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with unitcost.task("t", key="K", budget_usd=0.0005, on_budget="raise") as run:
            for _ in range(3):
                ask(client)
                calls_made += 1
    assert calls_made == 2  # the second call crossed the line; the third was never made
    assert raised.value.task_id == run.id and raised.value.spent_usd == 2 * CALL_COST
    unitcost.flush()
    import sqlite3

    rows = sqlite3.connect(configured).execute("SELECT error_type FROM calls ORDER BY started_ns").fetchall()
    assert rows == [(None,), (None,), ("BudgetExceeded",)]


def test_tool_costs_count_against_the_budget(configured):
    @unitcost.tool("paid_api", cost=0.3)
    def paid_api() -> int:
        return 1

    with pytest.raises(unitcost.BudgetExceeded), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with unitcost.task("t", budget_usd=0.5, on_budget="raise"):
            paid_api()
            paid_api()  # 0.6 > 0.5
            paid_api()  # stopped before it runs


def test_bad_on_budget_value_is_refused():
    with pytest.raises(ValueError):
        unitcost.task("t", budget_usd=1, on_budget="explode")


def test_report_json_is_unaffected_by_budgets(configured):
    client = _client()
    with unitcost.task("t", budget_usd=100):
        ask(client)
    unitcost.flush()
    from click.testing import CliRunner

    from unitcost.cli.main import cli

    out = CliRunner().invoke(cli, ["report", "--db", str(configured), "--format", "json"], catch_exceptions=False)
    (row,) = json.loads(out.output)
    assert row["cost_usd"] == float(CALL_COST)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: unitcost.task("t", budget_usd=-1), "budget_usd cannot be negative"),
        (lambda: unitcost.task("t", budget_usd=Decimal("NaN")), "not a finite amount"),
        (lambda: unitcost.task("t", budget_usd="lots"), "is not an amount in USD"),
        (lambda: unitcost.tool("lookup", cost="-0.01"), "cost cannot be negative"),
        (lambda: unitcost.tool("lookup", cost=float("inf")), "not a finite amount"),
    ],
)
def test_bad_budgets_and_tool_costs_are_refused_where_they_are_written(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def _stored_cost(db) -> Decimal:
    import sqlite3

    with sqlite3.connect(db) as conn:
        (pico,) = conn.execute("SELECT SUM(cost_pico) FROM calls WHERE cost_pico IS NOT NULL").fetchone()
    return Decimal(pico) / 10**12


def test_a_batch_api_call_is_charged_what_the_store_records(configured):
    # A Batch API call costs half price; a budget that charged the full price would stop a task early.
    with unitcost.task("t", budget_usd=100) as run:
        unitcost.record_usage("anthropic", "claude-sonnet-4-6", input_tokens=10_000, output_tokens=2_000, batch=True)
        unitcost.record_usage("anthropic", "claude-sonnet-4-6", input_tokens=10_000, output_tokens=2_000)
    unitcost.flush()
    stored = _stored_cost(configured)
    assert stored > 0 and run.spent == stored
    # ... and the batch call is the cheaper one: half the price of the same call made at once.
    import sqlite3

    with sqlite3.connect(configured) as conn:
        costs = [c for (c,) in conn.execute("SELECT cost_pico FROM calls ORDER BY price_modifiers IS NULL")]
    assert costs[0] * 2 == costs[1]


def test_a_model_priced_by_the_hour_is_charged_what_the_store_records(tmp_path, monkeypatch):
    # A self-hosted model (hourly_usd) costs its time: a budget that priced it at $0 would never stop it.
    monkeypatch.setenv("UNITCOST_STRICT", "1")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "unitcost.toml").write_text('[[price]]\nmodel = "qwen*"\nhourly_usd = 2.40\nconcurrency = 4\n')
    unitcost.configure(service_name="budget-test", db=tmp_path / "h.db")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with unitcost.task("t", budget_usd="0.0004") as run:
                for _ in range(2):  # $0.00025 each: over after the second
                    unitcost.record_usage("vllm", "qwen2.5-7b-instruct", input_tokens=900, output_tokens=100,
                                          duration_s=1.5)
        unitcost.flush()
        assert run.spent == _stored_cost(tmp_path / "h.db") == Decimal("0.0005")
        assert [w for w in caught if issubclass(w.category, unitcost.BudgetWarning)]
    finally:
        unitcost.shutdown()
