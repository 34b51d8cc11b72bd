"""A host program that leaves streams open when it exits: run by test_guarantees_open_streams.py.

    python open_stream_app.py DB [fork]

Inside task "ticket" T-openai it starts an OpenAI Chat Completions stream, inside T-anthropic an
Anthropic Messages stream (the real clients over in-memory transports, the bodies of
tests/conftest.py and tests/providers/anthropic_fixtures.py), reads two chunks of each, keeps both
streams in a global, and exits normally. With ``fork``, it first forks a child that shuts unitcost
down and exits while the parent's streams are open in its copy of memory: the child must not record
or export the parent's calls. Every span unitcost exports is also written to DB.jsonl. Prints one
JSON line: the chunks each stream gave.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: conftest and providers/

import anthropic  # noqa: E402
import openai  # noqa: E402
from conftest import PROMPT, mock_http_client, sse_response, stream_chunks  # noqa: E402
from providers import anthropic_fixtures as claude  # noqa: E402

import unitcost  # noqa: E402
from unitcost.exporters import JsonlSpanExporter  # noqa: E402

db = sys.argv[1]
# Every span unitcost exports, one JSON line each, beside the store: a call exported twice shows there.
unitcost.configure(service_name="open-streams", db=db, exporters=[JsonlSpanExporter(db + ".jsonl")])
unitcost.instrument()

pieces = ["Your order ", "ships ", "today from our Dublin warehouse, ", "tracking number 1Z999AA10123456784."]
openai_client = openai.OpenAI(
    api_key="sk-test", max_retries=0,
    http_client=mock_http_client("openai", lambda request: sse_response(
        stream_chunks(pieces, usage={"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160})
    )),
)
anthropic_client = anthropic.Anthropic(
    api_key="sk-ant-test", max_retries=0,
    http_client=mock_http_client("anthropic", claude.MessagesServer()),
)


@unitcost.task("ticket", key="T-openai")
def start_openai() -> object:
    return openai_client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)


@unitcost.task("ticket", key="T-anthropic")
def start_anthropic() -> object:
    return anthropic_client.messages.create(**claude.REQUEST, stream=True)


kept = [start_openai(), start_anthropic()]
seen = [[type(next(stream)).__name__ for _ in range(2)] for stream in kept]  # two chunks each

if len(sys.argv) > 2 and sys.argv[2] == "fork":
    child = os.fork()
    if child == 0:
        # A child that shuts unitcost down (as a normal exit does): the open streams are its parent's.
        unitcost.shutdown()
        os._exit(0)
    os.waitpid(child, 0)

print(json.dumps(seen), flush=True)
# Exits normally with both streams still referenced by `kept`, neither exhausted nor closed.
