"""Guarantee 2, bad input: junk usage blocks, unknown models and providers, responses without usage,
non-UTF-8 and huge attribute values, tasks inside tasks, and decorators on every kind of callable.
Every test runs under UNITCOST_STRICT=1, so an error inside unitcost fails it.

The property tests (hypothesis) drive the usage normalisers and the pricing step with anything a
provider or an OpenAI-compatible server might send: totals are never negative, buckets never
overlap, and a priced model never costs a silent $0.
"""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from conftest import PROMPT, ChatServer, chat_body, report_json, run_cli, store_rows
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, TraceFlags

import unitcost
from unitcost.common import attributes as A
from unitcost.exporters.store import StoreSpanExporter
from unitcost.pricing.book import PriceBook
from unitcost.pricing.call import MAX_PICO
from unitcost.pricing.usage import Buckets, TokenUsage, clean_count
from unitcost.providers.anthropic import message_usage
from unitcost.providers.openai_chat import chat_usage
from unitcost.providers.openai_responses import responses_usage

WHEN = datetime(2025, 11, 25, 9, 0, tzinfo=UTC)
BOOK = PriceBook()


# --- usage blocks from a real client ------------------------------------------------------------


def _serve(usage: Any):
    def handler(request: httpx2.Request) -> httpx2.Response:
        body = chat_body(usage=None)
        body["usage"] = usage
        # json.dumps, not httpx's encoder: a server may send NaN and Infinity, which Python's parser reads.
        return httpx2.Response(200, content=json.dumps(body).encode(), headers={"content-type": "application/json"})

    return handler


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        # (input uncached, cache read, output visible, reasoning, priced?)
        ({"prompt_tokens": 120}, (120, 0, 0, 0, True)),  # missing fields
        ({"prompt_tokens": None, "completion_tokens": None, "total_tokens": None}, None),  # all null: no usage
        ({"prompt_tokens": -5, "completion_tokens": 9, "total_tokens": 4}, (0, 0, 9, 0, True)),  # negative
        ({"prompt_tokens": 120.0, "completion_tokens": 9.5}, (120, 0, 0, 0, True)),  # floats
        ({"prompt_tokens": "120", "completion_tokens": "nine"}, (120, 0, 0, 0, True)),  # strings
        ({"prompt_tokens": 10**30, "completion_tokens": 9}, (0, 0, 9, 0, True)),  # absurdly large
        ({"prompt_tokens": float("nan"), "completion_tokens": float("inf")}, None),  # not numbers at all
        ({"prompt_tokens": 120, "completion_tokens": 9, "prompt_tokens_details": "oops",
          "completion_tokens_details": [1, 2]}, (120, 0, 9, 0, True)),  # details of the wrong type
        ({"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 50},
          "completion_tokens_details": {"reasoning_tokens": 80}}, (0, 50, 0, 80, True)),  # parts > totals
        ({}, None),  # an empty block
        ("not a usage block", None),
    ],
)
def test_junk_usage_fields_never_break_the_call_nor_go_negative(store_db, openai_client, usage, expected):
    client = openai_client(_serve(usage))
    with unitcost.task("t") as run:
        result = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert result.choices[0].message.content == "Your order ships today."
    (row,) = store_rows(store_db, "calls")
    assert row["run_id"] == run.id
    buckets = (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"], row["reasoning_tokens"])
    assert all(isinstance(n, int) and n >= 0 for n in buckets)
    if expected is None:
        assert buckets == (0, 0, 0, 0)
        assert row["cost_pico"] is None  # unpriced, and every report says so: never a silent $0
    else:
        assert buckets == expected[:4]
        assert row["cost_pico"] is not None and row["cost_pico"] > 0


def test_anthropic_junk_usage_is_cleaned_the_same_way():
    usage = message_usage({
        "input_tokens": "12", "cache_read_input_tokens": -3, "cache_creation_input_tokens": 2.5,
        "cache_creation": {"ephemeral_1h_input_tokens": 10**40}, "output_tokens": None,
        "output_tokens_details": "thinking", "server_tool_use": {"web_search_requests": "two"},
    })
    assert usage is not None
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens, usage.output_tokens) == (12, 0, 0, 0)
    assert (usage.cache_write_1h_tokens, usage.reasoning_tokens, usage.web_search_requests) == (0, 0, 0)


