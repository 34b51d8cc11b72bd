"""Shared fixtures and helpers.

- Every test runs with ``UNITCOST_STRICT=1`` (unitcost's own errors raise instead of being logged),
  its own ``UNITCOST_DB`` and its own working directory, so no user store and no ``unitcost.toml``
  from the outside leak in.
- ``store_db`` configures unitcost with a fresh SQLite store and instruments the openai SDK. The
  global TracerProvider can be set once per process, so the fixture configures per test (unitcost
  reuses its provider) and shuts the pipeline down afterwards.
- The openai client is the real one, over a ``MockTransport`` of the HTTP library the installed SDK
  is built on (`http_library`: httpx2 or httpx): no test touches the network. The bodies below
  follow what api.openai.com sends (ids, usage blocks with cache and reasoning details,
  ``usage: null`` on stream chunks when usage was asked for).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import openai
import pytest
from click.testing import CliRunner, Result
from genai_prices import Usage, calc_price

import unitcost
from unitcost.cli.main import cli

# A suite started in the background by a shell without job control (`nohup .ci/run &`) inherits
# SIGINT ignored, and so would every program the tests start: Python then installs no
# KeyboardInterrupt handler, and the tests that stop `unitcost serve` or a busy program with Ctrl-C
# wait out their timeouts. A signal handled here is back to its default in a child after exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# tests/frameworks/ runs in a virtual environment of its own, with the framework packages at fixed
# versions (.ci/frameworks sets UNITCOST_FRAMEWORKS=1): the main suite does not collect it.
collect_ignore_glob = [] if os.environ.get("UNITCOST_FRAMEWORKS") else ["frameworks/*"]

GPT4O_MINI = "gpt-4o-mini-2024-07-18"
O4_MINI = "o4-mini-2025-04-16"
CREATED = 1764061200  # 2025-11-25T09:00:00Z

PROMPT = [
    {"role": "system", "content": "You are the support assistant of Acme Cloud."},
    {"role": "user", "content": "Where is my order #1042? It was due on Monday."},
]


# --- the HTTP library of each SDK -------------------------------------------------------------------


def http_library(sdk: str) -> ModuleType:
    """The HTTP library the installed ``sdk`` (``"openai"``, ``"anthropic"``) is built on: httpx2 for
    openai >= 3 and anthropic >= 1, httpx before. A client takes an ``http_client`` of that library
    only, and a ``MockTransport`` handler answers with its ``Response``. Read from the SDK's own
    imports, not from its version number."""
    base = importlib.import_module(f"{sdk}._base_client")
    for name in ("httpx2", "httpx"):
        library = vars(base).get(name)
        if isinstance(library, ModuleType):
            return library
    raise RuntimeError(f"{sdk}._base_client imports neither httpx2 nor httpx")


def mock_http_client(sdk: str, handler: Callable[[Any], Any], *, is_async: bool = False) -> Any:
    """An HTTP client of ``sdk``'s library whose requests go to ``handler`` (request -> response)."""
    http = http_library(sdk)
    transport = http.MockTransport(handler)
    return http.AsyncClient(transport=transport) if is_async else http.Client(transport=transport)


openai_http = http_library("openai")


