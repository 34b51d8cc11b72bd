"""Anthropic prices: web searches priced per 1000, price modifiers the response reports applied where
genai-prices knows them (batch processing, fast mode) and recorded where it does not (the priority
tier, the inference region), and the fast path equal to genai-prices' own answer."""

# ruff: noqa: F811 - the fixtures imported from anthropic_fixtures are test parameters of the same name

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from conftest import store_rows
from genai_prices import calc_price
from hypothesis import example, given, settings
from hypothesis import strategies as st
from providers.anthropic_fixtures import (
    REQUEST,
    MessagesServer,
    anthropic_client,  # noqa: F401 - fixture
    genai_cost,
    sdk_tracing,  # noqa: F401 - fixture
    usage_block,
)

from unitcost.common.money import to_pico
from unitcost.pricing.book import PriceBook, genai_usage
from unitcost.pricing.usage import Buckets

WHEN = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
BOOK = PriceBook()
ANTHROPIC_MODELS = ["claude-sonnet-4-6", "claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5", "claude-opus-4-8"]
CONTEXTS = [None, {"processing": "batch"}, {"speed": "fast"}]

tokens = st.integers(min_value=0, max_value=300_000)
requests = st.integers(min_value=0, max_value=50)
buckets = st.builds(Buckets, tokens, tokens, tokens, tokens, tokens, tokens, requests, requests)


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(ANTHROPIC_MODELS), buckets=buckets, context=st.sampled_from(CONTEXTS))
@example(model="claude-sonnet-4-5", buckets=Buckets(uncached_input=200_001, web_search_requests=3), context=None)
@example(model="claude-opus-4-1", buckets=Buckets(cache_write=1, cache_write_1h=1, web_search_requests=1), context=None)
def test_fast_path_with_web_searches_equals_genai_prices(model, buckets, context):
    ours = BOOK.cost("anthropic", model, WHEN, buckets, context=context)
    theirs = calc_price(genai_usage(buckets), model, provider_id="anthropic", genai_request_timestamp=WHEN,
                        price_context=context)
    assert ours.total == theirs.total_price
    assert 0 <= ours.reasoning <= ours.total


def test_web_searches_by_hand():
    # claude-sonnet-4-6: $10 per 1000 web searches, on top of the tokens.
    cost = BOOK.cost("anthropic", "claude-sonnet-4-6", WHEN, Buckets(uncached_input=1000, web_search_requests=3))
    assert cost.total == Decimal("0.003") + Decimal("0.03")
    # A web search inside a thinking call is not reasoning cost.
    cost = BOOK.cost("anthropic", "claude-sonnet-4-6", WHEN, Buckets(reasoning=1000, web_search_requests=1))
    assert (cost.total, cost.reasoning) == (Decimal("0.025"), Decimal("0.015"))


def test_genai_prices_fallback_prices_web_searches_apart_from_reasoning():
    # A price shape the fast path does not know goes to genai-prices itself: same answer.
    from unitcost.pricing.book import _genai_cost

    info = BOOK._model_info("anthropic", "claude-sonnet-4-6")
    price = info.get_prices(WHEN)
    cost = _genai_cost(price, Buckets(reasoning=1000, web_search_requests=1), "genai-prices")
    assert (cost.total, cost.reasoning) == (Decimal("0.025"), Decimal("0.015"))


@pytest.mark.parametrize(
    ("model", "modifiers", "tier", "context", "recorded"),
    [
        ("claude-sonnet-4-6", {"tier": "priority"}, "priority", None, None),  # genai-prices has no priority rates
        ("claude-haiku-4-5", {"tier": "batch"}, "batch", {"processing": "batch"}, {"processing": "batch"}),
        ("claude-opus-4-8", {"speed": "fast"}, "standard", {"speed": "fast"}, {"speed": "fast"}),
        ("claude-sonnet-4-6", {"geo": "us"}, "standard", None, {"inference_geo": "us"}),
    ],
    ids=["priority", "batch", "fast", "us-only"],
)
def test_price_modifiers(store_db, anthropic_client, sdk_tracing, model, modifiers, tier, context, recorded):
    import json

    usage = usage_block(tier=modifiers.get("tier", "standard"), speed=modifiers.get("speed", "standard"),
                        geo=modifiers.get("geo", "global"))
    client = anthropic_client(MessagesServer(usage, model=model))
    client.messages.create(**{**REQUEST, "model": model})

    (row,) = store_rows(store_db, "calls")
    assert row["service_tier"] == tier
    assert (json.loads(row["price_modifiers"]) if row["price_modifiers"] else None) == recorded
    extracted = genai_cost(usage, model) if context is None else None
    expected = extracted if extracted is not None else calc_price(
        genai_usage(Buckets(1200, 20_000, 1000, 2000, 500, 300, 2, 1)), model, provider_id="anthropic",
        price_context=context,
    ).total_price
    assert row["cost_pico"] == to_pico(expected)
    standard = calc_price(genai_usage(Buckets(1200, 20_000, 1000, 2000, 500, 300, 2, 1)), model,
                          provider_id="anthropic").total_price
    if context is not None:
        assert expected != standard  # the modifier really changes the price
