"""The provider-neutral usage record, and its split into non-overlapping buckets.

Adapters fill a `TokenUsage` in the OpenTelemetry meaning (``input_tokens`` is ALL input, cache reads
and writes included; ``output_tokens`` is ALL output, reasoning included) because that is what goes on
the span. The store needs buckets that do not overlap, so each token is priced exactly once:
`Buckets.from_usage` derives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..common import attributes as A

__all__ = ["AUDIO_SHARES", "Buckets", "TokenUsage", "UsagePart", "clean_count", "usage_parts"]

# Anything above this is not a token count a provider sends; it is a corrupted field.
_MAX_TOKENS = 10**12


def clean_count(value: Any) -> int | None:
    """A token count from a provider field, or None when the field is missing or unusable.

    Provider SDKs and compatible servers send None, floats, strings and sometimes junk. A usable
    count is a non-negative whole number below a sanity bound.
    """
    if type(value) is int:  # the common case first: this runs for every bucket of every call stored
        return value if 0 <= value <= _MAX_TOKENS else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        count = value
    elif isinstance(value, float):
        if value != value or not value.is_integer():  # NaN or fractional
            return None
        count = int(value)
    elif isinstance(value, str):
        try:
            count = int(value.strip())
        except ValueError:
            return None
    else:
        return None
    if count < 0 or count > _MAX_TOKENS:
        return None
    return count


# Server-side tool requests of one call: a count beyond this is a corrupted field, not requests.
_MAX_REQUESTS = 10**6


def _requests(value: Any) -> int:
    count = None if value is None else clean_count(value)
    return count if count is not None and count <= _MAX_REQUESTS else 0


@dataclass(slots=True, frozen=True)
class UsagePart:
    """A part of a call's billed usage that is a step of its own (an Anthropic compaction or advisor
    iteration) and may be priced by another model (``model`` None: the call's own). Its tokens are
    also in the call's totals; the call's own model prices the rest."""

    kind: str
    model: str | None
    input_tokens: int = 0  # all input, cache reads and writes included
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # all cache writes, the 1-hour part included
    cache_write_1h_tokens: int = 0
    output_tokens: int = 0


@dataclass(slots=True)
class TokenUsage:
    """Usage of one call, in the OpenTelemetry meaning (totals with their parts)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # all cache writes; the 1-hour part is also in cache_write_1h_tokens
    cache_write_1h_tokens: int = 0
    # Recorded parts of cache_write_tokens that genai-prices cannot price apart (OpenAI retention).
    cache_write_30m_tokens: int = 0
    cache_write_12h_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    estimate_method: str | None = None  # "tiktoken:<encoding>" or "chars/4" when estimated
    # Server-side tool requests, priced per request (Anthropic's server_tool_use).
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    # True when the provider reported at least one usable count: an all-zero usage is then zero
    # tokens, priced, rather than a usage block with nothing in it (unpriced; see LLMCall.finish).
    counts_reported: bool = False
    parts: tuple[UsagePart, ...] = ()
    # Audio tokens (Gemini), billed at their own rates: parts of the totals above. The audio input
    # includes the audio read from the cache (also in cache_read_tokens); the audio output is visible
    # output (not reasoning).
    input_audio_tokens: int = 0
    cache_read_audio_tokens: int = 0
    output_audio_tokens: int = 0

    def span_attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {A.INPUT_TOKENS: self.input_tokens, A.OUTPUT_TOKENS: self.output_tokens}
        if self.cache_read_tokens:
            attrs[A.CACHE_READ_TOKENS] = self.cache_read_tokens
        if self.cache_write_tokens:
            attrs[A.CACHE_WRITE_TOKENS] = self.cache_write_tokens
        if self.cache_write_1h_tokens:
            attrs[A.CACHE_WRITE_1H_TOKENS] = self.cache_write_1h_tokens
        if self.cache_write_30m_tokens:
            attrs[A.CACHE_WRITE_30M_TOKENS] = self.cache_write_30m_tokens
        if self.cache_write_12h_tokens:
            attrs[A.CACHE_WRITE_12H_TOKENS] = self.cache_write_12h_tokens
        if self.reasoning_tokens:
            attrs[A.REASONING_TOKENS] = self.reasoning_tokens
        if self.estimated:
            attrs[A.USAGE_ESTIMATED] = True
            if self.estimate_method:
                attrs[A.USAGE_ESTIMATE_METHOD] = self.estimate_method
        if self.web_search_requests:
            attrs[A.WEB_SEARCH_REQUESTS] = self.web_search_requests
        if self.web_fetch_requests:
            attrs[A.WEB_FETCH_REQUESTS] = self.web_fetch_requests
        if self.input_audio_tokens:
            attrs[A.INPUT_AUDIO_TOKENS] = self.input_audio_tokens
        if self.cache_read_audio_tokens:
            attrs[A.CACHE_READ_AUDIO_TOKENS] = self.cache_read_audio_tokens
        if self.output_audio_tokens:
            attrs[A.OUTPUT_AUDIO_TOKENS] = self.output_audio_tokens
        if self.parts:
            parts = self.parts
            attrs[A.USAGE_PART_KINDS] = [p.kind for p in parts]
            attrs[A.USAGE_PART_MODELS] = [p.model or "" for p in parts]
            attrs[A.USAGE_PART_INPUT_TOKENS] = [p.input_tokens for p in parts]
            attrs[A.USAGE_PART_CACHE_READ_TOKENS] = [p.cache_read_tokens for p in parts]
            attrs[A.USAGE_PART_CACHE_WRITE_TOKENS] = [p.cache_write_tokens for p in parts]
            attrs[A.USAGE_PART_CACHE_WRITE_1H_TOKENS] = [p.cache_write_1h_tokens for p in parts]
            attrs[A.USAGE_PART_OUTPUT_TOKENS] = [p.output_tokens for p in parts]
        return attrs


def usage_parts(attrs: Any) -> list[tuple[str, str | None, Buckets]]:
    """The parts a call's span carries (`UsagePart`), each as (kind, model or None, buckets); an
    empty list when it has none. Arrays of unequal length or junk entries are read as far as they go."""
    kinds = attrs.get(A.USAGE_PART_KINDS)
    if not kinds:
        return []
    models = attrs.get(A.USAGE_PART_MODELS) or ()
    columns = [
        attrs.get(name) or ()
        for name in (
            A.USAGE_PART_INPUT_TOKENS, A.USAGE_PART_CACHE_READ_TOKENS, A.USAGE_PART_CACHE_WRITE_TOKENS,
            A.USAGE_PART_CACHE_WRITE_1H_TOKENS, A.USAGE_PART_OUTPUT_TOKENS,
        )
    ]
    parts = []
    for i, kind in enumerate(kinds):
        inp, read, write, write_1h, out = ((clean_count(c[i]) or 0) if i < len(c) else 0 for c in columns)
        write_1h = min(write_1h, write)
        read = min(read, inp)
        write = min(write, inp - read)
        write_1h = min(write_1h, write)
        model = str(models[i]) if i < len(models) and models[i] else None
        parts.append((str(kind), model, Buckets(inp - read - write, read, write - write_1h, write_1h, out, 0)))
    return parts


# A bucket -> the field holding its audio share (`Buckets`), priced at the audio rate.
AUDIO_SHARES = {"uncached_input": "uncached_input_audio", "cache_read": "cache_read_audio",
                "visible_output": "visible_output_audio"}


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and the exporter makes
# one of these for every call it stores. Nothing changes a Buckets after it is made.
@dataclass(slots=True)
class Buckets:
    """Non-overlapping token buckets: each token of a call is in exactly one of them.

    Audio tokens are billed at audio rates. The store keeps them in the bucket of their kind (an
    uncached audio token is uncached input), and the last three fields say how many of a bucket's
    tokens are audio: the price book prices a bucket's audio share at the audio rate and only the
    rest at the bucket's own, so each token is still priced once (`AUDIO_SHARES`).
    """

    uncached_input: int = 0
    cache_read: int = 0
    cache_write: int = 0  # default-retention (5-minute) writes
    cache_write_1h: int = 0
    visible_output: int = 0
    reasoning: int = 0
    # Not tokens: server-side tool requests, priced per request.
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    # The audio share of uncached_input, of cache_read and of visible_output.
    uncached_input_audio: int = 0
    cache_read_audio: int = 0
    visible_output_audio: int = 0

    @property
    def input_total(self) -> int:
        return self.uncached_input + self.cache_read + self.cache_write + self.cache_write_1h

    @property
    def output_total(self) -> int:
        return self.visible_output + self.reasoning

    def minus(self, other: Buckets) -> Buckets:
        """These buckets without ``other``'s tokens (a part priced apart), never below zero. Output
        comes off the visible output first, then the reasoning. A part has no audio share: what is
        left keeps this call's, as far as its buckets hold it."""
        visible = self.visible_output - other.output_total
        uncached = max(self.uncached_input - other.uncached_input, 0)
        cache_read = max(self.cache_read - other.cache_read, 0)
        return Buckets(
            uncached,
            cache_read,
            max(self.cache_write - other.cache_write, 0),
            max(self.cache_write_1h - other.cache_write_1h, 0),
            max(visible, 0),
            max(self.reasoning + min(visible, 0), 0),
            self.web_search_requests,
            self.web_fetch_requests,
            min(self.uncached_input_audio, uncached),
            min(self.cache_read_audio, cache_read),
            min(self.visible_output_audio, max(visible, 0)),
        )

    @classmethod
    def from_span_attributes(cls, attrs: Any) -> Buckets:
        """Split OpenTelemetry-meaning totals into buckets.

        A part larger than its total (a server that reports cached tokens beyond prompt tokens) is
        trusted over the total: the total is raised to the sum of the parts, never made negative.
        """
        # The exporter's hot path: a field that is absent (most are, most of the time) costs one
        # dict lookup, a plain int in range one type check, and only anything else goes through clean_count.
        get = attrs.get
        value = get(A.CACHE_READ_TOKENS)
        if value is None:
            cache_read = 0
        elif type(value) is int and 0 <= value <= _MAX_TOKENS:
            cache_read = value
        else:
            cache_read = clean_count(value) or 0
        value = get(A.CACHE_WRITE_TOKENS)
        found = None if value is None else clean_count(value)
        if found is None:
            value = get(A.CACHE_WRITE_TOKENS_NEXT)
            found = None if value is None else clean_count(value)
        cache_write_all = found or 0
        cache_write_1h = 0
        if cache_write_all:
            value = get(A.CACHE_WRITE_1H_TOKENS)
            found = None if value is None else clean_count(value)
            if found is None:  # an anthropic SDK span that unitcost did not adopt
                value = get(A.ANTHROPIC_CACHE_WRITE_1H_TOKENS)
                found = None if value is None else clean_count(value)
            cache_write_1h = min(found or 0, cache_write_all)
        value = get(A.INPUT_TOKENS)
        if value is None:
            input_all = 0
        elif type(value) is int and 0 <= value <= _MAX_TOKENS:
            input_all = value
        else:
            input_all = clean_count(value) or 0
        value = get(A.REASONING_TOKENS)
        if value is None:
            reasoning = 0
        elif type(value) is int and 0 <= value <= _MAX_TOKENS:
            reasoning = value
        else:
            reasoning = clean_count(value) or 0
        value = get(A.OUTPUT_TOKENS)
        if value is None:
            output_all = 0
        elif type(value) is int and 0 <= value <= _MAX_TOKENS:
            output_all = value
        else:
            output_all = clean_count(value) or 0
        searches, fetches = get(A.WEB_SEARCH_REQUESTS), get(A.WEB_FETCH_REQUESTS)
        searches = 0 if searches is None else _requests(searches)
        fetches = 0 if fetches is None else _requests(fetches)
        uncached_input = input_all - cache_read - cache_write_all
        if uncached_input < 0:
            uncached_input = 0
        visible_output = output_all - reasoning
        if visible_output < 0:
            visible_output = 0
        buckets = cls(
            uncached_input, cache_read, cache_write_all - cache_write_1h, cache_write_1h, visible_output, reasoning,
            searches, fetches,
        )
        input_audio, output_audio = get(A.INPUT_AUDIO_TOKENS), get(A.OUTPUT_AUDIO_TOKENS)
        if input_audio is not None or output_audio is not None:  # rare: one look-up each otherwise
            # Each share is held to its bucket: audio never raises a bucket, so never a total.
            read_audio = min(clean_count(get(A.CACHE_READ_AUDIO_TOKENS)) or 0, cache_read)
            buckets.cache_read_audio = read_audio
            input_audio = (clean_count(input_audio) or 0) if input_audio is not None else 0
            buckets.uncached_input_audio = min(max(input_audio - read_audio, 0), uncached_input)
            output_audio = (clean_count(output_audio) or 0) if output_audio is not None else 0
            buckets.visible_output_audio = min(output_audio, visible_output)
        return buckets
