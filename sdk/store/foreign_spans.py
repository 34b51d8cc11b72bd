"""Spans from other instrumentations, read in unitcost's words.

unitcost's own spans say what they are (``unitcost.span.type``) and use the OpenTelemetry GenAI
names, so the store reads them directly: that path stays a dict look-up. Spans made by other
instrumentations (the official OpenTelemetry GenAI ones, the anthropic SDK's own spans, OpenLLMetry's
``gen_ai.*`` and ``traceloop.*`` names, OpenInference's ``llm.token_count.*``) are recognised by
`foreign_span_type` and translated by `as_unitcost_span` into those same names, so one mapping turns
any of them into store rows: in-process through the store exporter, and through ``unitcost serve``.

Every source here reports token counts in the OpenTelemetry meaning (all input, cache parts
included; all output, reasoning included): OpenLLMetry and OpenInference add Anthropic's cache
tokens to the prompt count themselves, as the anthropic SDK's own spans do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from ..common import attributes as A
from ..common.spans import copy_span

__all__ = ["as_unitcost_span", "foreign_span_type", "task_attributes", "task_key", "task_kind", "with_attributes"]

# gen_ai.operation.name values that are LLM calls.
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings", "completion"})
# OpenLLMetry's llm.request.type -> gen_ai.operation.name.
_TRACELOOP_OPERATIONS = {"chat": "chat", "completion": "text_completion", "embedding": "embeddings"}
# OpenInference span kinds that are LLM calls -> gen_ai.operation.name.
_OPENINFERENCE_OPERATIONS = {"LLM": "chat", "EMBEDDING": "embeddings"}

# Provider names other instrumentations use -> gen_ai.provider.name (OpenTelemetry's well-known values).
_PROVIDERS = {
    "azure": "azure.ai.openai",
    "mistralai": "mistral_ai",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "aws": "aws.bedrock",
    "bedrock": "aws.bedrock",
    "google": "gcp.gen_ai",
    "vertexai": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
}

# (unitcost's name, the names other instrumentations use for it, first found wins)
_TOKEN_NAMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (A.INPUT_TOKENS, (A.LEGACY_PROMPT_TOKENS, A.OPENINFERENCE_PROMPT_TOKENS)),
    (A.OUTPUT_TOKENS, (A.LEGACY_COMPLETION_TOKENS, A.OPENINFERENCE_COMPLETION_TOKENS)),
    (A.CACHE_READ_TOKENS, (A.TRACELOOP_CACHE_READ_TOKENS, A.OPENINFERENCE_CACHE_READ_TOKENS)),
    (
        A.CACHE_WRITE_TOKENS,
        (A.CACHE_WRITE_TOKENS_NEXT, A.TRACELOOP_CACHE_WRITE_TOKENS, A.OPENINFERENCE_CACHE_WRITE_TOKENS),
    ),
    (A.REASONING_TOKENS, (A.TRACELOOP_REASONING_TOKENS, A.OPENINFERENCE_REASONING_TOKENS)),
)


def foreign_span_type(attrs: Mapping[str, Any]) -> str | None:
    """What a span without ``unitcost.span.type`` is to unitcost: "llm", "tool" or None. None for an
    LLM span whose request unitcost's own span records (`unitcost.pipeline.coexist`)."""
    if A.CALL_RECORDED_BY in attrs:
        return None
    operation = attrs.get(A.OPERATION)
    if operation is not None:
        if operation in LLM_OPERATIONS:
            return "llm"
        if operation == A.OP_EXECUTE_TOOL:
            return "tool"
    kind = attrs.get(A.OPENINFERENCE_SPAN_KIND)
    if kind is not None:
        kind = str(kind).upper()
        if kind in _OPENINFERENCE_OPERATIONS:
            return "llm"
        if kind == "TOOL":
            return "tool"
    if attrs.get(A.TRACELOOP_REQUEST_TYPE) in _TRACELOOP_OPERATIONS:
        return "llm"
    if attrs.get(A.TRACELOOP_SPAN_KIND) == "tool":
        return "tool"
    return None


