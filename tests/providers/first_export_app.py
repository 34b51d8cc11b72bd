"""A host program that makes LLM calls flat out while unitcost's store writer makes its first export.

Run as a script by tests/providers/test_openai_first_export.py and tests/providers/test_anthropic_first_export.py, in a
fresh interpreter, because the hazard is a module's first import: nothing of genai-prices (nor the
tests' conftest, which imports it) may be loaded before unitcost loads it.

    python first_export_app.py openai|anthropic DB SECONDS

It calls for SECONDS and until at least MIN_CALLS calls were made (a loaded machine is slow), at
most LIMIT_S seconds in all.

Prints one JSON line: calls made, calls that raised (with the first error), tasks stored.
"""

from __future__ import annotations

import importlib
import json
import sqlite3
import sys
import threading
import time
from types import ModuleType

sdk_name, db, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
sdk = importlib.import_module(sdk_name)

import unitcost  # noqa: E402 - the SDK first, as a host program imports it


def http_library() -> ModuleType:
    # The HTTP library the installed SDK is built on (httpx2 or httpx), as tests/conftest.py finds it.
    base = importlib.import_module(f"{sdk_name}._base_client")
    return next(v for n in ("httpx2", "httpx") if isinstance(v := vars(base).get(n), ModuleType))


CHAT = {
    "id": "chatcmpl-CAbc123", "object": "chat.completion", "created": 1764061200,
    "model": "gpt-4o-mini-2024-07-18", "system_fingerprint": "fp_560af6e559",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "Your order ships today.", "refusal": None}}],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 40, "total_tokens": 1240,
              "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}},
}
MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
    "model": "claude-sonnet-4-6", "stop_reason": "end_turn", "stop_sequence": None,
    "content": [{"type": "text", "text": "Your order ships today."}],
    "usage": {"input_tokens": 1200, "output_tokens": 40, "cache_read_input_tokens": 0,
              "cache_creation_input_tokens": 0},
}

http = http_library()
body = CHAT if sdk_name == "openai" else MESSAGE
client_http = http.Client(transport=http.MockTransport(lambda request: http.Response(200, json=body)))
if sdk_name == "openai":
    client = sdk.OpenAI(api_key="sk-test", max_retries=0, http_client=client_http)

    def call() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
else:
    client = sdk.Anthropic(api_key="sk-ant-test", max_retries=0, http_client=client_http)

    def call() -> None:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=100, messages=[{"role": "user", "content": "Hi"}])


unitcost.configure(service_name="first-export", db=db)
unitcost.instrument()
made = failed = 0
first_error = None
lock = threading.Lock()


MIN_CALLS = 200
LIMIT_S = 90.0


def worker(until: float) -> None:
    global made, failed, first_error
    limit = time.monotonic() + LIMIT_S
    while (time.monotonic() < until or made < MIN_CALLS) and time.monotonic() < limit:
        try:
            with unitcost.task("ticket"):
                call()
        except Exception as exc:  # noqa: BLE001 - counted: the test asserts there are none
            with lock:
                failed += 1
                first_error = first_error or f"{type(exc).__name__}: {exc}"
        with lock:
            made += 1


until = time.monotonic() + seconds
threads = [threading.Thread(target=worker, args=(until,)) for _ in range(2)]
for thread in threads:
    thread.start()
worker(until)
for thread in threads:
    thread.join()
unitcost.shutdown()
stored = sqlite3.connect(db).execute("SELECT count(*) FROM runs").fetchone()[0]
print(json.dumps({"made": made, "failed": failed, "first_error": first_error, "stored": stored}))
