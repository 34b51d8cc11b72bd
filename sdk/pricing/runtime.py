"""Prices by time: the one mechanism behind a self-hosted model's `hourly_usd` and a runtime's bill.

A `TimePrice` turns a duration into USD: a rate per second, an optional rounding of the billed time
up to a whole second or minute, and an optional minimum charge. The price file's `[[price]]
hourly_usd` prices an LLM call's own time with it; `[[runtime]]` entries price a task's wall time
(`kind = "support_ticket"`), a `unitcost.session(...)` block's time (`session = "browser"`), or a
model's calls (`provider`/`model`, like `hourly_usd`) with it, for hosted agent runtimes that bill by
the session-hour or the second.

Each second is charged by one rule: a call's time by the most specific entry naming its model (a
`[[runtime]]` model entry or a `[[price]]` one with `hourly_usd`), a run's wall time by the most
specific `[[runtime]]` entry naming its kind, a session block's by the most specific naming its
session. A kind rule prices the run, never its calls again.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

__all__ = ["RuntimeRule", "TimePrice", "most_specific", "specificity_of"]

_SECONDS_PER_HOUR = Decimal(3600)
_UNIT_SECONDS = {"second": Decimal(1), "minute": Decimal(60)}


@dataclass(frozen=True, slots=True)
class TimePrice:
    """USD for a duration: ``per_second`` times the billed seconds (rounded up to ``rounding``, a
    whole "second" or "minute", when given), and at least ``minimum_usd``."""

    per_second: Decimal
    minimum_usd: Decimal = Decimal(0)
    rounding: str | None = None

    def billed_seconds(self, duration_s: Decimal) -> Decimal:
        duration_s = max(duration_s, Decimal(0))
        if self.rounding is None:
            return duration_s
        unit = _UNIT_SECONDS[self.rounding]
        return (duration_s / unit).to_integral_value(rounding=ROUND_CEILING) * unit

    def cost(self, duration_s: Decimal) -> Decimal:
        return max(self.per_second * self.billed_seconds(duration_s), self.minimum_usd)


class RuntimeRule(BaseModel):
    """One `[[runtime]]` table of unitcost.toml: what a runtime charges for time, and for what."""

    model_config = ConfigDict(extra="forbid")

    # What it prices (globs, case-insensitive): a task kind's runs, session blocks by name (within a
    # kind when both are given), or a model's calls (provider and/or model).
    kind: str | None = None
    session: str | None = None
    provider: str | None = None
    model: str | None = None
    session_hour_usd: Decimal | None = None
    per_second_usd: Decimal | None = None
    minimum_usd: Decimal = Decimal(0)  # the least a priced span costs
    rounding: Literal["second", "minute"] | None = None  # billed time rounded up to a whole unit

    @field_validator("*", mode="before")
    @classmethod
    def _floats_as_text(cls, value: Any) -> Any:
        # TOML floats are binary; read them through their repr so 0.08 stays 0.08.
        return repr(value) if isinstance(value, float) else value

    @model_validator(mode="after")
    def _one_rate_one_target(self) -> RuntimeRule:
        if (self.session_hour_usd is None) == (self.per_second_usd is None):
            raise ValueError("a [[runtime]] entry takes session_hour_usd or per_second_usd (one of them)")
        rate = self.session_hour_usd if self.session_hour_usd is not None else self.per_second_usd
        if rate is None or rate < 0 or self.minimum_usd < 0:
            raise ValueError("[[runtime]] prices cannot be negative")
        by_span = self.kind is not None or self.session is not None
        by_model = self.provider is not None or self.model is not None
        if by_span == by_model:
            raise ValueError(
                "a [[runtime]] entry prices a task kind and/or a session, or a provider/model's calls: "
                "give kind/session, or provider/model"
            )
        return self

    @property
    def prices_calls(self) -> bool:
        return self.provider is not None or self.model is not None

    def time_price(self) -> TimePrice:
        if self.per_second_usd is not None:
            per_second = self.per_second_usd
        else:
            per_second = (self.session_hour_usd or Decimal(0)) / _SECONDS_PER_HOUR
        return TimePrice(per_second, self.minimum_usd, self.rounding)

    def matches_span(self, kind: str | None, session: str | None) -> bool:
        """A run of this kind (``session`` None), or a session block of this name in a run of ``kind``."""
        if self.prices_calls or (session is None) != (self.session is None):
            return False
        if self.session is not None and not _glob(session, self.session):
            return False
        return self.kind is None or _glob(kind, self.kind)

    def matches_call(self, provider: str, model: str, provider_aliases: tuple[str, ...] = ()) -> bool:
        if not self.prices_calls:
            return False
        names = {p.lower() for p in (provider, *provider_aliases)}
        if self.provider is not None and self.provider.lower() not in names:
            return False
        return self.model is None or _glob(model, self.model)

    def specificity(self) -> tuple[int, ...]:
        return specificity_of(
            (self.kind, self.session) if not self.prices_calls else (self.provider, self.model)
        )


def _glob(value: str | None, pattern: str) -> bool:
    return value is not None and fnmatch.fnmatchcase(value.lower(), pattern.lower())


def specificity_of(patterns: tuple[str | None, ...]) -> tuple[int, ...]:
    """How specific a rule is: more names given, then more exact names (no glob characters)."""
    given = [p for p in patterns if p is not None]
    exact = [p for p in given if not any(ch in p for ch in "*?[")]
    return (len(given), len(exact), sum(len(p) for p in exact))


def most_specific(rules: list[RuntimeRule]) -> RuntimeRule | None:
    """The rule that prices a span or call when several match (the first written on a tie)."""
    best = None
    for rule in rules:
        if best is None or rule.specificity() > best.specificity():
            best = rule
    return best
