"""Nothing on a unitcost background thread imports a module.

A first import on the store writer's thread raced with the host's own imports (openai 2.x found
httpx2 half initialised: tests/providers/test_openai_first_export.py) and, under a busy caller, stalled the
writer for seconds on the GIL. unitcost.pipeline.preload loads everything when unitcost is configured. This
test watches every import a non-main thread starts (a finder first on ``sys.meta_path``) in a fresh
interpreter running a workload that takes every writer path: the store, the export processor with
its enriching exporter, plain and streamed calls, a model genai-prices prices only by its own code
path, an unknown model, a price-file model priced by time, tools, inline and late outcomes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

APP = textwrap.dedent(
    """
    import importlib.abc, json, sys, threading, time

    started = []  # (thread, module) for every import a thread other than the main one starts

    class Watch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if threading.current_thread() is not threading.main_thread():
                started.append((threading.current_thread().name, name))
            return None

    sys.meta_path.insert(0, Watch())
    import io
    import unitcost
    from unitcost.exporters import JsonlSpanExporter

    unitcost.configure(service_name="imports", db=sys.argv[1], price_file=sys.argv[2],
                       exporters=[JsonlSpanExporter(io.StringIO())])
    unitcost.instrument()
    search = unitcost.tool("search", cost=0.001)(lambda q: q)
    for i in range(30):
        with unitcost.task("ticket", key=f"T-{i}", attributes={"tier": "gold"}):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1200, output_tokens=80,
                                  cache_read_tokens=1024, reasoning_tokens=30)
            unitcost.record_usage("anthropic", "claude-sonnet-4-5", input_tokens=900, output_tokens=50,
                                  cache_write_tokens=300)
            unitcost.record_usage("google", "gemini-2.5-pro", input_tokens=250_000, output_tokens=10)
            unitcost.record_usage("self-hosted", "llama-local", input_tokens=10, output_tokens=10)
            unitcost.record_usage("nobody", "no-such-model", input_tokens=10, output_tokens=10)
            with unitcost.step("plan"):
                search("order")
            unitcost.outcome("resolved" if i % 2 else "escalated", value=12.5)
        if i % 3 == 0:
            unitcost.record_outcome("reopened", kind="ticket", key=f"T-{i}")
    time.sleep(1.5)  # the writers export on their own threads (a flush would export on this one)
    unitcost.flush()
    unitcost.shutdown()
    print(json.dumps(started))
    """
)


def test_background_threads_import_nothing(store_writer: str, tmp_path: Path) -> None:
    prices = tmp_path / "unitcost.toml"
    prices.write_text('[[price]]\nmodel = "llama-local"\nhourly_usd = 2.0\n', encoding="utf-8")
    script = tmp_path / "app.py"
    script.write_text(APP, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "store.db"), str(prices)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    started = json.loads(done.stdout.strip().splitlines()[-1])
    assert started == []
    assert (tmp_path / "store.db").stat().st_size > 0
