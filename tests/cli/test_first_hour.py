"""Issue 15: the first hour of a new user. Nothing destroyed, nothing misleading, everything fits.

One test (or a few) per finding; each failed on the code before the fix."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

import unitcost
from unitcost.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, expect: int | None = 0, columns: int | None = None, input: str | None = None) -> Result:
    env = {"COLUMNS": str(columns)} if columns else {}
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env, input=input)
    if expect is not None:
        assert result.exit_code == expect, result.output
    return result


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNITCOST_STRICT", "1")
        run("demo", "--db", str(db))
    yield db


@pytest.fixture
def unpriced_db(make_store: Callable[..., Path]) -> Path:
    """Two tasks; one also calls a model genai-prices does not know."""
    db = make_store()
    with unitcost.task("support_ticket", key="T-1"):
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=100)
        unitcost.outcome("resolved")
    with unitcost.task("support_ticket", key="T-2"):
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=100)
        unitcost.record_usage("openai", "house-model-7", input_tokens=1000, output_tokens=100)
        unitcost.outcome("resolved")
    assert unitcost.flush()
    return db


# --- 1. demo --db never destroys a file that is not a demo store --------------------------------------


def test_demo_leaves_another_store_alone(demo_db: Path, unpriced_db: Path) -> None:
    before = unpriced_db.read_bytes()
    result = run("demo", "--db", str(unpriced_db), expect=1)
    assert "not a unitcost demo store" in result.output
    assert unpriced_db.read_bytes() == before


def test_demo_leaves_a_text_file_alone(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    result = run("demo", "--db", str(notes), expect=1)
    assert "not a unitcost demo store" in result.output
    assert notes.read_text() == "my notes\n"


def test_demo_leaves_a_price_file_it_did_not_write_alone(tmp_path: Path) -> None:
    # The demo writes its [[runtime]] prices beside its store (STORE.toml): never over someone's own file.
    prices = tmp_path / "mine.toml"
    prices.write_text("[[price]]\nmodel = 'x'\n")
    result = run("demo", "--db", str(tmp_path / "mine.db"), expect=1)
    assert "not the demo's price file" in result.output
    assert prices.read_text() == "[[price]]\nmodel = 'x'\n" and not (tmp_path / "mine.db").exists()


def test_demo_replaces_its_own_store(demo_db: Path, tmp_path: Path) -> None:
    copy = tmp_path / "again.db"
    copy.write_bytes(demo_db.read_bytes())
    run("demo", "--db", str(copy))
    with closing(sqlite3.connect(copy)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 7  # replaced, not added to


# --- 2. whatif marks unpriced calls and says when --from-model matched nothing ------------------------


def test_whatif_marks_what_leaves_unpriced_calls_out(unpriced_db: Path) -> None:
    out = run("whatif", "--model", "gpt-4o", "--db", str(unpriced_db)).output
    assert re.search(r"total cost\s*│\s*\$[0-9.]+\*", out), out
    assert "1 LLM call(s) are unpriced" in out
    rows = json.loads(run("whatif", "--model", "gpt-4o", "--db", str(unpriced_db), "--format", "json").stdout)
    assert rows[0]["a"]["unpriced_calls"] == 1


def test_whatif_from_a_model_no_call_used_says_so(demo_db: Path) -> None:
    result = run("whatif", "--model", "gpt-4o-mini", "--from-model", "no-such-model", "--db", str(demo_db))
    assert "no stored call was made by model 'no-such-model'" in result.output
    assert "+0.0%" not in result.output  # no table of +0% that reads as "no change"


# --- 3. check exits 2 when it checked nothing, and mentions unpriced calls ----------------------------


def test_check_with_a_kind_that_matches_nothing_exits_2(demo_db: Path) -> None:
    result = run("check", "--kind", "suport_ticket", "--max-cost", "100", "--db", str(demo_db), expect=2)
    assert "nothing checked" in result.output


def test_check_on_calls_outside_any_task_exits_2(make_store: Callable[..., Path]) -> None:
    db = make_store()
    unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
    assert unitcost.flush()
    result = run("check", "--max-cost", "100", "--db", str(db), expect=2)
    assert "outside any task" in result.output


def test_check_mentions_unpriced_calls(unpriced_db: Path) -> None:
    result = run("check", "--max-cost", "100", "--db", str(unpriced_db))
    assert "1 LLM call(s) are unpriced" in result.output and "ok: 1 group(s)" in result.output


# --- 4. tables fit the terminal -----------------------------------------------------------------------


def _widest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _every_command(demo_db: Path, unpriced_db: Path, tmp_path: Path) -> list[list[str]]:
    demo, unpriced = str(demo_db), str(unpriced_db)
    run_id = json.loads(run("tasks", "--db", demo, "--format", "json").stdout)[0]["task_id"]
    scratch = tmp_path / "scratch.db"
    scratch.write_bytes(demo_db.read_bytes())
    return [
        ["report", "--db", demo], ["report", "--db", demo, "--by", "kind,customer", "--every", "day"],
        ["report", "--db", demo, "--by", "model"], ["report", "--db", unpriced],
        ["compare", "customer=acme", "customer=initech", "--db", demo], ["compare", "14d..", "1d..", "--db", demo],
        ["whatif", "--model", "gpt-4o-mini", "--from-model", "o4-mini", "--db", demo],
        ["whatif", "--cache", "--db", demo], ["whatif", "--model", "gpt-4o", "--db", unpriced],
        ["whatif", "--model", "gpt-4o", "--from-model", "nope", "--db", demo],
        ["check", "--max-cost-per-success", "0.008", "--db", demo], ["check", "--max-cost", "9", "--db", unpriced],
        ["check", "--kind", "nope", "--max-cost", "1", "--db", demo],
        ["tasks", "--db", demo], ["tasks", "--db", unpriced], ["show", run_id, "--db", demo],
        ["show", "T-1004", "--db", demo], ["outcome", "T-1003", "done", "--db", str(scratch)],
        ["prune", "--before", "2000-01-01", "--yes", "--db", str(scratch)], ["doctor", "--db", demo],
        ["export", "--format", "csv", "-o", "spans.csv", "--db", demo],
        ["export", "--format", "jsonl", "-o", "spans.jsonl", "--db", demo],
        ["demo", "--db", "fresh-demo.db"],
    ]


def _help_pages(group: click.Group, prefix: list[str]) -> Iterator[list[str]]:
    yield [*prefix, "--help"]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _help_pages(command, [*prefix, name])
        else:
            yield [*prefix, name, "--help"]


def test_every_command_and_every_help_fits_80_columns(
    demo_db: Path, unpriced_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the demo prints its --db in the commands it suggests: a short one
    monkeypatch.setenv("PATH", f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ['PATH']}")  # as when activated
    wide = {}
    commands = [*_every_command(demo_db, unpriced_db, tmp_path), *_help_pages(cli, [])]
    for args in commands:
        result = run(*args, expect=None, columns=80)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.output)
        if _widest(result.output) > 80:
            wide[" ".join(args)] = [line for line in result.output.splitlines() if len(line) > 80][:3]
    assert not wide, wide
    assert len(commands) > 30


def test_the_width_is_columns_else_100_when_not_a_terminal(demo_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    piped = run("report", "--db", str(demo_db)).output
    assert 90 < _widest(piped) <= 100
    at_120 = run("report", "--db", str(demo_db), columns=120).output
    assert 100 < _widest(at_120) <= 120
    narrow = run("report", "--db", str(demo_db), columns=80).output
    assert "--wide shows all" in narrow and "steps/task" not in narrow.split("(")[0]


def test_wide_shows_every_column(demo_db: Path) -> None:
    out = run("report", "--db", str(demo_db), "--wide", columns=80).output
    for header in ("steps/task", "tools/task", "cache would save~", "re-send~", "cache write"):
        assert header in out
    assert "--wide shows all" not in out


def test_json_and_csv_ignore_the_width(demo_db: Path) -> None:
    for fmt in ("json", "csv"):
        narrow = run("report", "--db", str(demo_db), "--format", fmt, columns=40).stdout
        assert narrow == run("report", "--db", str(demo_db), "--format", fmt, columns=300).stdout


def test_the_exit_summary_shows_costs_whole(tmp_path: Path) -> None:
    program = tmp_path / "agent.py"
    program.write_text(textwrap.dedent(f"""
        import unitcost
        unitcost.configure(db={str(tmp_path / "s.db")!r})
        with unitcost.task("support_ticket"):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1310, output_tokens=12)
            unitcost.outcome("resolved")
    """))
    env = {**os.environ, "UNITCOST_SUMMARY": "1", "COLUMNS": "80"}
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "$0.000204" in done.stderr and "…" not in done.stderr, done.stderr
    assert _widest(done.stderr) <= 80


# --- 5. silent $0: a forgotten instrument(); bare @unitcost.task ---------------------------------------


FORGETFUL = """
import sys, openai, unitcost
unitcost.configure(db=sys.argv[1])
if sys.argv[2] == "instrument":
    unitcost.instrument()
