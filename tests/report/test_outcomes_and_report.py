"""Outcomes (inline, late, corrected, from the CLI) and the reports built on them:
`unitcost report` (its JSON contract, grouping, time window, CSV), `tasks`, `show` and `outcome`."""

from __future__ import annotations

import csv
import io
import json
from contextlib import suppress
from decimal import Decimal

import pytest
from conftest import (
    GPT4O_MINI,
    O4_MINI,
    PROMPT,
    ChatServer,
    genai_cost,
    report_json,
    run_cli,
    store_rows,
    usage_block,
    usd_json,
)

import unitcost

M = Decimal(1_000_000)
# The two calls used throughout, and what genai-prices says they cost.
MINI_USAGE = dict(prompt=1000, completion=500, cached=200, reasoning=100)
O4_USAGE = dict(prompt=2100, completion=640, cached=1024, reasoning=448)
MINI_COST = genai_cost(GPT4O_MINI, **MINI_USAGE)
O4_COST = genai_cost(O4_MINI, **O4_USAGE)
MINI_REASONING_COST = 100 * Decimal("0.60") / M
O4_REASONING_COST = 448 * Decimal("4.40") / M
TOOL_COST = Decimal("0.002")

CONTRACT_FIELDS = (
    "group", "tasks", "runs", "succeeded", "failed", "no_outcome", "success_rate", "cost_usd",
    "cost_per_task_usd", "cost_per_success_usd", "input_tokens", "cache_read_tokens", "cache_write_tokens",
    "output_tokens", "reasoning_tokens", "llm_calls", "tool_calls", "steps", "reasoning_cost_share",
    "unpriced_calls",
)


@pytest.fixture
def mini(openai_client):
    return openai_client(ChatServer(model=GPT4O_MINI, usage=usage_block(**MINI_USAGE)))


@pytest.fixture
def o4(openai_client):
    return openai_client(ChatServer(model=O4_MINI, usage=usage_block(**O4_USAGE)))


def ask(client, model="gpt-4o-mini"):
    return client.chat.completions.create(model=model, messages=PROMPT)


def by_group(rows, name):
    return {row["group"][name]: row for row in rows}


def test_prices_used_below():
    assert Decimal("0.000435") == MINI_COST
    assert Decimal("0.0042812") == O4_COST


# --- the JSON contract -------------------------------------------------------------------------------


def test_report_json_has_every_contract_field_with_its_value(store_db, mini, o4):
    with unitcost.task("support_ticket", key="T-1"):
        with unitcost.step("classify"):
            ask(mini)
        with unitcost.tool("search_kb", cost=0.002):
            pass
        unitcost.outcome("resolved", value=12)
    with unitcost.task("support_ticket", key="T-2"):
        ask(o4, "o4-mini")
        unitcost.outcome("escalated")
    with unitcost.task("support_ticket", key="T-3"):
        pass  # no outcome yet

    (row,) = report_json(store_db)
    total = MINI_COST + O4_COST + TOOL_COST
    assert {name: row[name] for name in CONTRACT_FIELDS} == {
        "group": {"kind": "support_ticket"},
        "tasks": 3,
        "runs": 3,
        "succeeded": 1,
        "failed": 1,
        "no_outcome": 1,
        "success_rate": 0.5,  # succeeded / (succeeded + failed): tasks without an outcome left out
        "cost_usd": usd_json(total),
        "cost_per_task_usd": usd_json(total / 3),
        "cost_per_success_usd": usd_json(total / 1),  # all the group's cost over its successes
        "input_tokens": 1000 + 2100,  # all input, cached included
        "cache_read_tokens": 200 + 1024,
        "cache_write_tokens": 0,
        "output_tokens": 500 + 640,  # all output, reasoning included
        "reasoning_tokens": 100 + 448,
        "llm_calls": 2,
        "tool_calls": 1,
        "steps": 2 + 1 + 1,  # LLM calls, tool calls and step blocks
        "reasoning_cost_share": float((MINI_REASONING_COST + O4_REASONING_COST) / total),
        "unpriced_calls": 0,
    }
    assert row["value_usd"] == 12.0


def test_cost_per_success_is_null_without_a_success(store_db, mini):
    with unitcost.task("refund_request", key="R-1"):
        ask(mini)
        unitcost.outcome("rejected")
    (row,) = report_json(store_db)
    assert (row["succeeded"], row["failed"], row["success_rate"]) == (0, 1, 0.0)
    assert row["cost_usd"] == usd_json(MINI_COST)
    assert row["cost_per_success_usd"] is None


