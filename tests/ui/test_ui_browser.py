"""`unitcost ui` in a real browser (Debian's Chromium, driven by Playwright) over the demo's store:
click from the overview to a kind, to its costliest task, to its span tree; filter; compare two
windows; and check every number shown against `unitcost report --format json` on the same store.
The run writes the screenshots of docs/ui.md (docs/images/ui-overview.png, docs/images/ui-task.png)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect
from ui_cli import report_json, unitcost_cli
from ui_fixtures import *  # noqa: F403  (the fixtures; a conftest.py here would shadow tests/conftest.py)

from unitcost.common.money import format_usd

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
MONEY = ("cost_usd", "cost_per_success_usd", "cost_per_task_p50_usd", "cost_per_task_p95_usd", "wasted_usd")
RATIOS = ("success_rate", "reasoning_cost_share")


def _shown(field: str, value: Any, marked: bool) -> str:
    if value is None:
        return "-"
    if field in RATIOS:
        return f"{value:.0%}"
    return format_usd(Decimal(str(value)), marked=marked)


def assert_overview_equals(page: Page, rows: list[dict[str, Any]]) -> None:
    """Every row of the overview table against the CLI's JSON rows: value and text."""
    table = page.locator("#overview tbody tr")
    expect(table).to_have_count(len(rows))
    for i, row in enumerate(rows):
        tr = table.nth(i)
        marked = row["unpriced_calls"] > 0
        for field in ("tasks", "runs", "succeeded"):
            assert tr.locator(f'[data-field="{field}"]').get_attribute("data-value") == str(row[field])
        for field in MONEY + RATIOS:
            cell = tr.locator(f'[data-field="{field}"]')
            value = cell.get_attribute("data-value")
            assert (float(value) if value else None) == row[field], (field, value, row[field])
            text = cell.inner_text().rstrip("~")
            assert text == _shown(field, row[field], marked), (field, text)


