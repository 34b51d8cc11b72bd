"""Pricing one LLM call: the one rule the store writer, the enricher, budgets and `whatif` share.

`call_terms` reads what prices a call from its span's attributes (provider, the model asked for and
the one that answered, the service tier, the price modifiers, whether its usage is known);
`price_call` turns them into pico-dollars. A call priced by either on the caller's thread (a budget)
costs exactly what the store writer records for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..common import attributes as A
from ..common.errors import internal_error
from .usage import Buckets, usage_parts

__all__ = ["MAX_PICO", "NOT_PRICED", "PRICE_CONTEXT_KEYS", "call_terms", "price_call"]

logger = logging.getLogger("unitcost")

# The largest cost a store keeps: a signed 64-bit integer of pico-dollars ($9.2M), SQLite's and
# PostgreSQL's BIGINT. A call past it (absurd token counts) is stored unpriced.
MAX_PICO = 2**63 - 1
NOT_PRICED: tuple[None, None, None, tuple[()]] = (None, None, None, ())

# Price modifiers a call reports besides its service tier, by the price-context key genai-prices
# uses for them. Those in PRICE_CONTEXT_KEYS are priced; the others are recorded only.
_PRICE_MODIFIERS = {"processing": A.PRICE_PROCESSING, "speed": A.PRICE_SPEED, "inference_geo": A.PRICE_INFERENCE_GEO}
PRICE_CONTEXT_KEYS = {"processing", "speed"}
_DEFAULT_MODIFIERS = {"speed": "standard", "inference_geo": "global"}

# What `call_terms` returns: (buckets, provider, model, response_model, tier, modifiers, context,
# usage_known, parts). A plain tuple: the store writer builds one per call.
CallTerms = tuple[
    Buckets, str, str, "str | None", "str | None", "dict[str, str] | None", "dict[str, str] | None", bool,
    "Sequence[tuple[str, str | None, Buckets]]",
]


def _price_modifiers(attrs: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, attribute in _PRICE_MODIFIERS.items():
        value = attrs.get(attribute)
        if isinstance(value, str) and value and value != _DEFAULT_MODIFIERS.get(key):
            found[key] = value
    return found


def call_terms(attrs: Mapping[str, Any], error_type: str | None) -> CallTerms:
    """What prices the call whose span has these attributes (and this error type, or None).

    ``modifiers``: every price modifier the response reported (recorded); ``context``: those that
    change the price (passed to the price book). ``usage_known``: a call that ended without an error
    and without any usage (a raw response whose body was never read) is unpriced, not free; a failed
    call with no usage is priced at zero tokens. ``parts``: the parts of its usage priced by a
    model of their own (`unitcost.pricing.usage.usage_parts`), usually none.
    """
    get = attrs.get
    buckets = Buckets.from_span_attributes(attrs)
    provider = str(get(A.PROVIDER) or get("gen_ai.system") or "unknown")
    response_model = get(A.RESPONSE_MODEL)
    model = str(get(A.REQUEST_MODEL) or response_model or "unknown")
    tier = get(A.OPENAI_SERVICE_TIER) or get(A.ANTHROPIC_SERVICE_TIER)
    modifiers = (  # three look-ups, not a pass over every attribute of the span
        _price_modifiers(attrs)
        if A.PRICE_PROCESSING in attrs or A.PRICE_SPEED in attrs or A.PRICE_INFERENCE_GEO in attrs
        else None
    )
    context = {k: v for k, v in modifiers.items() if k in PRICE_CONTEXT_KEYS} if modifiers else None
    usage_known = A.INPUT_TOKENS in attrs or A.OUTPUT_TOKENS in attrs or error_type is not None
    parts = usage_parts(attrs) if A.USAGE_PART_KINDS in attrs else ()
    return (
        buckets, provider, model, None if response_model is None else str(response_model),
        None if tier is None else str(tier), modifiers, context, usage_known, parts,
    )


def price_call(
    prices: Any,
    provider: str,
    model: str,
    started_ns: int,
    ended_ns: int,
    buckets: Buckets,
    parts: Sequence[tuple[str, str | None, Buckets]] = (),
    *,
    response_model: str | None = None,
    tier: str | None = None,
    context: Mapping[str, str] | None = None,
    usage_known: bool = True,
) -> tuple[int, int, str, Sequence[int]] | tuple[None, None, None, tuple[()]]:
    """(cost, reasoning part, price source, each part's cost) in whole pico-dollars, or `NOT_PRICED`.

    ``prices`` is a `unitcost.pricing.book.PriceBook`. The call is priced by the model the provider
    says answered (a dated snapshot) when known, else by ``model``; at its start time, for its
    duration (a price by the hour); with its tier and price context; each of ``parts`` by its own
    model (one part unpriced makes the call unpriced). Unpriced: an unknown model, a
    call whose usage is unknown under a price by tokens, a cost past `MAX_PICO` (logged: it would not
    fit the store; the call counts among the unpriced ones), and a failure of the price book
    (reported by `internal_error`: a pricing failure still keeps the call's token counts).
    """
    try:
        if parts:
            priced = prices.call_cost_pico(
                provider, response_model or model, started_ns, ended_ns, buckets, parts, tier or None, context,
                usage_known=usage_known, also_known_as=model,
            )
        else:  # most calls: `call_cost_pico` without its layer (the store writer prices every call here)
            whole = prices.cost_pico_at_ns(
                provider, response_model or model, started_ns, ended_ns, buckets, tier or None, context,
                usage_known=usage_known, also_known_as=model,
            )
            priced = None if whole is None else (*whole, ())
    except Exception as exc:  # noqa: BLE001 - the call is kept, unpriced
        internal_error("pricing", exc)
        return NOT_PRICED
    if priced is None:
        return NOT_PRICED
    if priced[0] > MAX_PICO:
        logger.warning(
            "unitcost: a %s %s call would cost %d pico-dollars, more than a store can keep; it is kept unpriced",
            provider, response_model or model, priced[0],
        )
        return NOT_PRICED
    return priced
