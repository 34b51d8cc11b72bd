"""Side-by-side reports: `compare` (two windows or two attribute values) and `whatif` (the same
workload re-priced under another model, another price table, or with prompt caching assumed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..common.timewindow import parse_time
from ..pricing.book import PriceBook
from ..pricing.call import price_call
from ..pricing.usage import Buckets
from ..store.backend import StoreBackend
from .engine import ReportError, parse_where, report
from .routing import CallFacts, Route, parse_route

__all__ = ["Repricer", "compare", "parse_side", "whatif"]

# The numbers a decision turns on; each gets an A, a B and a change.
COMPARED = ("tasks", "success_rate", "cost_usd", "cost_per_task_usd", "cost_per_success_usd", "wasted_usd")


@dataclass(frozen=True)
class Side:
    """One side of a comparison: an attribute filter, a time window, or both."""

    label: str
    where: dict[str, str] = field(default_factory=dict)
    since_ns: int | None = None
    until_ns: int | None = None


def parse_side(text: str) -> Side:
    """`NAME=VALUE` (an attribute value) or `SINCE..UNTIL` (a window; either end may be empty)."""
    if ".." in text:
        since, _, until = text.partition("..")
        try:
            return Side(
                text,
                since_ns=parse_time(since) if since.strip() else None,
                until_ns=parse_time(until) if until.strip() else None,
            )
        except ValueError as exc:
            raise ReportError(str(exc)) from None
    if "=" in text:
        return Side(text, where=parse_where([text]))
    raise ReportError(f"cannot read {text!r}: compare NAME=VALUE with NAME=VALUE, or SINCE..UNTIL windows")


def _change(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    return b - a


def _relative(a: Any, b: Any) -> float | None:
    if a is None or b is None or not a:
        return None
    return float((Decimal(b) - Decimal(a)) / Decimal(a))


def join_sides(a_rows: Sequence[dict[str, Any]], b_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of two reports matched by group: {group, a, b, change, relative_change}."""
    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row["group"].items())

    a_by, b_by = {key(r): r for r in a_rows}, {key(r): r for r in b_rows}
    joined = []
    for k in list(a_by) + [k for k in b_by if k not in a_by]:
        a, b = a_by.get(k), b_by.get(k)
        joined.append(
            {
                "group": dict(k),
                # unpriced_calls: the costs of a side leave these calls out (shown with `*`, as in report).
                "a": {**{n: a[n] if a else None for n in COMPARED}, "unpriced_calls": a["unpriced_calls"] if a else 0},
                "b": {**{n: b[n] if b else None for n in COMPARED}, "unpriced_calls": b["unpriced_calls"] if b else 0},
                "change": {n: _change(a[n] if a else None, b[n] if b else None) for n in COMPARED},
                "relative_change": {n: _relative(a[n] if a else None, b[n] if b else None) for n in COMPARED},
            }
        )
    return joined


