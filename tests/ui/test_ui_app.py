"""The UI app without a browser (Starlette's TestClient): access rules, the one write, errors, escaping,
the task list's sort, search and pages, and `unitcost ui`'s refusal to listen off loopback unguarded."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from ui_cli import report_json, unitcost_cli
from ui_fixtures import *  # noqa: F403  (the fixtures; a conftest.py here would shadow tests/conftest.py)

from unitcost.cli.main import cli
from unitcost.ui import create_app
from unitcost.ui.server import check_ui_bind


def test_a_token_is_required_when_set_then_kept_in_a_cookie(demo_store: Path) -> None:
    client = TestClient(create_app(demo_store, token="s3cret"))
    assert client.get("/").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    assert client.get("/static/app.css").status_code == 401
    assert client.get("/?token=s3cret").status_code == 200
    assert client.get("/tasks").status_code == 200  # the cookie set above
    other = TestClient(create_app(demo_store, token="s3cret"))
    assert other.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_off_loopback_needs_a_token() -> None:
    check_ui_bind("127.0.0.1", None)
    check_ui_bind("::1", None)
    check_ui_bind("0.0.0.0", "t")
    with pytest.raises(ValueError, match="--token"):
        check_ui_bind("0.0.0.0", None)
    from click.testing import CliRunner

    result = CliRunner().invoke(cli, ["ui", "--host", "0.0.0.0", "--db", "missing.db"], env={"UNITCOST_UI_TOKEN": ""})
    assert result.exit_code == 2 and "--token" in result.output


def test_the_ui_is_read_only_but_for_an_outcome_posted_from_its_own_page(demo_copy: Path) -> None:
    client = TestClient(create_app(demo_copy))
    before = demo_copy.read_bytes()
    for url in ("/", "/?by=model", "/tasks?sort=cost", "/compare?a=1d..&b=2d..1d", "/whatif?cache=1"):
        assert client.get(url).status_code == 200
    assert demo_copy.read_bytes() == before  # nothing written by reading
    run_id = re.search(r"/task/([0-9a-f]+)", client.get("/tasks").text).group(1)  # type: ignore[union-attr]
    refused = client.post(f"/task/{run_id}/outcome", data={"label": "resolved"},
                          headers={"Origin": "http://evil.example"})
    assert refused.status_code == 403
    done = client.post(f"/task/{run_id}/outcome", data={"label": "refunded", "success": "failure"},
                       follow_redirects=False)
    assert done.status_code == 303
    with closing(sqlite3.connect(demo_copy)) as conn:
        assert conn.execute("SELECT label, success, source FROM outcomes ORDER BY id DESC LIMIT 1").fetchone() == (
            "refunded", 0, "cli"
        )


def test_bad_options_say_why_in_the_page(demo_store: Path) -> None:
    client = TestClient(create_app(demo_store))
    page = client.get("/?by=no_such_attribute")
    assert page.status_code == 400 and "unknown --by name" in page.text
    assert client.get("/?since=yesterday-ish").status_code == 400
    assert client.get("/compare?a=oops&b=7d..").status_code == 400
    missing = client.get("/task/ffffffffffffffff")
    assert missing.status_code == 404 and "no run with task id" in missing.text


def test_the_user_s_text_is_escaped(tmp_path: Path) -> None:
    db = tmp_path / "evil.db"
    unitcost_cli("demo", db=db)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE runs SET kind = '<script>alert(1)</script>'")
    text = TestClient(create_app(db)).get("/").text
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_tasks_sort_search_retried_and_pages(demo_store: Path) -> None:
    client = TestClient(create_app(demo_store))
    tasks = report_json(demo_store)[0]["tasks"]

    def values(url: str, field: str = "cost_usd") -> list[float]:
        return [float(v) for v in re.findall(rf'data-field="{field}" data-value="([^"]+)"', client.get(url).text)]

    costs = values("/tasks?sort=cost&dir=desc")
    assert len(costs) == tasks and costs == sorted(costs, reverse=True)
    assert values("/tasks?sort=cost&dir=asc") == sorted(costs)
    retried = client.get("/tasks?retried=1").text
    assert "1 task(s)" in retried  # the demo retries one ticket
    found = client.get("/tasks?q=t-1004").text
    assert "1 task(s)" in found and "T-1004" in found
    assert "0 task(s)" in client.get("/tasks?q=no-such-key").text
    assert "page 1 of 1" in client.get("/tasks").text


def test_the_demo_names_the_ui_among_the_next_commands(tmp_path: Path) -> None:
    assert "unitcost ui --db" in unitcost_cli("demo", db=tmp_path / "d.db")


def test_whatif_with_a_price_table_equals_the_cli_and_is_computed_off_the_request(
    demo_store: Path, tmp_path: Path
) -> None:
    import json
    import time
    from urllib.parse import urlencode

    prices = tmp_path / "negotiated.toml"
    prices.write_text('[[price]]\nmodel = "gpt-4o-mini"\ninput_mtok = 1.0\noutput_mtok = 2.0\n')
    client = TestClient(create_app(demo_store, prices=[prices]))
    offered = client.get("/whatif").text
    assert f'<option value="{prices}"' in offered
    url = "/whatif?" + urlencode({"prices": str(prices), "route": "input_tokens<100000:gpt-4o-mini", "batch": "x"})
    first = client.get(url)
    assert first.status_code == 200
    page = first.text
    deadline = time.monotonic() + 60  # (the what-if is computed on a thread; the page says so meanwhile)
    while 'id="computing"' in page and time.monotonic() < deadline:
        time.sleep(0.05)
        page = client.get(url).text
    assert 'id="computing"' not in page
    cli = json.loads(unitcost_cli("whatif", "--prices", str(prices), "--route", "input_tokens<100000:gpt-4o-mini",
                                  "--batch", "x", "--format", "json", db=demo_store))
    assert len(cli) == 1  # (the demo's one kind: its row is the page's only one)
    for row in cli:
        for side in ("a", "b"):
            shown = re.search(rf'data-metric="cost_usd">.*?data-side="{side}" data-value="([^"]*)"', page, re.S)
            assert shown is not None and float(shown.group(1)) == row[side]["cost_usd"]
    assert "call(s) routed" in page and f"prices from {prices}" in page
    # Only the tables `unitcost ui --prices` named: a URL cannot make the server read another file.
    refused = client.get("/whatif?" + urlencode({"prices": "/etc/passwd"}))
    assert refused.status_code == 400 and "unitcost ui --prices FILE" in refused.text


def test_a_whatif_kept_is_shown_while_the_changed_store_is_re_priced(demo_copy: Path) -> None:
    import time

    from unitcost.ui.data import Filters, Reader, WhatIf

    reader = Reader(demo_copy)
    what = WhatIf(assume_cache=True)

    def wait_for(condition: Any) -> Any:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            value, _ = reader.whatif(what, Filters())
            if condition(value):
                return value
            time.sleep(0.05)
        raise AssertionError("the what-if was not computed in 60 s")

    assert reader.whatif(what, Filters())[0] is None  # computing: the page says so
    first = wait_for(lambda v: v is not None)
    before = reader.version()
    run_id = re.search(r"/task/([0-9a-f]+)", TestClient(create_app(demo_copy)).get("/tasks").text).group(1)  # type: ignore[union-attr]
    unitcost_cli("outcome", run_id, "escalated", "--failure", db=demo_copy)
    assert reader.version() != before
    kept, _ = reader.whatif(what, Filters())
    assert kept is first  # the one kept, at once, while the new one is computed
    wait_for(lambda v: v is not first)


def test_the_overview_draws_the_trends_of_the_groups_it_shows_only(tmp_path: Path) -> None:
    # (by a task attribute of 100 values, drawing every group's trends took 300-400 ms of the page)
    import unitcost
    from unitcost.ui.data import TREND_GROUPS

    db = tmp_path / "many.db"
    unitcost.configure(db=db)
    try:
        for n in range(TREND_GROUPS + 3):
            with unitcost.task("ticket", key=f"T-{n}", attributes={"customer": f"c-{n:02d}"}):
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=100 + n, output_tokens=10)
        assert unitcost.flush()
    finally:
        unitcost.shutdown()
    page = TestClient(create_app(db)).get("/?by=customer").text
    rows = re.findall(r'<tr data-group="(c-\d\d)">', page)
    drawn = re.findall(r'<h3 id="trend-\d+">(c-\d\d)</h3>', page)
    assert rows == [f"c-{n:02d}" for n in range(TREND_GROUPS + 3)]  # every group in the table ...
    assert drawn == rows[:TREND_GROUPS]  # ... and the trends of the first ones
    assert page.count('<li class="card"') == TREND_GROUPS * 6
    # The trends not drawn are not computed either.
    from unitcost.query import open_store
    from unitcost.report import report
    from unitcost.ui.app import _groups

    with open_store(db) as store:
        groups = _groups(report(store, by="customer"), report(store, by="customer", every="day"), "day")
    assert [bool(g["trends"]) for g in groups] == [True] * TREND_GROUPS + [False] * 3


def test_the_drawn_groups_trends_read_one_by_one_equal_the_report_of_every_group(tmp_path: Path) -> None:
    # By a task attribute of many values, the overview reads each drawn group's trend by itself
    # (`--where` naming its values) instead of every group per day: the numbers must be the same.
    import json

    from unitcost.query import open_store
    from unitcost.report import report
    from unitcost.ui.data import TREND_GROUPS, _trend_rows

    day = 86_400 * 10**9
    start = 1_764_028_800 * 10**9  # a midnight, UTC
    db = tmp_path / "trends.db"
    open_store(db, create=True).close()
    with closing(sqlite3.connect(db)) as conn, conn:
        for n in range(60):
            customer = f"c-{n % 12:02d}"
            attributes = {"customer": customer, "tier": "gold" if n % 5 else "free"}
            started = start + (n % 4) * day + n * 10**9
            conn.execute(
                "INSERT INTO runs (run_id, trace_id, kind, key, started_ns, ended_ns, attributes) "
                "VALUES (?, 't', ?, ?, ?, ?, ?)",
                (f"r{n}", "ticket" if n % 3 else "triage", f"K{n}", started, started + 10, json.dumps(attributes)),
            )
            if n % 7 == 0:  # a later run of the same task, naming another customer: the later one wins
                conn.execute(
                    "INSERT INTO runs (run_id, trace_id, kind, key, started_ns, ended_ns, attributes) "
                    "VALUES (?, 't', ?, ?, ?, ?, ?)",
                    (f"r{n}b", "ticket" if n % 3 else "triage", f"K{n}", started + 5, started + 20,
                     json.dumps({"customer": "c-00"})),
                )
            conn.execute(
                "INSERT INTO calls (span_id, trace_id, run_id, started_ns, ended_ns, provider, operation, model, "
                "input_tokens, output_tokens, cost_pico) VALUES (?, 't', ?, ?, ?, 'openai', 'chat', 'gpt-4o-mini', "
                "?, 10, ?)", (f"c{n}", f"r{n}", started, started + 1, 100 + n, (n * 7919) % 100_000 + 1),
            )
            if n % 2:
                conn.execute(
                    "INSERT INTO outcomes (recorded_ns, run_id, label, success, source) VALUES (?, ?, ?, ?, 'test')",
                    (started + 100, f"r{n}", "resolved" if n % 4 == 1 else "escalated", int(n % 4 == 1)),
                )
    with open_store(db) as store:
        for by, every, where in (("customer", "day", []), ("kind,customer", "week", []),
                                 ("customer", "day", ["tier=gold"])):
            options = {"by": by, "where": where, "since_ns": None, "until_ns": None, "kind": None}
            rows = report(store, **options)
            assert len(rows) > TREND_GROUPS
            drawn = [tuple(r["group"].items()) for r in rows[:TREND_GROUPS]]
            every_group = [r for r in report(store, every=every, **options)
                           if tuple((k, v) for k, v in r["group"].items() if k != every) in drawn]
            one_by_one = _trend_rows(store, rows, every, options)
            key = lambda r: json.dumps(r["group"], sort_keys=True)  # noqa: E731
            assert sorted(one_by_one, key=key) == sorted(every_group, key=key), (by, every, where)
