"""Guarantee 1, transparency: with unitcost on, an instrumented call returns the same objects, raises
the same exception and yields the same chunks as without it; an error inside unitcost is logged once
and swallowed (raised under ``UNITCOST_STRICT=1`` only); ``configure()`` is the one call that raises.

Each comparison runs the same request twice through the real openai client: once before unitcost is
instrumented, once after.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import traceback
from contextlib import closing
from pathlib import Path

import httpx2
import openai
import pytest
import wrapt
from conftest import PROMPT, ChatServer, error_response, store_rows, usage_block
from opentelemetry.sdk.trace.export import SpanExporter

import unitcost
from unitcost.common import errors as _errors
from unitcost.common.errors import ConfigurationError
from unitcost.pipeline import config as _config

_UNITCOST_DIR = str(Path(unitcost.__file__).parent)
_WRAPT_DIR = str(Path(wrapt.__file__).parent)


@pytest.fixture
def lenient(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """As a user runs: UNITCOST_STRICT unset, and each place's error not yet logged."""
    monkeypatch.delenv("UNITCOST_STRICT", raising=False)
    monkeypatch.setattr(_errors, "_already_logged", set())
    caplog.set_level(logging.WARNING, logger="unitcost")
    return caplog


def internal_errors(caplog: pytest.LogCaptureFixture, where: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "unitcost" and f"internal error in {where};" in r.getMessage()]


def exporter_of_store() -> object:
    (processor,) = [p for p in _config.pipeline().processors if hasattr(p, "drops")]
    return processor._exporter  # type: ignore[attr-defined]


# --- same results, same chunks ---------------------------------------------------------------------


def _calls(client: openai.OpenAI) -> dict[str, object]:
    chat = client.chat.completions
    return {
        "chat": lambda: chat.create(model="gpt-4o-mini", messages=PROMPT),
        "chat stream": lambda: list(chat.create(model="gpt-4o-mini", messages=PROMPT, stream=True)),
        "chat stream with usage": lambda: list(chat.create(
            model="gpt-4o-mini", messages=PROMPT, stream=True, stream_options={"include_usage": True})),
        "parse": lambda: chat.parse(model="gpt-4o-mini", messages=PROMPT),
    }


@pytest.mark.parametrize("name", ["chat", "chat stream", "chat stream with usage", "parse"])
def test_sync_results_and_chunks_are_the_same_with_and_without_unitcost(name, make_store, openai_client):
    client = openai_client(ChatServer(usage=usage_block(120, 9, cached=64)))
    without = _calls(client)[name]()
    make_store()
    with unitcost.task("support_ticket"):
        with_unitcost = _calls(client)[name]()
    assert type(with_unitcost) is type(without)
    items = with_unitcost if isinstance(with_unitcost, list) else [with_unitcost]
    expected = without if isinstance(without, list) else [without]
    assert [type(i) for i in items] == [type(i) for i in expected]  # the SDK's own classes, no proxies
    assert [i.model_dump() for i in items] == [i.model_dump() for i in expected]
    assert items == expected


def test_stream_chunks_are_byte_identical_when_unitcost_asks_for_nothing(make_store, openai_client):
    # By default unitcost asks a stream for its usage chunk and hides that chunk; the server then
    # also sends "usage": null on each chunk (same values, one more field set). With
    # openai_include_usage=False the request and every chunk are exactly what the caller asked for.
    server = ChatServer()
    client = openai_client(server)
    without = [c.to_json() for c in client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)]
    make_store(openai_include_usage=False)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)
    assert isinstance(stream, openai.Stream)  # a transparent proxy: isinstance and __class__ are the SDK's
    assert [c.to_json() for c in stream] == without
    assert server.requests[0] == server.requests[1]


def test_async_results_and_chunks_are_the_same(make_store, openai_client):
    client = openai_client(ChatServer(), is_async=True)

    async def run() -> tuple[object, list[object]]:
        plain = await client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True)
        return plain, [chunk async for chunk in stream]

    plain, chunks = asyncio.run(run())
    make_store()

    async def in_task() -> tuple[object, list[object]]:
        async with unitcost.task("support_ticket"):
            return await run()

    plain2, chunks2 = asyncio.run(in_task())
    assert type(plain2) is type(plain) and plain2 == plain
    assert [type(c) for c in chunks2] == [type(c) for c in chunks] and chunks2 == chunks


# --- same exception, same traceback --------------------------------------------------------------------