def compare(
    db: StoreBackend,
    a: Side,
    b: Side,
    *,
    by: str | Sequence[str] = "kind",
    kind: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> list[dict[str, Any]]:
    def side_report(side: Side) -> list[dict[str, Any]]:
        return [
            r for r in report(
                db, by=by, kind=kind, where=side.where,
                since_ns=side.since_ns if side.since_ns is not None else since_ns,
                until_ns=side.until_ns if side.until_ns is not None else until_ns,
            )
            if r["runs"]  # the (no task) row has no cost per success to compare
        ]

    return join_sides(side_report(a), side_report(b))


class Repricer:
    """Prices each stored call anew for `whatif`: as another model, from another price table, with the
    estimated context re-send read from a prompt cache instead of sent uncached, routed by rules to
    other models, and/or at the Batch API's prices for some task kinds; in that order."""

    def __init__(
        self,
        *,
        model: str | None = None,
        from_model: str | None = None,
        price_file: str | os.PathLike[str] | None = None,
        assume_cache: bool = False,
        routes: Sequence[str] = (),
        batch_kinds: Sequence[str] = (),
    ) -> None:
        if model is None and price_file is None and not assume_cache and not routes and not batch_kinds:
            raise ReportError("whatif needs --model, --prices, --cache, --route, --batch or --cap-per-user")
        self.model = model
        self.from_model = from_model
        self.assume_cache = assume_cache
        self.batch_kinds = frozenset(batch_kinds)
        self.models_seen: set[str] = set()  # to say when --from-model matched no call
        self.prices = PriceBook.from_price_file(price_file) if price_file is not None else PriceBook.from_price_file()
        try:
            self.routes: tuple[Route, ...] = tuple(parse_route(r) for r in routes)
        except ValueError as exc:
            raise ReportError(str(exc)) from None
        now = datetime.now(tz=UTC)
        for name in [model] if model is not None else []:
            if self.prices.rates("", name, now) is None:
                raise ReportError(f"no price known for model {name!r} (add it to unitcost.toml)")
        for route in self.routes:
            if self.prices.rates("", route.model, now) is None:
                raise ReportError(f"--route {route.text!r}: no price known for model {route.model!r}")
        self._routed: set[str] = set()  # the calls a --route rule moved, by span id
        self._batched: set[str] = set()  # the calls priced at Batch API prices

    @property
    def routed_calls(self) -> int:
        return len(self._routed)

    @property
    def batched_calls(self) -> int:
        return len(self._batched)

    @property
    def needs_context(self) -> bool:
        """Whether each call's task kind, attributes and step are needed (the engine then reads them)."""
        return bool(self.routes or self.batch_kinds)

    def assumptions(self, price_file: str | None = None) -> list[str]:
        """What this what-if assumes, in words: every what-if says so."""
        said = []
        if self.model is not None:
            said.append(f"{self.from_model or 'every model'}'s calls made by {self.model}, with the same tokens")
        if price_file is not None:
            said.append(f"prices from {price_file}")
        if self.assume_cache:
            said.append("the re-sent context read from a prompt cache (at its cache-read price)")
        for route in self.routes:
            said.append(f"calls matching {route.text.rpartition(':')[0]!r} made by {route.model}, same tokens")
        if self.batch_kinds:
            said.append(
                f"the calls of {', '.join(sorted(self.batch_kinds))} tasks sent through the Batch API at its "
                "prices (genai-prices); a model without a batch price keeps its price; answers arrive later"
            )
        said.append("success rates unchanged")
        return said

    def __call__(
        self, provider: str, model: str, started_ns: int, ended_ns: int, buckets: Buckets, resent: int,
        tier: str | None = None, context: dict[str, str] | None = None, call: CallFacts | None = None,
    ) -> tuple[int | None, int, Buckets]:
        """(cost, reasoning part, buckets) of one stored call re-priced, by `unitcost.pricing.call`
        as the store writer prices a call (its tier, price modifiers and duration kept)."""
        if self.assume_cache and resent:
            # The repeated part of the input, read from the cache instead of sent uncached.
            moved = min(max(resent - buckets.cache_read, 0), buckets.uncached_input)
            buckets = replace(
                buckets, uncached_input=buckets.uncached_input - moved, cache_read=buckets.cache_read + moved
            )
        self.models_seen.add(model)
        if self.model is not None and (self.from_model is None or model == self.from_model):
            provider, model = "", self.model
        price_context = dict(context or {})
        if call is not None:  # (what --route and --batch look at: read only when either is given)
            for route in self.routes:
                if route.matches(call):
                    provider, model = "", route.model
                    self._routed.add(call.span_id)
                    break
            if call.kind is not None and call.kind in self.batch_kinds:
                price_context["processing"] = "batch"
                self._batched.add(call.span_id)
        cost, reasoning, _, _ = price_call(
            self.prices, provider, model, started_ns, ended_ns, buckets, tier=tier, context=price_context or None
        )
        return cost, reasoning or 0, buckets

    def notes(self) -> list[str]:
        """What the person must know about the re-pricing just done: an option that matched nothing."""
        if self.from_model is not None and self.from_model not in self.models_seen:
            seen = ", ".join(sorted(self.models_seen)) or "none"
            return [
                f"note: no stored call was made by model {self.from_model!r}, so nothing was re-priced "
                f"(models in the store: {seen})"
            ]
        return []


def whatif(
    db: StoreBackend,
    repricer: Repricer,
    *,
    by: str | Sequence[str] = "kind",
    kind: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    where: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Now (A) vs. re-priced (B), per group. Success rates are assumed unchanged."""
    common: dict[str, Any] = {"by": by, "kind": kind, "since_ns": since_ns, "until_ns": until_ns, "where": where}
    now = [r for r in report(db, **common) if r["runs"]]
    then = [r for r in report(db, reprice=repricer, **common) if r["runs"]]
    return join_sides(now, then)
