"""Guarantee 7, CLI input: every option is validated with a clear message and a non-zero exit (never a
traceback), and attribute names and values reach SQL only as parameters or checked identifiers:
injection strings are plain text to every command.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import store_rows

import unitcost
from unitcost.cli.main import cli


@pytest.fixture
def db(store_db: Path) -> Path:
    for i, (customer, label) in enumerate([("acme", "resolved"), ("globex", "escalated"), ("acme", "resolved")]):
        with unitcost.task("support_ticket", key=f"T-{i}", attributes={"customer": customer, "tier": "gold"}):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=100)
            unitcost.outcome(label)
    assert unitcost.flush()
    return store_db


def invoke(*args: str) -> tuple[int, str]:
    # catch_exceptions=False: an unexpected exception fails the test instead of becoming exit code 1.
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


BAD = [
    # (arguments, words the message must contain)
    (["report", "--since", "yesterday"], ["--since", "cannot read 'yesterday' as a time"]),
    (["report", "--until", "2026-02-30"], ["--until", "cannot read"]),
    (["report", "--since", "-7d"], ["--since", "cannot read"]),
    (["report", "--by", "colour"], ["unknown --by name 'colour'", "known: kind, model, provider, outcome, customer"]),
    (["report", "--by", "model,provider"], ["model or by provider, not both"]),
    (["report", "--every", "hour"], ["--every", "'hour' is not one of"]),
    (["report", "--where", "customer"], ["--where takes NAME=VALUE"]),
    (["report", "--where", "shoe_size=42"], ["unknown --where name 'shoe_size'"]),
    (["report", "--where", "model=gpt-4o-mini"], ["--where model=... cannot select tasks", "Use --by model"]),
    (["compare", "provider=openai", "provider=anthropic"], ["--where provider=... cannot select tasks"]),
    (["report", "--format", "xml"], ["--format", "'xml' is not one of"]),
    (["compare", "customer=acme", "banana"], ["cannot read 'banana'"]),
    (["compare", "7d..soon", "14d..7d"], ["cannot read 'soon' as a time"]),
    (["whatif"], ["whatif needs --model, --prices, --cache, --route, --batch or --cap-per-user"]),
    (["whatif", "--model", "gpt-9000-imaginary"], ["no price known for model 'gpt-9000-imaginary'"]),
    (["whatif", "--route", "input_tokens<2000"], ["--route takes CONDITIONS:MODEL"]),
    (["whatif", "--route", "tokens:gpt-4o-mini"], ["cannot read the route condition 'tokens'"]),
    (["whatif", "--cap-per-user", "lots"], ["--cap-per-user takes USD/PERIOD"]),
    (["whatif", "--cap-per-user", "20/month", "--cache"], ["--cap-per-user is a what-if of its own"]),
    (["report", "--users"], ["which task attribute names the user?"]),
    (["check"], ["give at least one threshold"]),
    (["check", "--max-cost", "-1"], ["--max-cost", "-1"]),
    (["check", "--max-cost-per-success", "cheap"], ["--max-cost-per-success", "'cheap' is not a valid number"]),
    (["check", "--min-success-rate", "1.5"], ["--min-success-rate", "1.5"]),
    (["check", "--max-cost-per-task-p95", "nan"], ["--max-cost-per-task-p95"]),
    (["tasks", "--limit", "0"], ["--limit", "0"]),
    (["tasks", "--limit", "many"], ["--limit", "'many' is not a valid integer"]),
    (["tasks", "--limit", "100000000000000000000"], ["--limit", "is not in the range"]),
    (["outcome", "T-1", "resolved", "--value", "1e400"], ["--value", "amounts of $9,223,372"]),
    (["outcome", "T-1", "resolved", "--value", "Infinity"], ["--value", "not a finite amount"]),
    (["outcome", "T-1", "resolved", "--value", "nan"], ["--value", "not a finite amount"]),
    (["export", "-o", "/nonexistent-dir/x.jsonl"], ["cannot write /nonexistent-dir/x.jsonl"]),
    (["outcome", "T-1", "resolved", "--value", "lots"], ["--value", "'lots' is not an amount in USD"]),
    (["outcome", "T-1"], ["give REF and LABEL"]),
    (["prune"], ["--before is required"]),
    (["prune", "--before", "soon", "--yes"], ["--before", "cannot read 'soon'"]),
    (["doctor", "--format", "xml"], ["--format"]),
]


@pytest.mark.parametrize(("args", "words"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_every_bad_option_gets_a_clear_message(db, args, words):
    code, output = invoke(*args, "--db", str(db))
    assert code in (1, 2), output
    assert "Traceback" not in output
    for word in words:
        assert word in output, output


def test_times_past_what_the_store_holds_are_clamped_not_a_crash(db):
    for since in ("99999999999d", "999999999999999999999999w", "0001-01-01", "9999-12-31T23:59:59+14:00"):
        code, output = invoke("report", "--db", str(db), "--since", since, "--format", "json")
        assert code == 0, output
        json.loads(output)


INJECTIONS = [
    "x' OR '1'='1",
    "acme'; DROP TABLE runs; --",
    '"; DELETE FROM calls; --',
    "acme\") UNION SELECT sql FROM sqlite_master --",
    "%",
    "_",
    "*",
    "\x00acme",
    "customer) OR 1=1 --",
]


def _tables_intact(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("runs", "calls", "outcomes")}
    assert counts == {"runs": 3, "calls": 3, "outcomes": 3}


@pytest.mark.parametrize("evil", INJECTIONS)
def test_attribute_names_and_values_are_never_sql(db, evil):
    # As a value: matches nothing, filters everything out.
    code, output = invoke("report", "--db", str(db), "--where", f"customer={evil}", "--format", "json")
    assert code == 0 and json.loads(output) == []
    code, output = invoke("report", "--db", str(db), "--kind", evil, "--format", "json")
    assert code == 0 and json.loads(output) == []
    code, output = invoke("tasks", "--db", str(db), "--kind", evil, "--format", "json")
    assert code == 0 and json.loads(output) == []
    code, output = invoke("compare", "--db", str(db), f"customer={evil}", "customer=acme", "--format", "json")
    assert code == 0
    # As a name: refused as an unknown attribute, not run.
    for option in ("--by", "--where"):
        value = evil if option == "--by" else f"{evil}=1"
        code, output = invoke("report", "--db", str(db), option, value)
        if "," in evil or evil.strip() == "":
            continue
        assert code == 1 and "unknown" in output, output
    code, output = invoke("check", "--db", str(db), "--by", evil, "--max-cost", "1")
    assert code != 0 or "ok" in output
    # As a task id or key: just an id that does not exist.
    code, output = invoke("show", "--db", str(db), evil)
    assert code == 1 and "Traceback" not in output
    _tables_intact(db)
    code, output = invoke("outcome", "--db", str(db), evil, "resolved", "--kind", evil)
    assert code == 0  # an unknown key is kept for later, with a warning
    # Stored verbatim, as the data it is.
    assert store_rows(db, "SELECT key, label FROM outcomes WHERE key = ?", [evil]) == [
        {"key": evil, "label": "resolved"}
    ]


def test_an_attribute_called_like_sql_is_just_a_name(store_db):
    weird = "x'; DROP TABLE runs; --"
    with unitcost.task("t", attributes={weird: "v1", "plain": weird}):
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
    with unitcost.task("t", attributes={weird: "v2", "plain": "ok"}):
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
    assert unitcost.flush()
    code, output = invoke("report", "--db", str(store_db), "--by", weird, "--format", "json")
    assert code == 0, output
    assert sorted(r["group"][weird] for r in json.loads(output)) == ["v1", "v2"]
    code, output = invoke("report", "--db", str(store_db), "--where", f"plain={weird}", "--format", "json")
    assert code == 0 and [r["tasks"] for r in json.loads(output)] == [1]
    with closing(sqlite3.connect(store_db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone() == (2,)


def test_every_command_has_help_with_an_example():
    for name in cli.commands:
        code, output = invoke(name, "--help")
        assert code == 0 and "Example" in output, name


def test_a_bad_price_file_is_a_message(db, tmp_path):
    bad = tmp_path / "unitcost.toml"
    bad.write_text("[[price]]\nmodel = 'x'\n")  # sets no price at all
    code, output = invoke("whatif", "--prices", str(bad), "--db", str(db))
    assert code == 1 and "Traceback" not in output
    assert "sets no input_mtok" in output, output
