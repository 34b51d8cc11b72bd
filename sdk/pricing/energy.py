"""Energy and emissions per LLM call: ecologits' estimate, or the user's own figure for a model.

The store writer asks `EnergyBook.estimate` for each call it stores (never the caller's thread: an
ecologits estimate costs about a millisecond). ecologits (`pip install 'unitcost[energy]'`) models
a provider's model from its output tokens and latency, offline, as a min..max range; a model it does
not know, or a call without it installed, is *unestimated* (counted, never 0).

Stored as integers: energy in micro-watt-hours (1e-9 kWh), emissions in micrograms CO2eq (1e-9 kg).

A `[[energy]]` table of unitcost.toml may set, for models matching it (globs):
``kwh_per_1k_output_tokens`` (a self-hosted model's own figure: output_tokens / 1000 * that, min = max;
emissions from the zone's electricity mix, WOR when none is given, usage only) and/or ``zone``
(the electricity mix ecologits uses: an ISO 3166-1 alpha-3 code, WOR for the world, EEE for Europe).
Without a zone, ecologits uses the provider's datacenter location (USA for most, SWE for Mistral).
"""

from __future__ import annotations

import fnmatch
import logging
from decimal import Decimal
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["ECOLOGITS_PROVIDERS", "EnergyBook", "EnergyOverride", "Estimate"]

# gen_ai.provider.name -> ecologits' provider name: the ONE place the two vocabularies meet.
ECOLOGITS_PROVIDERS = {
    "openai": "openai",
    "azure.ai.openai": "openai",  # ecologits lists Azure's gpt-35-turbo names under openai's datacenters
    "anthropic": "anthropic",
    "gcp.gemini": "google_genai",
    "gcp.vertex_ai": "google_genai",
    "gcp.gen_ai": "google_genai",
    "mistral_ai": "mistralai",
    "cohere": "cohere",
}
_NANO = Decimal(10) ** 9

# (energy µWh min, max, emissions µg CO2eq min, max, source); the source says how it was made.
Estimate = tuple[int, int, int, int, str]


class EnergyOverride(BaseModel):
    """One `[[energy]]` table of unitcost.toml."""

    model_config = ConfigDict(extra="forbid")

    model: str = "*"
    provider: str | None = None
    kwh_per_1k_output_tokens: Decimal | None = None
    zone: str | None = None

    @field_validator("kwh_per_1k_output_tokens", mode="before")
    @classmethod
    def _float_as_text(cls, value: Any) -> Any:
        return repr(value) if isinstance(value, float) else value

    @field_validator("kwh_per_1k_output_tokens")
    @classmethod
    def _not_negative(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and (not value.is_finite() or value < 0):
            raise ValueError("kwh_per_1k_output_tokens must be a number >= 0")
        return value

    def matches(self, provider: str, model: str) -> bool:
        if self.provider is not None and self.provider.lower() != provider.lower():
            return False
        return fnmatch.fnmatchcase(model.lower(), self.model.lower())


def _nano(value: float) -> int:
    return int(round(value * 1e9))


class EnergyBook:
    """Energy estimates for calls, with the price file's `[[energy]]` entries (first match wins)."""

    def __init__(self, overrides: list[EnergyOverride] | None = None) -> None:
        self._overrides = overrides or []
        self._impacts: Any = None  # ecologits' llm_impacts once loaded; False when not installed
        self.active = False  # estimates are made (ecologits loaded): the writer asks nothing otherwise
        self._wanted = False
        self._mix: Any = None
        self._version = ""
        self._estimate = lru_cache(maxsize=65_536)(self._compute)

    def turn_on(self) -> None:
        """Estimate (what `configure()` does unless told not to); `load` then imports ecologits, when
        installed, on the configuring thread: a writer must import nothing it was not given."""
        self._wanted = True

    def load(self) -> None:
        """Import ecologits when estimates are wanted and it is installed (its data loads at import):
        on the configuring thread, before any writer needs it (see `unitcost.pipeline.preload`)."""
        if self._impacts is not None or not self._wanted:
            return
        try:
            # Here: an optional extra, and ~0.3 s of import; only when energy is estimated.
            import importlib.metadata

            import ecologits.tracers.utils as tracers
            from ecologits.electricity_mix_repository import electricity_mixes
        except ImportError:
            self._impacts = False
            return
        # ecologits sets its logger class as it is imported; its logger then warns once per model it
        # finds no data for. Quiet it (after the import: see ecologits' warning_once).
        logging.getLogger("ecologits").setLevel(logging.ERROR)
        self._impacts, self._mix = tracers.llm_impacts, electricity_mixes
        self.active = True
        self._version = importlib.metadata.version("ecologits")
        self._estimate("openai", "gpt-4o-mini", 1, 1000, None)  # warm: its first call is slower

    def estimate(self, provider: str, model: str, output_tokens: int, latency_s: float) -> Estimate | None:
        """The call's estimate, or None when unestimated (unknown model, or ecologits missing)."""
        if not self._impacts:  # off, not loaded (never here: see `load`), or not installed
            return None
        override = next((o for o in self._overrides if o.matches(provider, model)), None)
        tokens = max(int(output_tokens), 0)
        if override is not None and override.kwh_per_1k_output_tokens is not None:
            return self._own_figure(override, tokens)
        zone = override.zone if override is not None else None
        # Latency in whole milliseconds: equal inputs to the millisecond share one estimate (cached).
        return self._estimate(provider, model, tokens, max(int(latency_s * 1000), 0), zone)

    def _own_figure(self, override: EnergyOverride, tokens: int) -> Estimate | None:
        kwh = Decimal(tokens) / 1000 * (override.kwh_per_1k_output_tokens or Decimal(0))
        energy = int((kwh * _NANO).to_integral_value())
        # The zone's electricity mix (the world's when none is given), from ecologits' data.
        mix = self._mix.find_electricity_mix(override.zone or "WOR") if self._mix is not None else None
        if mix is None:
            return None  # no ecologits for the mix, or a zone nobody knows: unestimated, not a made-up figure
        gwp = int((kwh * Decimal(repr(mix.gwp)) * _NANO).to_integral_value())
        return energy, energy, gwp, gwp, "unitcost.toml"

    def _compute(self, provider: str, model: str, tokens: int, latency_ms: int, zone: str | None) -> Estimate | None:
        name = ECOLOGITS_PROVIDERS.get(provider)
        if name is None:
            return None
        try:
            result = self._impacts(name, model, tokens, latency_ms / 1000, electricity_mix_zone=zone)
        except Exception:  # noqa: BLE001 - a model ecologits cannot compute is unestimated
            return None
        if result.energy is None or result.gwp is None:
            return None
        e_min, e_max = _span(result.energy.value)
        g_min, g_max = _span(result.gwp.value)
        return _nano(e_min), _nano(e_max), _nano(g_min), _nano(g_max), f"ecologits {self._version}"


def _span(value: Any) -> tuple[float, float]:
    # ecologits gives a RangeValue(min, max) when the model's size or its datacenter's PUE is a range,
    # else a plain float.
    low, high = getattr(value, "min", None), getattr(value, "max", None)
    if low is None or high is None:
        return float(value), float(value)
    return float(low), float(high)
