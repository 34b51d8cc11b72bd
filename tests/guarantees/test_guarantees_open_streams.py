"""Guarantee 2 (bad input) and 4 (a normal exit flushes everything), for streams: a stream the
program still holds open when unitcost shuts down (interpreter exit, or `unitcost.shutdown()`) is
recorded, as incomplete with the tokens seen and the rest estimated, in its task: never a $0 task,
never silently unpriced. A forked child does not record its parent's open streams again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from conftest import PROMPT, ChatServer, report_json, run_cli, store_rows

import unitcost

APP = Path(__file__).with_name("open_stream_app.py")


def _rows(db: Path, sql: str) -> list[dict]:
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql)]


def _run_app(db: Path, *args: str) -> list[list[str]]:
    env = {**os.environ, "UNITCOST_STRICT": "1"}
    done = subprocess.run([sys.executable, str(APP), str(db), *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=db.parent)
    assert done.returncode == 0, done.stderr
    assert "unitcost" not in done.stderr.lower(), done.stderr  # no warning, no internal error
    return json.loads(done.stdout)


def _assert_recorded_in_their_tasks(db: Path) -> None:
    calls = _rows(db, "SELECT c.*, r.key FROM calls c LEFT JOIN runs r ON r.run_id = c.run_id ORDER BY c.provider")
    assert [(c["provider"], c["key"]) for c in calls] == [("anthropic", "T-anthropic"), ("openai", "T-openai")]
    for call in calls:
        assert (call["streamed"], call["incomplete"], call["estimated"], call["error_type"]) == (1, 1, 1, None), call
        assert call["cost_pico"] is not None and call["cost_pico"] > 0, call
    anthropic_call, openai_call = calls
    # message_start's input and cache counts are the server's own: exact. Output was never reported.
    assert (anthropic_call["input_tokens"], anthropic_call["cache_read_tokens"]) == (1200, 20_000)
    # The OpenAI stream's usage chunk never came: input estimated from the prompt, output from the
    # one piece of text seen ("Your order ").
    assert openai_call["input_tokens"] > 0 and openai_call["output_tokens"] > 0
    (row,) = json.loads(run_cli("report", "--db", str(db), "--format", "json").stdout)
    assert (row["tasks"], row["llm_calls"], row["unpriced_calls"], row["estimated_calls"]) == (2, 2, 0, 2)
    assert row["cost_usd"] > 0


@pytest.mark.skipif(sys.platform == "win32", reason="runs a POSIX subprocess")
def test_streams_still_open_at_exit_are_recorded_in_their_tasks(tmp_path):
    db = tmp_path / "open.db"
    seen = _run_app(db)
    assert seen == [
        ["ChatCompletionChunk", "ChatCompletionChunk"], ["RawMessageStartEvent", "RawContentBlockStartEvent"]
    ]
    _assert_recorded_in_their_tasks(db)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_forked_child_does_not_record_its_parents_open_streams(tmp_path):
    db = tmp_path / "forked.db"
    _run_app(db, "fork")
    _assert_recorded_in_their_tasks(db)
    # Every span exported once: the child, which shut unitcost down with the parent's streams open
    # in its copy of memory, exported none of them.
    exported = [json.loads(line) for line in (tmp_path / "forked.db.jsonl").read_text().splitlines()]
    names = sorted(span["name"] for span in exported)
    assert names == ["anthropic.messages.create", "chat gpt-4o-mini", "invoke_agent ticket", "invoke_agent ticket"]


def test_shutdown_records_an_open_stream_and_leaves_it_readable(store_db, openai_client):
    client = openai_client(ChatServer(pieces=("Your order ", "ships ", "today.")))
    with unitcost.task("ticket", key="T-1"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)
        first = next(stream)
    unitcost.shutdown()
    (call,) = _rows(store_db, "SELECT * FROM calls")
    (run,) = _rows(store_db, "SELECT * FROM runs")
    assert call["run_id"] == run["run_id"] and run["key"] == "T-1"
    assert (call["incomplete"], call["estimated"]) == (1, 1) and call["cost_pico"] > 0
    # The program's stream is its own: still readable, every chunk as the server sent it.
    rest = [c.choices[0].delta.content for c in stream if c.choices]
    assert first.choices[0].delta.role == "assistant" and rest == ["Your order ", "ships ", "today.", None]


def test_shutdown_records_an_open_raw_streaming_response(store_db, openai_client):
    client = openai_client(ChatServer())
    with unitcost.task("ticket", key="T-raw"):
        manager = client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=PROMPT, stream=True
        )
        response = manager.__enter__()
        lines = response.iter_lines()
        while "Your order" not in next(lines):  # read up to the first piece of text
            pass
    unitcost.shutdown()
    (call,) = _rows(store_db, "SELECT * FROM calls")
    assert (call["incomplete"], call["estimated"]) == (1, 1) and call["cost_pico"] > 0
    manager.__exit__(None, None, None)


def test_a_stream_ended_normally_is_not_listed_as_open(store_db, openai_client):
    from unitcost.record import open_streams

    client = openai_client(ChatServer())
    before = open_streams.open_count()
    with unitcost.task("ticket", key="T-2"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)
        assert open_streams.open_count() == before + 1
        list(stream)
    assert open_streams.open_count() == before
    (call,) = store_rows(store_db, "calls")
    assert (call["incomplete"], call["estimated"], call["input_tokens"]) == (0, 0, 120)
    assert report_json(store_db)[0]["estimated_calls"] == 0
