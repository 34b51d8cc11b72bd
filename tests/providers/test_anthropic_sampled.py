"""An application that samples its traces at 10%: the anthropic SDK's own span of a call exists only
when sampled in, yet every call must be counted once, sampled or not.

Runs in a subprocess, because OpenTelemetry lets a process set the global TracerProvider once and
here the application must be the one that sets it (as in tests/pipeline/test_sampler.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from providers.anthropic_fixtures import SDK_TRACES

APP = textwrap.dedent(
    """
    import json, sqlite3, sys

    sys.path.insert(0, sys.argv[2])  # tests/, for providers.anthropic_fixtures and sampled_app
    import anthropic
    from providers.anthropic_fixtures import REQUEST, MessagesServer
    from conftest import mock_http_client
    from opentelemetry import trace
    from sampled_app import install_app_provider

    import unitcost

    # The application's own tracing, set up before unitcost.
    app_provider, exported = install_app_provider()

    unitcost.configure(service_name="sampled-app", db=sys.argv[1])
    unitcost.instrument()
    client = anthropic.Anthropic(api_key="sk-ant-test", max_retries=0,
                                 http_client=mock_http_client("anthropic", MessagesServer()))
    for i in range(20):
        client.messages.create(**REQUEST)
        with client.messages.stream(**REQUEST) as stream:
            stream.until_done()
    unitcost.flush()

    db = sqlite3.connect(sys.argv[1])
    calls = db.execute("SELECT count(*), sum(input_tokens), sum(web_search_requests), sum(cost_pico),"
                       " count(DISTINCT span_id) FROM calls").fetchone()
    sdk_ids = sorted(format(s.context.span_id, "016x") for s in exported.get_finished_spans()
                     if s.instrumentation_scope.name == "com.anthropic.sdk.python")
    stored_sdk = db.execute(
        "SELECT count(*) FROM calls WHERE span_id IN (%s)" % ",".join("?" * len(sdk_ids)), sdk_ids
    ).fetchone()[0] if sdk_ids else 0
    llm_ids = [format(s.context.span_id, "016x") for s in exported.get_finished_spans()
               if (s.attributes or {}).get("gen_ai.operation.name") == "chat"]
    stored_llm = db.execute(
        "SELECT count(*) FROM calls WHERE span_id IN (%s)" % ",".join("?" * len(llm_ids)), llm_ids
    ).fetchone()[0]
    print(json.dumps({"calls": calls, "sdk_spans_exported": len(sdk_ids), "sdk_spans_stored": stored_sdk,
                      "llm_spans_exported": len(llm_ids), "llm_spans_exported_stored": stored_llm}))
    """
)


@pytest.mark.skipif(not SDK_TRACES, reason="this anthropic release makes no span of its own to sample")
def test_every_call_counted_once_under_a_10_percent_sampler(tmp_path):
    db = tmp_path / "sampled.db"
    tests_dir = str(Path(__file__).parents[1])
    done = subprocess.run(
        [sys.executable, "-c", APP, str(db), tests_dir], capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "UNITCOST_STRICT": "1", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    count, uncached, searches, cost, distinct = result["calls"]
    assert count == distinct == 40  # every call once: 20 plain, 20 streamed
    assert (uncached, searches, cost) == (40 * 1200, 40 * 2, 40 * 57_350_000_000)
    # The SDK traced the sampled-in calls (about one in ten: unitcost's own spans take trace ids
    # from the same generator); the store's rows for those calls are the SDK's spans themselves.
    assert 1 <= result["sdk_spans_exported"] < 40
    assert result["sdk_spans_stored"] == result["sdk_spans_exported"]
    # What the application exports is its sampled-in share, each call once (an SDK span, or
    # unitcost's own span for a call the SDK did not trace), and each of them is a row in the store.
    assert 1 <= result["llm_spans_exported"] < 40
    assert result["llm_spans_exported_stored"] == result["llm_spans_exported"]
