"""Outcome economics, to the micro-dollar: a small workload whose every number is computed by hand.

Prices (genai-prices, USD per million tokens): gpt-4o-mini 0.15 input, 0.075 cached input, 0.60
output; o4-mini 1.10 input, 0.275 cached input, 4.40 output (reasoning is output).

    task  customer prompt  runs                                         outcome (latest wins)
    T1    acme     v1      mini(1000 in, 200 cached, 100 out)           resolved, value 10 (inline)
                           o4(2000 in, 500 out of which 300 reasoning)
                           tool 0.01
    T2    acme     v2      run 1: mini(1000, 100) then raises           error (run 1), escalated (run 2),
                           run 2: mini(1000, 100)                       then resolved value 10 (late, by key)
    T3    globex   v1      o4(1000 in, 500 out)                         escalated (late, from the CLI)
    T4    globex   v2      mini(500, 50)                                none

    T1 = 0.000195 + 0.0044 + 0.01 = 0.014595   (mini: 800*.15 + 200*.075 + 100*.6; o4: 2000*1.1 + 500*4.4)
    T2 = 0.00021 + 0.00021 = 0.00042           T3 = 0.0033           T4 = 0.000105
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from click.testing import CliRunner
from conftest import mock_http_client, openai_http
from openai import OpenAI

import unitcost
from unitcost.cli.main import cli

T1, T2, T3, T4 = Decimal("0.014595"), Decimal("0.00042"), Decimal("0.0033"), Decimal("0.000105")
TOTAL = T1 + T2 + T3 + T4  # 0.01842


def usd(value: str | Decimal) -> float:
    return float(Decimal(value).quantize(Decimal("1e-9")))


def _client() -> OpenAI:
    """A server that answers each call with the usage the test put in the user message."""

    def handler(request):
        body = json.loads(request.content)
        spec = json.loads(body["messages"][-1]["content"])
        usage = {
            "prompt_tokens": spec["in"], "completion_tokens": spec["out"],
            "total_tokens": spec["in"] + spec["out"],
            "prompt_tokens_details": {"cached_tokens": spec.get("cached", 0)},
            "completion_tokens_details": {"reasoning_tokens": spec.get("reasoning", 0)},
        }
        return openai_http.Response(200, json={
            "id": "chatcmpl-econ", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": usage,
        })

    return OpenAI(api_key="sk-test", max_retries=0, http_client=mock_http_client("openai", handler))


def call(client: OpenAI, model: str, **spec: int) -> None:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": json.dumps(spec)}])


def record_workload(db, service_name: str = "economics") -> None:
    """The workload of the module's docstring, into the store ``db`` (a path or a postgresql:// URL).
    (The process's TracerProvider keeps the first service name it was given: tests that run before
    the other exporter tests pass the one those expect, "tests".)"""
    unitcost.configure(service_name=service_name, db=db)
    unitcost.instrument()
    client = _client()

    @unitcost.tool("lookup", cost="0.01")
    def lookup() -> None:
        pass

    with unitcost.task("ticket", key="T1", attributes={"customer": "acme", "prompt": "v1"}):
        call(client, "gpt-4o-mini", **{"in": 1000, "cached": 200, "out": 100})
        call(client, "o4-mini", **{"in": 2000, "out": 500, "reasoning": 300})
        lookup()
        unitcost.outcome("resolved", value=10)
    acme_v2 = {"customer": "acme", "prompt": "v2"}
    with pytest.raises(RuntimeError), unitcost.task("ticket", key="T2", attributes=acme_v2):
        call(client, "gpt-4o-mini", **{"in": 1000, "out": 100})
        raise RuntimeError("tool timed out")
    with unitcost.task("ticket", key="T2", attributes=acme_v2):
        call(client, "gpt-4o-mini", **{"in": 1000, "out": 100})
        unitcost.outcome("escalated")
    # The late outcome is recorded before the run's spans reach the store, and still wins.
    unitcost.record_outcome("resolved", kind="ticket", key="T2", value=10)
    with unitcost.task("ticket", key="T3", attributes={"customer": "globex", "prompt": "v1"}):
        call(client, "o4-mini", **{"in": 1000, "out": 500})
    with unitcost.task("ticket", key="T4", attributes={"customer": "globex", "prompt": "v2"}):
        call(client, "gpt-4o-mini", **{"in": 500, "out": 50})
    unitcost.flush()
    result = CliRunner().invoke(cli, ["outcome", "T3", "escalated", "--kind", "ticket", "--db", str(db)])
    assert result.exit_code == 0, result.output
    unitcost.uninstrument()
    unitcost.shutdown()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("econ")
    db = tmp / "econ.db"
    mp = pytest.MonkeyPatch()
    mp.setenv("UNITCOST_STRICT", "1")
    mp.chdir(tmp)
    record_workload(db)
    yield db
    mp.undo()


def run_json(db, *args: str) -> list[dict]:
    result = CliRunner().invoke(cli, [*args, "--db", str(db), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_every_metric_of_the_kind_row(store):
    (row,) = run_json(store, "report")
    expected = {
        "group": {"kind": "ticket"},
        "tasks": 4, "runs": 5, "retries": 1, "succeeded": 2, "failed": 1, "no_outcome": 1,
        "success_rate": 2 / 3,
        "cost_usd": usd(TOTAL), "cost_per_task_usd": usd(TOTAL / 4), "cost_per_success_usd": usd(TOTAL / 2),
        "wasted_usd": usd(T3),
        "cost_per_task_p50_usd": usd(T2), "cost_per_task_p90_usd": usd(T1),
        "cost_per_task_p95_usd": usd(T1), "cost_per_task_p99_usd": usd(T1),
        "llm_cost_usd": usd(TOTAL - Decimal("0.01")), "tool_cost_usd": 0.01,
        "reasoning_cost_usd": usd("0.00132"), "reasoning_cost_share": float(Decimal("0.00132") / TOTAL),
        "value_usd": 20.0, "margin_usd": usd(20 - TOTAL), "margin_per_task_usd": usd((20 - TOTAL) / 4),
        "margin_per_success_usd": usd((20 - TOTAL) / 2),
        "input_tokens": 6500, "cache_read_tokens": 200, "cache_write_tokens": 0,
        "output_tokens": 1350, "reasoning_tokens": 300,
        "llm_calls": 6, "tool_calls": 1, "steps": 7, "sdk_retries": 0,
        # T1's second call repeats the 1000 + 100 tokens of its first: 1100 uncached o4-mini tokens.
        "resend_tokens_estimated": 1100,
        "resend_cost_usd_estimated": usd(Decimal(1100) * Decimal("1.1") / 10**6),
        "resend_cache_savings_usd_estimated": usd(Decimal(1100) * (Decimal("1.1") - Decimal("0.275")) / 10**6),
        "unpriced_calls": 0, "estimated_calls": 0,
    }
    assert {k: row[k] for k in expected} == expected


def test_by_model_each_call_cost_goes_to_its_model(store):
    rows = {r["group"]["model"]: r for r in run_json(store, "report", "--by", "model")}
    assert rows["gpt-4o-mini"]["cost_usd"] == usd("0.00072")  # T1, T2 (both runs), T4
    assert rows["gpt-4o-mini"]["tasks"] == 3
    assert rows["o4-mini"]["cost_usd"] == usd("0.0077")  # T1 and T3
    assert rows["o4-mini"]["tasks"] == 2 and rows["o4-mini"]["succeeded"] == 1


def test_by_attribute_and_where(store):
    rows = {r["group"]["customer"]: r for r in run_json(store, "report", "--by", "customer")}
    assert rows["acme"]["cost_per_success_usd"] == usd((T1 + T2) / 2)
    assert rows["globex"]["cost_per_success_usd"] is None and rows["globex"]["wasted_usd"] == usd(T3)
    globex = {r["group"]["outcome"]: r["tasks"] for r in run_json(store, "report", "--where", "customer=globex",
                                                                   "--by", "outcome")}
    assert globex == {"escalated": 1, None: 1}


def test_by_outcome_and_every_day(store):
    rows = {r["group"]["outcome"]: r["tasks"] for r in run_json(store, "report", "--by", "outcome")}
    assert rows == {"resolved": 2, "escalated": 1, None: 1}
    (day,) = run_json(store, "report", "--every", "day")
    assert set(day["group"]) == {"day", "kind"} and day["cost_usd"] == usd(TOTAL)


def test_show_keeps_the_outcome_history(store):
    (t2_run2, t2_run1) = [r for r in run_json(store, "tasks") if r["key"] == "T2"]
    result = CliRunner().invoke(cli, ["show", t2_run1["task_id"], "--db", str(store)])
    history = result.output.split("outcomes (latest wins):")[1]
    assert history.index("error") < history.index("escalated") < history.index("resolved")


def test_compare_prompt_versions(store):
    (row,) = run_json(store, "compare", "prompt=v1", "prompt=v2")
    assert row["a"]["cost_per_success_usd"] == usd(T1 + T3) and row["a"]["success_rate"] == 0.5
    assert row["b"]["cost_per_success_usd"] == usd(T2 + T4) and row["b"]["success_rate"] == 1.0
    assert row["change"]["cost_per_success_usd"] == usd(T2 + T4 - T1 - T3)


def test_whatif_cheaper_model(store):
    (row,) = run_json(store, "whatif", "--model", "gpt-4o-mini", "--from-model", "o4-mini")
    # o4-mini calls re-priced as gpt-4o-mini: T1's 2000*.15 + 500*.6 = 0.0006, T3's 0.00045
    then = TOTAL - Decimal("0.0044") - Decimal("0.0033") + Decimal("0.0006") + Decimal("0.00045")
    assert row["b"]["cost_usd"] == usd(then) and row["b"]["cost_per_success_usd"] == usd(then / 2)
    assert row["b"]["success_rate"] == row["a"]["success_rate"]  # assumed unchanged
    text = CliRunner().invoke(cli, ["whatif", "--cache", "--db", str(store)]).output
    assert "assumed unchanged" in text


def test_check_thresholds(store):
    runner = CliRunner()
    breach = runner.invoke(cli, ["check", "--db", str(store), "--max-cost-per-success", "0.009"])
    assert breach.exit_code == 1
    assert breach.output.strip() == "kind=ticket: cost per success $0.00921 > limit $0.009"
    by_customer = runner.invoke(cli, ["check", "--db", str(store), "--by", "customer", "--max-cost", "0.01"])
    assert by_customer.exit_code == 1 and "customer=acme: total cost $0.015015 > limit $0.01" in by_customer.output
    fine = runner.invoke(cli, ["check", "--db", str(store), "--max-cost-per-task-p95", "1"])
    assert fine.exit_code == 0 and fine.output.startswith("ok:")


def test_formats_carry_the_same_numbers(store):
    (row,) = run_json(store, "report")
    csv_out = CliRunner().invoke(cli, ["report", "--db", str(store), "--format", "csv"]).output.splitlines()
    header, values = csv_out[0].split(","), csv_out[1].split(",")
    assert float(values[header.index("cost_per_success_usd")]) == row["cost_per_success_usd"]
    md = CliRunner().invoke(cli, ["report", "--db", str(store), "--format", "markdown"]).output
    assert f"| {row['cost_per_success_usd']} |" in md


def test_query_api_returns_the_json_rows(store):
    assert unitcost.query.report(db=store) == run_json(store, "report")


def test_import_outcomes_then_prune(store, tmp_path):
    import shutil

    copy = tmp_path / "copy.db"
    shutil.copy(store, copy)
    (tmp_path / "o.jsonl").write_text('{"kind": "ticket", "key": "T4", "label": "resolved", "value": 5}\n')
    runner = CliRunner()
    assert runner.invoke(cli, ["outcome", "--import", str(tmp_path / "o.jsonl"), "--db", str(copy)]).exit_code == 0
    (row,) = run_json(copy, "report")
    assert (row["succeeded"], row["no_outcome"], row["value_usd"]) == (3, 0, 25.0)
    pruned = runner.invoke(cli, ["prune", "--before", "0s", "--yes", "--db", str(copy)])
    # outcomes: T1 inline, T2's error, escalated and late resolved, T3 from the CLI, T4 imported
    assert pruned.output.strip() == "deleted 6 calls, 1 steps, 5 runs, 6 outcomes"
    assert run_json(copy, "report") == []


def test_whatif_route_by_model_and_input_tokens(store):
    # Only T3's o4-mini call has under 2000 input tokens: 1000*.15 + 500*.6 = 0.00045 instead of 0.0033.
    (row,) = run_json(store, "whatif", "--route", "model=o4-mini,input_tokens<2000:gpt-4o-mini")
    then = TOTAL - T3 + Decimal("0.00045")
    assert row["b"]["cost_usd"] == usd(then) and row["b"]["wasted_usd"] == usd("0.00045")
    assert row["routed_calls"] == 1 and row["b"]["success_rate"] == row["a"]["success_rate"]
    assert "success rates unchanged" in row["assumes"]


def test_whatif_route_by_task_attribute_first_rule_wins(store):
    # acme's calls go to gpt-4o-mini (T1's o4-mini call: 2000*.15 + 500*.6 = 0.0006); the second rule
    # would send every call to o4-mini but comes too late for acme's, and moves only globex's.
    (row,) = run_json(
        store, "whatif", "--route", "customer=acme:gpt-4o-mini", "--route", "output_tokens>=50:o4-mini"
    )
    # globex: T3 stays o4-mini (0.0033); T4's mini(500 in, 50 out) on o4-mini: 500*1.1 + 50*4.4 = 0.00077
    then = TOTAL - Decimal("0.0044") + Decimal("0.0006") - Decimal("0.000105") + Decimal("0.00077")
    assert row["b"]["cost_usd"] == usd(then) and row["routed_calls"] == 6


def test_whatif_batch_prices_and_with_cache(store):
    # Batch API prices (genai-prices): gpt-4o-mini 0.075 input and cached input, 0.30 output;
    # o4-mini 0.55 input, 0.275 cached, 2.20 output.
    # T1: mini 800*.075 + 200*.075 + 100*.3 = 0.000105; o4 2000*.55 + 500*2.2 = 0.0022; tool 0.01
    # T2: 2 * (1000*.075 + 100*.3) = 0.00021; T3: 1000*.55 + 500*2.2 = 0.00165; T4: 500*.075 + 50*.3 = 0.0000525
    batch = Decimal("0.000105") + Decimal("0.0022") + Decimal("0.01") + Decimal("0.00021") + Decimal("0.00165") + (
        Decimal("0.0000525")
    )
    (row,) = run_json(store, "whatif", "--batch", "ticket")
    assert row["b"]["cost_usd"] == usd(batch) and row["batched_calls"] == 6
    assert any("Batch API" in said for said in row["assumes"])
    # With --cache too: T1's o4-mini call reads its 1100 re-sent tokens from the cache:
    # 900*.55 + 1100*.275 + 500*2.2 = 0.0018975 instead of 0.0022.
    (both,) = run_json(store, "whatif", "--batch", "ticket", "--cache")
    assert both["b"]["cost_usd"] == usd(batch - Decimal("0.0022") + Decimal("0.0018975"))
    (other,) = run_json(store, "whatif", "--batch", "nightly")  # no task of that kind: nothing changes
    assert other["b"]["cost_usd"] == other["a"]["cost_usd"] and other["batched_calls"] == 0


def test_whatif_says_what_it_assumes_and_refuses_bad_rules(store):
    text = CliRunner().invoke(
        cli, ["whatif", "--route", "input_tokens<2000:gpt-4o-mini", "--batch", "ticket", "--db", str(store)]
    ).output
    assert "Assumed: calls matching 'input_tokens<2000' made by gpt-4o-mini" in text and "Batch API" in text
    bad = CliRunner().invoke(cli, ["whatif", "--route", "input_tokens<2000", "--db", str(store)])
    assert bad.exit_code != 0 and "CONDITIONS:MODEL" in bad.output
    unknown = CliRunner().invoke(cli, ["whatif", "--route", "kind=ticket:no-such-model", "--db", str(store)])
    assert unknown.exit_code != 0 and "no price known" in unknown.output


def test_route_conditions():
    from unitcost.report.routing import CallFacts, parse_route

    call = CallFacts("openai", "o4-mini", "ticket", "classify", {"customer": "acme", "tier": 2}, 1500, 40)
    assert parse_route("step=classify,kind=tick*:gpt-4o-mini").matches(call)
    assert parse_route("tier=2,input_tokens<=1500,output_tokens<41:m").matches(call)
    assert not parse_route("input_tokens>1500:m").matches(call)
    assert not parse_route("customer=globex:m").matches(call)
    assert parse_route("provider=openai:llama3.1:8b").model == "llama3.1:8b"
    with pytest.raises(ValueError, match="route condition"):
        parse_route("tokens:m")