def _frames(exc: BaseException) -> list[tuple[str, str, int | None]]:
    """The traceback's frames below the test function, without unitcost's and wrapt's own."""
    frames = traceback.extract_tb(exc.__traceback__)[1:]
    return [
        (f.filename, f.name, f.lineno) for f in frames
        if not f.filename.startswith((_UNITCOST_DIR, _WRAPT_DIR))
    ]


def test_a_failed_sdk_call_raises_the_same_exception_with_the_same_traceback(make_store, openai_client):
    client = openai_client(lambda request: error_response(429, "Rate limit reached", "requests", "rate_limit_exceeded"),
                           max_retries=0)

    def call() -> BaseException:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        except openai.RateLimitError as exc:
            return exc
        raise AssertionError("no error")

    without = call()
    make_store()
    with pytest.raises(openai.RateLimitError), unitcost.task("support_ticket"):  # the task passes it on too
        raise call()
    with_unitcost = call()
    assert type(with_unitcost) is type(without)
    assert (str(with_unitcost), with_unitcost.status_code, with_unitcost.body) == (
        str(without), without.status_code, without.body,
    )
    assert _frames(with_unitcost) == _frames(without)  # every frame of the SDK's, in order, same lines


def test_the_users_exception_is_the_same_object_through_every_kind_of_scope(store_db):
    errors = [ValueError("bad ticket"), KeyError("T-1"), RuntimeError("boom")]

    @unitcost.task("t")
    def plain(err):
        raise err

    @unitcost.tool("search")
    async def coroutine(err):
        raise err

    @unitcost.step("s")
    def generator(err):
        yield 1
        raise err

    def raised(fn) -> BaseException:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001
            return exc
        raise AssertionError("no error")

    for err in errors:
        assert raised(lambda err=err: plain(err)) is err
        assert raised(lambda err=err: asyncio.run(coroutine(err))) is err
        assert raised(lambda err=err: list(generator(err))) is err
        # The frame that raised is still the innermost one.
        assert traceback.extract_tb(err.__traceback__)[-1].line == "raise err"


# --- unitcost's own errors: logged once, swallowed; raised when strict ----------------------------------


def test_an_adapter_bug_is_logged_once_and_the_call_still_returns(lenient, store_db, openai_client, monkeypatch):
    from unitcost.providers import openai_chat

    def broken(usage):
        raise RuntimeError("malformed usage block")

    monkeypatch.setattr(openai_chat, "chat_usage", broken)
    client = openai_client(ChatServer())
    results = [client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT) for _ in range(3)]
    assert all(r.choices[0].message.content == "Your order ships today." for r in results)
    assert len(internal_errors(lenient, "llm call result")) == 1  # once, not once per call
    # The call is still a row: unpriced, because its usage could not be read.
    assert [r["cost_pico"] for r in store_rows(store_db, "calls")] == [None, None, None]


def test_the_same_adapter_bug_raises_under_unitcost_strict(store_db, openai_client, monkeypatch):
    from unitcost.providers import openai_chat

    monkeypatch.setattr(openai_chat, "chat_usage", lambda usage: 1 / 0)
    client = openai_client(ChatServer())
    with pytest.raises(ZeroDivisionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)


def test_a_pricing_failure_keeps_the_tokens(lenient, store_db, openai_client, monkeypatch):
    from unitcost.pricing.book import PriceBook

    def cost(*args, **kwargs):
        raise ArithmeticError("price table broken")

    monkeypatch.setattr(PriceBook, "cost_pico_at_ns", cost)  # the exporter's pricing
    client = openai_client(ChatServer(usage=usage_block(120, 9)))
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    rows = store_rows(store_db, "calls")
    assert [(r["input_tokens"], r["output_tokens"], r["cost_pico"]) for r in rows] == [(120, 9, None)] * 2
    assert len(internal_errors(lenient, "pricing")) == 1


def test_a_scope_that_cannot_start_its_span_still_runs_the_function(lenient, store_db, monkeypatch):
    from unitcost.record import scopes as _scopes

    monkeypatch.setattr(_scopes, "pipeline", lambda: 1 / 0)

    @unitcost.task("t", key=lambda n: n)
    def double(n):
        return 2 * n

    assert [double(n) for n in range(3)] == [0, 2, 4]
    assert len(internal_errors(lenient, "task start")) == 1


