"""`record_usage()`: a call made through a client unitcost does not patch, recorded like any other.

For Bedrock, Gemini, LiteLLM, raw HTTP...: the caller reports the usage the provider returned, and
unitcost emits the same LLM span its adapters emit (in the current task, priced from genai-prices or
the price file at export time), with start and end times ``duration_s`` apart.
"""

from __future__ import annotations

import time
from decimal import Decimal

from ..common import attributes as A
from ..common.errors import internal_error, logger
from ..pricing.usage import TokenUsage, clean_count
from .llm import LLMCall

__all__ = ["record_usage"]

_COUNT_NAMES = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")
_MAX_SECONDS = 7 * 24 * 3600  # a call's duration beyond a week is not a duration


def record_usage(
    provider: str,
    model: str,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    duration_s: float | Decimal | None = None,
    estimated: bool = False,
    operation: str = A.OP_CHAT,
    service_tier: str | None = None,
    batch: bool = False,
) -> None:
    """Record one LLM call that unitcost did not see, into the current task.

    Counts are in the OpenTelemetry meaning, as OpenAI reports them: ``input_tokens`` is ALL input,
    cache reads and writes included; ``output_tokens`` is ALL output, reasoning included. (Anthropic
    and Bedrock report input WITHOUT the cache: pass their sum.) ``provider`` is a
    ``gen_ai.provider.name`` (``aws.bedrock``, ``gcp.gemini``, ``anthropic``...) or a genai-prices
    provider id. ``service_tier`` (``flex``, ``priority``) and ``batch`` select those prices where
    genai-prices has them. The call ends now and started ``duration_s`` seconds ago.

    Example::

        response = bedrock.converse(modelId="amazon.nova-lite-v1:0", messages=messages)
        u = response["usage"]
        unitcost.record_usage("aws.bedrock", "amazon.nova-lite-v1:0",
                              input_tokens=u["inputTokens"], output_tokens=u["outputTokens"],
                              duration_s=response["metrics"]["latencyMs"] / 1000)
    """
    try:
        counts = [input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens]
        cleaned = [clean_count(count) for count in counts]
        bad = [name for name, c in zip(_COUNT_NAMES, cleaned, strict=True) if c is None]
        try:
            seconds = Decimal(0) if duration_s is None else Decimal(str(duration_s))  # str: 0.1 stays 0.1
            if not seconds.is_finite() or seconds < 0 or seconds > _MAX_SECONDS:
                raise ValueError
        except (ArithmeticError, ValueError):
            bad.append("duration_s")
            seconds = Decimal(0)
        end = time.time_ns()
        start = end - int(seconds * 1_000_000_000)
    except Exception as exc:  # noqa: BLE001 - a bad report must not break the caller's program
        internal_error("record_usage arguments", exc)
        return
    if bad:
        # The call is kept, unpriced (never $0), rather than lost: the task still shows it was made.
        logger.warning(
            "unitcost: record_usage(%r, %r): %s not a whole number of tokens >= 0 (or seconds); the call is "
            "recorded unpriced", provider, model, ", ".join(bad),
        )
    inp, out, cache_read, cache_write, reasoning = (c or 0 for c in cleaned)
    call = LLMCall.start(
        provider=str(provider),
        operation=operation,
        model=str(model),
        start_time_ns=start,
        attributes={A.PRICE_PROCESSING: "batch"} if batch else None,
    )
    if call is None:
        return
    if any(c is None for c in cleaned):
        call.finish(None, service_tier=service_tier, end_time_ns=end)  # no usage: unpriced, never $0
        return
    usage = TokenUsage(
        input_tokens=inp,
        output_tokens=out,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        estimated=estimated,
        estimate_method="caller" if estimated else None,
    )
    call.finish(usage, service_tier=service_tier, end_time_ns=end)