# --- unknown models and providers, responses without usage ------------------------------------------


def test_unknown_models_and_providers_are_unpriced_and_every_report_says_so(store_db, openai_client):
    client = openai_client(ChatServer(model="acme-llm-7b-instruct"))
    with unitcost.task("t"):
        client.chat.completions.create(model="acme-llm-7b-instruct", messages=PROMPT)
        unitcost.record_usage("no-such-provider", "gpt-4o-mini", input_tokens=100, output_tokens=10)
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=100, output_tokens=10)
    rows = store_rows(store_db, "SELECT model, provider, cost_pico FROM calls ORDER BY started_ns")
    assert [r["cost_pico"] is None for r in rows] == [True, True, False]
    (report,) = report_json(store_db)
    assert report["unpriced_calls"] == 2
    table = run_cli("report", "--db", str(store_db)).stdout
    assert "2 LLM call(s) are unpriced" in table


def test_a_response_without_usage_is_unpriced_not_free(store_db, openai_client):
    client = openai_client(_serve(None))
    with unitcost.task("t"):
        client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    (row,) = store_rows(store_db, "calls")
    assert (row["input_tokens"], row["output_tokens"], row["cost_pico"]) == (0, 0, None)
    assert report_json(store_db)[0]["unpriced_calls"] == 1


# --- non-UTF-8 and huge values ---------------------------------------------------------------------------


def test_non_utf8_and_huge_attribute_values_are_stored_not_lost(store_db):
    huge = "x" * 10_000_000
    with unitcost.task("triage\udcff", key=b"T-\xff\xfe", attributes={
        "blob": huge, "raw": b"\xff\xfe\x00", "surrogate": "a\udcffb", "nested": {"deep": ["\udcff"]},
    }) as run:
        with unitcost.tool("search\ud800"):
            pass
        unitcost.record_usage("openai", "gpt-4o-mini\udcff", input_tokens=100, output_tokens=10)
    unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1, output_tokens=1)  # same batch, unharmed

    (r,) = store_rows(store_db, "runs")
    assert r["run_id"] == run.id
    assert r["kind"] == "triage?" and r["key"] == "T-\ufffd\ufffd"
    attrs = json.loads(r["attributes"])
    assert len(attrs["blob"]) == 4096 and set(attrs["blob"]) == {"x"}
    assert attrs["raw"] == "\ufffd\ufffd\x00" and attrs["surrogate"] == "a?b"
    (step,) = store_rows(store_db, "steps")
    assert step["name"] == "search?"
    calls = store_rows(store_db, "SELECT model, run_id FROM calls ORDER BY started_ns")
    assert calls == [{"model": "gpt-4o-mini?", "run_id": run.id}, {"model": "gpt-4o-mini", "run_id": None}]
    # Everything in the file is valid UTF-8 text again for every reader.
    assert run_cli("report", "--db", str(store_db), "--by", "kind").exit_code == 0
    assert json.loads(run_cli("tasks", "--db", str(store_db), "--format", "json").stdout)[0]["kind"] == "triage?"


# --- a task inside a task inside a tool --------------------------------------------------------------------