def test_a_full_disk_is_logged_and_swallowed_and_nothing_is_lost_once_there_is_room(lenient, store_db):
    with unitcost.task("warm-up"):
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
    assert unitcost.flush()
    exporter = exporter_of_store()
    conn = exporter._db.conn  # type: ignore[attr-defined]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now answers SQLITE_FULL, as on a full disk
    started = time.perf_counter()
    for i in range(50):
        with unitcost.task("big", key=f"T-{i}", attributes={"note": "x" * 4000}):
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=100, output_tokens=10)
    assert not unitcost.flush()  # said, not hidden
    assert time.perf_counter() - started < 5
    (record,) = internal_errors(lenient, "store exporter")
    assert "full" in str(record.exc_info[1])
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert unitcost.flush()  # the kept batch goes in with the next write
    assert store_rows(store_db, "SELECT COUNT(*) AS n FROM runs WHERE kind = 'big'") == [{"n": 50}]
    assert store_rows(store_db, "SELECT COUNT(*) AS n FROM calls") == [{"n": 51}]


def test_a_locked_database_never_blocks_the_caller_and_loses_nothing(lenient, store_db):
    with unitcost.task("warm-up"):
        pass
    assert unitcost.flush()
    exporter = exporter_of_store()
    exporter._db.conn.execute("PRAGMA busy_timeout = 50")  # type: ignore[attr-defined]
    with closing(sqlite3.connect(store_db, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        started = time.perf_counter()
        for i in range(20):
            with unitcost.task("locked", key=f"T-{i}"):
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=100, output_tokens=10)
        elapsed = time.perf_counter() - started
        assert not unitcost.flush()
        other.execute("ROLLBACK")
    assert elapsed < 3  # the caller's thread never waited for the lock (held until after the loop)
    assert internal_errors(lenient, "store exporter")
    assert unitcost.flush()
    assert store_rows(store_db, "SELECT COUNT(*) AS n FROM runs WHERE kind = 'locked'") == [{"n": 20}]
    assert store_rows(store_db, "SELECT COUNT(*) AS n FROM dropped_spans") == [{"n": 0}]


class _Raising(SpanExporter):
    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans):  # type: ignore[no-untyped-def]
        self.calls += 1
        raise ConnectionError("collector is down")

    def shutdown(self) -> None:
        pass


def test_an_exporter_that_raises_is_logged_once_and_the_store_still_gets_everything(
    lenient, make_store, openai_client
):
    raising = _Raising()
    db = make_store(exporters=[raising])
    client = openai_client(ChatServer())
    for i in range(2):
        with unitcost.task("support_ticket", key=f"T-{i}"):
            assert client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT).id
        assert unitcost.flush() is not None
    assert raising.calls == 2
    assert len(internal_errors(lenient, "exporter _Raising")) == 1
    assert len(store_rows(db, "runs")) == 2 and len(store_rows(db, "calls")) == 2


# --- the switch: UNITCOST_STRICT only ----------------------------------------------------------------


def test_strict_is_unitcosts_own_switch_never_inferred_from_pytest(monkeypatch):
    monkeypatch.delenv("UNITCOST_STRICT", raising=False)
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "test_users_suite.py::test_agent (call)")
    assert not _errors.strict()  # a user's own test suite is not made strict
    for value, expected in (("1", True), ("true", True), ("0", False), ("false", False), ("", False)):
        monkeypatch.setenv("UNITCOST_STRICT", value)
        assert _errors.strict() is expected


# --- configure() is the one call that raises -------------------------------------------------------


def test_configure_raises_clear_errors_for_what_it_cannot_use(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    cases = [
        (dict(db=blocker / "unitcost.db"), "cannot create the store at"),
        (dict(db=tmp_path / "s.db", price_file=tmp_path / "missing.toml"), "price file"),
        (dict(db=tmp_path / "s.db", redact="not callable"), "redact must be a function"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            unitcost.configure(**kwargs)

    errors: list[BaseException] = []

    def off_main_thread() -> None:
        try:
            unitcost.configure(db=tmp_path / "s.db", flush_on_signals=True)
        except ConfigurationError as exc:
            errors.append(exc)
        finally:
            unitcost.shutdown()

    thread = threading.Thread(target=off_main_thread)
    thread.start()
    thread.join()
    assert len(errors) == 1 and "main thread" in str(errors[0])


def test_httpx_level_failures_pass_through_unchanged(make_store, openai_client):
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused")

    client = openai_client(refuse, max_retries=0)

    def call() -> BaseException:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
        except openai.APIConnectionError as exc:
            return exc
        raise AssertionError("no error")

    without = call()
    make_store()
    with_unitcost = call()
    assert type(with_unitcost) is type(without) and str(with_unitcost) == str(without)
    assert type(with_unitcost.__cause__) is type(without.__cause__)
