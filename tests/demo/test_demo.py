"""The demo's report, recomputed by hand from the fixed responses its server returns.

Server facts (unitcost/demo/server.py) and prices (genai-prices, per million tokens):
- classify, gpt-4o-mini ($0.15 input, $0.075 cached input, $0.60 output): 1310 prompt tokens, 12
  completion tokens; 1152 of the prompt cached on every classify call but the first.
- summarize, gpt-4o-mini: 900 prompt, 150 completion.
- draft, o4-mini ($1.10 input, $4.40 output), streamed: 2100 prompt, 640 completion of which 448
  reasoning; the "crash" ticket's draft fails with HTTP 500 (no tokens, no cost).
- search_kb: a tool at $0.002 a call, 7 calls (one per run, including the run that timed out).

Runtime (the demo's unitcost-demo.toml): $0.08 a session-hour, each run's wall time rounded up to the
started minute: every run (well under a minute) costs 60 * 0.08 / 3600 = $0.001333333333, 7 runs.

Tickets: T-1001 and T-1002 resolved; T-1003 and T-1005 escalated; T-1004 times out in the knowledge
base, is retried and resolved (two runs, one task); T-1006 fails on the crash (outcome "error").
"""

from __future__ import annotations

import json
from decimal import Decimal

from click.testing import CliRunner

from unitcost.cli.main import cli

M = Decimal(1_000_000)
CLASSIFY_FIRST = (1310 * Decimal("0.15") + 12 * Decimal("0.6")) / M  # 0.0002037
CLASSIFY_CACHED = ((1310 - 1152) * Decimal("0.15") + 1152 * Decimal("0.075") + 12 * Decimal("0.6")) / M
SUMMARY = (900 * Decimal("0.15") + 150 * Decimal("0.6")) / M  # 0.000225
DRAFT = (2100 * Decimal("1.1") + 640 * Decimal("4.4")) / M  # 0.005126
DRAFT_REASONING = 448 * Decimal("4.4") / M
TOOL = Decimal("0.002")

LLM_AND_TOOLS = CLASSIFY_FIRST + 6 * CLASSIFY_CACHED + 2 * SUMMARY + 3 * DRAFT + 7 * TOOL
RUN_RUNTIME = Decimal("0.001333333333")  # 60 s * 0.08 / 3600, to the pico-dollar
TOTAL = LLM_AND_TOOLS + 7 * RUN_RUNTIME


def q(value: Decimal) -> float:
    return float(value.quantize(Decimal("1e-9")))


def test_hand_computed_constants_are_what_they_say():
    assert CLASSIFY_CACHED == Decimal("0.0001173")
    assert LLM_AND_TOOLS == Decimal("0.0307355")
    assert TOTAL == Decimal("0.040068833331")


