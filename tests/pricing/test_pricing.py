"""Pricing: unitcost's fast path gives exactly genai-prices' answer, unknown models stay unpriced,
and the user's price file (unitcost.toml) overrides genai-prices."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from conftest import GPT4O_MINI, PROMPT, ChatServer, store_rows, usage_block
from genai_prices import calc_price
from hypothesis import example, given, settings
from hypothesis import strategies as st

import unitcost
from unitcost.pricing.book import PriceBook, genai_usage
from unitcost.pricing.usage import Buckets

WHEN = datetime(2025, 11, 25, 9, 0, tzinfo=UTC)
MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-5"),
    ("openai", "o4-mini"),
    ("anthropic", "claude-sonnet-4-5"),  # tiered: input above 200k tokens doubles every rate
    ("anthropic", "claude-opus-4-1"),  # 1-hour cache writes priced apart from 5-minute ones
]
BOOK = PriceBook()  # shared on purpose: its per-model cache must not change an answer

# Up to 300k tokens per bucket crosses the 200k tier boundary in both directions.
tokens = st.integers(min_value=0, max_value=300_000)
buckets = st.builds(Buckets, tokens, tokens, tokens, tokens, tokens, tokens)


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(MODELS), buckets=buckets)
@example(model=("anthropic", "claude-sonnet-4-5"), buckets=Buckets(uncached_input=200_000, visible_output=10))
@example(model=("anthropic", "claude-sonnet-4-5"), buckets=Buckets(uncached_input=200_001, visible_output=10))
@example(model=("anthropic", "claude-opus-4-1"), buckets=Buckets(cache_write=1, cache_write_1h=1))
@example(model=("openai", "o4-mini"), buckets=Buckets())
def test_price_book_equals_genai_prices(model, buckets):
    provider, name = model
    ours = BOOK.cost(provider, name, WHEN, buckets)
    theirs = calc_price(genai_usage(buckets), name, provider_id=provider, genai_request_timestamp=WHEN)
    assert ours.total == theirs.total_price
    assert ours.source == "genai-prices"
    assert 0 <= ours.reasoning <= ours.total


WHEN_NS = int(WHEN.timestamp()) * 10**9


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(MODELS), buckets=buckets, searches=st.integers(0, 5))
@example(model=("anthropic", "claude-sonnet-4-5"), buckets=Buckets(uncached_input=200_001, visible_output=10),
         searches=0)
@example(model=("openai", "gpt-4o-mini"), buckets=Buckets(reasoning=7), searches=0)
def test_exporter_integer_prices_equal_genai_prices(model, buckets, searches):
    # The exporter prices in whole pico-dollars (integer products) when the rates allow: the result
    # is genai-prices' own, rounded to the pico-dollar as the store keeps it.
    from dataclasses import replace

    from unitcost.common.money import to_pico

    provider, name = model
    buckets = replace(buckets, web_search_requests=searches)
    total, reasoning, source = BOOK.cost_pico_at_ns(provider, name, WHEN_NS, WHEN_NS + 10**9, buckets)
    theirs = calc_price(genai_usage(buckets), name, provider_id=provider, genai_request_timestamp=WHEN)
    assert total == to_pico(theirs.total_price)
    slow = BOOK.cost(provider, name, WHEN, buckets)
    assert (total, reasoning, source) == (to_pico(slow.total), to_pico(slow.reasoning), slow.source)


def test_rates_in_whole_pico_dollars_are_used_only_when_exact():
    rates = BOOK.rates("openai", "gpt-4o-mini", WHEN)
    assert rates.pico_per_token is not None and dict(rates.pico_per_token)["uncached_input"] == 150_000
    tiered = BOOK.rates("anthropic", "claude-sonnet-4-5", WHEN)
    assert tiered.pico_per_token is None  # no one flat table: one per tier the call's input reaches
    assert tiered.cost_pico(Buckets(uncached_input=200_000, visible_output=1)) == (200_000 * 3_000_000 + 15_000_000, 0)
    assert tiered.cost_pico(Buckets(uncached_input=200_001, reasoning=1)) == (200_001 * 6_000_000 + 22_500_000,
                                                                              22_500_000)
    from genai_prices.types import Tier, TieredPrices

    from unitcost.pricing.book import Rates

    cliff = TieredPrices(base=Decimal(1), tiers=[Tier(start=10, price=Decimal("0.0000001"))])
    half_whole = Rates({"uncached_input": cliff, "visible_output": Decimal(2)}, Decimal(0), "x")
    assert half_whole.cost_pico(Buckets(uncached_input=10, visible_output=1)) == (12_000_000, 0)
    assert half_whole.cost_pico(Buckets(uncached_input=11)) is None  # its upper tier: the Decimal path
    assert half_whole.cost(Buckets(uncached_input=11)).total == Decimal("0.0000000000011")
    from unitcost.pricing.book import PriceOverride

    odd = PriceOverride(model="m", input_mtok=Decimal("0.0000001"), output_mtok=Decimal("1")).rates()
    assert odd.pico_per_token is None  # 0.1 pico-dollars a token is not a whole number of them
    assert odd.cost(Buckets(uncached_input=3)).total == Decimal("3E-13")


def test_exporter_prices_a_call_by_its_utc_day_at_the_last_nanosecond():
    from unitcost.pricing.book import utc_from_ns

    last = int(datetime(2025, 11, 25, tzinfo=UTC).timestamp()) * 10**9 - 1
    assert utc_from_ns(last) == datetime(2025, 11, 24, 23, 59, 59, 999_999, tzinfo=UTC)


def test_genai_usage_keeps_opentelemetry_totals():
    usage = genai_usage(Buckets(uncached_input=800, cache_read=200, cache_write=30, cache_write_1h=20,
                                visible_output=400, reasoning=100))
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (1050, 200, 50)
    assert (usage.output_tokens, usage.output_reasoning_tokens) == (500, 100)


def test_hand_computed_prices():
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per million tokens.
    cost = BOOK.cost("openai", "gpt-4o-mini", WHEN, Buckets(800, 200, 0, 0, 400, 100))
    assert (cost.total, cost.reasoning) == (Decimal("0.000435"), Decimal("0.00006"))
    # claude-opus-4-1: $18.75 for 5-minute cache writes, $30 for 1-hour ones.
    opus = BOOK.cost("anthropic", "claude-opus-4-1", WHEN, Buckets(cache_write=1_000_000, cache_write_1h=1_000_000))
    assert opus.total == Decimal("48.75")


def test_unknown_model_is_unpriced():
    assert BOOK.cost("openai", "acme-llm-7b-instruct", WHEN, Buckets(100, 0, 0, 0, 10, 0)) is None
    assert BOOK.rates("openai", "acme-llm-7b-instruct", WHEN) is None


# --- the price file ------------------------------------------------------------------------------------

PRICE_FILE = """
# Our negotiated rate, and a self-hosted model genai-prices cannot know.
[[price]]
model = "gpt-4o-mini*"
provider = "openai"
input_mtok = 0.10
cache_read_mtok = 0.05
output_mtok = 0.40

