"""Audio tokens: each bucket's audio share is priced at the audio rate, exactly as genai-prices prices
the same usage, on both of unitcost's paths (Decimal and whole pico-dollars); a model without audio
rates, or a price file without them, prices audio as the bucket it is in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from genai_prices import calc_price
from hypothesis import example, given, settings
from hypothesis import strategies as st

from unitcost.common import attributes as A
from unitcost.common.money import to_pico
from unitcost.pricing.book import PriceBook, PriceOverride, genai_usage
from unitcost.pricing.usage import Buckets, TokenUsage

WHEN = datetime(2025, 11, 25, 9, 0, tzinfo=UTC)
WHEN_NS = int(WHEN.timestamp()) * 10**9
MODELS = [
    ("google", "gemini-2.5-flash"),  # audio input and cached audio input rates (the fast path)
    ("google", "gemini-2.0-flash"),
    ("google", "gemini-live-2.5-flash"),  # audio output too, and image rates: genai-prices itself prices it
    ("aws", "amazon.nova-sonic-v1:0"),  # audio input and output rates, no cache (the fast path)
    ("google", "gemini-2.5-pro"),  # no audio rates, tiered above 200k input tokens
    ("openai", "gpt-4o-mini"),  # no audio rates
]
BOOK = PriceBook()
tokens = st.integers(min_value=0, max_value=300_000)


@st.composite
def audio_buckets(draw: st.DrawFn) -> Buckets:
    b = draw(st.builds(Buckets, tokens, tokens, st.just(0), st.just(0), tokens, tokens))
    return replace(
        b,
        uncached_input_audio=draw(st.integers(0, b.uncached_input)),
        cache_read_audio=draw(st.integers(0, b.cache_read)),
        visible_output_audio=draw(st.integers(0, b.visible_output)),
    )


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(MODELS), buckets=audio_buckets())
@example(model=("google", "gemini-2.5-flash"), buckets=Buckets(840, 2120, 0, 0, 58, 120, 0, 0, 800, 1920, 0))
@example(model=("aws", "amazon.nova-sonic-v1:0"), buckets=Buckets(1000, 0, 0, 0, 500, 0, 0, 0, 1000, 0, 500))
def test_audio_is_priced_as_genai_prices_prices_it(model, buckets):
    provider, name = model
    theirs = calc_price(genai_usage(buckets), name, provider_id=provider, genai_request_timestamp=WHEN).total_price
    slow = BOOK.cost(provider, name, WHEN, buckets)
    assert slow.total == theirs
    total, reasoning, _ = BOOK.cost_pico_at_ns(provider, name, WHEN_NS, WHEN_NS + 10**9, buckets)
    assert (total, reasoning) == (to_pico(theirs), to_pico(slow.reasoning))


def test_hand_computed_audio_prices():
    # gemini-2.5-flash per million: text input $0.30, cached $0.03; audio input $1.00, cached $0.10.
    # 100 uncached tokens of which 60 audio: 40 * 0.30 + 60 * 1.00 = 72; 50 cached of which 10 audio:
    # 40 * 0.03 + 10 * 0.10 = 2.2; so $0.0000742.
    buckets = Buckets(uncached_input=100, cache_read=50, uncached_input_audio=60, cache_read_audio=10)
    assert BOOK.cost("gcp.gemini", "gemini-2.5-flash", WHEN, buckets).total == Decimal("0.0000742")
    # amazon.nova-sonic-v1:0: audio output $13.60, text output $0.24: 10 audio + 5 text = 137.2 per million.
    out = Buckets(visible_output=15, visible_output_audio=10)
    assert BOOK.cost("aws.bedrock", "amazon.nova-sonic-v1:0", WHEN, out).total == Decimal("0.0001372")
    # The same tokens without their audio share: all text.
    assert BOOK.cost("gcp.gemini", "gemini-2.5-flash", WHEN, Buckets(100, 50)).total == Decimal("0.0000315")


def test_a_price_file_without_audio_rates_prices_audio_as_its_bucket():
    rates = PriceOverride(model="my-model", input_mtok=Decimal(2), output_mtok=Decimal(8)).rates()
    buckets = Buckets(uncached_input=1_000_000, uncached_input_audio=400_000)
    assert rates.cost(buckets).total == Decimal(2) and rates.cost_pico(buckets) == (2 * 10**12, 0)


def test_audio_shares_go_through_the_span_and_are_held_to_their_buckets():
    usage = TokenUsage(input_tokens=2960, cache_read_tokens=2120, output_tokens=178, reasoning_tokens=120,
                       input_audio_tokens=2720, cache_read_audio_tokens=1920, output_audio_tokens=0)
    attrs = usage.span_attributes()
    assert (attrs[A.INPUT_AUDIO_TOKENS], attrs[A.CACHE_READ_AUDIO_TOKENS]) == (2720, 1920)
    assert A.OUTPUT_AUDIO_TOKENS not in attrs
    b = Buckets.from_span_attributes(attrs)
    assert (b.uncached_input, b.uncached_input_audio, b.cache_read, b.cache_read_audio) == (840, 800, 2120, 1920)
    assert b.input_total == 2960  # audio is inside the totals, never added to them
    # Audio counts larger than the buckets they are part of (a corrupt field) never raise a total.
    odd = Buckets.from_span_attributes({A.INPUT_TOKENS: 10, A.OUTPUT_TOKENS: 3, A.INPUT_AUDIO_TOKENS: 50,
                                        A.CACHE_READ_AUDIO_TOKENS: 7, A.OUTPUT_AUDIO_TOKENS: "9"})
    assert (odd.uncached_input, odd.uncached_input_audio, odd.cache_read_audio) == (10, 10, 0)
    assert (odd.visible_output, odd.visible_output_audio) == (3, 3)
    assert (odd.input_total, odd.output_total) == (10, 3)
