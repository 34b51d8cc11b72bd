"""Every billed token of an Anthropic response: ``usage.iterations``.

The shapes are the documented ones (the anthropic SDK's ``BetaIterationsUsage``: ``message``,
``compaction``, ``advisor_message``, ``fallback_message``). A ``compaction`` or an advisor's
iteration is billed but not in the top-level usage (which can then be all zeros); each is counted in
the call's buckets and priced by its own model (a compaction by the response's). Each test runs with
the SDK's own span on and off (`sdk_tracing`): the same row either way.
"""

# ruff: noqa: F811 - the fixtures imported from anthropic_fixtures are test parameters of the same name

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from conftest import run_cli, store_rows
from providers.anthropic_fixtures import (
    REQUEST,
    SONNET,
    MessagesServer,
    anthropic_client,  # noqa: F401 - fixture
    sdk_tracing,  # noqa: F401 - fixture
    sse_response,
    stream_events,
)

import unitcost
from unitcost.common.money import to_pico
from unitcost.pricing.book import PriceBook
from unitcost.pricing.usage import Buckets

OPUS = "claude-opus-4-6"  # $5/M input, $25/M output
HAIKU = "claude-haiku-4-5"  # $1/M input, $5/M output
BOOK = PriceBook()


def iteration(kind: str, inp: int, out: int, *, read: int = 0, write: int = 0, model: str | None = None) -> dict:
    item: dict[str, Any] = {"type": kind, "input_tokens": inp, "output_tokens": out,
                            "cache_read_input_tokens": read, "cache_creation_input_tokens": write}
    if model is not None:
        item["model"] = model
    return item


def usage(inp: int, out: int, iterations: list[dict], *, read: int = 0, write: int = 0) -> dict:
    return {"input_tokens": inp, "output_tokens": out, "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write, "iterations": iterations}


def price(model: str, buckets: Buckets) -> Decimal:
    return BOOK.cost("anthropic", model, datetime.now(tz=UTC), buckets).total


# The compaction documentation's example: the summary step read 180,000 tokens and wrote 3,500; the
# answer then read the compacted 23,000 and wrote 1,000. The top level holds the answer only.
COMPACTION = usage(23_000, 1_000, [iteration("compaction", 180_000, 3_500), iteration("message", 23_000, 1_000)])
# The advisor: the executor (Sonnet) asked the advisor (Opus) once between two turns of its own.
ADVISOR = usage(
    412 + 1_348, 89 + 442,
    [iteration("message", 412, 89, model=SONNET), iteration("advisor_message", 823, 1_612, model=OPUS),
     iteration("message", 1_348, 442, read=2_000, model=SONNET)],
    read=2_000,
)
# A top level of zeros: only a compaction ran (the 83,555 input tokens of the issue), on Opus.
ZERO_TOP = usage(0, 0, [iteration("compaction", 83_555, 2_048, read=1_000, write=512)])


def row_parts(row: dict) -> list[dict]:
    return json.loads(row["usage_parts"]) if row["usage_parts"] else []


def test_compaction_tokens_are_counted_and_priced(store_db, anthropic_client, sdk_tracing):
    client = anthropic_client(MessagesServer(COMPACTION, model=SONNET))
    with unitcost.task("summarise") as run:
        client.beta.messages.create(**REQUEST)
    (row,) = store_rows(store_db, "calls")
    assert row["run_id"] == run.id
    assert (row["input_tokens"], row["output_tokens"]) == (203_000, 4_500)
    expected = price(SONNET, Buckets(uncached_input=203_000, visible_output=4_500))
    assert row["cost_pico"] == to_pico(expected)  # $0.609 + $0.0675
    (part,) = row_parts(row)
    assert part == {"kind": "compaction", "model": None, "input_tokens": 180_000, "cache_read_tokens": 0,
                    "cache_write_tokens": 0, "output_tokens": 3_500,
                    "cost_pico": to_pico(price(SONNET, Buckets(uncached_input=180_000, visible_output=3_500)))}


def test_advisor_tokens_are_priced_by_the_advisor_model(store_db, anthropic_client, sdk_tracing):
    client = anthropic_client(MessagesServer(ADVISOR, model=SONNET))
    client.beta.messages.create(**REQUEST)
    (row,) = store_rows(store_db, "calls")
    # Every billed token: the executor's turns (1,760 + 2,000 cached in, 531 out) and the advisor's.
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (1_760 + 823, 2_000, 531 + 1_612)
    executor = price(SONNET, Buckets(uncached_input=1_760, cache_read=2_000, visible_output=531))
    advisor = price(OPUS, Buckets(uncached_input=823, visible_output=1_612))
    assert row["cost_pico"] == to_pico(executor + advisor)
    # Priced at Sonnet's rates the advisor's tokens would cost less: the model really matters.
    assert price(SONNET, Buckets(uncached_input=823, visible_output=1_612)) < advisor
    (part,) = row_parts(row)
    assert (part["kind"], part["model"], part["cost_pico"]) == ("advisor_message", OPUS, to_pico(advisor))


def test_all_zero_top_level_with_a_compaction_is_not_free(store_db, anthropic_client, sdk_tracing):
    client = anthropic_client(MessagesServer(ZERO_TOP, model=OPUS))
    client.beta.messages.create(**{**REQUEST, "model": OPUS})
    (row,) = store_rows(store_db, "calls")
    assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"], row["output_tokens"]) == (
        83_555, 1_000, 512, 2_048)  # Anthropic's input_tokens is the uncached input, here as everywhere
    expected = price(OPUS, Buckets(uncached_input=83_555, cache_read=1_000, cache_write=512, visible_output=2_048))
    assert row["cost_pico"] == to_pico(expected) > 0