# --- isolation -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("UNITCOST_STRICT", "1")
    monkeypatch.setenv("UNITCOST_DB", str(tmp_path / "user-default.db"))
    # Energy estimates (on by default with ecologits installed, as the dev extra has it) cost each
    # process that configures unitcost ecologits' import; the tests that check them turn them on.
    monkeypatch.setenv("UNITCOST_ENERGY", "0")
    for name in (
        "UNITCOST_PRICES",
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


class _Errors(logging.Handler):
    """Collects ERROR records. The batch processor logs (not raises) what the exporter raises, so
    under UNITCOST_STRICT an exporter bug would otherwise only show as missing rows."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(params=["thread", "process"])
def store_writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once with each store writer (`configure(store_writer=...)`), chosen through the
    environment the test's programs inherit."""
    monkeypatch.setenv("UNITCOST_STORE_WRITER", request.param)
    return str(request.param)


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``make_store(**configure_kwargs) -> db path``: configure unitcost on a fresh store, instrumented."""
    errors = _Errors()
    otel_logger = logging.getLogger("opentelemetry")
    otel_logger.addHandler(errors)
    made: list[Path] = []

    def configure(**kwargs: Any) -> Path:
        path = tmp_path / f"store{len(made)}.db"
        unitcost.configure(service_name="tests", db=path, **kwargs)
        unitcost.instrument()
        made.append(path)
        return path

    try:
        yield configure
    finally:
        unitcost.uninstrument()
        unitcost.shutdown()
        otel_logger.removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


@pytest.fixture
def store_db(make_store: Callable[..., Path]) -> Path:
    return make_store()


# --- reading the store ------------------------------------------------------------------------------


def store_rows(db: Path, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Flush unitcost, then run ``sql`` (or ``SELECT * FROM <table>`` for a bare table name)."""
    assert unitcost.flush(), "unitcost.flush() did not write everything"
    if " " not in sql:
        sql = f"SELECT * FROM {sql} ORDER BY rowid"
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, params)]


