"""Heavy users and usage caps, on a workload whose every number is computed by hand.

    task  kind    customer  started      cost
    T1    ticket  acme      2025-11-01   $8
    T2    ticket  acme      2025-11-02   $8
    T3    ticket  acme      2025-11-03   $8
    T4    ticket  acme      2025-12-01   $8
    T5    ticket  globex    2025-11-05   $3
    T6    ticket  initech   2025-11-06   $1
    T7    ticket  (none)    2025-11-07   $2
    T8    chat    umbrella  2025-11-08   $4

ticket, per user: acme 32 (4 tasks), globex 3, initech 1; total 36 over 3 users.
    top 1% and top 10% of 3 users: ceil(0.03) = ceil(0.3) = 1 user: 32 / 36
    Gini over [1, 3, 32]: ((2-4)*1 + (4-4)*3 + (6-4)*32) / (3 * 36) = 62 / 108
    p50 = 2nd of 3 = 3; p95 = p99 = 3rd = 32
Cap 10/month: acme in November runs T1 (0 -> 8), T2 (8 < 10 -> 16), T3 is stopped (16 >= 10); December
    starts again: T4 runs. Saved $8 of the ticket group's $38.
Cap 5 (the whole window): acme runs T1 (0 -> 8), T2-T4 are stopped: $24 saved; globex (3) and initech run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from click.testing import CliRunner

import unitcost
from unitcost.cli.main import cli
from unitcost.report.users import gini, parse_cap
from unitcost.store.schema import open_store

USD = 10**12
TASKS = [
    ("T1", "ticket", "acme", (2025, 11, 1), 8), ("T2", "ticket", "acme", (2025, 11, 2), 8),
    ("T3", "ticket", "acme", (2025, 11, 3), 8), ("T4", "ticket", "acme", (2025, 12, 1), 8),
    ("T5", "ticket", "globex", (2025, 11, 5), 3), ("T6", "ticket", "initech", (2025, 11, 6), 1),
    ("T7", "ticket", None, (2025, 11, 7), 2), ("T8", "chat", "umbrella", (2025, 11, 8), 4),
]


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "users.db"
    db = open_store(path)
    for n, (key, kind, customer, day, cost) in enumerate(TASKS):
        started = int(datetime(*day, 12, tzinfo=UTC).timestamp()) * 10**9
        attrs = json.dumps({"customer": customer}) if customer else "{}"
        db.execute(
            "INSERT INTO runs (run_id, trace_id, kind, key, started_ns, ended_ns, attributes) "
            "VALUES (?, 't', ?, ?, ?, ?, ?)",
            [f"r{n}", kind, key, started, started + 10**9, attrs],
        )
        db.execute(
            "INSERT INTO calls (span_id, trace_id, run_id, started_ns, ended_ns, provider, operation, model, "
            "input_tokens, output_tokens, cost_pico) "
            "VALUES (?, 't', ?, ?, ?, 'openai', 'chat', 'gpt-4o-mini', 10, 1, ?)",
            [f"c{n}", f"r{n}", started, started + 1, cost * USD],
        )
    db.conn.close()
    return path


def _json(db, *args: str) -> list[dict]:
    result = CliRunner().invoke(cli, [*args, "--db", str(db), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_users_report_by_hand(store):
    rows = {r["group"]["kind"]: r for r in _json(store, "report", "--users", "--user-attr", "customer")}
    ticket = rows["ticket"]
    assert {k: ticket[k] for k in (
        "user_attribute", "users", "tasks", "tasks_without_user", "cost_usd", "cost_per_user_usd",
        "top_1pct_users_cost_share", "top_10pct_users_cost_share", "gini_cost_per_user",
        "cost_per_user_p50_usd", "cost_per_user_p95_usd", "cost_per_user_p99_usd",
    )} == {
        "user_attribute": "customer", "users": 3, "tasks": 7, "tasks_without_user": 1, "cost_usd": 36.0,
        "cost_per_user_usd": 12.0, "top_1pct_users_cost_share": 32 / 36, "top_10pct_users_cost_share": 32 / 36,
        "gini_cost_per_user": 62 / 108, "cost_per_user_p50_usd": 3.0, "cost_per_user_p95_usd": 32.0,
        "cost_per_user_p99_usd": 32.0,
    }
    assert ticket["heaviest_users"] == [
        {"user": "acme", "cost_usd": 32.0, "tasks": 4}, {"user": "globex", "cost_usd": 3.0, "tasks": 1},
        {"user": "initech", "cost_usd": 1.0, "tasks": 1},
    ]
    assert rows["chat"]["users"] == 1 and rows["chat"]["gini_cost_per_user"] == 0.0
    assert rows["chat"]["top_10pct_users_cost_share"] == 1.0


def test_users_table_and_errors(store):
    runner = CliRunner()
    table = runner.invoke(cli, ["report", "--users", "--user-attr", "customer", "--db", str(store)])
    assert table.exit_code == 0 and "acme $32.0000" in table.output and "88.9%" in table.output
    missing = runner.invoke(cli, ["report", "--users", "--db", str(store)])
    assert missing.exit_code != 0 and "--user-attr" in missing.output
    by_model = runner.invoke(cli, ["report", "--users", "--user-attr", "customer", "--by", "model", "--db", str(store)])
    assert by_model.exit_code != 0 and "not by model" in by_model.output


def test_cap_per_month_by_hand(store):
    capped = _json(store, "whatif", "--cap-per-user", "10/month", "--user-attr", "customer")
    rows = {r["group"]["kind"]: r for r in capped}
    ticket = rows["ticket"]
    assert {k: ticket[k] for k in (
        "cap_usd", "cap_period", "users", "users_capped", "tasks", "tasks_stopped", "cost_usd", "cost_with_cap_usd",
        "savings_usd", "savings_share",
    )} == {
        "cap_usd": 10.0, "cap_period": "month", "users": 3, "users_capped": 1, "tasks": 7, "tasks_stopped": 1,
        "cost_usd": 38.0, "cost_with_cap_usd": 30.0, "savings_usd": 8.0, "savings_share": 8 / 38,
    }
    assert "success rates" in ticket["assumes"]
    assert rows["chat"]["tasks_stopped"] == 0 and rows["chat"]["savings_usd"] == 0


def test_cap_over_the_window_and_its_table(store):
    (ticket,) = _json(store, "whatif", "--cap-per-user", "5", "--user-attr", "customer", "--kind", "ticket")
    assert (ticket["tasks_stopped"], ticket["savings_usd"], ticket["users_capped"]) == (3, 24.0, 1)
    text = CliRunner().invoke(
        cli, ["whatif", "--cap-per-user", "10/month", "--user-attr", "customer", "--db", str(store)]
    ).output
    assert "$8.0000 (21.1%)" in text and "assumed unchanged" in text


def test_configure_keeps_the_user_attribute_for_the_cli(store, monkeypatch):
    monkeypatch.setenv("UNITCOST_STRICT", "1")
    unitcost.configure(service_name="users", db=store, user_attribute="customer")
    unitcost.shutdown()
    (ticket, _chat) = sorted(_json(store, "report", "--users"), key=lambda r: r["group"]["kind"] != "ticket")
    assert ticket["user_attribute"] == "customer" and ticket["users"] == 3


@pytest.mark.parametrize("text", ["0/month", "-5/day", "ten", "5/year", "nan"])
def test_a_bad_cap_is_refused(text):
    with pytest.raises(ValueError, match="cap-per-user"):
        parse_cap(text)


def test_gini_edges():
    assert gini([]) is None and gini([0, 0]) == 0.0 and gini([5]) == 0.0
    assert gini([0, 0, 0, 12]) == pytest.approx(0.75)  # (3-5)*0*3... = (2*4-5)*12 / (4*12)
    assert parse_cap("20/month").usd == Decimal(20)
