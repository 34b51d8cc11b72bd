"""`unitcost serve`: OTLP/HTTP bodies (protobuf and JSON) with the spans other instrumentations make,
received by the real command in a subprocess, then `unitcost report` over its store.

The spans are made with the OpenTelemetry SDK and the attributes each instrumentation sets (OpenLLMetry,
OpenInference, the official openai-v2 instrumentation); the anthropic SDK's own spans come from the
real anthropic client. They are encoded with OpenTelemetry's own OTLP encoder.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from conftest import GPT4O_MINI, genai_cost, mock_http_client, report_json, run_cli
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from providers.anthropic_fixtures import REQUEST, SONNET, MessagesServer
from providers.anthropic_fixtures import genai_cost as anthropic_cost
from providers.anthropic_fixtures import usage_block as anthropic_usage

from unitcost.exporters.receiver import check_bind, is_loopback

OPENAI_COST = genai_cost(GPT4O_MINI, prompt=1000, completion=200, cached=400)
ANTHROPIC_USAGE = anthropic_usage(searches=0, fetches=0)  # the SDK's own span does not count server tools
# OpenLLMetry records no 1-hour part of the cache writes: all of them are priced as 5-minute writes.
OPENLLMETRY_ANTHROPIC_COST = anthropic_cost(anthropic_usage(searches=0, fetches=0, write_5m=3000, write_1h=0))


# --- the server ----------------------------------------------------------------------------------


class Serve:
    def __init__(self, db: Path, *args: str) -> None:
        self.db = db
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from unitcost.cli.main import cli; cli()", "serve", "--db", str(db),
             "--port", "0", *args],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "UNITCOST_SERVE_TOKEN": ""},
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v1/traces", line)
        assert match, line + self.proc.stderr.read()
        self.url = f"http://127.0.0.1:{match.group(1)}"

    def post(self, body: bytes, content_type: str, path: str = "/v1/traces", **headers: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, data=body, method="POST",
                                         headers={"Content-Type": content_type, **headers})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=30)
        return err


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    servers: list[Serve] = []

    def start(*args: str) -> Serve:
        server = Serve(tmp_path / "received.db", *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


# --- spans as the instrumentations make them ----------------------------------------------------


class Recorder:
    """A private TracerProvider per service (not the global one), its spans kept in memory."""

    def __init__(self, service: str) -> None:
        self.spans = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource({"service.name": service}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.spans))

    def tracer(self, scope: str) -> Any:
        return self.provider.get_tracer(scope, "1.0")

    def protobuf(self) -> bytes:
        return bytes(encode_spans(self.spans.get_finished_spans()).SerializeToString())

    def json(self) -> bytes:
        """OTLP/JSON: protobuf's JSON mapping with ids in hex and enums as numbers, as the spec says."""
        data = json_format.MessageToDict(encode_spans(self.spans.get_finished_spans()), use_integers_for_enums=True)

        def hex_ids(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else hex_ids(v)
                        for k, v in value.items()}
            if isinstance(value, list):
                return [hex_ids(v) for v in value]
            return value

        return json.dumps(hex_ids(data)).encode()


def openllmetry_trace() -> Recorder:
    """A Traceloop workflow: an OpenAI chat, an Anthropic completion and a tool, with their names."""
    rec = Recorder("openllmetry-app")
    sdk, openai_tracer = rec.tracer("traceloop.sdk"), rec.tracer("opentelemetry.instrumentation.openai.v1")
    anthropic_tracer = rec.tracer("opentelemetry.instrumentation.anthropic")
    with sdk.start_as_current_span("support_flow.workflow", attributes={
        "traceloop.span.kind": "workflow", "traceloop.workflow.name": "support_flow",
        "traceloop.entity.name": "support_flow", "traceloop.association.properties.customer": "acme",
    }):
        with openai_tracer.start_as_current_span("openai.chat", kind=SpanKind.CLIENT, attributes={
            "gen_ai.system": "openai", "llm.request.type": "chat", "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": GPT4O_MINI, "gen_ai.usage.prompt_tokens": 1000,
            "gen_ai.usage.completion_tokens": 200, "gen_ai.usage.cache_read_input_tokens": 400,
            "llm.usage.total_tokens": 1200, "gen_ai.openai.api_base": "https://api.openai.com/v1/",
        }):
            pass
        with sdk.start_as_current_span("search_kb.tool", attributes={
            "traceloop.span.kind": "tool", "traceloop.entity.name": "search_kb",
        }):
            pass
        u = ANTHROPIC_USAGE
        all_input = u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
        with anthropic_tracer.start_as_current_span("anthropic.chat", kind=SpanKind.CLIENT, attributes={
            "gen_ai.system": "Anthropic", "llm.request.type": "completion", "gen_ai.request.model": SONNET,
            "gen_ai.response.model": SONNET, "gen_ai.usage.prompt_tokens": all_input,
            "gen_ai.usage.completion_tokens": u["output_tokens"],
            "gen_ai.usage.cache_read_input_tokens": u["cache_read_input_tokens"],
            "gen_ai.usage.cache_creation_input_tokens": u["cache_creation_input_tokens"],
        }):
            pass
    return rec


