"""Prices for LLM calls: genai-prices' offline data, overridden by the user's own price file.

genai-prices' ``calc_price`` costs a few hundred microseconds a call, far too slow for an exporter
that must persist 100,000 spans a second. So a `PriceBook` resolves each distinct (provider, model,
price context, price period) once into `Rates`, a per-bucket table of Decimal prices, and prices
every call from that. The result is the same as genai-prices' own (a property test checks it);
a price shape the fast path does not know falls back to genai-prices itself.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..common.errors import ConfigurationError
from ..common.money import to_pico
from .energy import EnergyBook, EnergyOverride
from .runtime import RuntimeRule, TimePrice, most_specific, specificity_of
from .usage import AUDIO_SHARES, Buckets

__all__ = [
    "GENAI_PRICES_PROVIDERS", "PriceBook", "PriceOverride", "find_price_file", "genai_prices_provider", "genai_usage",
    "tier_rate", "utc_from_ns",
]

PRICE_FILE_NAME = "unitcost.toml"
_MTOK = Decimal(1_000_000)

# Buckets and the genai-prices price keys that may price them, most specific first. This mirrors
# genai-prices' unit hierarchy: a bucket falls back to its nearest priced ancestor.
_BUCKET_PRICE_KEYS: dict[str, tuple[str, ...]] = {
    "uncached_input": ("input_mtok",),
    "cache_read": ("cache_read_mtok", "input_mtok"),
    "cache_write": ("cache_write_mtok", "input_mtok"),
    "cache_write_1h": ("cache_write_1h_mtok", "cache_write_mtok", "input_mtok"),
    "visible_output": ("output_mtok",),
    "reasoning": ("output_reasoning_mtok", "output_mtok"),
    # The audio shares of three buckets (`unitcost.pricing.usage.AUDIO_SHARES`). Cached audio has two
    # nearer ancestors (audio input, cache reads): a model that prices both but not cached audio
    # itself is priced by genai-prices itself (`rates_from_model_price`).
    "uncached_input_audio": ("input_audio_mtok", "input_mtok"),
    "cache_read_audio": ("cache_audio_read_mtok", "input_audio_mtok", "cache_read_mtok", "input_mtok"),
    "visible_output_audio": ("output_audio_mtok", "output_mtok"),
}
# Price keys the fast path understands. Web searches are counted and priced per 1000; the other
# count-based fees are for things unitcost does not count, zero for every call it records.
_FAST_PATH_KEYS = {key for keys in _BUCKET_PRICE_KEYS.values() for key in keys} | {
    "requests_kcount",
    "web_searches_kcount",
    "storage_searches_kcount",
    "social_searches_kcount",
    "code_executions_kcount",
}


# gen_ai.provider.name (OpenTelemetry's well-known values, else unitcost's own) -> genai-prices'
# provider id. The ONE place where the two vocabularies meet; a name not here is looked up in
# genai-prices as it is, and a provider genai-prices does not know leaves its calls unpriced unless
# the price file prices them.
GENAI_PRICES_PROVIDERS = {
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "x_ai": "x-ai",
    "mistral_ai": "mistral",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "ibm.watsonx.ai": "ibm",
}


def genai_prices_provider(provider: str) -> str:
    """The genai-prices provider id for a gen_ai.provider.name."""
    return GENAI_PRICES_PROVIDERS.get(provider, provider)


_SECONDS_PER_HOUR = Decimal(3600)


@dataclass(frozen=True, slots=True)
class CallCost:
    total: Decimal
    reasoning: Decimal  # the part of `total` paid for reasoning tokens
    source: str  # "genai-prices" or "override"


# (the six token buckets' rates, the audio shares' extra rates, the reasoning rate): see `Rates.cost_pico`.
_PicoTable = tuple[tuple[int, int, int, int, int, int], tuple[tuple[str, int], ...], int]


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per million tokens for each bucket, with the genai-prices tiers kept as they are."""

    per_bucket: Mapping[str, Any]  # bucket -> Decimal | TieredPrices | None
    per_request: Decimal
    source: str
    exact_fallback: Any = None  # a genai-prices ModelPrice when the fast path cannot price it
    per_web_search: Decimal = Decimal(0)  # USD per server-side web search request
    # Priced by time (self-hosted `hourly_usd`, or a `[[runtime]]` entry naming the model): the call's
    # own duration through `unitcost.pricing.runtime.TimePrice`, added to its token prices.
    time_price: TimePrice | None = None
    # The same rates in whole pico-dollars per token (see `cost_pico`), or None when some rate is not
    # a whole number of them, is tiered, or is by time: those calls take the Decimal path.
    pico_per_token: tuple[tuple[str, int], ...] | None = field(init=False, default=None)
    pico_reasoning: int = field(init=False, default=0)
    pico_per_request: int = field(init=False, default=0)
    pico_per_web_search: int = field(init=False, default=0)
    # `cost_pico`'s table: (the six token buckets' rates in `_MAIN_BUCKETS` order, the audio shares'
    # extra rates, the reasoning rate), or None. Tiered rates (genai-prices' cliff model) have one per
    # tier the call's input reaches, made at its first call: `_tier_starts` are the tiers' starts.
    _table: _PicoTable | None = field(init=False, default=None, repr=False, compare=False)
    _tier_starts: tuple[Any, ...] | None = field(init=False, default=None, repr=False, compare=False)
    _tier_tables: dict[int, _PicoTable | None] = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Exact integer prices for the exporter: $0.15 per million tokens is 150,000 pico-dollars a
        # token, so a call's cost is a sum of integer products, equal to what `cost` gives (Decimal,
        # then rounded to the pico-dollar) whenever every rate is a whole number of pico-dollars.
        if self.exact_fallback is not None or self.time_price is not None:
            return
        request, search = _whole(self.per_request * _PICO_PER_USD), _whole(self.per_web_search * _PICO_PER_USD)
        if request is None or search is None:
            return
        object.__setattr__(self, "pico_per_request", request)
        object.__setattr__(self, "pico_per_web_search", search)
        tiered = [p for p in self.per_bucket.values() if p is not None and not isinstance(p, Decimal)]
        if tiered:
            if all(getattr(p, "tiers", None) is not None for p in tiered):
                object.__setattr__(self, "_tier_starts", tuple(sorted({t.start for p in tiered for t in p.tiers})))
            return
        per_token = _pico_per_token(self.per_bucket)
        if per_token is None:
            return
        object.__setattr__(self, "pico_per_token", per_token)
        object.__setattr__(self, "pico_reasoning", dict(per_token).get("reasoning", 0))
        object.__setattr__(self, "_table", _pico_table(per_token))

    def cost_pico(self, buckets: Buckets) -> tuple[int, int] | None:
        """(total, reasoning part) in pico-dollars, in integers; None when these rates need `cost`."""
        table = self._table
        if table is None:
            starts = self._tier_starts
            if starts is None:
                return None
            table = self._tier_table(starts, buckets.input_total)
            if table is None:
                return None
        (uncached, read, write, write_1h, visible, reasoning), audio, reasoning_rate = table
        total = (
            self.pico_per_request + self.pico_per_web_search * buckets.web_search_requests
            + uncached * buckets.uncached_input + read * buckets.cache_read + write * buckets.cache_write
            + write_1h * buckets.cache_write_1h + visible * buckets.visible_output + reasoning * buckets.reasoning
        )
        for bucket, pico in audio:  # usually none
            total += pico * getattr(buckets, bucket)
        return total, reasoning_rate * buckets.reasoning

    def _tier_table(self, starts: tuple[Any, ...], input_total: int) -> _PicoTable | None:
        """The table for a call of this input: which tier prices each bucket (`tier_rate`) depends only
        on which of the tiers' starts the input exceeds, i.e. on how many (they are sorted)."""
        reached = 0
        for start in starts:
            if input_total > start:
                reached += 1
        try:
            return self._tier_tables[reached]
        except KeyError:
            pass
        flat = {b: None if p is None else tier_rate(p, input_total) for b, p in self.per_bucket.items()}
        per_token = _pico_per_token(flat)
        table = self._tier_tables[reached] = None if per_token is None else _pico_table(per_token)
        return table

    @property
    def prices_tokens(self) -> bool:
        return self.exact_fallback is not None or any(p is not None for p in self.per_bucket.values())

    def cost(self, buckets: Buckets, duration_s: Decimal | None = None) -> CallCost:
        time_cost = (
            self.time_price.cost(duration_s) if self.time_price is not None and duration_s is not None else Decimal(0)
        )
        if self.exact_fallback is not None:
            priced = _genai_cost(self.exact_fallback, buckets, self.source)
            return CallCost(priced.total + time_cost, priced.reasoning, priced.source)
        input_total = buckets.input_total
        total = Decimal(0)
        reasoning = Decimal(0)
        for bucket, price in self.per_bucket.items():
            count = getattr(buckets, bucket)
            if not count or price is None:
                continue
            audio = AUDIO_SHARES.get(bucket)
            if audio is not None and self.per_bucket.get(audio) is not None:
                count -= getattr(buckets, audio)  # priced at the audio rate, as a bucket of its own
            part = tier_rate(price, input_total) * count / _MTOK
            total += part
            if bucket == "reasoning":
                reasoning = part
        if buckets.web_search_requests:
            total += self.per_web_search * buckets.web_search_requests
        return CallCost(total + self.per_request + time_cost, reasoning, self.source)