def provider_name(attrs: Mapping[str, Any]) -> str | None:
    """gen_ai.provider.name for a span, from whichever name its instrumentation used."""
    for name in (A.PROVIDER, A.LEGACY_SYSTEM, A.OPENINFERENCE_PROVIDER, A.OPENINFERENCE_SYSTEM):
        value = attrs.get(name)
        if isinstance(value, str) and value:
            lowered = value.lower()  # OpenLLMetry writes "Anthropic"
            return _PROVIDERS.get(lowered, lowered)
    return None


def unitcost_attributes(attrs: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The attributes unitcost reads, added to a foreign span's own under unitcost's names."""
    out = dict(attrs)
    out[A.SPAN_TYPE] = kind
    if kind == "llm":
        provider = provider_name(attrs)
        if provider:
            out[A.PROVIDER] = provider
        if A.OPERATION not in attrs or attrs[A.OPERATION] not in LLM_OPERATIONS:
            out[A.OPERATION] = (
                _TRACELOOP_OPERATIONS.get(str(attrs.get(A.TRACELOOP_REQUEST_TYPE)))
                or _OPENINFERENCE_OPERATIONS.get(str(attrs.get(A.OPENINFERENCE_SPAN_KIND)).upper())
                or A.OP_CHAT
            )
        request = attrs.get(A.REQUEST_MODEL) or attrs.get(A.OPENINFERENCE_REQUEST_MODEL)
        response = attrs.get(A.RESPONSE_MODEL) or attrs.get(A.OPENINFERENCE_RESPONSE_MODEL)
        # OpenInference: the model the response names (an embedding span names it apart).
        named = attrs.get(A.OPENINFERENCE_MODEL) or attrs.get(A.OPENINFERENCE_EMBEDDING_MODEL)
        if not request:
            request = named or response
        if not response and named and named != request:
            response = named
        if request:
            out[A.REQUEST_MODEL] = request
        if response:
            out[A.RESPONSE_MODEL] = response
        for name, others in _TOKEN_NAMES:
            if name not in attrs:
                for other in others:
                    if other in attrs:
                        out[name] = attrs[other]
                        break
    elif kind == "tool" and A.TOOL_NAME not in attrs:
        tool = attrs.get(A.OPENINFERENCE_TOOL_NAME) or attrs.get(A.TRACELOOP_ENTITY_NAME)
        if tool:
            out[A.TOOL_NAME] = tool
    return out


def as_unitcost_span(span: ReadableSpan, kind: str, extra: Mapping[str, Any] | None = None) -> ReadableSpan:
    """A copy of a foreign span whose attributes also carry unitcost's names (and ``extra``)."""
    attrs = unitcost_attributes(span.attributes or {}, kind)
    if extra:
        attrs.update(extra)
    return with_attributes(span, attrs)


def with_attributes(span: ReadableSpan, attributes: Mapping[str, Any], events: Any = None) -> ReadableSpan:
    """A copy of a finished span with other attributes (and events)."""
    return copy_span(span, attributes=attributes, events=span.events if events is None else events)


def task_kind(span: ReadableSpan) -> str:
    """The task kind of another instrumentation's root span: its agent or workflow name, else its name."""
    attrs = span.attributes or {}
    for name in (A.AGENT_NAME, A.OPENINFERENCE_AGENT_NAME, A.TRACELOOP_WORKFLOW_NAME, A.TRACELOOP_ENTITY_NAME):
        value = attrs.get(name)
        if isinstance(value, str) and value:
            return value
    return span.name or "unknown"


def task_key(span: ReadableSpan) -> str | None:
    """The key of another instrumentation's root span: its conversation (session), when it names one."""
    attrs = span.attributes or {}
    value = attrs.get(A.CONVERSATION_ID) or attrs.get(A.OPENINFERENCE_SESSION_ID)
    return None if value is None else str(value)


def task_attributes(span: ReadableSpan) -> dict[str, Any]:
    """Task attributes (for --by and --where) from OpenLLMetry's association properties and user ids."""
    attrs = span.attributes or {}
    found: dict[str, Any] = {}
    prefix = len(A.TRACELOOP_ASSOCIATION_PREFIX)
    for name, value in attrs.items():
        if name.startswith(A.TRACELOOP_ASSOCIATION_PREFIX):
            found[name[prefix:]] = value
    user = attrs.get(A.OPENINFERENCE_USER_ID)
    if user is not None:
        found.setdefault("user_id", user)
    return found