def test_empty_store_reports_no_rows(store_db):
    assert report_json(store_db) == []


def test_missing_store_is_a_clear_error(tmp_path):
    result = run_cli("report", "--db", str(tmp_path / "nowhere.db"), expect=1)
    assert "no unitcost store at" in result.output


# --- tasks, runs and outcomes ------------------------------------------------------------------------


def test_a_retried_task_is_one_task_of_three_runs(store_db, mini):
    for attempt in range(3):
        with suppress(TimeoutError), unitcost.task("support_ticket", key="T-4"):
            ask(mini)
            if attempt < 2:
                raise TimeoutError("knowledge base timed out")
            unitcost.outcome("resolved")

    (row,) = report_json(store_db)
    assert (row["tasks"], row["runs"], row["succeeded"], row["failed"]) == (1, 3, 1, 0)
    assert row["cost_usd"] == usd_json(3 * MINI_COST)  # every attempt is paid for
    assert row["cost_per_success_usd"] == usd_json(3 * MINI_COST)
    assert row["llm_calls"] == 3
    runs = store_rows(store_db, "runs")
    assert [r["error_type"] for r in runs] == ["TimeoutError", "TimeoutError", None]


def test_late_outcome_recorded_before_the_runs_spans_are_flushed(store_db, mini):
    with unitcost.task("support_ticket", key="T-8"):
        ask(mini)
    unitcost.record_outcome("resolved", kind="support_ticket", key="T-8", value="12.50")

    (row,) = report_json(store_db)  # flushes the run and the outcome together
    assert (row["succeeded"], row["no_outcome"]) == (1, 0)
    assert row["value_usd"] == 12.5


def test_late_outcome_recorded_after_the_run_reached_the_store(store_db, mini):
    with unitcost.task("support_ticket", key="T-8") as run:
        ask(mini)
    (row,) = report_json(store_db)
    assert row["no_outcome"] == 1

    unitcost.record_outcome("resolved", task_id=run.id)
    (row,) = report_json(store_db)
    assert (row["succeeded"], row["no_outcome"]) == (1, 0)
    (outcome,) = store_rows(store_db, "outcomes")
    assert (outcome["run_id"], outcome["source"]) == (run.id, "late")


def test_an_outcome_that_reaches_the_store_before_its_task_is_kept(store_db, mini):
    unitcost.record_outcome("resolved", kind="support_ticket", key="T-9")
    assert len(store_rows(store_db, "outcomes")) == 1
    assert report_json(store_db) == []

    with unitcost.task("support_ticket", key="T-9"):
        ask(mini)
    (row,) = report_json(store_db)
    assert row["succeeded"] == 1


def test_outcome_correction_latest_wins(store_db, mini):
    with unitcost.task("support_ticket", key="T-10"):
        ask(mini)
        unitcost.outcome("resolved")
    unitcost.record_outcome("reopened", kind="support_ticket", key="T-10", success=False)
    (row,) = report_json(store_db)
    assert (row["succeeded"], row["failed"]) == (0, 1)

    unitcost.record_outcome("resolved", kind="support_ticket", key="T-10")
    (row,) = report_json(store_db)
    assert (row["succeeded"], row["failed"]) == (1, 0)
    (row,) = report_json(store_db, "--by", "outcome")
    assert row["group"] == {"outcome": "resolved"}


def test_record_outcome_needs_a_task_id_or_a_key(store_db):
    with pytest.raises(ValueError, match="task_id= or key="):
        unitcost.record_outcome("resolved")


# --- `unitcost outcome` --------------------------------------------------------------------------------


def test_cli_outcome_by_task_id(store_db, mini):
    with unitcost.task("support_ticket", key="T-11") as run:
        ask(mini)
    unitcost.flush()

    result = run_cli("outcome", run.id, "resolved", "--value", "12", "--db", str(store_db))
    assert result.stdout.strip() == f"recorded 'resolved' (success) for run {run.id}"
    (row,) = report_json(store_db)
    assert (row["succeeded"], row["value_usd"]) == (1, 12.0)


def test_cli_outcome_by_key_and_success_override(store_db, mini):
    with unitcost.task("support_ticket", key="T-12"):
        ask(mini)
    unitcost.flush()

    result = run_cli("outcome", "T-12", "closed", "--success", "--db", str(store_db))
    assert "support_ticket key T-12" in result.stdout
    (row,) = report_json(store_db)
    assert row["succeeded"] == 1  # "closed" is no success word, --success says it is one