_AUDIO_PARENT = {share: bucket for bucket, share in AUDIO_SHARES.items()}
_PICO_PER_USD = Decimal(10) ** 12
_PICO_PER_TOKEN_PER_MTOK = _PICO_PER_USD / _MTOK  # USD per million tokens -> pico-dollars per token
_MAIN_BUCKETS = ("uncached_input", "cache_read", "cache_write", "cache_write_1h", "visible_output", "reasoning")


def _pico_per_token(per_bucket: Mapping[str, Any]) -> tuple[tuple[str, int], ...] | None:
    """Flat rates (Decimal USD per million tokens, or None) in whole pico-dollars per token, by bucket;
    None when one is not a whole number of them."""
    per_token = []
    for bucket, price in per_bucket.items():
        if price is None:
            continue
        pico = _whole(price * _PICO_PER_TOKEN_PER_MTOK) if isinstance(price, Decimal) else None
        if pico is None:
            return None
        per_token.append((bucket, pico))
    # A bucket's audio share is counted at the bucket's rate above: its entry here adds the
    # difference, so an audio token costs the audio rate (and a model without audio rates adds none).
    whole = dict(per_token)
    per_token = []
    for bucket, pico in whole.items():
        parent = _AUDIO_PARENT.get(bucket)
        if parent is None:
            per_token.append((bucket, pico))
        elif parent not in whole:
            return None  # an audio rate without its bucket's: the Decimal path prices it
        elif pico != whole[parent]:
            per_token.append((bucket, pico - whole[parent]))
    return tuple(per_token)