def test_a_task_inside_a_tool_of_a_task_is_its_own_row_and_counted_once(store_db):
    with unitcost.task("outer", key="O-1") as outer:
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=100)
        with unitcost.tool("delegate"), unitcost.task("inner", key="I-1") as inner:
            unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=2000, output_tokens=200)
            with unitcost.step("deeper"), unitcost.task("innermost") as innermost:
                unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=3000, output_tokens=300)

    runs = {r["run_id"]: r for r in store_rows(store_db, "runs")}
    assert runs[inner.id]["parent_run_id"] == outer.id and runs[innermost.id]["parent_run_id"] == inner.id
    calls = store_rows(store_db, "SELECT run_id, input_tokens, cost_pico FROM calls")
    assert sorted((c["run_id"], c["input_tokens"]) for c in calls) == sorted(
        [(outer.id, 1000), (inner.id, 2000), (innermost.id, 3000)]
    )
    total_pico = sum(c["cost_pico"] for c in calls)
    by_kind = {r["group"]["kind"]: r for r in report_json(store_db)}
    assert set(by_kind) == {"outer", "inner", "innermost"}
    # Each call in exactly one row: the rows add up to the calls, nothing twice.
    assert sum(round(r["cost_usd"] * 10**12) for r in by_kind.values()) == total_pico
    assert [by_kind[k]["input_tokens"] for k in ("outer", "inner", "innermost")] == [1000, 2000, 3000]
    assert sum(r["llm_calls"] for r in by_kind.values()) == 3


def test_a_recursive_task_is_one_row_per_level(store_db):
    @unitcost.task("solve", key=lambda n: f"level-{n}")
    def solve(n: int) -> int:
        unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=10, output_tokens=1)
        return 0 if n == 0 else 1 + solve(n - 1)

    assert solve(40) == 40
    runs = store_rows(store_db, "SELECT run_id, parent_run_id FROM runs")
    calls = store_rows(store_db, "SELECT run_id FROM calls")
    assert len(runs) == 41 and len(calls) == 41
    assert sorted(c["run_id"] for c in calls) == sorted(r["run_id"] for r in runs)  # one call per level
    (row,) = report_json(store_db)
    assert (row["tasks"], row["llm_calls"], row["input_tokens"]) == (41, 41, 410)


# --- decorators on every kind of callable -------------------------------------------------------------------


def _spend(tokens: int) -> None:
    unitcost.record_usage("openai", "gpt-4o-mini", input_tokens=tokens, output_tokens=1)


class Agent:
    name = "agent-cls"

    def __init__(self) -> None:
        self.name = "agent-self"

    @unitcost.task("method", key=lambda self, t: f"{self.name}:{t}")
    def method(self, t: int) -> str:
        _spend(1)
        return self.name

    @classmethod
    @unitcost.task("classmethod below", key=lambda cls, t: f"{cls.name}:{t}")
    def class_below(cls, t: int) -> str:
        _spend(2)
        return cls.name

    @unitcost.task("classmethod above", key=lambda cls, t: f"{cls.name}:{t}")
    @classmethod
    def class_above(cls, t: int) -> str:
        _spend(3)
        return cls.name

    @unitcost.task("staticmethod above", key=lambda t: f"static:{t}")
    @staticmethod
    def static_above(t: int) -> int:
        _spend(4)
        return t

    @unitcost.task("generator", key=lambda self, n: f"gen:{n}")
    def generator(self, n: int):
        for i in range(n):
            _spend(5)
            yield i

    @unitcost.task("coroutine", key=lambda self, t: f"coro:{t}")
    async def coroutine(self, t: int) -> int:
        await asyncio.sleep(0)
        _spend(6)
        return t

    @unitcost.task("async generator", key=lambda self, n: f"agen:{n}")
    async def async_generator(self, n: int):
        for i in range(n):
            await asyncio.sleep(0)
            _spend(7)
            yield i