def test_cli_outcome_with_an_ambiguous_key_needs_kind(store_db, mini):
    for kind in ("support_ticket", "refund_request"):
        with unitcost.task(kind, key="K-1"):
            ask(mini)
    unitcost.flush()

    result = run_cli("outcome", "K-1", "resolved", "--db", str(store_db), expect=1)
    assert result.output.strip().splitlines() == [
        "Error: key 'K-1' exists in several kinds (refund_request, support_ticket): pass --kind"
    ]
    assert store_rows(store_db, "outcomes") == []

    run_cli("outcome", "K-1", "resolved", "--kind", "refund_request", "--db", str(store_db))
    rows = by_group(report_json(store_db), "kind")
    assert rows["refund_request"]["succeeded"] == 1
    assert rows["support_ticket"]["no_outcome"] == 1


def test_cli_outcome_for_an_unknown_key_warns_and_keeps_it(store_db, mini):
    unitcost.flush()
    result = run_cli("outcome", "T-404", "resolved", "--db", str(store_db))
    assert "warning: no run has key 'T-404' yet; the outcome is kept" in result.stderr
    assert len(store_rows(store_db, "outcomes")) == 1

    with unitcost.task("support_ticket", key="T-404"):  # the task's spans arrive later
        ask(mini)
    (row,) = report_json(store_db)
    assert row["succeeded"] == 1


def test_cli_outcome_rejects_a_bad_value(store_db):
    unitcost.flush()
    result = run_cli("outcome", "T-1", "resolved", "--value", "twelve", "--db", str(store_db), expect=2)
    assert "'twelve' is not an amount in USD" in result.output


# --- grouping ----------------------------------------------------------------------------------------------


def test_by_model_counts_a_task_in_each_models_row_with_only_that_models_cost(store_db, mini, o4):
    with unitcost.task("support_ticket", key="T-20"):
        ask(mini)
        ask(mini)
        ask(o4, "o4-mini")
        with unitcost.tool("search_kb", cost=0.002):
            pass
        unitcost.outcome("resolved")

    rows = by_group(report_json(store_db, "--by", "model"), "model")
    assert set(rows) == {"gpt-4o-mini", "o4-mini"}
    assert (rows["gpt-4o-mini"]["tasks"], rows["o4-mini"]["tasks"]) == (1, 1)
    assert rows["gpt-4o-mini"]["succeeded"] == rows["o4-mini"]["succeeded"] == 1
    assert rows["gpt-4o-mini"]["cost_usd"] == usd_json(2 * MINI_COST)
    assert rows["o4-mini"]["cost_usd"] == usd_json(O4_COST)
    assert (rows["gpt-4o-mini"]["llm_calls"], rows["o4-mini"]["llm_calls"]) == (2, 1)
    assert rows["o4-mini"]["reasoning_tokens"] == 448
    # Tools are no model's cost: they appear only when not grouping by model.
    assert rows["gpt-4o-mini"]["tool_calls"] == rows["o4-mini"]["tool_calls"] == 0
    (row,) = report_json(store_db)
    assert row["cost_usd"] == usd_json(2 * MINI_COST + O4_COST + TOOL_COST)


def test_by_task_attribute(store_db, mini):
    for key, customer in (("T-30", "acme"), ("T-31", "acme"), ("T-32", "globex")):
        with unitcost.task("support_ticket", key=key, attributes={"customer": customer}):
            ask(mini)

    rows = by_group(report_json(store_db, "--by", "customer"), "customer")
    assert (rows["acme"]["tasks"], rows["globex"]["tasks"]) == (2, 1)
    assert rows["acme"]["cost_usd"] == usd_json(2 * MINI_COST)

    rows = report_json(store_db, "--by", "kind,customer")
    assert [r["group"] for r in rows] == [
        {"kind": "support_ticket", "customer": "acme"},
        {"kind": "support_ticket", "customer": "globex"},
    ]


def test_by_attr_prefix_reaches_an_attribute_named_like_a_built_in_group(store_db, mini):
    with unitcost.task("support_ticket", attributes={"kind": "premium"}):
        ask(mini)

    (row,) = report_json(store_db, "--by", "attr.kind")
    assert row["group"] == {"attr.kind": "premium"}
    (row,) = report_json(store_db, "--by", "kind")
    assert row["group"] == {"kind": "support_ticket"}


