"""The application side of tests/frameworks/test_coexist_openai.py, run in a subprocess (a process
sets its global TracerProvider once): another OpenAI instrumentation and unitcost in one process.

argv: store path, instrumentation ("openai-v2" | "openllmetry"), order ("unitcost-first" |
"unitcost-last"), sampling ("all" | "1%"). Prints what the store holds and what the caller saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys

os.environ["TRACELOOP_TRACE_CONTENT"] = "false"  # OpenLLMetry records prompts by default

import openai  # noqa: E402
from conftest import ChatServer, mock_http_client, usage_block  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: E402

import unitcost  # noqa: E402

db, which, order, sampling = sys.argv[1:5]
exported = InMemorySpanExporter()
provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.01))) if sampling == "1%" else TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exported))
trace.set_tracer_provider(provider)

if which == "openai-v2":
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
else:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

unitcost.configure(service_name="coexist", db=db)
if order == "unitcost-first":  # unitcost's wrapper is the inner one
    unitcost.instrument()
    OpenAIInstrumentor().instrument(tracer_provider=provider)
else:
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    unitcost.instrument()

server = ChatServer(usage=usage_block(1200, 80, cached=400))
client = openai.OpenAI(api_key="sk-test", http_client=mock_http_client("openai", server))
aclient = openai.AsyncOpenAI(api_key="sk-test", http_client=mock_http_client("openai", server, is_async=True))
MESSAGES = [{"role": "user", "content": "Where is my order?"}]
chunks: list[int] = []


async def async_calls() -> None:
    stream = await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks.append(len([c async for c in stream]))
    await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


for i in range(10):
    with unitcost.task("support_ticket", key=f"T-{i}"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        chunks.append(len(list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))))
        client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES).parse()
        asyncio.run(async_calls())
assert unitcost.flush()

conn = sqlite3.connect(db)
print(json.dumps({
    "calls": conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0],
    "calls_in_no_task": conn.execute("SELECT COUNT(*) FROM calls WHERE run_id IS NULL").fetchone()[0],
    "runs": conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0],
    "input_tokens": conn.execute(
        "SELECT SUM(input_tokens + cache_read_tokens), SUM(cache_read_tokens), SUM(output_tokens) FROM calls"
    ).fetchone(),
    "cost_pico": conn.execute("SELECT SUM(cost_pico) FROM calls").fetchone()[0],
    "unpriced": conn.execute("SELECT COUNT(*) FROM calls WHERE cost_pico IS NULL").fetchone()[0],
    "chunks": chunks,
    "foreign_spans_exported": sum(
        1 for s in exported.get_finished_spans() if s.instrumentation_scope.name != "unitcost"
    ),
}))
OpenAIInstrumentor().uninstrument()
unitcost.shutdown()
