"""An application that samples its own traces at 10% must not make unitcost's costs 10x too low.

It runs in a subprocess: OpenTelemetry lets a process set the global TracerProvider once, and here
the application (not unitcost, not the other tests) must be the one that sets it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

APP = textwrap.dedent(
    """
    import json, sqlite3, sys

    sys.path.insert(0, sys.argv[2])  # tests/, for conftest
    import openai
    from conftest import mock_http_client, openai_http
    from opentelemetry import trace
    from sampled_app import install_app_provider

    import unitcost

    # The application's own tracing, set up before unitcost.
    app_provider, exported = install_app_provider()

    db = sys.argv[1]
    unitcost.configure(service_name="sampled-app", db=db)
    unitcost.instrument()

    def handler(request):
        return openai_http.Response(200, json={
            "id": "chatcmpl-BfX2kq9TnYw3Lr7ZpA1cD4eF5gH6", "object": "chat.completion", "created": 1764061200,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
                      "prompt_tokens_details": {"cached_tokens": 200},
                      "completion_tokens_details": {"reasoning_tokens": 100}},
        })

    client = openai.OpenAI(api_key="sk-test", http_client=mock_http_client("openai", handler))
    for i in range(50):
        with unitcost.task("support_ticket", key=f"T-{i}"):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert unitcost.flush()

    conn = sqlite3.connect(db)
    print(json.dumps({
        "provider_kept": trace.get_tracer_provider() is app_provider,
        "runs": conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
        "calls": conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0],
        "cost_pico": conn.execute("SELECT SUM(cost_pico) FROM calls").fetchone()[0],
        "exported": sorted(s.attributes.get("unitcost.span.type") for s in exported.get_finished_spans()),
        "exported_all_sampled": all(s.context.trace_flags.sampled for s in exported.get_finished_spans()),
    }))
    unitcost.shutdown()
    """
)


def test_store_sees_every_call_while_the_app_exports_only_its_sample(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(APP)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store.db"), str(Path(__file__).parents[1])],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    assert result["provider_kept"]  # unitcost added itself to the app's provider, did not replace it
    assert (result["runs"], result["calls"]) == (50, 50)  # the store: every task and every call
    assert result["cost_pico"] == 50 * 435_000_000
    # The app's exporter: only the 5 sampled traces, each a task span and its LLM call span.
    assert result["exported"] == ["llm"] * 5 + ["task"] * 5
    assert result["exported_all_sampled"]