def _pico_table(per_token: tuple[tuple[str, int], ...]) -> _PicoTable:
    rates = dict(per_token)
    main = tuple(rates.pop(bucket, 0) for bucket in _MAIN_BUCKETS)  # an unpriced bucket adds nothing
    return main, tuple(rates.items()), main[5]  # type: ignore[return-value]


def _whole(value: Decimal) -> int | None:
    return int(value) if value == value.to_integral_value() else None


def tier_rate(price: Any, input_total: int) -> Decimal:
    tiers = getattr(price, "tiers", None)
    if tiers is None:
        return price  # type: ignore[no-any-return]
    # genai-prices' cliff model: the highest tier whose start the call's input exceeds.
    for tier in reversed(tiers):
        if input_total > tier.start:
            return tier.price  # type: ignore[no-any-return]
    return price.base  # type: ignore[no-any-return]


def genai_usage(buckets: Buckets) -> Any:
    """The genai-prices `Usage` for these buckets (OpenTelemetry meaning: totals with parts)."""
    from genai_prices import Usage  # here: genai-prices loads its price data (start-up time)

    return Usage(
        input_tokens=buckets.input_total,
        cache_read_tokens=buckets.cache_read,
        cache_write_tokens=buckets.cache_write + buckets.cache_write_1h,
        cache_write_1h_tokens=buckets.cache_write_1h,
        output_tokens=buckets.output_total,
        output_reasoning_tokens=buckets.reasoning,
        web_searches=buckets.web_search_requests,
        # genai-prices' audio input includes the cached audio, as its cache reads do.
        input_audio_tokens=buckets.uncached_input_audio + buckets.cache_read_audio,
        cache_audio_read_tokens=buckets.cache_read_audio,
        output_audio_tokens=buckets.visible_output_audio,
    )