def test_click_through_filter_and_compare_equal_the_cli(page: Page, demo_store: Path, live_ui: Any) -> None:
    ui = live_ui(demo_store)
    responses: list[Any] = []
    page.on("response", lambda response: responses.append(response))
    page.goto(ui.url + "/")
    expect(page.get_by_role("heading", name="Cost per task and per successful task")).to_be_visible()
    # Overview = `unitcost report`, row by row.
    assert_overview_equals(page, report_json(demo_store))
    expect(page.locator("#freshness")).to_contain_text("Live")
    # Page weight: everything the overview loaded, from this server only (no CDN), under 500 KB.
    loaded = [r for r in responses if "text/event-stream" not in (r.headers.get("content-type") or "")]
    assert loaded and all(r.url.startswith(ui.url) for r in responses)
    weight = sum(len(r.body()) for r in loaded)
    assert weight < 500_000, weight
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / "ui-overview.png"), full_page=True)

    # A kind -> its tasks, costliest first.
    page.get_by_role("link", name="support_ticket", exact=True).click()
    expect(page).to_have_url(re.compile(r"/tasks\?kind=support_ticket&sort=cost&dir=desc"))
    costs = [float(c.get_attribute("data-value")) for c in page.locator('#tasks [data-field="cost_usd"]').all()]
    assert costs == sorted(costs, reverse=True) and len(costs) == report_json(demo_store)[0]["tasks"]
    first = page.locator("#tasks tbody tr").first
    run_id = first.locator("code").inner_text()
    # Its attributes, as `report --by customer` reads them (later runs winning), in their own column.
    shown = first.locator("td.attributes").inner_text()
    assert re.search(r"customer=\S+", shown), shown
    first.get_by_role("link", name=run_id).click()

    # Its tree: the root costs what the list said, and what `unitcost show` prints.
    expect(page).to_have_url(re.compile(f"/task/{run_id}$"))
    root_cost = page.locator("#tree tbody tr").first.locator('[data-field="cost_usd"]')
    assert root_cost.inner_text() in unitcost_cli("show", run_id, db=demo_store)
    assert page.locator('#tree tbody tr[data-type="llm"]').count() >= 1
    expect(page.locator(".waterfall svg rect")).to_have_count(page.locator("#tree tbody tr").count())
    page.screenshot(path=str(IMAGES / "ui-task.png"), full_page=True)
    # The task's cost is its runs' costs (the costliest demo task was retried): listed, and each run's tree.
    assert float(page.locator('[data-field="task_cost"]').get_attribute("data-value")) == costs[0]
    run_costs = [Decimal(c.get_attribute("data-value")) for c in page.locator('#runs [data-field="cost_usd"]').all()]
    # Each figure is shown to the nano-dollar: the runs' shown costs add up to the task's within that
    # rounding (a [[runtime]] charge of $0.08 an hour is $0.001333333... a minute).
    assert len(run_costs) > 1 and abs(float(sum(run_costs)) - costs[0]) <= len(run_costs) * 1e-9
    for href in [a.get_attribute("href") for a in page.locator("#runs a").all()]:
        page.goto(ui.url + href)
        root = page.locator("#tree tbody tr").first.locator('[data-field="cost_usd"]').get_attribute("data-value")
        assert Decimal(root) in run_costs

    # A filter, reflected in the URL and equal to `report --by model` / `--where`.
    page.get_by_role("link", name="Overview").click()
    page.get_by_label("Group by", exact=True).fill("model")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"[?&]by=model"))
    assert_overview_equals(page, report_json(demo_store, "--by", "model"))
    customer = next(r["group"]["customer"] for r in report_json(demo_store, "--by", "customer") if r["runs"])
    page.get_by_label("Group by", exact=True).fill("kind")
    page.get_by_label("Where", exact=True).fill(f"customer={customer}")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"[?&]where=customer%3D"))
    assert_overview_equals(page, report_json(demo_store, "--where", f"customer={customer}"))
    page.reload()  # the URL alone carries the view
    assert_overview_equals(page, report_json(demo_store, "--where", f"customer={customer}"))

    # Two windows, split between the demo's tasks, side by side: each side is that window's report.
    starts = sorted(
        datetime.strptime(c.inner_text(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        for c in _task_start_cells(page, ui.url)
    )
    split = starts[len(starts) // 2].isoformat(timespec="seconds").replace("+00:00", "")
    page.get_by_role("link", name="Compare").click()
    page.get_by_label("A", exact=True).fill(f"..{split}")
    page.get_by_label("B", exact=True).fill(f"{split}..")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("#side-by-side")).to_be_visible()
    sides = {"a": report_json(demo_store, "--until", split), "b": report_json(demo_store, "--since", split)}
    for side, rows in sides.items():
        rows = [r for r in rows if r["runs"]]
        for row in rows:
            for field in ("tasks", "success_rate", "cost_usd", "cost_per_task_usd", "cost_per_success_usd",
                          "wasted_usd"):
                cell = page.locator(
                    f'#side-by-side tr[data-group="{row["group"]["kind"]}"][data-metric="{field}"] '
                    f'[data-side="{side}"]'
                )
                value = cell.get_attribute("data-value")
                assert (float(value) if value else None) == row[field], (side, field)


def _task_start_cells(page: Page, url: str) -> list[Any]:
    page.goto(url + "/tasks?sort=started&dir=asc")
    return page.locator("#tasks tbody tr td:nth-child(4)").all()


def test_an_outcome_recorded_by_the_cli_shows_without_a_reload(page: Page, demo_copy: Path, live_ui: Any) -> None:
    ui = live_ui(demo_copy)
    page.goto(ui.url + "/")
    before = report_json(demo_copy)[0]
    succeeded = page.locator('#overview tbody tr').first.locator('[data-field="succeeded"]')
    expect(succeeded).to_have_attribute("data-value", str(before["succeeded"]))
    expect(page.locator("#freshness")).to_contain_text("Live")
    page.evaluate("window.__same_document = true")
    failed_key = next(
        t["key"] for t in __import__("json").loads(unitcost_cli("tasks", "--format", "json", db=demo_copy))
        if t["success"] is False and t["key"]
    )
    unitcost_cli("outcome", failed_key, "resolved", "--kind", "support_ticket", db=demo_copy)
    after = report_json(demo_copy)[0]
    assert after["succeeded"] == before["succeeded"] + 1
    expect(succeeded).to_have_attribute("data-value", str(after["succeeded"]), timeout=10_000)
    assert_overview_equals(page, report_json(demo_copy))
    assert page.evaluate("window.__same_document") is True  # updated in place, not reloaded


def test_an_outcome_recorded_in_the_ui_is_the_cli_s(page: Page, demo_copy: Path, live_ui: Any) -> None:
    ui = live_ui(demo_copy)
    page.goto(ui.url + "/tasks?sort=cost&dir=desc")
    page.locator("#tasks tbody tr").first.locator("a:has(code)").click()
    page.get_by_text("Record an outcome").click()
    page.get_by_label("Label", exact=True).fill("escalated")
    page.get_by_label("failure", exact=True).check()
    page.get_by_role("button", name="Record outcome").click()
    expect(page.locator("#outcome-now")).to_contain_text("escalated (failure)")
    expect(page.locator("#outcomes tbody tr").last).to_contain_text("cli")  # written as `unitcost outcome` does
    run_id = re.search(r"/task/([0-9a-f]+)", page.url).group(1)  # type: ignore[union-attr]
    assert "escalated (failure)" in unitcost_cli("show", run_id, db=demo_copy)


def test_keyboard_and_dark_mode(page: Page, demo_store: Path, live_ui: Any) -> None:
    ui = live_ui(demo_store)
    page.goto(ui.url + "/tasks")
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "[document.activeElement.textContent, getComputedStyle(document.activeElement).outlineStyle]"
    )
    assert focused == ["Skip to content", "solid"]
    # Sortable headers are links (keyboard-reachable) and say which column is sorted.
    page.get_by_role("link", name="cost", exact=True).focus()
    page.keyboard.press("Enter")
    expect(page.locator('th[aria-sort="descending"]')).to_contain_text("cost")
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(13, 17, 23)"
    page.emulate_media(color_scheme="light")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"
