"""`unitcost ui` on a PostgreSQL store, in the real browser: the demo written to an empty schema of
the test server, then the overview, a kind's tasks and the costliest task's tree, each equal to what
the CLI says of the same store. (The UI reads through the store seam; this proves it on the server.)"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from test_ui_browser import assert_overview_equals
from ui_cli import report_json, unitcost_cli
from ui_fixtures import *  # noqa: F403  (the fixtures; a conftest.py here would shadow tests/conftest.py)


@pytest.fixture
def demo_on_postgres(pg_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # the demo's price file goes here for a server store
    unitcost_cli("demo", db=pg_url)  # type: ignore[arg-type]
    return pg_url


def test_the_ui_on_postgresql_equals_the_cli(page: Page, demo_on_postgres: str, live_ui: Any) -> None:
    db = demo_on_postgres
    ui = live_ui(db)
    page.goto(ui.url + "/")
    expect(page.get_by_role("heading", name="Cost per task and per successful task")).to_be_visible()
    rows = report_json(db)  # type: ignore[arg-type]
    assert rows and rows[0]["tasks"] > 0
    assert_overview_equals(page, rows)

    page.get_by_role("link", name="support_ticket", exact=True).click()
    expect(page).to_have_url(re.compile(r"/tasks\?kind=support_ticket&sort=cost&dir=desc"))
    costs = [float(c.get_attribute("data-value")) for c in page.locator('#tasks [data-field="cost_usd"]').all()]
    assert costs == sorted(costs, reverse=True) and len(costs) == rows[0]["tasks"]
    first = page.locator("#tasks tbody tr").first
    run_id = first.locator("code").inner_text()
    first.locator("a:has(code)").click()
    expect(page).to_have_url(re.compile(f"/task/{run_id}$"))
    root_cost = page.locator("#tree tbody tr").first.locator('[data-field="cost_usd"]')
    assert root_cost.inner_text() in unitcost_cli("show", run_id, db=db)  # type: ignore[arg-type]

    page.get_by_role("link", name="Overview").click()
    page.get_by_label("Group by", exact=True).fill("model")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"[?&]by=model"))
    assert_overview_equals(page, report_json(db, "--by", "model"))  # type: ignore[arg-type]


def test_the_demo_writes_only_into_an_empty_server_store(demo_on_postgres: str) -> None:
    import subprocess
    import sys

    before = report_json(demo_on_postgres)  # type: ignore[arg-type]
    again = subprocess.run(
        [sys.executable, "-c", "from unitcost.cli.main import cli; cli()", "demo", "--db", demo_on_postgres],
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 1 and "already holds runs" in again.stderr
    assert report_json(demo_on_postgres) == before  # type: ignore[arg-type]
