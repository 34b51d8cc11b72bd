"""Guarantee 6, privacy and secrets: prompt and completion text are neither stored nor exported unless
the user opts in (then the redaction hook runs first); API keys and other credentials never reach a
span or the store; the store is readable by its owner only.

"Nowhere" is checked literally: every byte of the store (the database, its WAL) and every span sent
to an in-memory exporter, a JSONL file and an OTLP/HTTP collector (a local server) is searched.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from conftest import chat_body, run_cli, store_rows, stream_chunks, usage_block
from conftest import sse_response as openai_sse
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from providers.anthropic_fixtures import message_body, sse_response, stream_events

import unitcost
from unitcost.common import errors as _errors
from unitcost.exporters import JsonlSpanExporter

# (an order number no hex id or decimal count in the store can contain: "4711" alone could)
PROMPT_TEXT = "PROMPT-CANARY where is order Q4711?"
SYSTEM_TEXT = "SYSTEM-CANARY you are the support assistant"
ANSWER_TEXT = "ANSWER-CANARY it ships today"
OPENAI_KEY = "sk-proj-CANARYk3yAAAABBBBCCCCDDDD0123456789"
ANTHROPIC_KEY = "sk-ant-api03-CANARYk3yEEEEFFFFGGGG0123456789"
OTHER_SECRET = "tok-CANARYs3cretHHHHIIII"
SECRETS = (OPENAI_KEY, ANTHROPIC_KEY, OTHER_SECRET, "CANARYk3y", "CANARYs3cret")


# --- where things could end up ------------------------------------------------------------------------


class _Collector(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        type(self).bodies.append(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[bytes]]]:
    _Collector.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Collector.bodies
    server.shutdown()
    server.server_close()


class Everywhere:
    """Every place a recorded value can go: the store's files, spans in memory, JSONL, OTLP."""

    def __init__(self, db: Path, memory: InMemorySpanExporter, jsonl: Path, otlp: list[bytes]) -> None:
        self.db, self.memory, self.jsonl, self.otlp = db, memory, jsonl, otlp

    def blobs(self) -> dict[str, bytes]:
        assert unitcost.flush()
        out = {p.name: p.read_bytes() for p in self.db.parent.glob(self.db.name + "*")}
        out["jsonl"] = self.jsonl.read_bytes() if self.jsonl.exists() else b""
        out["otlp"] = b"".join(self.otlp)
        out["spans"] = json.dumps([_span_text(s) for s in self.memory.get_finished_spans()]).encode()
        return out

    def find(self, *needles: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for where, blob in self.blobs().items():
            for needle in needles:
                if needle.encode() in blob or needle.encode("utf-16-le") in blob:
                    found.setdefault(where, []).append(needle)
        return found


def _span_text(span: Any) -> dict[str, Any]:
    return {
        "name": span.name, "attributes": {k: str(v) for k, v in (span.attributes or {}).items()},
        "status": str(span.status.description), "resource": {k: str(v) for k, v in span.resource.attributes.items()},
        "events": [[e.name, {k: str(v) for k, v in (e.attributes or {}).items()}] for e in span.events],
        "links": [str(link.attributes) for link in span.links],
    }


@pytest.fixture
def everywhere(collector, make_store, tmp_path) -> Iterator[Any]:
    made = []

    def configure(**kwargs: Any) -> Everywhere:
        memory = InMemorySpanExporter()
        jsonl = tmp_path / f"spans{len(made)}.jsonl"
        made.append(jsonl)
        endpoint, bodies = collector
        del bodies[:]  # only what this configuration sends
        db = make_store(exporters=[memory, JsonlSpanExporter(str(jsonl))], otlp_endpoint=endpoint, **kwargs)
        return Everywhere(db, memory, jsonl, bodies)

    yield configure


# --- the calls, through the real clients ----------------------------------------------------------------

MESSAGES = [{"role": "system", "content": SYSTEM_TEXT}, {"role": "user", "content": PROMPT_TEXT}]


def _openai(handler: Any, is_async: bool = False) -> Any:
    kwargs = dict(api_key=OPENAI_KEY, default_headers={"X-Custom-Token": OTHER_SECRET}, max_retries=0)
    if is_async:
        return openai.AsyncOpenAI(http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)), **kwargs)
    return openai.OpenAI(http_client=httpx2.Client(transport=httpx2.MockTransport(handler)), **kwargs)