def openinference_trace() -> Recorder:
    """An OpenInference agent: an LLM call and a tool, token counts under llm.token_count.*."""
    rec = Recorder("openinference-app")
    tracer = rec.tracer("openinference.instrumentation.openai")
    with tracer.start_as_current_span("support-agent", attributes={
        "openinference.span.kind": "AGENT", "agent.name": "support-agent", "session.id": "sess-42",
        "user.id": "u-9", "input.value": "Where is my order?",
    }):
        with tracer.start_as_current_span("ChatCompletion", attributes={
            "openinference.span.kind": "LLM", "llm.provider": "openai", "llm.system": "openai",
            "llm.model_name": GPT4O_MINI, "llm.invocation_parameters": '{"model": "gpt-4o-mini"}',
            "llm.token_count.prompt": 1000, "llm.token_count.completion": 200, "llm.token_count.total": 1200,
            "llm.token_count.prompt_details.cache_read": 400,
        }):
            pass
        with tracer.start_as_current_span("search_kb", attributes={
            "openinference.span.kind": "TOOL", "tool.name": "search_kb",
        }):
            pass
    return rec


def openai_v2_traces() -> Recorder:
    """The official openai-v2 instrumentation: a chat span under a web request, and one on its own."""
    rec = Recorder("web-app")
    web = rec.tracer("opentelemetry.instrumentation.fastapi")
    genai = rec.tracer("opentelemetry.instrumentation.openai_v2")
    chat = {
        "gen_ai.operation.name": "chat", "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": GPT4O_MINI, "gen_ai.response.id": "chatcmpl-BfX2kq9TnYw3Lr7ZpA1cD4eF5gH6",
        "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 200, "server.address": "api.openai.com",
    }
    with web.start_as_current_span("POST /chat", kind=SpanKind.SERVER, attributes={
        "http.request.method": "POST", "http.route": "/chat",
    }), genai.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes=chat):
        pass
    with genai.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes=chat):
        pass  # a root of its own: a call outside any task
    return rec


def anthropic_sdk_trace() -> Recorder:
    """The anthropic SDK's own span, made by the real client, under the application's span."""
    rec = Recorder("anthropic-app")
    http_client = mock_http_client("anthropic", MessagesServer(ANTHROPIC_USAGE))
    client = anthropic.Anthropic(api_key="sk-ant-test", http_client=http_client,
                                 open_telemetry={"tracer_provider": rec.provider}, max_retries=0)
    with rec.tracer("my_app").start_as_current_span("handle_ticket", attributes={"gen_ai.conversation.id": "T-77"}):
        client.messages.create(**REQUEST)
    client.close()
    assert any(s.instrumentation_scope.name == "com.anthropic.sdk.python" for s in rec.spans.get_finished_spans())
    return rec


# --- tests --------------------------------------------------------------------------------------