def _genai_cost(model_price: Any, buckets: Buckets, source: str) -> CallCost:
    total = model_price.calc_price(genai_usage(buckets))["total_price"]
    without = replace(buckets, reasoning=0)
    reasoning = total - model_price.calc_price(genai_usage(without))["total_price"] if buckets.reasoning else 0
    return CallCost(total, Decimal(reasoning), source)


_AMBIGUOUS_CACHED_AUDIO = {"input_audio_mtok", "cache_read_mtok"}


def rates_from_model_price(model_price: Any, source: str) -> Rates:
    keys = {k for k, v in model_price.__dict__.items() if v is not None and not k.startswith("_")}
    if not keys <= _FAST_PATH_KEYS or (_AMBIGUOUS_CACHED_AUDIO <= keys and "cache_audio_read_mtok" not in keys):
        return Rates({}, Decimal(0), source, exact_fallback=model_price)
    per_bucket = {}
    for bucket, candidates in _BUCKET_PRICE_KEYS.items():
        per_bucket[bucket] = next((getattr(model_price, k) for k in candidates if k in keys), None)
    requests = getattr(model_price, "requests_kcount", None) if "requests_kcount" in keys else None
    searches = getattr(model_price, "web_searches_kcount", None) if "web_searches_kcount" in keys else None
    return Rates(per_bucket, (requests or Decimal(0)) / 1000, source, per_web_search=(searches or Decimal(0)) / 1000)


# --- the user's price file ------------------------------------------------------------------------


class PriceOverride(BaseModel):
    """One `[[price]]` table of unitcost.toml."""

    model_config = ConfigDict(extra="forbid")

    model: str  # exact name or a glob such as "llama-3*"; compared case-insensitively
    provider: str | None = None  # None matches any provider
    since: date | None = None  # for price history: the newest entry whose `since` has passed wins
    input_mtok: Decimal | None = None
    output_mtok: Decimal | None = None
    cache_read_mtok: Decimal | None = None
    cache_write_mtok: Decimal | None = None
    cache_write_1h_mtok: Decimal | None = None
    reasoning_mtok: Decimal | None = None
    per_request: Decimal | None = None  # a fixed fee per call, USD
    # Self-hosted models priced by time: each call costs duration_s * hourly_usd / 3600 / concurrency
    # (the machine's price per hour, shared by the calls it serves at once).
    hourly_usd: Decimal | None = None
    concurrency: Decimal | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _floats_as_text(cls, value: Any) -> Any:
        # TOML floats are binary; read them through their repr so 0.15 stays 0.15.
        return repr(value) if isinstance(value, float) else value

    def matches(self, provider: str, model: str, when: datetime) -> bool:
        # `provider` is gen_ai.provider.name ("azure.ai.openai"); its genai-prices id ("azure") works too.
        if self.provider is not None and self.provider.lower() not in (
            provider.lower(), genai_prices_provider(provider).lower()
        ):
            return False
        if self.since is not None and when.date() < self.since:
            return False
        return fnmatch.fnmatchcase(model.lower(), self.model.lower())

    def rates(self) -> Rates:
        if all(v is None for v in (self.input_mtok, self.output_mtok, self.per_request, self.hourly_usd)):
            name = self.model
            raise ValueError(f"price for {name!r} sets no input_mtok, output_mtok or per_request (nor hourly_usd)")
        if self.concurrency is not None and (self.concurrency <= 0 or self.hourly_usd is None):
            raise ValueError(f"price for {self.model!r}: concurrency must be > 0 and goes with hourly_usd")
        time_price = None
        if self.hourly_usd is not None:
            time_price = TimePrice(self.hourly_usd / _SECONDS_PER_HOUR / (self.concurrency or 1))
        inp, out = self.input_mtok, self.output_mtok
        cache_write = self.cache_write_mtok if self.cache_write_mtok is not None else inp
        per_bucket = {
            "uncached_input": inp,
            "cache_read": self.cache_read_mtok if self.cache_read_mtok is not None else inp,
            "cache_write": cache_write,
            "cache_write_1h": self.cache_write_1h_mtok if self.cache_write_1h_mtok is not None else cache_write,
            "visible_output": out,
            "reasoning": self.reasoning_mtok if self.reasoning_mtok is not None else out,
        }
        return Rates(per_bucket, self.per_request or Decimal(0), "override", time_price=time_price)

    def specificity(self) -> tuple[int, ...]:
        return specificity_of((self.provider, self.model))


