"""Export to a real OTLP receiver that unitcost did not write, and read the data back: Arize Phoenix.

Phoenix (``pip install arize-phoenix``) runs locally and offline, stores OTLP traces (HTTP and gRPC)
and answers for them over its REST API. Its dependencies conflict with unitcost's (it pins an older
anthropic), so it lives in a virtual environment of its own: ``.ci/run`` makes one and points
``UNITCOST_PHOENIX`` at its ``phoenix`` command. The test starts Phoenix itself, bound to 127.0.0.1,
with a temporary working directory, and stops it.

Where Phoenix cannot start the test is skipped, except when ``CI`` is set: there it fails, so CI can
never be green without it. Locally: ``bash .ci/phoenix`` (or set UNITCOST_PHOENIX).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import GPT4O_MINI, PROMPT, ChatServer, genai_cost, run_cli, usage_block

import unitcost
from unitcost.common import attributes as A

CALL_COST = genai_cost(GPT4O_MINI, prompt=1000, completion=200, cached=400)
TOOL_COST = Decimal("0.002")
DEFAULT_PHOENIX = Path("/tmp/unitcost-phoenix-venv/bin/phoenix")  # where .ci/phoenix puts it


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"Phoenix is required in CI: {reason}")
    pytest.skip(f"Phoenix unavailable: {reason} (run: bash .ci/phoenix)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class Phoenix:
    def __init__(self, command: str, workdir: Path) -> None:
        self.http_port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.log = workdir / "phoenix.log"
        env = {
            **os.environ,
            "PHOENIX_WORKING_DIR": str(workdir / "phoenix"),
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(self.http_port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port),
            "PHOENIX_TELEMETRY_ENABLED": "false",
            "PHOENIX_DISABLE_AGENT_ASSISTANT": "true",
            "PHOENIX_AGENTS_DISABLE_BASH": "true",
            "PHOENIX_AGENTS_DISABLE_WEB_ACCESS": "true",
            "PHOENIX_AGENTS_DISABLE_GITHUB": "true",
        }
        for name in [n for n in env if n.startswith("OTEL_")]:
            del env[name]
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([command, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=workdir, start_new_session=True)

    def wait_until_up(self, timeout: float = 240.0) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"phoenix exited with {self.proc.returncode}: {self.tail()}"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return None
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        return f"phoenix did not answer within {timeout:.0f}s: {self.tail()}"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def spans(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            url = f"{self.url}/v1/projects/default/spans?limit=100" + (f"&cursor={cursor}" if cursor else "")
            page = get_json(url)
            found.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    def wait_for(self, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Phoenix ingests in the background: poll until it holds ``count`` spans."""
        deadline = time.monotonic() + timeout
        spans: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                spans = self.spans()
            except urllib.error.HTTPError as exc:
                if exc.code != 404:  # no project yet: nothing ingested so far
                    raise
            if len(spans) >= count:
                return spans
            time.sleep(0.5)
        raise AssertionError(f"Phoenix holds {len(spans)} spans, expected {count}: {self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def phoenix(tmp_path: Path) -> Iterator[Phoenix]:
    command = os.environ.get("UNITCOST_PHOENIX") or (str(DEFAULT_PHOENIX) if DEFAULT_PHOENIX.exists() else None)
    command = command or shutil.which("phoenix")
    if not command or not Path(command).exists():
        unavailable(f"no phoenix command at {command!r} (set UNITCOST_PHOENIX)")
    assert command is not None
    server = Phoenix(command, tmp_path)
    try:
        problem = server.wait_until_up()
        if problem:
            unavailable(problem)
        yield server
    finally:
        server.stop()


@unitcost.tool("search_kb", cost=TOOL_COST)
def search_kb(query: str) -> list[str]:
    return ["kb-1"]


def ticket(client: Any, key: str) -> Any:
    with unitcost.task("support_ticket", key=key) as run:
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        search_kb("order status")
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        unitcost.outcome("escalated")
    return run


def spans_of(spans: list[dict[str, Any]], run_id: str) -> dict[str, Any]:
    [task] = [s for s in spans if s["context"]["span_id"] == run_id]
    trace = [s for s in spans if s["context"]["trace_id"] == task["context"]["trace_id"]]
    return {
        "task": task,
        "calls": [s for s in trace if s["attributes"].get(A.SPAN_TYPE) == "llm"],
        "tools": [s for s in trace if s["attributes"].get(A.SPAN_TYPE) == "tool"],
        "outcomes": [s for s in trace if s["attributes"].get(A.SPAN_TYPE) == "outcome"],
    }


def test_phoenix_stores_unitcosts_spans_costs_and_outcomes(
    phoenix: Phoenix, make_store: Any, openai_client: Any
) -> None:
    client = openai_client(ChatServer(usage=usage_block(1000, 200, cached=400)))
    # Over OTLP/HTTP, as OTEL_EXPORTER_OTLP_ENDPOINT would send it.
    db = make_store(otlp_endpoint=phoenix.url, metrics=False)
    http_run = ticket(client, "T-1")
    assert unitcost.flush()
    unitcost.record_outcome("resolved", kind="support_ticket", key="T-1", value=12)
    assert unitcost.flush()
    # Over OTLP/gRPC, to Phoenix's gRPC port.
    unitcost.configure(service_name="tests", db=db, otlp_endpoint=f"http://127.0.0.1:{phoenix.grpc_port}",
                       otlp_protocol="grpc", metrics=False)
    grpc_run = ticket(client, "T-2")
    assert unitcost.flush()
    unitcost.shutdown()

    spans = phoenix.wait_for(9)  # 4 per ticket, and the late outcome
    for run in (http_run, grpc_run):
        got = spans_of(spans, run.id)
        task, calls = got["task"], got["calls"]
        assert task["name"] == "invoke_agent support_ticket" and task["parent_id"] is None
        attrs = task["attributes"]
        assert attrs[A.TASK_COST_USD] == pytest.approx(float(2 * CALL_COST + TOOL_COST), rel=1e-9)
        assert (attrs[A.TASK_LLM_CALLS], attrs[A.TASK_TOOL_CALLS]) == (2, 1)
        assert attrs[A.TASK_TOKENS_PREFIX + "cache_read"] == 800
        [event] = [e for e in task["events"] if e["name"] == A.EVALUATION_EVENT]
        assert event["attributes"][A.EVALUATION_LABEL] == "escalated"
        assert event["attributes"][A.EVALUATION_SCORE] == 0.0

        assert len(calls) == 2 and all(c["parent_id"] == run.id for c in calls)
        call = calls[0]["attributes"]
        assert call[A.COST_USD] == pytest.approx(float(CALL_COST), rel=1e-9)
        assert (call[A.INPUT_TOKENS], call[A.OUTPUT_TOKENS], call[A.CACHE_READ_TOKENS]) == (1000, 200, 400)
        assert (call[A.PROVIDER], call[A.RESPONSE_MODEL]) == ("openai", GPT4O_MINI)
        assert got["tools"][0]["attributes"][A.COST_USD] == pytest.approx(0.002)

    # The outcome recorded after the task ended: in the task's trace, under the task span.
    [late] = spans_of(spans, http_run.id)["outcomes"]
    assert late["parent_id"] == http_run.id
    [event] = late["events"]
    assert (event["name"], event["attributes"][A.EVALUATION_LABEL]) == (A.EVALUATION_EVENT, "resolved")

    # Replaying the store gives the same span ids: Phoenix still holds each span once.
    run_cli("export", "--db", str(db), "--format", "otlp", "--endpoint", phoenix.url)
    time.sleep(3)
    again = phoenix.wait_for(9)
    ids = [s["context"]["span_id"] for s in again]
    assert len(ids) == len(set(ids)) == 9