[[price]]
model = "acme-llm-*"
input_mtok = 0.02
output_mtok = 0.02
since = 2025-01-01

[[price]]
model = "acme-llm-*"
input_mtok = 0.01
output_mtok = 0.01
per_request = 0.0001
since = 2025-10-01
"""


def test_price_file_overrides_genai_prices_with_history(tmp_path):
    path = tmp_path / "prices.toml"
    path.write_text(PRICE_FILE)
    book = PriceBook.from_price_file(path)

    mini = book.cost("openai", GPT4O_MINI, WHEN, Buckets(800, 200, 0, 0, 400, 100))
    assert mini.source == "override"
    assert mini.total == (800 * Decimal("0.10") + 200 * Decimal("0.05") + 500 * Decimal("0.40")) / 1_000_000
    assert book.cost("OpenAI", "GPT-4o-mini", WHEN, Buckets(1_000_000)).total == Decimal("0.10")  # any case
    assert book.cost("azure", "gpt-4o-mini", WHEN, Buckets(1_000_000)).source == "genai-prices"  # other provider

    tokens = Buckets(uncached_input=1_000_000, visible_output=1_000_000)
    assert book.cost("openai", "acme-llm-7b", WHEN, tokens).total == Decimal("0.0201")  # the newest in force
    assert book.cost("openai", "acme-llm-7b", datetime(2025, 6, 1, tzinfo=UTC), tokens).total == Decimal("0.04")
    assert book.cost("openai", "acme-llm-7b", datetime(2024, 6, 1, tzinfo=UTC), tokens) is None  # before any


def test_price_file_is_used_by_configure_and_the_store(make_store, openai_client, tmp_path):
    (tmp_path / "unitcost.toml").write_text(PRICE_FILE)  # found in the working directory
    db = make_store()
    client = openai_client(ChatServer(model="acme-llm-7b-instruct", usage=usage_block(1000, 100)))
    client.chat.completions.create(model="acme-llm-7b-instruct", messages=PROMPT)

    (row,) = store_rows(db, "calls")
    assert row["price_source"] == "override"
    # 1100 tokens at $0.01 per million, plus $0.0001 per request.
    assert row["cost_pico"] == 1100 * 10_000 + 100_000_000


def test_price_file_names_the_model_the_caller_asked_for(make_store, openai_client, tmp_path):
    # A user writes the model name their code uses; OpenAI answers with a dated snapshot
    # (gpt-4o-mini-2024-07-18). The override must still apply, not genai-prices' list price.
    price_file = tmp_path / "prices.toml"
    price_file.write_text('[[price]]\nmodel = "gpt-4o-mini"\ninput_mtok = 1.0\noutput_mtok = 2.0\n')
    db = make_store(price_file=price_file)
    client = openai_client(ChatServer(model=GPT4O_MINI, usage=usage_block(1_000_000, 1_000_000)))
    client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)

    (row,) = store_rows(db, "calls")
    assert (row["price_source"], row["cost_pico"]) == ("override", 3 * 10**12)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[price]\nmodel = 'x'", "cannot read price file"),  # not TOML
        ("[[price]]\nmodel = 'x'\ninput_mtk = 1.0\n", "input_mtk"),  # a typo is not silently ignored
        ("[[price]]\nmodel = 'x'\n", "sets no input_mtok, output_mtok or per_request"),
        ("[[price]]\nmodel = 'x'\ninput_mtok = 'cheap'\n", "input_mtok"),
        ("price = 3\n", "must be an array of tables"),
        ("[[price]]\ninput_mtok = 1.0\n", "model"),
    ],
)
def test_malformed_price_file_is_a_configuration_error(tmp_path, content, message):
    path = tmp_path / "prices.toml"
    path.write_text(content)
    with pytest.raises(unitcost.ConfigurationError, match=message):
        unitcost.configure(service_name="tests", db=tmp_path / "x.db", price_file=path)


def test_missing_price_file_is_a_configuration_error(tmp_path, monkeypatch):
    with pytest.raises(unitcost.ConfigurationError, match="does not exist"):
        unitcost.configure(service_name="tests", db=tmp_path / "x.db", price_file=tmp_path / "nope.toml")
    monkeypatch.setenv("UNITCOST_PRICES", str(tmp_path / "also-nope.toml"))
    with pytest.raises(unitcost.ConfigurationError, match="does not exist"):
        unitcost.configure(service_name="tests", db=tmp_path / "x.db")