def test_spans_of_four_instrumentations_become_a_priced_report(serve: Any) -> None:
    server = serve()
    bodies = [
        (openllmetry_trace().protobuf(), "application/x-protobuf", {}),
        (openinference_trace().json(), "application/json", {}),
        (gzip.compress(openai_v2_traces().protobuf()), "application/x-protobuf", {"Content-Encoding": "gzip"}),
        (anthropic_sdk_trace().json(), "application/json; charset=utf-8", {}),
    ]
    for body, content_type, headers in bodies:
        status, reply = server.post(body, content_type, **headers)
        assert status == 200, reply
        assert reply == (b"{}" if "json" in content_type else b"")
    server.stop()

    rows = {row["group"]["kind"]: row for row in report_json(server.db, "--by", "kind")}
    assert set(rows) == {"support_flow", "support-agent", "POST /chat", "handle_ticket", None}

    flow = rows["support_flow"]  # OpenLLMetry: the workflow is the task
    assert (flow["tasks"], flow["llm_calls"], flow["tool_calls"], flow["unpriced_calls"]) == (1, 2, 1, 0)
    assert flow["cost_usd"] == pytest.approx(float(OPENAI_COST + OPENLLMETRY_ANTHROPIC_COST), abs=1e-9)
    assert (flow["input_tokens"], flow["cache_read_tokens"]) == (1000 + 24_200, 400 + 20_000)

    agent = rows["support-agent"]  # OpenInference: the agent span
    assert (agent["llm_calls"], agent["tool_calls"]) == (1, 1)
    assert agent["cost_usd"] == pytest.approx(float(OPENAI_COST), abs=1e-9)

    web = rows["POST /chat"]  # openai-v2 under a web request: the request is the task
    assert web["cost_usd"] == pytest.approx(float(genai_cost(GPT4O_MINI, prompt=1000, completion=200)), abs=1e-9)

    sdk = rows["handle_ticket"]  # the anthropic SDK's own span, with its 1-hour cache writes
    assert sdk["cost_usd"] == pytest.approx(float(anthropic_cost(ANTHROPIC_USAGE)), abs=1e-9)
    assert sdk["reasoning_tokens"] == 300

    assert rows[None]["llm_calls"] == 1  # the chat span that was its own root: outside any task

    # Task attributes and keys from the instrumentations' own names.
    by_customer = {row["group"]["customer"]: row for row in report_json(server.db, "--by", "customer")}
    assert by_customer["acme"]["tasks"] == 1
    tasks = json.loads(run_cli("tasks", "--db", str(server.db), "--format", "json").stdout)
    keys = {t["kind"]: t["key"] for t in tasks}
    assert keys["support-agent"] == "sess-42" and keys["handle_ticket"] == "T-77"


def test_a_root_that_comes_later_still_groups_its_calls(serve: Any) -> None:
    server = serve()
    spans = openllmetry_trace().spans.get_finished_spans()
    children, [root] = list(spans[:-1]), list(spans[-1:])
    assert root.parent is None
    for part in (children, [root]):
        status, _ = server.post(bytes(encode_spans(part).SerializeToString()), "application/x-protobuf")
        assert status == 200
    server.stop()
    [flow] = [r for r in report_json(server.db, "--by", "kind") if r["group"]["kind"] == "support_flow"]
    assert (flow["llm_calls"], flow["tool_calls"]) == (2, 1)


def test_calls_whose_root_never_comes_are_stored_outside_any_task(serve: Any) -> None:
    server = serve("--root-wait", "0.2")
    spans = openinference_trace().spans.get_finished_spans()
    orphans = [s for s in spans if s.parent is not None]
    status, _ = server.post(bytes(encode_spans(orphans).SerializeToString()), "application/x-protobuf")
    assert status == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the server stores them itself once the wait is over
        rows = report_json(server.db, "--by", "kind") if server.db.exists() else []
        if rows and rows[0]["llm_calls"]:
            break
        time.sleep(0.2)
    server.stop()
    [row] = report_json(server.db, "--by", "kind")
    assert (row["group"]["kind"], row["llm_calls"], row["cost_usd"]) == (None, 1, pytest.approx(float(OPENAI_COST)))