def test_decorators_on_methods_classmethods_staticmethods_generators_and_coroutines(store_db):
    agent = Agent()
    assert agent.method(1) == "agent-self"
    assert Agent.class_below(1) == agent.class_below(2) == "agent-cls"
    assert Agent.class_above(1) == agent.class_above(2) == "agent-cls"
    assert (Agent.static_above(7), agent.static_above(8)) == (7, 8)
    assert list(agent.generator(3)) == [0, 1, 2]

    async def main() -> tuple[int, list[int]]:
        return await agent.coroutine(9), [i async for i in agent.async_generator(2)]

    assert asyncio.run(main()) == (9, [0, 1])

    runs = store_rows(store_db, "SELECT run_id, kind, key FROM runs")
    keys = sorted((r["kind"], r["key"]) for r in runs)
    assert keys == sorted([
        ("method", "agent-self:1"), ("classmethod below", "agent-cls:1"), ("classmethod below", "agent-cls:2"),
        ("classmethod above", "agent-cls:1"), ("classmethod above", "agent-cls:2"),
        ("staticmethod above", "static:7"), ("staticmethod above", "static:8"),
        ("generator", "gen:3"), ("coroutine", "coro:9"), ("async generator", "agen:2"),
    ])
    kind_of = {r["run_id"]: r["kind"] for r in runs}
    tokens = {}
    for call in store_rows(store_db, "SELECT run_id, input_tokens FROM calls"):
        tokens.setdefault(kind_of[call["run_id"]], set()).add(call["input_tokens"])  # every call in its task
    assert tokens == {"method": {1}, "classmethod below": {2}, "classmethod above": {3}, "staticmethod above": {4},
                      "generator": {5}, "coroutine": {6}, "async generator": {7}}


# --- properties: the usage normalisers --------------------------------------------------------------------

junk = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**15), max_value=10**15), st.integers(),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
    st.sampled_from(["12", " 7 ", "1e3", "-4", "０", "", "NaN"]), st.lists(st.integers(), max_size=2),
)


def junk_block(fields: list[str], details: dict[str, list[str]]) -> Any:
    block = st.fixed_dictionaries({}, optional={f: junk for f in fields})
    nested = {name: st.one_of(junk, st.fixed_dictionaries({}, optional={f: junk for f in inner}))
              for name, inner in details.items()}
    return st.tuples(block, st.fixed_dictionaries({}, optional=nested)).map(lambda t: {**t[0], **t[1]})


CHAT_BLOCKS = junk_block(["prompt_tokens", "completion_tokens", "total_tokens"], {
    "prompt_tokens_details": ["cached_tokens", "cache_write_tokens"],
    "completion_tokens_details": ["reasoning_tokens"],
})
RESPONSES_BLOCKS = junk_block(["input_tokens", "output_tokens"], {
    "input_tokens_details": ["cached_tokens", "cache_write_tokens"], "output_tokens_details": ["reasoning_tokens"],
})
ANTHROPIC_BLOCKS = junk_block(
    ["input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens"],
    {"cache_creation": ["ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"],
     "output_tokens_details": ["thinking_tokens"], "server_tool_use": ["web_search_requests", "web_fetch_requests"]},
)
_COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
           "cache_write_30m_tokens", "cache_write_12h_tokens", "reasoning_tokens", "web_search_requests",
           "web_fetch_requests")


def assert_buckets_sound(usage: TokenUsage) -> Buckets:
    for name in _COUNTS:
        value = getattr(usage, name)
        # Each provider field is at most 10**12 (a sanity bound); a total is a sum of up to three of them.
        assert isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3 * 10**12, (name, value)
    b = Buckets.from_span_attributes(usage.span_attributes())
    assert all(getattr(b, f) >= 0 for f in b.__dataclass_fields__)
    # No overlap: each input token in exactly one bucket. The sum is the reported total, or the sum of
    # the parts when a server reports parts larger than the total (never more than either asks).
    parts_in = usage.cache_read_tokens + usage.cache_write_tokens
    if usage.input_tokens <= 10**12:
        assert b.input_total == max(usage.input_tokens, parts_in)
    else:  # a total past the sanity bound (parts near it summed) is not trusted: only its parts count
        assert b.input_total == parts_in
    assert b.cache_write + b.cache_write_1h == usage.cache_write_tokens
    assert b.output_total == max(usage.output_tokens, usage.reasoning_tokens)
    return b


