"""Guarantees against faults in what unitcost is given: a failed configure() is remembered, long
keys stay distinct, credentials of any common shape are scrubbed, and every file unitcost writes is
created readable by its owner only.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys

import pytest
from conftest import run_cli, store_rows

import unitcost
from unitcost.common.attributes import task_key
from unitcost.common.secrets import scrub
from unitcost.exporters import JsonlSpanExporter
from unitcost.pipeline import config


def test_a_failed_configure_is_remembered_and_unitcost_stays_off(tmp_path, caplog):
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o500)
    if os.access(read_only, os.W_OK):
        pytest.skip("running as a user who can write anywhere (root): no read-only directory to test with")
    default = tmp_path / "user-default.db"  # $UNITCOST_DB, set by conftest: the default store
    unitcost.shutdown()  # a pipeline already in force stays in force when configure() fails: none here
    try:
        with pytest.raises(unitcost.ConfigurationError):
            unitcost.configure(db=read_only / "store.db")
        with caplog.at_level(logging.WARNING, logger="unitcost"):
            for i in range(3):
                with unitcost.task("ticket", key=f"T-{i}"):
                    unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
            unitcost.flush()
        assert not default.exists(), "the default store was configured after configure() had failed"
        warnings = [r.getMessage() for r in caplog.records if "configure() failed" in r.getMessage()]
        assert len(warnings) == 1, warnings
        # A configure() that succeeds turns unitcost back on.
        unitcost.configure(db=tmp_path / "good.db")
        with unitcost.task("ticket", key="after"):
            pass
        assert [r["key"] for r in store_rows(tmp_path / "good.db", "runs")] == ["after"]
    finally:
        read_only.chmod(0o700)
        unitcost.shutdown()
        config._failed = None


def test_a_failed_configure_stays_off_without_a_writable_directory_too(tmp_path, monkeypatch, caplog):
    # The same promise where a read-only directory cannot be made (root): an unusable store file.
    bad = tmp_path / "not-a-store.db"
    bad.write_bytes(b"this is not SQLite" * 100)
    default = tmp_path / "user-default.db"
    unitcost.shutdown()  # a pipeline already in force stays in force when configure() fails: none here
    try:
        with pytest.raises(unitcost.ConfigurationError):
            unitcost.configure(db=bad)
        with caplog.at_level(logging.WARNING, logger="unitcost"):
            with unitcost.task("ticket", key="T-1"):
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
            with unitcost.task("ticket", key="T-2"):
                pass
            unitcost.flush()
        assert not default.exists()
        assert sum("configure() failed" in r.getMessage() for r in caplog.records) == 1
        assert bad.read_bytes() == b"this is not SQLite" * 100
    finally:
        unitcost.shutdown()
        config._failed = None


def test_two_long_keys_stay_two_tasks_and_outcomes_find_them(store_db):
    common = "x" * 5000
    first, second = common + "-first", common + "-second"
    for key in (first, second):
        with unitcost.task("ticket", key=key):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
    unitcost.record_outcome("resolved", kind="ticket", key=second)
    runs = store_rows(store_db, "runs")
    keys = [r["key"] for r in runs]
    assert len(set(keys)) == 2
    assert all(k.startswith("x" * 100) and len(k) <= 4096 for k in keys)  # a readable prefix
    rows = json.loads(run_cli("report", "--db", str(store_db), "--format", "json").stdout)
    assert rows[0]["tasks"] == 2 and rows[0]["succeeded"] == 1


def test_the_cli_finds_a_long_key_as_the_sdk_stored_it(store_db, tmp_path):
    # Two keys of 5,000 characters that share their first 4,096: each is its own task, and every
    # command that takes a key (outcome, outcome --import, show, report --where key=) finds the right one.
    common = "".join(chr(ord("a") + i % 26) for i in range(4096))
    first, second = common + "1" * 904, common + "2" * 904
    for key, tokens in ((first, 100), (second, 300)):
        with unitcost.task("ticket", key=key):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=tokens, output_tokens=1)
    assert unitcost.flush()
    db = str(store_db)
    out = run_cli("outcome", first, "resolved", "--db", db).stdout
    assert "key abcdefghij" in out and "#sha256:" in out and len(out) < 300  # said shortly
    run_cli("outcome", second, "escalated", "--db", db)
    joined = store_rows(store_db, "SELECT r.key, o.label FROM runs r JOIN outcomes o ON o.key = r.key")
    assert sorted((r["key"], r["label"]) for r in joined) == sorted(
        [(task_key(first), "resolved"), (task_key(second), "escalated")]
    )
    # Each outcome is on its own task: the report counts one success and one failure.
    rows = json.loads(run_cli("report", "--db", db, "--format", "json").stdout)
    assert (rows[0]["tasks"], rows[0]["succeeded"], rows[0]["failed"]) == (2, 1, 1)
    for key, tokens, label in ((first, 100, "resolved"), (second, 300, "escalated")):
        (only,) = json.loads(run_cli("report", "--db", db, "--where", f"key={key}", "--format", "json").stdout)
        assert (only["tasks"], only["input_tokens"]) == (1, tokens)
        shown = run_cli("show", key, "--db", db).stdout
        assert f"{tokens} in / 1 out" in shown
        assert f"  {label} (" in shown.split("outcomes (latest wins):")[1]
    # --import with the full keys: the latest outcome of each task wins.
    path = tmp_path / "outcomes.csv"
    path.write_text(f"kind,key,label\nticket,{first},escalated\nticket,{second},resolved\n")
    run_cli("outcome", "--import", str(path), "--db", db)
    rows = json.loads(run_cli("report", "--db", db, "--by", "outcome", "--format", "json").stdout)
    assert sorted((r["group"]["outcome"], r["input_tokens"]) for r in rows) == [("escalated", 100), ("resolved", 300)]
    # A key that is neither: no task, said briefly.
    unknown = run_cli("show", common + "3" * 904, "--db", db, expect=1).output
    assert "no run with task id or key" in unknown and len(unknown) < 300


@pytest.mark.parametrize(
    "message, secret",
    [
        (
            "401 from proxy: Authorization: Basic dXNlcjpzM2NyZXQtcGFzc3dvcmQtMTIzNA==",
            "dXNlcjpzM2NyZXQtcGFzc3dvcmQtMTIzNA",
        ),
        ("No such organization: org-Xy12Ab34Cd56Ef78Gh90Ij12", "org-Xy12Ab34Cd56Ef78Gh90Ij12"),
        ("invalid key 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "9f86d081884c7d659a2feaa0"),
        ("gateway said: token 'QmVhcmVyVG9rZW5WYWx1ZTEyMzQ1Ng' expired", "QmVhcmVyVG9rZW5WYWx1ZTEyMzQ1Ng"),
        ("x-goog-api-key: AbCdEfGhIjKlMnOpQrStUvWxYz012345", "AbCdEfGhIjKlMnOpQrStUvWxYz012345"),
    ],
)
def test_generic_credentials_in_an_error_are_scrubbed_from_the_exported_jsonl(tmp_path, message, secret):
    out = tmp_path / "spans.jsonl"
    assert secret not in scrub(message)
    unitcost.configure(db=tmp_path / "s.db", exporters=[JsonlSpanExporter(str(out))])
    try:
        with pytest.raises(RuntimeError), unitcost.task("ticket", key="T-1"):
            raise RuntimeError(message)
        assert unitcost.flush()
    finally:
        unitcost.shutdown()
    text = out.read_text()
    assert "[redacted]" in text and secret not in text
    assert secret not in (tmp_path / "s.db").read_bytes().decode("latin-1")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_every_file_unitcost_writes_is_created_0600(tmp_path, store_db):
    os.umask(0o022)
    jsonl = tmp_path / "exporter.jsonl"
    exporter = JsonlSpanExporter(str(jsonl))
    unitcost.configure(db=store_db, exporters=[exporter])
    with unitcost.task("ticket", key="T-1"):
        pass
    assert unitcost.flush()
    for fmt in ("jsonl", "csv"):
        run_cli("export", "--db", str(store_db), "--format", fmt, "-o", str(tmp_path / f"out.{fmt}"))
    for path in (jsonl, tmp_path / "out.jsonl", tmp_path / "out.csv", store_db):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e300, "abc", True])
def test_a_bad_outcome_value_keeps_the_label(store_db, value, caplog):
    with caplog.at_level(logging.WARNING, logger="unitcost"):
        with unitcost.task("ticket", key="inline"):
            unitcost.outcome("resolved", value=value)
        with unitcost.task("ticket", key="late"):
            pass
        unitcost.record_outcome("resolved", kind="ticket", key="late", value=value)  # never raises
    outcomes = store_rows(store_db, "outcomes")
    assert sorted((o["key"], o["label"], o["value_pico"]) for o in outcomes) == [
        ("inline", "resolved", None), ("late", "resolved", None)
    ]
    assert "dropped" in caplog.text


def test_record_outcome_never_raises_unless_strict(store_db, monkeypatch, caplog):
    monkeypatch.setenv("UNITCOST_STRICT", "0")
    unitcost.record_outcome("resolved")  # names no task: logged, not raised
    unitcost.record_outcome("", key="T-1")
    assert "not recorded" in caplog.text
    monkeypatch.setenv("UNITCOST_STRICT", "1")
    with pytest.raises(ValueError):
        unitcost.record_outcome("resolved")


@pytest.mark.parametrize("field, bad", [
    ("input_tokens", -5), ("output_tokens", float("nan")), ("input_tokens", 2.5), ("output_tokens", "many"),
    ("input_tokens", 10**30), ("duration_s", float("nan")),
])
def test_record_usage_with_a_bad_field_keeps_an_unpriced_call(store_db, field, bad, caplog):
    with caplog.at_level(logging.WARNING, logger="unitcost"), unitcost.task("ticket", key="T-1"):
        unitcost.record_usage("openai", "gpt-4o-mini", **{"input_tokens": 10, "output_tokens": 1, field: bad})
    calls = store_rows(store_db, "calls")
    assert len(calls) == 1 and calls[0]["run_id"] is not None
    # A bad count: unpriced, never $0. A bad duration only: priced by its good counts, no duration.
    assert (calls[0]["cost_pico"] is None) == (field != "duration_s")
    assert field in caplog.text


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for this object")


def _raises(*args, **kwargs):
    raise LookupError("ticket has no id")


@pytest.mark.parametrize("form", ["decorator", "with"])
@pytest.mark.parametrize(
    "key, attributes, kept_key, kept_attributes, warned",
    [
        (_raises, {"customer": "acme"}, None, {"customer": "acme"}, "key: its function raised LookupError"),
        ("T-1", _raises, "T-1", {}, "attributes: its function raised LookupError"),
        ("T-1", lambda *a: ["customer", "acme"], "T-1", {}, "attributes: they are a list, not a dict"),
        ("T-1", "customer=acme", "T-1", {}, "attributes: they are a str, not a dict"),
        (_Unprintable(), {"customer": "acme"}, None, {"customer": "acme"}, "key: it cannot be made text"),
        ("T-1", {"customer": "acme", "plan": _Unprintable()}, "T-1", {"customer": "acme"}, "attribute(s) 'plan'"),
    ],
    ids=["key-raises", "attributes-raise", "attributes-list", "attributes-str", "key-unprintable",
         "attribute-unprintable"],
)
def test_a_bad_key_or_attributes_still_records_the_task(
    store_db, caplog, form, key, attributes, kept_key, kept_attributes, warned
):
    # The user's bad value, not unitcost's error: a warning even under UNITCOST_STRICT (set here), as
    # for a bad outcome value; the task is recorded without it, and its calls are in it. (In the
    # `with` form a callable is called without arguments.)
    with caplog.at_level(logging.WARNING, logger="unitcost"):
        if form == "decorator":
            @unitcost.task("ticket", key=key, attributes=attributes)
            def handle(ticket_id: int) -> int:
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
                return ticket_id

            assert handle(1042) == 1042
        else:
            with unitcost.task("ticket", key=key, attributes=attributes) as run:
                assert run is not None
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
    (run_row,) = store_rows(store_db, "runs")
    (call,) = store_rows(store_db, "calls")
    assert call["run_id"] == run_row["run_id"]  # in its task, not in "(no task)"
    assert run_row["key"] == kept_key
    assert json.loads(run_row["attributes"] or "{}") == kept_attributes
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warned in warnings[0], warnings
    assert "ticket has no id" in warnings[0] or "raised" not in warned


def test_record_outcome_finds_a_task_by_the_same_key_object(store_db, caplog):
    # Bytes key: the task and the late outcome name it the same way. An unprintable key names no
    # task: logged (raised only under UNITCOST_STRICT), never a crash of its own.
    with unitcost.task("ticket", key=b"T-\xc3\xa9"):
        pass
    unitcost.record_outcome("resolved", kind="ticket", key=b"T-\xc3\xa9")
    (outcome,) = store_rows(store_db, "outcomes")
    assert outcome["key"] == "T-é" == store_rows(store_db, "runs")[0]["key"]
    with pytest.raises(ValueError, match="key cannot be made text"):
        unitcost.record_outcome("resolved", key=_Unprintable())