@unitcost.task("support_ticket")
def handle():
    if sys.argv[2] == "record_usage":
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
handle()
handle()
"""


@pytest.mark.parametrize("how", ["forgot", "instrument", "record_usage"])
def test_forgetting_instrument_gets_one_warning(tmp_path: Path, how: str) -> None:
    program = tmp_path / "agent.py"
    program.write_text(FORGETFUL)
    env = {k: v for k, v in os.environ.items() if k != "UNITCOST_SUMMARY"}
    done = subprocess.run(
        [sys.executable, str(program), str(tmp_path / "s.db"), how], capture_output=True, text=True, env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    if how == "forgot":
        assert done.stderr.count("unitcost.instrument()") == 1, done.stderr
        assert "2 task(s) recorded but no LLM call" in done.stderr
    else:
        assert "instrument()" not in done.stderr, done.stderr


def test_a_bare_task_decorator_is_named_after_the_function(store_db: Path) -> None:
    @unitcost.task
    def handle_ticket(n: int) -> int:
        return n + 1

    @unitcost.task
    async def handle_async(n: int) -> int:
        return n

    import asyncio

    assert handle_ticket(1) == 2 and handle_ticket.__name__ == "handle_ticket"
    assert asyncio.run(handle_async(3)) == 3
    assert unitcost.flush()
    kinds = json.loads(run("tasks", "--db", str(store_db), "--format", "json").stdout)
    assert sorted(r["kind"] for r in kinds) == ["handle_async", "handle_ticket"]


# --- 6. outcomes: an unknown label's note; --success with --failure -----------------------------------


def test_a_label_that_is_not_a_success_word_is_a_failure_with_a_note(demo_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    db.write_bytes(demo_db.read_bytes())
    result = run("outcome", "T-1003", "done", "--db", str(db))
    assert "(failure)" in result.stdout
    assert "'done' is not a success word" in result.stderr and "--success" in result.stderr
    assert "not a success word" not in run("outcome", "T-1003", "done", "--success", "--db", str(db)).output
    assert "not a success word" not in run("outcome", "T-1003", "resolved", "--db", str(db)).output


def test_success_and_failure_together_are_an_error(demo_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    db.write_bytes(demo_db.read_bytes())
    result = run("outcome", "T-1003", "resolved", "--success", "--failure", "--db", str(db), expect=2)
    assert "not both" in result.output
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM outcomes WHERE source = 'cli'").fetchone()[0] == 0


# --- 7. show: cache writes, and a key -----------------------------------------------------------------


def test_show_displays_cache_writes(store_db: Path) -> None:
    with unitcost.task("summarise") as run_:
        unitcost.record_usage(
            "anthropic", "claude-sonnet-4-5", input_tokens=4600, cache_read_tokens=3000, cache_write_tokens=600,
            output_tokens=200,
        )
    assert unitcost.flush()
    out = run("show", run_.id, "--db", str(store_db)).output
    assert "3,000 cached" in out and "600 written to cache" in out


def test_show_takes_a_key(demo_db: Path) -> None:
    by_key = run("show", "T-1004", "--db", str(demo_db)).output
    assert "key=T-1004" in by_key and "run 2 of 2 of this task" in by_key
    assert "key=T-1004" in run("show", "T-1004", "--kind", "support_ticket", "--db", str(demo_db)).output
    assert "no run with task id or key" in run("show", "T-9999", "--db", str(demo_db), expect=1).output


# --- 8. the smaller items -----------------------------------------------------------------------------


def test_money_has_one_format_with_the_sign_first() -> None:
    from decimal import Decimal

    from unitcost.common.money import format_usd

    assert format_usd(Decimal("-0.0005")) == "-$0.000500"
    assert format_usd(Decimal("-12.5")) == "-$12.5000"


def test_margin_below_zero_reads_with_the_sign_first(make_store: Callable[..., Path]) -> None:
    db = make_store()
    with unitcost.task("t"):
        unitcost.record_usage("openai", "gpt-4o", input_tokens=100_000, output_tokens=1000)
        unitcost.outcome("resolved", value=0.01)
    assert unitcost.flush()
    out = run("report", "--db", str(db), "--wide").output
    assert "$-" not in out and re.search(r"-\$0\.\d+", out), out


def test_tokens_per_task_are_per_task_in_one_number_format(demo_db: Path) -> None:
    out = run("report", "--db", str(demo_db), "--wide").output
    tokens = out[out.index("Tokens per task"):out.index("Where the money went")]
    row = next(line for line in tokens.splitlines() if "support_ticket" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    # 13 LLM calls over 6 tasks: per task like every other column, not the total of 13.
    assert cells[-1] == "2.2", cells
    assert cells[2] == "1,152"  # 6,912 cache-read tokens / 6 tasks: a whole number prints without ".0"


def test_wasted_is_not_starred_when_no_task_failed(unpriced_db: Path) -> None:
    out = run("report", "--db", str(unpriced_db), "--wide").output
    spend = out[out.index("Where the money went"):]
    row = next(line for line in spend.splitlines() if "support_ticket" in line)
    assert row.split("│")[2].strip() == "$0", row


def test_an_import_error_names_its_place_once(demo_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "d.db"
    db.write_bytes(demo_db.read_bytes())
    bad = tmp_path / "o.csv"
    bad.write_text("kind,key,label,success\nsupport_ticket,T-1,resolved,\nsupport_ticket,T-2,done,maybe\n")
    out = run("outcome", "--import", str(bad), "--db", str(db), expect=1).output
    assert out.count(f"{bad}:3") == 1, out


def test_report_on_an_empty_file_leaves_it_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    result = run("report", "--db", str(empty), expect=1)
    assert "empty file" in result.output
    assert empty.stat().st_size == 0 and not Path(f"{empty}-wal").exists()


def test_the_histogram_labels_bin_edges_up_to_the_maximum(demo_db: Path, tmp_path: Path) -> None:
    page = tmp_path / "r.html"
    run("report", "--db", str(demo_db), "--html", str(page), "--format", "json")
    html = page.read_text()
    # The costliest demo task (the retried ticket's two runs) is $0.0120 ($0.009361 of LLM and tool
    # calls plus two runs' runtime at the demo's $0.08 a session-hour): the last edge says so, and
    # each bin is a range, the last one closed.
    assert 'text-anchor="end" fill="#374151">$0.0120</text>' in html
    assert "$0.0120]: " in html and "[$0, $0" in html


def test_the_demo_says_how_to_run_unitcost_when_it_is_not_on_path(
    demo_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the venv's bin is not on it, as after the README's commands
    monkeypatch.chdir(tmp_path)
    out = run("demo", "--db", "d.db").output
    tail = out[out.index("Next:"):]
    runner = Path(sys.prefix) / "bin" / "unitcost"
    shown = str(runner)  # the venv is not below the current folder here: its full path
    assert f"  {shown} tasks --db d.db" in tail
    assert "not on your PATH" in tail and "activate" in tail
    done = subprocess.run([shown, "tasks", "--db", "d.db", "--limit", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_clone_named_unitcost_run_from_its_parent_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "unitcost").symlink_to(ROOT, target_is_directory=True)
    done = subprocess.run(
        [sys.executable, "-c", "import unitcost; unitcost.configure"], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": ""},
    )
    assert done.returncode != 0
    assert "found the repository clone" in done.stderr, done.stderr