def run_cli(*args: str, expect: int | None = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if expect is not None:
        assert result.exit_code == expect, result.output
    return result


def report_json(db: Path, *args: str) -> list[dict[str, Any]]:
    """``unitcost report --format json`` rows (flushes first so every span is in the store)."""
    assert unitcost.flush()
    return json.loads(run_cli("report", "--db", str(db), "--format", "json", *args).stdout)


# --- prices -------------------------------------------------------------------------------------------


def genai_cost(model: str, *, prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> Decimal:
    """What genai-prices itself says a Chat Completions call costs (OpenTelemetry-meaning totals)."""
    usage = Usage(
        input_tokens=prompt, cache_read_tokens=cached, output_tokens=completion, output_reasoning_tokens=reasoning
    )
    return calc_price(usage, model, provider_id="openai").total_price


def usd_json(value: Decimal) -> float:
    """Money as the JSON report writes it: rounded to 9 places in Decimal, then a float."""
    return float(value.quantize(Decimal("1e-9")))


# --- OpenAI bodies ------------------------------------------------------------------------------------


def usage_block(prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_body(
    *, model: str = GPT4O_MINI, content: str = "Your order ships today.", usage: dict[str, Any] | None = None,
    id: str = "chatcmpl-BfX2kq9TnYw3Lr7ZpA1cD4eF5gH6",
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": "fp_560af6e559",
    }


def stream_chunks(
    pieces: Sequence[str], *, model: str = GPT4O_MINI, usage: dict[str, Any] | None = None,
    id: str = "chatcmpl-BfX3mR8sUvW2xY4zA6bC8dE0fG1h",
) -> list[dict[str, Any]]:
    """The chunks of a streamed completion. With ``usage``, as when the request asked for it:
    ``"usage": null`` on every chunk, then one last chunk with ``choices: []`` and the usage."""

    def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "service_tier": "default", "system_fingerprint": "fp_560af6e559", "choices": choices,
        }
        if usage is not None:
            body["usage"] = None
        return body

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    chunks = [chunk(choice({"role": "assistant", "content": "", "refusal": None}))]
    chunks += [chunk(choice({"content": piece})) for piece in pieces]
    chunks.append(chunk(choice({}, "stop")))
    if usage is not None:
        chunks.append({**chunk([]), "usage": usage})
    return chunks


def sse_response(chunks: Sequence[dict[str, Any]]) -> Any:
    data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return openai_http.Response(200, content=data.encode(), headers={"content-type": "text/event-stream"})


def error_response(status: int, message: str, type_: str, code: str | None = None) -> Any:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return openai_http.Response(status, json=body)


class ChatServer:
    """Answers Chat Completions as api.openai.com does, and keeps each request body it received.

    Streams end with the usage chunk only when the request asked for it
    (``stream_options={"include_usage": true}``) and ``honour_include_usage`` is on.
    """

    def __init__(
        self, *, model: str = GPT4O_MINI, usage: dict[str, Any] | None = None,
        pieces: Sequence[str] = ("Your order ", "ships ", "today."), honour_include_usage: bool = True,
    ) -> None:
        self.model = model
        self.usage = usage if usage is not None else usage_block(120, 9)
        self.pieces = pieces
        self.honour_include_usage = honour_include_usage
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: Any) -> Any:
        body = json.loads(request.content)
        self.requests.append(body)
        if body.get("stream"):
            wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            usage = self.usage if wants_usage and self.honour_include_usage else None
            return sse_response(stream_chunks(self.pieces, model=self.model, usage=usage))
        body = chat_body(model=self.model, content="".join(self.pieces), usage=self.usage)
        return openai_http.Response(200, json=body)


def chat_helpers(client: Any) -> Any:
    """Where a client's Chat Completions ``parse`` and ``stream`` helpers are: ``client.chat.completions``
    from openai 1.92, ``client.beta.chat.completions`` before (unitcost patches both)."""
    completions = client.chat.completions
    return completions if hasattr(completions, "parse") else client.beta.chat.completions


@pytest.fixture
def openai_client() -> Iterator[Callable[..., Any]]:
    """``openai_client(handler, is_async=False, **client_kwargs)``: a real openai client whose HTTP
    requests go to ``handler`` (a request -> response function of `openai_http`)."""
    sync_clients: list[openai.OpenAI] = []

    def make(handler: Callable[[Any], Any], *, is_async: bool = False, **kwargs: Any) -> Any:
        http_client = mock_http_client("openai", handler, is_async=is_async)
        if is_async:
            return openai.AsyncOpenAI(api_key="sk-test", http_client=http_client, **kwargs)
        client = openai.OpenAI(api_key="sk-test", http_client=http_client, **kwargs)
        sync_clients.append(client)
        return client

    yield make
    for client in sync_clients:
        client.close()


# --- PostgreSQL -----------------------------------------------------------------------------------------


def import_or_fail(name: str) -> Any:
    """``pytest.importorskip`` for the SDKs the dev extra installs: under CI a missing one fails the
    test (it is a real part the suite must exercise), elsewhere it skips."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required under CI (pip install -e '.[dev]'): {exc}", pytrace=False)
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')", allow_module_level=True)


def _pg_missing(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}: under CI a PostgreSQL test fails rather than skips (.ci/run starts the server)")
    pytest.skip(why)


def pg_server_url() -> str:
    """The test server's URL ($UNITCOST_TEST_PG_URL, set by .ci/run via .ci/postgres); fails under CI,
    skips elsewhere, when it is not set or the server does not answer."""
    url = os.environ.get("UNITCOST_TEST_PG_URL")
    if not url:
        _pg_missing("UNITCOST_TEST_PG_URL is not set (eval \"$(.ci/postgres up)\" starts a scratch server)")
    try:
        import psycopg
    except ImportError:
        _pg_missing("psycopg is not installed (pip install -e '.[dev]')")
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        _pg_missing(f"the PostgreSQL server at UNITCOST_TEST_PG_URL does not answer: {exc}")
    return str(url)


def pg_url_with_schema(url: str, schema: str) -> str:
    """``url`` whose sessions use ``schema`` (libpq's ``options``): a store of its own in one database."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL store for this test: a schema of its own on the test server, dropped after."""
    import uuid

    import psycopg

    server = pg_server_url()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield pg_url_with_schema(server, schema)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def make_older_postgres_store(conn: Any, migrations: int = 4) -> None:
    """The store on ``conn`` (a psycopg connection) as an older unitcost left it: the first ``migrations``
    of this one's, on record."""
    from unitcost.store.postgres_schema import MIGRATIONS

    with conn.transaction():
        conn.execute("CREATE TABLE _unitcost_migrations (migration_set TEXT NOT NULL, name TEXT NOT NULL, "
                     "applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), applied_order BIGINT GENERATED ALWAYS AS "
                     "IDENTITY, PRIMARY KEY (migration_set, name))")
        for name, ddl in MIGRATIONS[:migrations]:
            for statement in ddl.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO _unitcost_migrations (migration_set, name) VALUES ('unitcost', %s)", (name,))