@settings(max_examples=400, deadline=None)
@given(value=junk)
@example(value=True)
@example(value=10**12 + 1)
@example(value=-0.0)
def test_clean_count_is_none_or_a_sane_count(value):
    count = clean_count(value)
    assert count is None or (type(count) is int and 0 <= count <= 10**12)
    if type(value) is int and 0 <= value <= 10**12:
        assert count == value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block=CHAT_BLOCKS)
@example(block={"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 50}})
def test_chat_usage_normaliser(block):
    usage = chat_usage(block)
    assert usage is not None
    assert_buckets_sound(usage)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block=RESPONSES_BLOCKS)
def test_responses_usage_normaliser(block):
    usage = responses_usage(block)
    assert usage is not None
    assert_buckets_sound(usage)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block=ANTHROPIC_BLOCKS)
@example(block={"cache_creation_input_tokens": 5, "cache_creation": {"ephemeral_1h_input_tokens": 9}})
def test_anthropic_usage_normaliser(block):
    usage = message_usage(block)
    assert usage is not None
    b = assert_buckets_sound(usage)
    assert b.cache_write_1h <= usage.cache_write_tokens


# --- properties: the pricing step, as the store runs it -----------------------------------------------------

PRICED = [("openai", "gpt-4o-mini"), ("openai", "o4-mini"), ("openai", "gpt-5"),
          ("anthropic", "claude-sonnet-4-6"), ("anthropic", "claude-haiku-4-5")]
counts = st.integers(min_value=0, max_value=2_000_000)


def _span(attributes: dict[str, Any]) -> ReadableSpan:
    ctx = SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    start = int(WHEN.timestamp() * 1e9)
    return ReadableSpan(name="chat", context=ctx, attributes=attributes, start_time=start, end_time=start + 10**9)


_ROW = StoreSpanExporter("unused.db", BOOK)  # its row builder; it opens no store


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(PRICED), inp=counts, cached=counts, written=counts, out=counts, reasoning=counts)
@example(model=("openai", "gpt-4o-mini"), inp=1, cached=0, written=0, out=0, reasoning=0)
@example(model=("anthropic", "claude-sonnet-4-6"), inp=0, cached=0, written=0, out=0, reasoning=1)
def test_pricing_is_never_negative_and_never_silently_zero(model, inp, cached, written, out, reasoning):
    provider, name = model
    usage = TokenUsage(input_tokens=inp, output_tokens=out, cache_read_tokens=cached, cache_write_tokens=written,
                       reasoning_tokens=reasoning)
    attrs = {A.SPAN_TYPE: "llm", A.PROVIDER: provider, A.REQUEST_MODEL: name, **usage.span_attributes()}
    row = dict(zip(("span_id", "trace_id", "parent", "run_id", "started", "ended", "provider", "operation", "model",
                    "response_model", "input", "cache_read", "cache_write", "cache_write_1h", "output", "reasoning",
                    "cost", "reasoning_cost"), _ROW._call_row(_span(attrs)), strict=False))
    assert row["cost"] is not None  # a priced model is priced
    tokens = sum(row[k] for k in ("input", "cache_read", "cache_write", "cache_write_1h", "output", "reasoning"))
    assert tokens == max(inp, cached + written) + max(out, reasoning)
    assert row["cost"] >= 0 and 0 <= row["reasoning_cost"] <= row["cost"]
    if tokens:
        assert row["cost"] > 0  # never a silent $0 for tokens of a priced model
    # More tokens never cost less.
    more = BOOK.cost(provider, name, WHEN, Buckets.from_span_attributes({**attrs, A.OUTPUT_TOKENS: out + 1000}))
    assert more is not None and more.total * 10**12 > row["cost"] - 1