def test_unknown_by_name_is_a_clear_error(store_db, mini):
    with unitcost.task("support_ticket", attributes={"customer": "acme"}):
        ask(mini)
    unitcost.flush()

    result = run_cli("report", "--db", str(store_db), "--by", "colour", expect=1)
    assert result.output.startswith("Error: unknown --by name 'colour'")
    assert "customer" in result.output  # it says which names exist
    result = run_cli("report", "--db", str(store_db), "--by", "model,provider", expect=1)
    assert "not both" in result.output


def test_what_needs_no_attribute_is_refused_before_the_attributes_are_read(store_db, mini, monkeypatch):
    # (on a store of a million calls, reading every task's attributes took seconds before the error)
    from unitcost.report import sql

    with unitcost.task("support_ticket", attributes={"customer": "acme"}):
        ask(mini)
    unitcost.flush()

    def no_read(self):
        raise AssertionError("the task attributes were read")

    monkeypatch.setattr(sql.TaskTables, "build", no_read)
    for args, said in ((["--where", "model=gpt-4o-mini"], "--where model=... cannot select tasks"),
                       (["--where", "provider=openai", "--by", "customer"], "--where provider=... cannot select"),
                       (["--by", "customer,model,provider"], "not both")):
        result = run_cli("report", "--db", str(store_db), *args, expect=1)
        assert said in result.output, result.output


# --- time window -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "included"),
    [
        ("--since", "2000-01-01", True),
        ("--since", "2000-01-01T09:30:00Z", True),
        ("--since", "1h", True),
        ("--since", "2200-01-01", False),
        ("--until", "2000-01-01T00:00", False),
        ("--until", "2w", False),
        ("--until", "2200-01-01", True),
    ],
)
def test_since_and_until(store_db, mini, option, value, included):
    with unitcost.task("support_ticket"):
        ask(mini)
    rows = report_json(store_db, option, value)
    assert [r["tasks"] for r in rows] == ([1] if included else [])


def test_a_far_future_bound_is_not_a_crash(store_db, mini):
    # Times are Unix nanoseconds in SQLite's 64-bit integers, which end in April 2262; a user who
    # types 9999-12-31 for "no end" must get a report (or a clear error), not an OverflowError.
    with unitcost.task("support_ticket"):
        ask(mini)
    ask(mini)  # a call outside any task: its row is filtered by time in SQL
    rows = report_json(store_db, "--until", "9999-12-31")
    assert [(r["tasks"], r["llm_calls"]) for r in rows] == [(1, 1), (0, 1)]


def test_a_bad_time_is_an_error(store_db):
    unitcost.flush()
    result = run_cli("report", "--db", str(store_db), "--since", "last tuesday", expect=2)
    assert "cannot read 'last tuesday' as a time" in result.output


# --- CSV -----------------------------------------------------------------------------------------------------


def test_csv_has_the_same_numbers_as_json(store_db, mini, o4):
    with unitcost.task("support_ticket", key="T-40", attributes={"customer": "acme"}):
        ask(mini)
        unitcost.outcome("resolved")
    with unitcost.task("support_ticket", key="T-41", attributes={"customer": "globex"}):
        ask(o4, "o4-mini")
    ask(mini)  # outside any task
    unitcost.flush()

    as_json = report_json(store_db, "--by", "customer")
    text = run_cli("report", "--db", str(store_db), "--by", "customer", "--format", "csv").stdout
    as_csv = list(csv.DictReader(io.StringIO(text)))

    assert len(as_csv) == len(as_json) == 3
    for flat, row in zip(as_csv, as_json, strict=True):
        expected = {**row.pop("group"), **row}
        assert flat == {k: "" if v is None else str(v) for k, v in expected.items()}


# --- `unitcost tasks` and `unitcost show` ---------------------------------------------------------------------


def test_tasks_lists_the_runs_newest_first(store_db, mini):
    ids = []
    for key in ("T-50", "T-51"):
        with unitcost.task("support_ticket", key=key) as run:
            ask(mini)
        ids.append(run.id)
    unitcost.record_outcome("resolved", kind="support_ticket", key="T-51")
    unitcost.flush()

    listed = json.loads(run_cli("tasks", "--db", str(store_db), "--format", "json").stdout)
    assert [r["task_id"] for r in listed] == ids[::-1]
    assert [(r["key"], r["outcome"], r["llm_calls"]) for r in listed] == [
        ("T-51", "resolved", 1), ("T-50", None, 1)
    ]
    assert listed[0]["cost_usd"] == float(MINI_COST)

    table = run_cli("tasks", "--db", str(store_db)).stdout
    assert ids[0] in table and ids[1] in table and "resolved" in table

    limited = json.loads(run_cli("tasks", "--db", str(store_db), "--format", "json", "--limit", "1").stdout)
    assert [r["task_id"] for r in limited] == [ids[1]]