def test_unitcosts_own_spans_come_through_unchanged(serve: Any, make_store: Any, openai_client: Any) -> None:
    from conftest import PROMPT, ChatServer, usage_block

    import unitcost

    server = serve()
    local = make_store(otlp_endpoint=server.url, metrics=False)
    client = openai_client(ChatServer(usage=usage_block(1000, 200, cached=400)))
    with unitcost.task("support_ticket", key="T-1", attributes={"customer": "acme"}):
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        unitcost.outcome("resolved")
    assert unitcost.flush()
    unitcost.shutdown()
    server.stop()
    received, original = report_json(server.db), report_json(local)
    assert received == original and received[0]["succeeded"] == 1
    tasks = json.loads(run_cli("tasks", "--db", str(server.db), "--format", "json").stdout)
    assert tasks[0]["kind"] == "support_ticket"


def test_bad_requests_are_refused_with_the_right_status(serve: Any) -> None:
    server = serve()
    assert server.post(b"hello", "text/plain")[0] == 415
    assert server.post(b"\xff\x00garbage", "application/x-protobuf")[0] == 400
    assert server.post(b"{not json", "application/json")[0] == 400
    assert server.post(b"", "application/x-protobuf", path="/v2/spans")[0] == 404
    # Metrics and logs sent to the same endpoint are accepted (and ignored), so SDKs log no errors.
    assert server.post(b"", "application/x-protobuf", path="/v1/metrics") == (200, b"")
    assert server.post(b"", "application/x-protobuf")[0] == 200  # an empty request is a valid one
    server.stop()


def test_a_token_is_required_when_one_is_set(serve: Any) -> None:
    server = serve("--token", "s3cret")
    body = openinference_trace().protobuf()
    assert server.post(body, "application/x-protobuf")[0] == 401
    assert server.post(body, "application/x-protobuf", Authorization="Bearer wrong")[0] == 401
    assert server.post(body, "application/x-protobuf", Authorization="Bearer s3cret")[0] == 200
    server.stop()
    assert report_json(server.db)[0]["llm_calls"] == 1


def test_listening_beyond_this_machine_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNITCOST_SERVE_TOKEN", raising=False)
    # Refused before anything is bound: no non-loopback address is ever opened by this test.
    result = run_cli("serve", "--host", "0.0.0.0", "--port", "0", expect=2)
    assert "--token" in result.output
    for host in ("0.0.0.0", "10.1.2.3", "::", "example.com"):
        assert not is_loopback(host)
        with pytest.raises(ValueError, match="token"):
            check_bind(host, None)
        check_bind(host, "s3cret")  # with a token it may
    for host in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"):
        assert is_loopback(host)
        check_bind(host, None)


def test_anthropic_input_is_not_counted_twice(serve: Any) -> None:
    """OpenLLMetry and OpenInference put Anthropic's cache tokens inside the prompt count, as the
    conventions do: the store's uncached input is what Anthropic itself calls input_tokens."""
    server = serve()
    server.post(openllmetry_trace().protobuf(), "application/x-protobuf")
    server.stop()
    import sqlite3

    with sqlite3.connect(server.db) as conn:
        row = conn.execute(
            "SELECT input_tokens, cache_read_tokens, cache_write_tokens, output_tokens FROM calls WHERE provider = ?",
            ("anthropic",),
        ).fetchone()
    u = ANTHROPIC_USAGE
    assert row == (u["input_tokens"], u["cache_read_input_tokens"], u["cache_creation_input_tokens"],
                   u["output_tokens"])


def test_a_store_that_refuses_the_spans_asks_the_client_to_retry() -> None:
    import threading

    from unitcost.exporters.receiver import OTLPReceiver

    server = OTLPReceiver(("127.0.0.1", 0), lambda spans: False)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        request = urllib.request.Request(url, data=openinference_trace().protobuf(), method="POST",
                                         headers={"Content-Type": "application/x-protobuf"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "1"
    finally:
        server.shutdown()
        server.server_close()


def test_waiting_spans_are_bounded() -> None:
    from unitcost.exporters.receiver import TraceGrouper

    grouper = TraceGrouper(root_wait=3600, max_traces=5)
    stored = []
    for _ in range(20):  # calls whose root never comes, each in a trace of its own
        spans = openinference_trace().spans.get_finished_spans()
        stored += grouper.add([s for s in spans if s.parent is not None])
        assert len(grouper._traces) <= 5
    assert len(stored) == 15 * 2  # the oldest traces' calls and tools were stored, outside any task
    assert all("unitcost.task.id" not in (s.attributes or {}) for s in stored)
