"""The one warning for the commonest silent $0: a program that records tasks but forgot
`unitcost.instrument()`, so its openai / anthropic / google-genai calls never reach unitcost.

A span processor counts, as spans end, the tasks and the LLM calls recorded by any route (a patched
client, `record_usage`, the anthropic SDK's own spans, another instrumentation's GenAI spans). At
exit, tasks but no LLM call while a provider SDK is imported and not instrumented gets one warning.
Counting is two integer additions on the caller's thread; nothing else happens there.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from ..common import attributes as A
from ..exporters.store import attributes_of

__all__ = ["CallCounter", "forgotten_instrument_warning"]

logger = logging.getLogger("unitcost")

_USAGE_PREFIXES = ("gen_ai.usage.", "llm.token_count.")  # OpenTelemetry GenAI, OpenInference


class CallCounter(SpanProcessor):
    """Counts ended task spans and LLM-call spans for this process (shared by every pipeline)."""

    tasks = 0
    llm_calls = 0

    def __init__(self) -> None:
        self._stopped = False

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._stopped or CallCounter.llm_calls:  # replaced; or a call was seen: no warning to give
            return
        attrs = attributes_of(span)  # (`span.attributes` makes a new view at each read)
        kind = attrs.get(A.SPAN_TYPE)
        if kind == "task":
            CallCounter.tasks += 1
        elif kind == "llm" or (kind is None and any(k.startswith(_USAGE_PREFIXES) for k in attrs)):
            CallCounter.llm_calls += 1

    def shutdown(self) -> None:
        self._stopped = True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def forgotten_instrument_warning() -> str | None:
    """The warning's text when this process looks like it forgot `unitcost.instrument()`, else None."""
    if not CallCounter.tasks or CallCounter.llm_calls:
        return None
    # boto3 is left out: importing it says nothing of Bedrock (S3, DynamoDB...).
    imported = [name for name in ("openai", "anthropic", "google.genai") if name in sys.modules]
    if not imported:
        return None
    instrument = sys.modules.get("unitcost.record.instrument")  # not imported: then surely not instrumented
    if instrument is not None and instrument.is_instrumented():
        return None
    return (
        f"unitcost: {CallCounter.tasks} task(s) recorded but no LLM call, although {' and '.join(imported)} "
        "is imported: their costs show as $0. Call unitcost.instrument() after unitcost.configure() "
        "(or unitcost.record_usage(...) for calls unitcost cannot patch)."
    )