def test_show_prints_the_tree_with_costs_and_the_outcome_history(store_db, mini):
    with unitcost.task("support_ticket", key="T-60", attributes={"customer": "acme"}) as run:
        with unitcost.step("classify"):
            ask(mini)
        with unitcost.tool("search_kb", cost=0.002):
            pass
        unitcost.outcome("resolved", value=12)
    unitcost.record_outcome("reopened", task_id=run.id, success=False)
    unitcost.flush()
    run_cli("outcome", run.id, "resolved", "--db", str(store_db))

    out = run_cli("show", run.id, "--db", str(store_db)).stdout
    assert f"support_ticket key=T-60  task id {run.id}" in out
    assert "attributes: customer=acme" in out
    assert "task support_ticket  $0.002435" in out  # its own total: the call and the tool
    assert "step classify  $0.000435" in out
    assert "llm gpt-4o-mini  $0.000435  1,000 in / 500 out (200 cached, 100 reasoning)" in out
    assert "tool search_kb  $0.002000" in out
    history = out[out.index("outcomes (latest wins):"):].splitlines()[1:]
    assert [line.split("  ", 2)[2].rstrip() for line in history][:2] == [
        "resolved (success)  value $12.0000  [inline]",
        "reopened (failure)  [late]",
    ]
    assert history[2].split("  ", 2)[2].startswith("resolved (success)")

    # A unique prefix of the id is enough; an unknown id is a clear error.
    assert run_cli("show", run.id[:6], "--db", str(store_db)).stdout == out
    result = run_cli("show", "ffffffffffffffff", "--db", str(store_db), expect=1)
    assert "no run with task id or key 'ffffffffffffffff'" in result.output


def test_show_a_retried_task_says_which_run_it_is(store_db, mini):
    ids = []
    for attempt in range(2):
        with suppress(TimeoutError), unitcost.task("support_ticket", key="T-61") as run:
            ids.append(run.id)
            if attempt == 0:
                raise TimeoutError()
    unitcost.flush()
    first = run_cli("show", ids[0], "--db", str(store_db)).stdout
    assert "(run 1 of 2 of this task)" in first
    assert "error: TimeoutError" in first


def test_show_names_where_each_outcome_came_from(store_db):
    # The history line ends in the outcome's source: [inline], [late] or [cli]. (rich reads text in
    # square brackets as markup, so the source must be escaped to be printed.)
    with unitcost.task("support_ticket", key="T-62") as run:
        unitcost.outcome("resolved")
    unitcost.record_outcome("reopened", task_id=run.id, success=False)
    unitcost.flush()
    run_cli("outcome", run.id, "resolved", "--db", str(store_db))

    out = run_cli("show", run.id, "--db", str(store_db)).stdout
    history = out[out.index("outcomes (latest wins):"):].splitlines()[1:]
    assert [line.rsplit("  ", 1)[1] for line in history] == ["[inline]", "[late]", "[cli]"]


def test_show_and_report_agree_on_an_outcome_that_names_another_run(store_db, tmp_path):
    # An imported outcome for run B that also carries A's key belongs to B's task (the run id wins),
    # in `show` as in `report` and `tasks`.
    import sqlite_utils

    from unitcost.report.inspect import show_run
    from unitcost.store.outcome_import import import_outcomes

    with unitcost.task("ticket", key="A") as a:
        unitcost.outcome("resolved")
    with unitcost.task("ticket", key="B") as b:
        pass
    assert unitcost.flush()
    (tmp_path / "o.jsonl").write_text(json.dumps({"task_id": b.id, "key": "A", "label": "failed"}) + "\n")
    db = sqlite_utils.Database(store_db)
    import_outcomes(db, tmp_path / "o.jsonl")
    assert show_run(db, a.id).outcome.label == "resolved"
    assert show_run(db, b.id).outcome.label == "failed"


def test_prune_takes_tools_called_outside_any_task_too(store_db):
    import time

    import sqlite_utils

    from unitcost.store.prune import prune

    with unitcost.tool("lookup", cost="5"):
        pass
    assert unitcost.flush()
    db = sqlite_utils.Database(store_db)
    assert prune(db, time.time_ns() + 1)["steps"] == 1
    assert store_rows(store_db, "steps") == []