def test_demo_report_equals_hand_computed_totals(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "demo.db"
    runner = CliRunner()
    shown = runner.invoke(cli, ["demo", "--db", str(db)], catch_exceptions=False)
    assert shown.exit_code == 0, shown.output
    assert "support_ticket" in shown.output and "unitcost show TASK_ID" in shown.output

    result = runner.invoke(cli, ["report", "--db", str(db), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["group"] == {"kind": "support_ticket"}
    assert (row["tasks"], row["runs"]) == (6, 7)  # the retried ticket is one task of two runs
    assert (row["succeeded"], row["failed"], row["no_outcome"]) == (3, 3, 0)
    assert row["success_rate"] == 0.5
    assert row["cost_usd"] == q(TOTAL)
    assert row["cost_per_task_usd"] == q(TOTAL / 6)
    assert row["cost_per_success_usd"] == q(TOTAL / 3)
    assert row["runtime_cost_usd"] == q(7 * RUN_RUNTIME) and row["tool_cost_usd"] == q(7 * TOOL)
    assert row["input_tokens"] == 7 * 1310 + 2 * 900 + 3 * 2100
    assert row["cache_read_tokens"] == 6 * 1152
    assert row["cache_write_tokens"] == 0
    assert row["output_tokens"] == 7 * 12 + 2 * 150 + 3 * 640
    assert row["reasoning_tokens"] == 3 * 448
    assert row["llm_calls"] == 7 + 2 + 4  # the failed draft is a call too
    assert row["tool_calls"] == 7
    assert row["steps"] == 13 + 7 + 7  # LLM calls, tool calls and the 7 classify steps
    assert row["reasoning_cost_share"] == float(3 * DRAFT_REASONING / TOTAL)
    assert row["unpriced_calls"] == 0
    assert row["value_usd"] == 36.0


def test_demo_report_by_model_splits_llm_cost(tmp_path):
    db = tmp_path / "demo.db"
    runner = CliRunner()
    runner.invoke(cli, ["demo", "--db", str(db)], catch_exceptions=False)
    result = runner.invoke(cli, ["report", "--db", str(db), "--by", "model", "--format", "json"])
    rows = {r["group"]["model"]: r for r in json.loads(result.output)}
    assert rows["gpt-4o-mini"]["cost_usd"] == q(CLASSIFY_FIRST + 6 * CLASSIFY_CACHED + 2 * SUMMARY)
    assert rows["gpt-4o-mini"]["tasks"] == 6
    assert rows["o4-mini"]["cost_usd"] == q(3 * DRAFT)
    assert rows["o4-mini"]["tasks"] == 4  # three drafts that worked and the one that crashed


def test_demo_store_carries_users_and_energy_recomputed_by_hand(tmp_path):
    """Heavy users from the tickets' customers (configure(user_attribute="customer") in the demo), and
    energy from ecologits' own function for each stored call's inputs."""
    import sqlite3

    from ecologits.tracers.utils import llm_impacts

    db = tmp_path / "demo.db"
    runner = CliRunner()
    runner.invoke(cli, ["demo", "--db", str(db)], catch_exceptions=False)
    (users,) = json.loads(runner.invoke(cli, ["report", "--users", "--db", str(db), "--format", "json"]).output)
    # acme: T-1001 (the first classify, tool, draft) and T-1003 (classify, tool, summary); globex: T-1002
    # (resolved) and T-1005 (escalated); initech: T-1004 (two runs, one draft) and T-1006 (the crashed draft).
    acme = CLASSIFY_FIRST + CLASSIFY_CACHED + DRAFT + SUMMARY + 2 * TOOL + 2 * RUN_RUNTIME
    globex = 2 * CLASSIFY_CACHED + DRAFT + SUMMARY + 2 * TOOL + 2 * RUN_RUNTIME
    initech = 3 * CLASSIFY_CACHED + DRAFT + 3 * TOOL + 3 * RUN_RUNTIME
    assert users["users"] == 3 and users["user_attribute"] == "customer"
    assert [u["user"] for u in users["heaviest_users"]] == ["initech", "acme", "globex"]
    assert users["heaviest_users"][0]["cost_usd"] == q(initech) and users["heaviest_users"][2]["cost_usd"] == q(globex)
    ordered = sorted([acme, globex, initech])
    assert users["gini_cost_per_user"] == float(
        sum((2 * i - 4) * x for i, x in enumerate(ordered, start=1)) / (3 * sum(ordered))
    )

    with sqlite3.connect(db) as conn:
        calls = conn.execute(
            "SELECT model, output_tokens + reasoning_tokens, ended_ns - started_ns FROM calls"
        ).fetchall()
    e_min = e_max = 0
    for model, out, ns in calls:
        impacts = llm_impacts("openai", model, out, (ns // 1_000_000) / 1000)  # latency to the millisecond
        e_min += round(impacts.energy.value.min * 1e9)
        e_max += round(impacts.energy.value.max * 1e9)
    (row,) = json.loads(runner.invoke(cli, ["report", "--db", str(db), "--format", "json"]).output)
    assert (row["energy_kwh_min"], row["energy_kwh_max"]) == (e_min / 1e9, e_max / 1e9)
    assert row["energy_kwh"] == (e_min + e_max) / 2e9 and row["unestimated_energy_calls"] == 0
    assert row["energy_kwh_per_success"] == row["energy_kwh"] / 3
    assert row["gwp_kgco2eq_min"] > 0