def load_price_file(path: Path) -> list[PriceOverride]:
    """The file's `[[price]]` entries, newest `since` first (see `load_price_tables` for both kinds)."""
    return load_price_tables(path)[0]


def load_price_tables(path: Path) -> tuple[list[PriceOverride], list[RuntimeRule], EnergyBook]:
    """The file's `[[price]]` entries (newest `since` first), its `[[runtime]]` entries and its
    `[[energy]]` entries."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read price file {path}: {exc}") from exc
    entries, runtime, energy = data.get("price", []), data.get("runtime", []), data.get("energy", [])
    if not isinstance(entries, list):
        raise ConfigurationError(f"{path}: [[price]] must be an array of tables")
    if not isinstance(runtime, list) or not isinstance(energy, list):
        raise ConfigurationError(f"{path}: [[runtime]] and [[energy]] must be arrays of tables")
    try:
        overrides = [PriceOverride.model_validate(entry) for entry in entries]
        for override in overrides:
            override.rates()
        rules = [RuntimeRule.model_validate(entry) for entry in runtime]
        energy_book = EnergyBook([EnergyOverride.model_validate(entry) for entry in energy])
    except (ValidationError, ValueError) as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    # Newest `since` first, so history resolves to the entry in force at the call's time.
    return sorted(overrides, key=lambda o: o.since or date.min, reverse=True), rules, energy_book


def find_price_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The price file in force: the explicit path, else $UNITCOST_PRICES, else ./unitcost.toml."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get("UNITCOST_PRICES")
    if env:
        return Path(env)
    local = Path.cwd() / PRICE_FILE_NAME
    return local if local.is_file() else None


# --- the price book -------------------------------------------------------------------------------


class PriceBook:
    """Prices calls, resolving each distinct (provider, model, context, period) once."""

    def __init__(
        self,
        overrides: list[PriceOverride] | None = None,
        runtime: list[RuntimeRule] | None = None,
        energy: EnergyBook | None = None,
    ) -> None:
        self._overrides = overrides or []
        self.energy = energy or EnergyBook()  # per-call energy estimates, made by the store writer too
        self._runtime = runtime or []
        self._call_runtime = [r for r in self._runtime if r.prices_calls]
        self._span_runtime = [r for r in self._runtime if not r.prices_calls]
        self.prices_runs = bool(self._span_runtime)  # some [[runtime]] entry prices runs or sessions by time
        self._span_time_prices: dict[tuple[str | None, str | None], TimePrice | None] = {}
        self._models: dict[tuple[str, str], Any] = {}  # (provider, model) -> genai ModelInfo | None
        self._rates: dict[tuple[Any, ...], Rates | None] = {}
        # The answer of `rates` by its arguments and day, for the answers that cannot change within
        # a day (not a model priced by time of day), so a repeated call is one dict lookup.
        self._resolved: dict[tuple[Any, ...], Rates | None] = {}
        self._resolved_by_day: dict[tuple[Any, ...], Rates | None] = {}  # the same, by Unix day (rates_at_ns)
        self._by_time_of_day: dict[int, bool] = {}  # id(genai ModelInfo) -> has a time-of-day price

    @classmethod
    def from_price_file(cls, path: str | os.PathLike[str] | None = None) -> PriceBook:
        found = find_price_file(path)
        if found is None:
            return cls()
        if not found.is_file():
            raise ConfigurationError(f"price file {found} does not exist")
        return cls(*load_price_tables(found))

    def rates(
        self,
        provider: str,
        model: str,
        when: datetime,
        service_tier: str | None = None,
        context: Mapping[str, str] | None = None,
        also_known_as: str | None = None,
    ) -> Rates | None:
        """The rates in force for this call, or None when the model is unknown (unpriced).

        ``context`` holds other price modifiers the response reported, as genai-prices names them
        (``{"processing": "batch"}``, ``{"speed": "fast"}``); one it has no rates for changes nothing.
        ``also_known_as`` is the call's other model name (the one requested, when ``model`` is the
        dated one the provider answered with): the user's price file wins under either name, then
        genai-prices under either.
        """
        front = (
            provider, model, also_known_as, service_tier, tuple(sorted(context.items())) if context else (),
            when.year, when.month, when.day,
        )
        try:
            return self._resolved[front]
        except KeyError:
            pass
        found, same_all_day = self._resolve(provider, model, when, service_tier, context, also_known_as)
        if same_all_day:
            self._resolved[front] = found
        return found

    def rates_at_ns(
        self,
        provider: str,
        model: str,
        started_ns: int,
        service_tier: str | None = None,
        context: Mapping[str, str] | None = None,
        also_known_as: str | None = None,
    ) -> Rates | None:
        """`rates` for a call started at ``started_ns`` (Unix ns, UTC): the exporter's path, which
        makes no datetime for a call whose rates are already known for its day."""
        front = (
            provider, model, also_known_as, service_tier, tuple(sorted(context.items())) if context else (),
            started_ns // _NS_PER_DAY,
        )
        try:
            return self._resolved_by_day[front]
        except KeyError:
            pass
        found, same_all_day = self._resolve(
            provider, model, utc_from_ns(started_ns), service_tier, context, also_known_as
        )
        if same_all_day:
            self._resolved_by_day[front] = found
        return found

    def _resolve(
        self,
        provider: str,
        model: str,
        when: datetime,
        service_tier: str | None,
        context: Mapping[str, str] | None,
        also_known_as: str | None,
    ) -> tuple[Rates | None, bool]:
        """The rates in force at ``when``, and whether they hold all of that UTC day."""
        found, same_all_day, override = self._resolve_tokens(
            provider, model, when, service_tier, context, also_known_as
        )
        if not self._call_runtime:
            return found, same_all_day
        # One time price a call: the most specific entry naming its model, [[price]] or [[runtime]].
        names = [model] if not also_known_as or also_known_as == model else [model, also_known_as]
        aliases = (genai_prices_provider(provider),)
        rule = most_specific([
            r for r in self._call_runtime if any(r.matches_call(provider, name, aliases) for name in names)
        ])
        if rule is None:
            return found, same_all_day
        if override is not None and override.hourly_usd is not None and override.specificity() >= rule.specificity():
            return found, same_all_day
        if found is None:  # a model priced by time alone
            return Rates({}, Decimal(0), "override", time_price=rule.time_price()), same_all_day
        return replace(found, time_price=rule.time_price(), source="override"), same_all_day

    def span_time_price(self, kind: str | None, session: str | None = None) -> TimePrice | None:
        """The `[[runtime]]` price of a run of ``kind`` (``session`` None) or of a session block of
        that name inside it; None when no entry prices it."""
        key = (kind, session)
        if key not in self._span_time_prices:
            rule = most_specific([r for r in self._span_runtime if r.matches_span(kind, session)])
            self._span_time_prices[key] = None if rule is None else rule.time_price()
        return self._span_time_prices[key]

    def runtime_cost_pico(self, kind: str | None, session: str | None, started_ns: int, ended_ns: int) -> int | None:
        """What a runtime charges for a run's wall time or a session block's, in pico-dollars; None
        when no `[[runtime]]` entry prices it."""
        price = self.span_time_price(kind, session)
        if price is None:
            return None
        return to_pico(price.cost(Decimal(max(ended_ns - started_ns, 0)) / _NS_PER_S))

    def _resolve_tokens(
        self,
        provider: str,
        model: str,
        when: datetime,
        service_tier: str | None,
        context: Mapping[str, str] | None,
        also_known_as: str | None,
    ) -> tuple[Rates | None, bool, PriceOverride | None]:
        names = [model] if not also_known_as or also_known_as == model else [model, also_known_as]
        for name in names:
            for override in self._overrides:
                if override.matches(provider, name, when):  # by date only: the same all day
                    return override.rates(), True, override
        info = None
        for name in names:
            info = self._model_info(provider, name)
            if info is not None:
                break
        if info is None:
            return None, True, None
        tier = service_tier if service_tier and service_tier not in ("auto", "default") else None
        price_context = dict(context or {})
        if tier:
            price_context["service_tier"] = tier
        by_time_of_day = self._by_time_of_day.get(id(info))
        if by_time_of_day is None:
            by_time_of_day = self._by_time_of_day[id(info)] = _has_time_of_day_price(info)
        key = (id(info), tuple(sorted(price_context.items())), _period(when, by_time_of_day))
        cached = self._rates.get(key)
        if cached is None:
            model_price = info.get_prices(when, price_context or None)
            cached = self._rates[key] = rates_from_model_price(model_price, "genai-prices")
        return cached, not by_time_of_day, None

    def cost(
        self,
        provider: str,
        model: str,
        when: datetime,
        buckets: Buckets,
        service_tier: str | None = None,
        context: Mapping[str, str] | None = None,
        *,
        duration_s: Decimal | None = None,
        usage_known: bool = True,
        also_known_as: str | None = None,
    ) -> CallCost | None:
        """The call's cost, or None when it cannot be priced: an unknown model, or a call whose usage
        is unknown (``usage_known=False``) under a price by tokens. ``duration_s`` prices a call by
        time (the price file's ``hourly_usd``)."""
        rates = self.rates(provider, model, when, service_tier, context, also_known_as)
        if rates is None or (not usage_known and rates.prices_tokens):
            return None
        return rates.cost(buckets, duration_s)

    def cost_pico_at_ns(
        self,
        provider: str,
        model: str,
        started_ns: int,
        ended_ns: int,
        buckets: Buckets,
        service_tier: str | None = None,
        context: Mapping[str, str] | None = None,
        *,
        usage_known: bool = True,
        also_known_as: str | None = None,
    ) -> tuple[int, int, str] | None:
        """`cost` in whole pico-dollars, (total, reasoning part, source), for a call stored by the
        exporter: integers when the rates allow (the common case), else `Rates.cost` rounded."""
        # `rates_at_ns`'s answer kept for the call's day, looked up here first (the exporter prices
        # every call it stores through this method: one Python call fewer when it is known).
        rates = self._resolved_by_day.get(
            (provider, model, also_known_as, service_tier, tuple(sorted(context.items())) if context else (),
             started_ns // _NS_PER_DAY),
            _UNRESOLVED,
        )
        if rates is _UNRESOLVED:
            rates = self.rates_at_ns(provider, model, started_ns, service_tier, context, also_known_as)
        if rates is None or (not usage_known and rates.prices_tokens):
            return None
        exact = rates.cost_pico(buckets)
        if exact is not None:
            return exact[0], exact[1], rates.source
        priced = rates.cost(buckets, Decimal(ended_ns - started_ns) / _NS_PER_S)
        return to_pico(priced.total), to_pico(priced.reasoning), priced.source

    def call_cost_pico(
        self,
        provider: str,
        model: str,
        started_ns: int,
        ended_ns: int,
        buckets: Buckets,
        parts: Sequence[tuple[str, str | None, Buckets]] = (),
        service_tier: str | None = None,
        context: Mapping[str, str] | None = None,
        *,
        usage_known: bool = True,
        also_known_as: str | None = None,
    ) -> tuple[int, int, str, list[int]] | None:
        """A stored call's cost in pico-dollars: (total, reasoning part, source, each part's cost).

        ``buckets`` hold all of the call's tokens; each of ``parts`` (kind, model, buckets: see
        `unitcost.pricing.usage.usage_parts`) is priced by its own model (the call's when None) and
        the rest by the call's. One part nobody prices makes the whole call unpriced: never a cost
        that silently leaves tokens out."""
        if not parts:
            priced = self.cost_pico_at_ns(
                provider, model, started_ns, ended_ns, buckets, service_tier, context,
                usage_known=usage_known, also_known_as=also_known_as,
            )
            return None if priced is None else (*priced, [])
        rest = buckets
        each: list[int] = []
        total = reasoning = 0
        for _kind, part_model, part in parts:
            rest = rest.minus(part)
            priced = self.cost_pico_at_ns(
                provider, part_model or model, started_ns, ended_ns, part, service_tier, context,
                also_known_as=None if part_model else also_known_as,
            )
            if priced is None:
                return None
            each.append(priced[0])
            total += priced[0]
            reasoning += priced[1]
        priced = self.cost_pico_at_ns(
            provider, model, started_ns, ended_ns, rest, service_tier, context,
            usage_known=usage_known, also_known_as=also_known_as,
        )
        if priced is None:
            return None
        return total + priced[0], reasoning + priced[1], priced[2], each

    def load(self) -> None:
        """Load genai-prices' data and everything pricing a call imports, on this thread (see
        `unitcost.pipeline.preload`: never first on a writer thread)."""
        # Here, not at the top: genai-prices loads its price data (start-up time); this is when it is wanted.
        from genai_prices import Usage
        from genai_prices.data_snapshot import get_snapshot

        # Price one known call by genai-prices itself: its first calc_price builds what it builds lazily.
        found = get_snapshot().find_provider_model("gpt-4o-mini", None, "openai", None)
        found[1].get_prices(datetime.now(UTC)).calc_price(Usage(input_tokens=1, output_tokens=1))
        self.energy.load()  # ecologits, when installed

    def _model_info(self, provider: str, model: str) -> Any:
        key = (provider, model)
        if key not in self._models:
            # Loaded by `load` at configure(): a lazy import here only for a PriceBook made elsewhere
            # (the CLI's reports), which runs on the thread that asked.
            from genai_prices.data_snapshot import get_snapshot

            try:
                found = get_snapshot().find_provider_model(model, None, genai_prices_provider(provider) or None, None)
                self._models[key] = found[1]
            except LookupError:
                self._models[key] = None
        return self._models[key]


def _has_time_of_day_price(info: Any) -> bool:
    return any(
        type(getattr(p, "constraint", None)).__name__ == "TimeOfDateConstraint"
        for p in (info.prices if isinstance(info.prices, list) else ())
    )


def _period(when: datetime, by_time_of_day: bool) -> tuple[int, ...]:
    if by_time_of_day:
        return (when.year, when.month, when.day, when.hour, when.minute)
    return (when.year, when.month, when.day)


_NS_PER_DAY = 86_400 * 10**9
_UNRESOLVED: Any = object()  # not in PriceBook._resolved_by_day (None there is "unpriced")
_NS_PER_S = Decimal(10**9)


def utc_from_ns(ns: int) -> datetime:
    # Whole seconds, then microseconds, in integers: `ns / 1e9` as a float can round a call made in
    # the last microsecond of a day into the next one, and so price it by the wrong day.
    seconds, rest = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest // 1000)
