"""The coverage table (method x sync/async x plain/stream) of docs/coverage.md, linked from the README, is
generated from the tests' covers marks (tests/coverage_table.py); this fails when the page and the tests
disagree."""

from __future__ import annotations

import subprocess
import sys

from coverage_table import COLUMNS, END, PAGE, ROOT, START, render, replace_table


def test_the_coverage_page_matches_the_tests():
    # A fresh interpreter: collecting the suite inside this pytest run would import it twice.
    done = subprocess.run(
        [sys.executable, "-m", "tests.coverage_table", "--print"], cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    generated = done.stdout.strip()
    page = PAGE.read_text(encoding="utf-8")
    current = page[page.index(START): page.index(END) + len(END)]
    assert current == generated, "docs/coverage.md is out of date: run python -m tests.coverage_table"


def test_render_marks_each_cell_and_keeps_rows_sorted():
    table = render({("openai", "responses.create"): {("async", "stream")}, ("anthropic", "messages.create"): set()})
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`" in line]
    assert rows == [
        "| anthropic | `messages.create` | – | – | – | – |",
        "| openai | `responses.create` | – | – | – | ✓ |",
    ]
    assert len(COLUMNS) == 4


def test_replace_table_keeps_the_rest_of_the_readme():
    readme = f"before\n{START}\nold\n{END}\nafter\n"
    assert replace_table(readme, f"{START}\nnew\n{END}") == f"before\n{START}\nnew\n{END}\nafter\n"