def _anthropic(handler: Any) -> Any:
    return anthropic.Anthropic(api_key=ANTHROPIC_KEY, max_retries=0,
                               http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))


def openai_server(request: httpx2.Request) -> httpx2.Response:
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"  # the key did go where it belongs
    body = json.loads(request.content)
    if request.url.path.endswith("/responses"):
        return httpx2.Response(200, json=_response_body())
    if request.url.path.endswith("/completions") and "prompt" in body:
        return httpx2.Response(200, json={
            "id": "cmpl-1", "object": "text_completion", "created": 1764061200, "model": "gpt-3.5-turbo-instruct",
            "choices": [{"index": 0, "text": ANSWER_TEXT, "finish_reason": "stop", "logprobs": None}],
            "usage": usage_block(20, 5),
        })
    if body.get("stream"):
        return openai_sse(stream_chunks([ANSWER_TEXT[:10], ANSWER_TEXT[10:]], usage=usage_block(20, 5)))
    return httpx2.Response(200, json=chat_body(content=ANSWER_TEXT, usage=usage_block(20, 5)))


def _response_body() -> dict[str, Any]:
    return {
        "id": "resp_1", "object": "response", "created_at": 1764061200, "status": "completed", "model": "gpt-4o-mini",
        "output": [{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": ANSWER_TEXT, "annotations": []}]}],
        "usage": {"input_tokens": 20, "output_tokens": 5, "total_tokens": 25,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
    }


def anthropic_server(request: httpx2.Request) -> httpx2.Response:
    assert ANTHROPIC_KEY in request.headers.get("authorization", "") + request.headers.get("x-api-key", "")
    if json.loads(request.content).get("stream"):
        return sse_response(stream_events(pieces=[ANSWER_TEXT[:10], ANSWER_TEXT[10:]]))
    return httpx2.Response(200, json=message_body(text=ANSWER_TEXT))


def make_every_kind_of_call() -> None:
    client = _openai(openai_server)
    with unitcost.task("support_ticket", key="T-1"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        client.responses.create(model="gpt-4o-mini", input=PROMPT_TEXT, instructions=SYSTEM_TEXT)
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT_TEXT)
        claude = _anthropic(anthropic_server)
        messages = [{"role": "user", "content": PROMPT_TEXT}]
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=50, system=SYSTEM_TEXT, messages=messages)
        for _ in claude.messages.create(model="claude-sonnet-4-6", max_tokens=50, system=SYSTEM_TEXT,
                                        messages=messages, stream=True):
            pass
        with claude.messages.stream(model="claude-sonnet-4-6", max_tokens=50, messages=messages) as stream:
            stream.until_done()
    client.close()


CALLS = 7


# --- content: off unless asked, redacted first ----------------------------------------------------------


def test_no_prompt_or_completion_text_anywhere_by_default(everywhere, monkeypatch):
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    places = everywhere()
    make_every_kind_of_call()
    assert len(store_rows(places.db, "calls")) == CALLS
    assert places.find(PROMPT_TEXT, SYSTEM_TEXT, ANSWER_TEXT, "CANARY") == {}
    assert store_rows(places.db, "call_content") == []
    assert places.otlp  # the collector did receive the spans


def _content_rows(db: Path) -> list[dict[str, Any]]:
    rows = store_rows(db, "SELECT c.operation, c.provider, k.input_messages, k.output_messages FROM calls c "
                          "JOIN call_content k USING (span_id) ORDER BY c.started_ns")
    return [{**r, "input_messages": json.loads(r["input_messages"] or "[]"),
             "output_messages": json.loads(r["output_messages"] or "[]")} for r in rows]


def _redact(text: str) -> str:
    return text.replace("CANARY", "[x]").replace("Q4711", "[id]")


def test_capture_content_opt_in_runs_the_redaction_hook_first(everywhere):
    places = everywhere(capture_content=True, redact=_redact)
    make_every_kind_of_call()
    rows = _content_rows(places.db)
    assert len(rows) == CALLS
    for row in rows:
        texts_in = [p["content"] for m in row["input_messages"] for p in m["parts"]]
        texts_out = [p["content"] for m in row["output_messages"] for p in m["parts"]]
        assert "PROMPT-[x] where is order [id]?" in texts_in, row
        assert texts_out == ["ANSWER-[x] it ships today"], row
    chat = rows[0]
    assert chat["input_messages"] == [
        {"role": "system", "parts": [{"type": "text", "content": "SYSTEM-[x] you are the support assistant"}]},
        {"role": "user", "parts": [{"type": "text", "content": "PROMPT-[x] where is order [id]?"}]},
    ]
    assert chat["output_messages"][0]["finish_reason"] == "stop"
    # Redacted on the spans every exporter received too; the raw text is nowhere.
    assert places.find("CANARY", "Q4711") == {}
    exported = [s for s in places.memory.get_finished_spans() if "gen_ai.input.messages" in (s.attributes or {})]
    assert len(exported) == CALLS


def test_the_standard_variable_turns_capture_on_and_configure_can_turn_it_off(everywhere, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    places = everywhere()
    client = _openai(openai_server)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(_content_rows(places.db)) == 1

    places = everywhere(capture_content=False)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert _content_rows(places.db) == []
    assert places.find("CANARY") == {}


def test_a_redaction_hook_that_fails_leaves_the_content_out_never_unredacted(
    everywhere, monkeypatch, caplog
):
    monkeypatch.delenv("UNITCOST_STRICT", raising=False)
    monkeypatch.setattr(_errors, "_already_logged", set())
    caplog.set_level(logging.WARNING, logger="unitcost")

    def broken(text: str) -> str:
        raise RuntimeError("redactor down")

    places = everywhere(capture_content=True, redact=broken)
    client = _openai(openai_server)
    result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert result.choices[0].message.content == ANSWER_TEXT
    assert len(store_rows(places.db, "calls")) == 1
    assert places.find("CANARY") == {}
    assert any("content capture" in r.getMessage() for r in caplog.records)


# --- credentials -------------------------------------------------------------------------------------------


def test_credentials_never_reach_a_span_or_the_store(everywhere):
    places = everywhere(capture_content=True)
    make_every_kind_of_call()

    # Failures whose text carries the key: a proxy echoing the header, a URL with the key, the user's own.
    def echo(request: httpx2.Request) -> httpx2.Response:
        message = f"Incorrect API key provided: {OPENAI_KEY}. Authorization: {request.headers['authorization']}"
        return httpx2.Response(401, json={"error": {"message": message, "type": "invalid_request_error",
                                                    "code": "invalid_api_key", "param": None}})

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"cannot reach https://proxy/v1?key={OTHER_SECRET}&x-api-key={ANTHROPIC_KEY}")

    with pytest.raises(openai.AuthenticationError):
        _openai(echo).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.APIConnectionError):
        _openai(refuse).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(anthropic.AuthenticationError):
        _anthropic(lambda r: httpx2.Response(401, json={
            "type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key {ANTHROPIC_KEY}"},
        })).messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(PermissionError), unitcost.task("leaky", key="T-2"):
        raise PermissionError(f"login failed with password={OTHER_SECRET} and Bearer {OPENAI_KEY}")

    assert len(store_rows(places.db, "calls")) == CALLS + 3
    assert places.otlp
    assert places.find(*SECRETS) == {}
    # The errors are still there, named, without the secret.
    statuses = [s.status.description or "" for s in places.memory.get_finished_spans()]
    assert any("Incorrect API key provided: [redacted]" in s for s in statuses)
    assert any("password=[redacted]" in s for s in statuses)


# --- the file itself ----------------------------------------------------------------------------------------


def test_the_store_is_readable_by_its_owner_only(tmp_path):
    old = os.umask(0)  # even a permissive umask does not widen it
    try:
        db = tmp_path / "new-dir" / "deeper" / "unitcost.db"
        unitcost.configure(db=db)
        with unitcost.task("t"):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1, output_tokens=1)
        assert unitcost.flush()
        files = sorted(db.parent.glob("unitcost.db*"))
        assert [f.name for f in files] == ["unitcost.db", "unitcost.db-shm", "unitcost.db-wal"]
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    finally:
        os.umask(old)
        unitcost.shutdown()


def test_pruning_a_call_prunes_its_captured_content(everywhere):
    places = everywhere(capture_content=True)
    _openai(openai_server).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(_content_rows(places.db)) == 1
    unitcost.shutdown()
    run_cli("prune", "--db", str(places.db), "--before", "0s", "--yes")
    rows = store_rows(places.db, "SELECT (SELECT COUNT(*) FROM calls) AS calls, COUNT(*) AS content FROM call_content")
    assert rows == [{"calls": 0, "content": 0}]
