"""`unitcost report --html`: the page's numbers, its escaping, and its charts as a browser draws them.

The charts are checked in a screenshot from headless Chromium (Debian's ``chromium`` package; `.ci/run`
installs it). Each chart draws in colours no other part of the page uses (``unitcost.report.charts``),
so counting a colour's pixels finds that chart, and measuring its bars checks they are drawn to scale.
The PNG is decoded with zlib and struct. Without chromium the browser tests skip, except under CI
(``$CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from unitcost.cli.main import cli
from unitcost.report import charts
from unitcost.report.engine import report
from unitcost.report.html import chart_data, html_report
from unitcost.store.schema import open_store

# The demo's costs, by hand (see tests/demo/test_demo.py for where each number comes from).
M = Decimal(1_000_000)
CLASSIFY = (1310 * Decimal("0.15") + 12 * Decimal("0.6")) / M + 6 * (
    (1310 - 1152) * Decimal("0.15") + 1152 * Decimal("0.075") + 12 * Decimal("0.6")
) / M
SUMMARY = (900 * Decimal("0.15") + 150 * Decimal("0.6")) / M
DRAFT = (2100 * Decimal("1.1") + 640 * Decimal("4.4")) / M
TOOLS = 7 * Decimal("0.002")
LLM_AND_TOOLS = CLASSIFY + 2 * SUMMARY + 3 * DRAFT + TOOLS
RUNTIME = 7 * Decimal("0.001333333333")  # the demo's runtime: 60 s at $0.08/h for each of its 7 runs
TOTAL = LLM_AND_TOOLS + RUNTIME


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's store, built once for this module (the demo takes seconds)."""
    where = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(where)
        mp.setenv("UNITCOST_STRICT", "1")
        invoke("demo", "--db", str(where / "demo.db"))
    return where / "demo.db"