@settings(max_examples=200, deadline=None)
@given(attrs=st.fixed_dictionaries({}, optional={
    A.INPUT_TOKENS: junk, A.OUTPUT_TOKENS: junk, A.CACHE_READ_TOKENS: junk, A.CACHE_WRITE_TOKENS: junk,
    A.CACHE_WRITE_1H_TOKENS: junk, A.REASONING_TOKENS: junk, A.WEB_SEARCH_REQUESTS: junk,
}), model=st.sampled_from(PRICED + [("openai", "acme-llm-7b"), ("no-such-provider", "gpt-4o-mini")]))
def test_the_store_row_of_any_span_is_sane(attrs, model):
    # What other instrumentations (or a buggy one) may put on a span, through the store's row builder.
    provider, name = model
    clean = {k: v for k, v in attrs.items() if v is not None and not isinstance(v, list | float) or
             isinstance(v, float) and math.isfinite(v)}
    row = _ROW._call_row(_span({A.SPAN_TYPE: "llm", A.PROVIDER: provider, A.REQUEST_MODEL: name, **clean}))
    tokens, cost = row[10:16], row[16]
    assert all(type(n) is int and n >= 0 for n in tokens)
    assert cost is None or cost >= 0
    if (provider, name) not in PRICED:
        assert cost is None  # unknown: unpriced, never $0
    elif sum(tokens):
        assert cost is None or cost > 0  # priced, or unpriced and marked so: never a silent $0
        if clean_count(clean.get(A.INPUT_TOKENS)) or clean_count(clean.get(A.OUTPUT_TOKENS)):
            # Priced, unless the price is past what a store can keep (then unpriced, and said so).
            price = BOOK.cost(provider, name, WHEN, Buckets.from_span_attributes(clean))
            assert price is not None
            assert (cost is None) == (price.total * 10**12 > MAX_PICO)


@example(attrs={A.WEB_SEARCH_REQUESTS: 922337204, A.OUTPUT_TOKENS: 1}, model=("anthropic", "claude-sonnet-4-6"))
@example(attrs={A.WEB_SEARCH_REQUESTS: 922337204}, model=("anthropic", "claude-sonnet-4-6"))
# caplog is cleared for each example.
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attrs=st.fixed_dictionaries({}, optional={
    A.INPUT_TOKENS: junk, A.OUTPUT_TOKENS: junk, A.WEB_SEARCH_REQUESTS: junk,
}), model=st.sampled_from(PRICED))
def test_a_cost_past_what_a_store_keeps_is_unpriced_and_said_so(attrs, model, caplog):
    # Under UNITCOST_STRICT=1 (the suite's) too: not an internal error, a call kept unpriced with a warning.
    provider, name = model
    clean = {k: v for k, v in attrs.items() if v is not None and not isinstance(v, list | float) or
             isinstance(v, float) and math.isfinite(v)}
    caplog.clear()
    row = _ROW._call_row(_span({A.SPAN_TYPE: "llm", A.PROVIDER: provider, A.REQUEST_MODEL: name, **clean}))
    price = BOOK.cost(provider, name, WHEN, Buckets.from_span_attributes(clean))
    usage_known = A.INPUT_TOKENS in clean or A.OUTPUT_TOKENS in clean  # else unpriced whatever its price
    over = usage_known and price is not None and price.total * 10**12 > MAX_PICO
    if usage_known and price is not None:
        assert (row[16] is None) == over
    assert over == any("more than a store can keep" in r.getMessage() for r in caplog.records)


def test_an_unknown_model_is_never_priced_at_zero():
    for buckets in (Buckets(), Buckets(uncached_input=1), Buckets(visible_output=10**9)):
        assert BOOK.cost("openai", "acme-llm-7b", WHEN, buckets) is None
        assert BOOK.cost("no-such-provider", "mystery", WHEN, buckets) is None
    assert BOOK.cost("openai", "gpt-4o-mini", WHEN, Buckets(uncached_input=1)).total == Decimal("0.00000015")