def test_all_zero_usage_is_zero_tokens_priced_in_every_mode(store_db, anthropic_client, sdk_tracing):
    zeros = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    client = anthropic_client(MessagesServer(zeros))
    client.messages.create(**REQUEST)
    (row,) = store_rows(store_db, "calls")
    assert (row["input_tokens"], row["output_tokens"], row["cost_pico"]) == (0, 0, 0)  # priced: $0 of 0 tokens


def test_an_unpriced_advisor_model_leaves_the_call_unpriced(store_db, anthropic_client, sdk_tracing):
    body = usage(100, 10, [iteration("message", 100, 10), iteration("advisor_message", 50, 5, model="claude-future-9")])
    client = anthropic_client(MessagesServer(body))
    client.beta.messages.create(**REQUEST)
    (row,) = store_rows(store_db, "calls")
    assert (row["input_tokens"], row["output_tokens"]) == (150, 15)
    assert row["cost_pico"] is None  # never a cost that silently leaves the advisor's tokens out
    assert [p["cost_pico"] for p in row_parts(row)] == [None]


def test_a_fallback_models_turn_is_priced_by_that_model_and_not_counted_twice(store_db, anthropic_client,
                                                                              sdk_tracing):
    body = usage(300, 40, [iteration("message", 100, 0), iteration("fallback_message", 200, 40, model=HAIKU)])
    client = anthropic_client(MessagesServer(body))
    client.beta.messages.create(**REQUEST)
    (row,) = store_rows(store_db, "calls")
    assert (row["input_tokens"], row["output_tokens"]) == (300, 40)  # the top level already holds it
    expected = price(SONNET, Buckets(uncached_input=100)) + price(HAIKU, Buckets(uncached_input=200, visible_output=40))
    assert row["cost_pico"] == to_pico(expected)


def test_a_streamed_response_counts_the_iterations_of_its_last_delta(store_db, anthropic_client, sdk_tracing):
    events = stream_events({"input_tokens": 1_760, "output_tokens": 531, "cache_read_input_tokens": 2_000,
                            "cache_creation_input_tokens": 0, "output_tokens_details": {"thinking_tokens": 0}})
    delta = next(e for e in events if e["type"] == "message_delta")
    delta["usage"]["iterations"] = ADVISOR["iterations"]
    client = anthropic_client(lambda request: sse_response(events))
    with client.beta.messages.stream(**REQUEST) as stream:
        stream.get_final_message()
    (row,) = store_rows(store_db, "calls")
    assert (row["input_tokens"], row["output_tokens"]) == (1_760 + 823, 531 + 1_612)
    executor = price(SONNET, Buckets(uncached_input=1_760, cache_read=2_000, visible_output=531))
    assert row["cost_pico"] == to_pico(executor + price(OPUS, Buckets(uncached_input=823, visible_output=1_612)))


@pytest.mark.parametrize("sdk_tracing", ["sdk-span-off-by-env"], indirect=True)
def test_show_lists_each_priced_part(store_db, anthropic_client, sdk_tracing):
    client = anthropic_client(MessagesServer(ADVISOR, model=SONNET))
    with unitcost.task("plan") as run:
        client.beta.messages.create(**REQUEST)
    store_rows(store_db, "calls")  # flushed
    out = run_cli("show", run.id, "--db", str(store_db)).output
    advisor = price(OPUS, Buckets(uncached_input=823, visible_output=1_612))
    assert f"advisor_message {OPUS}  ${advisor:.4f}  823 in / 1,612 out" in out, out