@pytest.fixture(scope="module")
def demo_page(demo_db: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(page, `report --format json` output of the same invocation)."""
    page = tmp_path_factory.mktemp("page") / "report.html"
    out = invoke("report", "--db", str(demo_db), "--html", str(page), "--format", "json")
    return page, out


# --- the page's text ----------------------------------------------------------------------------------


def test_page_shows_the_reports_numbers(demo_page: tuple[Path, str]) -> None:
    page, json_out = demo_page
    text = page.read_text(encoding="utf-8")
    assert LLM_AND_TOOLS == Decimal("0.0307355")
    # The table, formatted as `unitcost report` prints it: total, cost/task, cost/success.
    for shown in ("$0.0401", "$0.006678", "$0.0134", "support_ticket", ">50%<", "$0.009333"):
        assert shown in text
    # The exact values ride along as the JSON the report command writes.
    embedded = re.search(r'<script type="application/json" id="unitcost-report">(.*?)</script>', text, re.S)
    assert embedded is not None
    assert json.loads(embedded.group(1)) == json.loads(json_out)
    assert json.loads(json_out)[0]["cost_usd"] == float(TOTAL.quantize(Decimal("1e-9")))
    # The charts' own labels: cost by model and by step.
    for shown in ("$0.0154", "$0.001358", "$0.0158", "$0.0140", "$0.000908", "search_kb", "classify", "(task)"):
        assert shown in text


def test_page_loads_nothing_from_anywhere(demo_page: tuple[Path, str]) -> None:
    text = demo_page[0].read_text(encoding="utf-8")
    assert "default-src 'none'" in text  # the Content-Security-Policy blocks any load
    assert not re.search(r"\b(src|href|srcset|xlink:href)\s*=|url\(|@import|https?:|//[a-z]", text, re.I)
    assert re.findall(r"<script[^>]*>", text) == ['<script type="application/json" id="unitcost-report">']
    assert text.count("<svg") >= 4


def test_chart_numbers_agree_with_the_table(demo_db: Path) -> None:
    db = open_store(demo_db, create=False)
    data = chart_data(db)
    (row,) = report(db)
    steps = {s.name: (s.llm_pico, s.tool_pico) for s in data.by_step}
    pico = Decimal(10) ** 12
    assert steps == {
        "(task)": (int((2 * SUMMARY + 3 * DRAFT) * pico), 0),
        "search_kb": (0, int(TOOLS * pico)),
        "classify": (int(CLASSIFY * pico), 0),
        "(runtime)": (0, int(RUNTIME * pico)),
    }
    assert [s.name for s in data.by_step] == ["(task)", "search_kb", "(runtime)", "classify"]  # costliest first
    tasks = data.tasks["support_ticket"]
    assert sum(t.cost_pico for t in tasks) * Decimal("1e-12") == row["cost_usd"] == TOTAL
    assert Counter(t.status for t in tasks) == {"succeeded": 3, "failed": 3}
    (bucket,) = data.over_time["support_ticket"]
    assert bucket["cost_per_success_usd"] == TOTAL / 3
    assert [r["group"]["model"] for r in data.by_model] == ["o4-mini", "gpt-4o-mini"]


# --- a store written by hand: step attribution, filters, escaping, unpriced calls -----------------------

DAY = 86_400 * 10**9
T0 = 1_772_359_200 * 10**9  # 2026-03-01T10:00:00Z
USD = 10**12
EVIL_KIND = "<img src=x onerror=alert(1)>"
EVIL_MODEL = "<b>evil-model</b>"


def _hand_store(path: Path) -> Path:
    """triage A (day 0): step plan > step search, tool lookup (with a task nested in it), a call in the
    task; triage B (day 1): an unpriced call, failed; an evil kind (day 2); a call outside any task."""
    db = open_store(path)

    def run(run_id: str, kind: str, key: str | None, day: int, parent: str | None = None, **attrs: str) -> None:
        db["runs"].insert({
            "run_id": run_id, "trace_id": "t" + run_id, "parent_span_id": parent, "kind": kind, "key": key,
            "started_ns": T0 + day * DAY, "ended_ns": T0 + day * DAY + 10**9, "attributes": json.dumps(attrs),
        })

    def step(span: str, run_id: str, parent: str, type_: str, name: str, cost: int | None = None) -> None:
        db["steps"].insert({
            "span_id": span, "trace_id": "t" + run_id, "parent_span_id": parent, "run_id": run_id, "type": type_,
            "name": name, "started_ns": T0, "ended_ns": T0 + 1, "cost_pico": cost,
        })

    def call(span: str, run_id: str | None, parent: str | None, cost: int | None, model: str = "gpt-4o-mini",
             trace: str | None = None, day: int = 0) -> None:
        db["calls"].insert({
            "span_id": span, "trace_id": trace or "t" + str(run_id), "parent_span_id": parent, "run_id": run_id,
            "started_ns": T0 + day * DAY, "ended_ns": T0 + day * DAY + 1, "provider": "openai",
            "operation": "chat", "model": model, "cost_pico": cost,
        })

    run("r1", "triage", "A", 0, customer="acme")
    step("s1", "r1", "r1", "step", "plan")
    step("s2", "r1", "s1", "step", "search")
    step("s3", "r1", "r1", "tool", "lookup", cost=1 * USD // 1000)
    call("c1", "r1", "s1", 2 * USD // 1000)
    call("c2", "r1", "s2", 3 * USD // 1000)
    call("c3", "r1", "s3", 4 * USD // 10000)
    call("c4", "r1", "r1", 5 * USD // 1000)
    run("r5", "lookup_job", None, 0, parent="s3")  # a task inside the tool: its calls are its own
    call("c9", "r5", "r5", 7 * USD // 10000)
    run("r2", "triage", "B", 1, customer="globex")
    step("s6", "r2", "r2", "step", "plan")
    call("c5", "r2", "r2", None, model="mystery-model", day=1)
    call("c6", "r2", "s6", 4 * USD // 1000, day=1)
    run("r3", EVIL_KIND, None, 2, customer="&<b>")
    call("c7", "r3", "r3", 3 * USD // 1000, model=EVIL_MODEL, day=2)
    call("c8", None, None, 5 * USD // 10000, trace="lonely")
    for run_id, label, success in (("r1", "resolved", 1), ("r2", "escalated", 0), ("r3", "resolved", 1)):
        db["outcomes"].insert({"recorded_ns": T0 + 3 * DAY, "run_id": run_id, "label": label, "success": success,
                               "source": "test"})
    db.conn.close()
    return path


def test_each_call_counts_in_its_nearest_step(tmp_path: Path) -> None:
    db = open_store(_hand_store(tmp_path / "hand.db"), create=False)
    steps = {s.name: s for s in chart_data(db).by_step}
    assert {name: (s.llm_pico, s.tool_pico) for name, s in steps.items()} == {
        "(task)": (5 * USD // 1000 + 7 * USD // 10000 + 3 * USD // 1000, 0),  # c4, c9 (nested task), c7; c5 unpriced
        "plan": (2 * USD // 1000 + 4 * USD // 1000, 0),  # c1, c6
        "search": (3 * USD // 1000, 0),  # c2, in a step inside plan
        "lookup": (4 * USD // 10000, 1 * USD // 1000),  # c3 and the tool's own cost
        "(no task)": (5 * USD // 10000, 0),  # c8
    }
    assert steps["(task)"].unpriced_calls == 1 and steps["(task)"].llm_calls == 4


@pytest.mark.parametrize(
    "filters",
    [{}, {"kind": "triage"}, {"since_ns": T0 + DAY}, {"until_ns": T0 + DAY}, {"where": ["customer=globex"]},
     {"kind": "nothing"}],
)
def test_charts_follow_the_reports_filters(tmp_path: Path, filters: dict) -> None:
    """Whatever the filters, the charts add up to the table: by step to its total, tasks to its task rows."""
    db = open_store(_hand_store(tmp_path / "hand.db"), create=False)
    rows = report(db, **filters)
    data = chart_data(db, **filters)
    total = sum((r["cost_usd"] for r in rows), Decimal(0))
    assert sum(s.cost_pico for s in data.by_step) * Decimal("1e-12") == total
    in_tasks = sum((r["cost_usd"] for r in rows if r["runs"]), Decimal(0))
    assert sum(t.cost_pico for ts in data.tasks.values() for t in ts) * Decimal("1e-12") == in_tasks
    assert sorted(data.kinds) == sorted(r["group"]["kind"] for r in rows if r["runs"])
    by_model = sum((r["llm_cost_usd"] for r in data.by_model), Decimal(0))
    assert by_model == sum((r["llm_cost_usd"] for r in rows), Decimal(0))


def test_user_strings_are_escaped_and_unpriced_costs_marked(tmp_path: Path) -> None:
    db_path = _hand_store(tmp_path / "hand.db")
    page = tmp_path / "hand.html"
    invoke("report", "--db", str(db_path), "--by", "kind,customer", "--html", str(page), "--format", "json")
    text = page.read_text(encoding="utf-8")
    for raw in (EVIL_KIND, EVIL_MODEL, "&<b>"):
        assert raw not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "&lt;b&gt;evil-model&lt;/b&gt;" in text
    assert "&amp;&lt;b&gt;" in text
    assert "<img" not in text and "<b>" not in text
    assert "mystery-model" in text and "$0*" in text  # an unpriced model is never a plain $0
    assert "1 LLM call(s) are unpriced" in text
    assert "no success" in text  # triage on day 1: one failed task, no success to divide by
    db = open_store(db_path, create=False)
    assert html_report(db, kind="nothing").count("<svg") == 0


# --- the charts, as a browser draws them -----------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--force-device-scale-factor=1", "--force-color-profile=srgb", "--hide-scrollbars",
)
CHART_COLORS = {
    "cost per success": charts.PER_SUCCESS, "succeeded": charts.SUCCEEDED, "failed": charts.FAILED,
    "model": charts.MODEL, "step LLM": charts.STEP_LLM, "step tool": charts.STEP_TOOL,
}


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required under CI (.ci/run installs Debian's chromium package)")
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    return path


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


@dataclass
class Ink:
    """Where one colour is in an image: pixels per row, and the leftmost and rightmost x per row."""

    rows: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # y -> (count, x_min, x_max)

    @property
    def count(self) -> int:
        return sum(n for n, _, _ in self.rows.values())

    def bands(self) -> list[tuple[int, int, int]]:
        """Runs of consecutive rows holding the colour, top to bottom: (first y, height, widest count)."""
        out: list[list[int]] = []
        for y in sorted(self.rows):
            if out and y == out[-1][0] + out[-1][1]:
                out[-1][1] += 1
                out[-1][2] = max(out[-1][2], self.rows[y][0])
            else:
                out.append([y, 1, self.rows[y][0]])
        return [(a, b, c) for a, b, c in out]


def _unfilter(kind: int, line: bytearray, prev: bytes, bpp: int) -> bytearray:
    if kind == 0:
        return line
    if kind == 2:  # most rows: add the row above byte by byte, all bytes at once in one big integer
        n = len(line)
        low, high = int.from_bytes(b"\x7f" * n, "big"), int.from_bytes(b"\x80" * n, "big")
        a, b = int.from_bytes(line, "big"), int.from_bytes(prev, "big")
        return bytearray((((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(n, "big"))
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 255
        elif kind == 3:
            line[i] = (line[i] + (left + prev[i]) // 2) & 255
        elif kind == 4:
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        else:
            raise AssertionError(f"PNG filter type {kind}")
    return line


def find_colors(png: Path, colors: dict[str, str]) -> tuple[tuple[int, int], dict[str, Ink]]:
    """Decode an 8-bit RGB(A) PNG and locate each colour: ((width, height), {name: Ink})."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    header = (0, 0, 0, 0, 0, 0, 0)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
    width, height, depth, color_type, _, _, interlace = header
    assert depth == 8 and color_type in (2, 6) and interlace == 0, header
    bpp = 3 if color_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    wanted = {_rgb(c): name for name, c in colors.items()}
    patterns = [bytes(rgb) for rgb in wanted]  # a cheap first look: most rows hold none of the colours
    found = {name: Ink() for name in colors}
    prev = bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = bytes(_unfilter(raw[start], bytearray(raw[start + 1 : start + 1 + stride]), prev, bpp))
        prev = line
        if not any(pattern in line for pattern in patterns):
            continue
        pixels = list(zip(line[0::bpp], line[1::bpp], line[2::bpp], strict=True))
        for rgb, n in Counter(pixels).items():
            if rgb in wanted:
                xs = [x for x, p in enumerate(pixels) if p == rgb]
                found[wanted[rgb]].rows[y] = (n, xs[0], xs[-1])
    return (width, height), found


def screenshot(page: Path, tmp_path: Path) -> Path:
    png = tmp_path / (page.stem + ".png")
    done = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--screenshot={png}",
         "--window-size=1280,2000", page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0 and png.exists(), done.stderr[-3000:]
    return png


def test_charts_render_in_headless_chromium(demo_page: tuple[Path, str], demo_db: Path, tmp_path: Path) -> None:
    size, ink = find_colors(screenshot(demo_page[0], tmp_path), CHART_COLORS)
    assert size == (1280, 2000)
    for name, found in ink.items():  # every chart drew (a legend swatch alone is 100 pixels)
        assert found.count > 1000, (name, found.count)

    # Cost per success over time: one day, one bar.
    ((top, height, widest),) = ink["cost per success"].bands()
    assert height > 50 and widest > 30

    # The histogram: 3 tasks succeeded and 3 failed, so as much green as red is drawn.
    assert abs(ink["succeeded"].count - ink["failed"].count) <= 0.02 * ink["failed"].count

    # Bars are drawn to scale: the longest is the full width, the others in proportion to their cost.
    rows = {r["group"]["model"]: r for r in report(open_store(demo_db, create=False), by="model")}
    o4, mini = (rows[m]["llm_cost_usd"] for m in ("o4-mini", "gpt-4o-mini"))
    (_, _, o4_px), (_, _, mini_px) = ink["model"].bands()  # costliest first
    assert abs(mini_px - o4_px * float(mini / o4)) <= 2, (o4_px, mini_px)
    full = max(w for _, _, w in ink["step LLM"].bands())  # (task): the costliest step
    tool = max(w for _, _, w in ink["step tool"].bands())  # search_kb
    assert full == o4_px and abs(tool - full * float(TOOLS / (2 * SUMMARY + 3 * DRAFT))) <= 2, (full, tool)


def test_a_page_without_tasks_draws_no_chart(demo_db: Path, tmp_path: Path) -> None:
    """The other side of the test above: those colours come from the charts, and only from them."""
    page = tmp_path / "empty.html"
    invoke("report", "--db", str(demo_db), "--kind", "no_such_kind", "--html", str(page))
    assert "No tasks in this window" in page.read_text(encoding="utf-8")
    _, ink = find_colors(screenshot(page, tmp_path), CHART_COLORS)
    assert {name: found.count for name, found in ink.items()} == dict.fromkeys(CHART_COLORS, 0)
