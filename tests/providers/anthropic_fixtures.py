"""Anthropic Messages bodies and event streams as api.anthropic.com sends them, a server that answers
with them over a ``MockTransport`` (of ``anthropic_http``: httpx2 or httpx), and the fixtures that
run each test with the SDK's own OpenTelemetry span on (the default) and off.

Every usage block has every detail field: cache reads, cache writes split 5-minute / 1-hour, the
thinking part of the output, server tool requests (web search and fetch), the service tier, the
speed and the inference region.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import anthropic
import pytest
from conftest import http_library, mock_http_client
from genai_prices import calc_price, extract_usage
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from unitcost.pipeline.config import pipeline

SONNET = "claude-sonnet-4-6"  # $3/M input, $0.30/M cache read, $3.75/M 5m write, $6/M 1h write, $15/M output
MESSAGE_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
STREAM_MESSAGE_ID = "msg_01KpM9CGnGh6cH9Zk8Qf2bUu"
REQUEST = {
    "model": SONNET,
    "max_tokens": 1024,
    "system": [{"type": "text", "text": "You are the support assistant of Acme Cloud.",
                "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    "messages": [{"role": "user", "content": "Where is my order #1042? It was due on Monday."}],
}
SDK_SCOPE = "com.anthropic.sdk.python"
anthropic_http = http_library("anthropic")  # httpx2 (anthropic >= 1) or httpx
SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA"
THINKING = "The customer asks about order 1042."


def usage_block(
    *, uncached: int = 1200, cache_read: int = 20_000, write_5m: int = 1000, write_1h: int = 2000,
    output: int = 800, thinking: int = 300, searches: int = 2, fetches: int = 1, tier: str = "standard",
    speed: str | None = "standard", geo: str | None = "global",
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "input_tokens": uncached,
        "cache_creation_input_tokens": write_5m + write_1h,
        "cache_read_input_tokens": cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": write_5m, "ephemeral_1h_input_tokens": write_1h},
        "output_tokens": output,
        "output_tokens_details": {"thinking_tokens": thinking},
        "server_tool_use": {"web_search_requests": searches, "web_fetch_requests": fetches},
        "service_tier": tier,
    }
    if speed is not None:
        block["speed"] = speed
    if geo is not None:
        block["inference_geo"] = geo
    return block


USAGE = usage_block()
# claude-sonnet-4-6, by hand: 1200 * $3 + 20,000 * $0.30 + 1000 * $3.75 + 2000 * $6 + 800 * $15 per million
# = $0.03735 of tokens, plus 2 web searches at $10 per 1000 = $0.02. Total $0.05735.
HAND_COMPUTED_PICO = 57_350_000_000
HAND_COMPUTED_REASONING_PICO = 300 * 15_000_000  # thinking tokens at the output rate


def message_body(usage: dict[str, Any] | None = None, *, model: str = SONNET, text: str = "Your order ships today.",
                 id: str = MESSAGE_ID) -> dict[str, Any]:
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [
            {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE},
            {"type": "text", "text": text},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage if usage is not None else USAGE,
    }


def stream_events(
    usage: dict[str, Any] | None = None, *, model: str = SONNET,
    pieces: Sequence[str] = ("Your order ", "ships ", "today."), thinking: str = THINKING, deltas: int = 1,
) -> list[dict[str, Any]]:
    """The events of a streamed Message, in order. ``message_start`` carries the input and cache
    counts with a placeholder output count; each ``message_delta`` carries CUMULATIVE counts (the
    input ones repeated), so a reader that summed them would count the input twice."""
    usage = usage if usage is not None else USAGE
    start_usage = {k: v for k, v in usage.items() if k not in ("output_tokens_details", "server_tool_use")}
    start_usage["output_tokens"] = 1
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {
            "id": STREAM_MESSAGE_ID, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": thinking}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": SIGNATURE}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    ]
    events += [{"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": p}} for p in pieces]
    events.append({"type": "content_block_stop", "index": 1})
    cumulative = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}
    tools = usage.get("server_tool_use") or {}
    for n in range(deltas, 0, -1):
        # Earlier deltas report fewer output tokens and requests so far; the last one is final.
        events.append({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {
            **cumulative,
            "output_tokens": usage["output_tokens"] // n,
            "output_tokens_details": {"thinking_tokens": usage["output_tokens_details"]["thinking_tokens"] // n},
            "server_tool_use": {k: v // n for k, v in tools.items()},
        }})
    events.append({"type": "message_stop"})
    return events


def sse_body(events: Sequence[dict[str, Any]]) -> bytes:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def sse_response(events: Sequence[dict[str, Any]]) -> Any:
    return anthropic_http.Response(200, content=sse_body(events), headers={
        "content-type": "text/event-stream", "request-id": "req_011CSHoEeqs5C35K2UUqR7Fy"})


def error_response(status: int, type_: str, message: str) -> Any:
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
    return anthropic_http.Response(status, json=body, headers={"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy"})


class MessagesServer:
    """Answers POST /v1/messages as api.anthropic.com does, and counts token-counting requests."""

    def __init__(
        self, usage: dict[str, Any] | None = None, *, model: str = SONNET, text: str = "Your order ships today.",
        events: list[dict[str, Any]] | None = None,
    ) -> None:
        self.usage = usage if usage is not None else USAGE
        self.model = model
        self.text = text
        self.events = events
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: Any) -> Any:
        body = json.loads(request.content)
        self.requests.append(body)
        if request.url.path.endswith("/count_tokens"):
            return anthropic_http.Response(200, json={"input_tokens": 2095})
        if body.get("stream"):
            return sse_response(self.events or stream_events(self.usage, model=self.model))
        return anthropic_http.Response(200, json=message_body(self.usage, model=self.model, text=self.text))


# --- expected prices ---------------------------------------------------------------------------------


def genai_cost(usage: dict[str, Any], model: str = SONNET) -> Decimal:
    """What genai-prices itself makes of this usage block (its own Anthropic usage extractor)."""
    extracted = extract_usage({"model": model, "usage": usage}, provider_id="anthropic")
    return calc_price(extracted.usage, model, provider_id="anthropic").total_price


# --- the two modes: the SDK's own span on or off --------------------------------------------------------

_spans = InMemorySpanExporter()
_providers_with_exporter: set[int] = set()


# anthropic traces its own calls from 1.14 on (with its ``open_telemetry`` client option); before, a
# call has unitcost's span only: the modes with the SDK's span, or turning it off by option, do not apply.
SDK_TRACES = "open_telemetry" in inspect.signature(anthropic.Anthropic.__init__).parameters


def require(client: Any, path: str) -> None:
    """Skip the test when this anthropic release has no ``client.<path>`` (``messages.parse`` came in
    0.78, ``beta.messages.stream`` in 0.43)."""
    found: Any = client
    for name in path.split("."):
        found = getattr(found, name, None)
    if found is None:
        pytest.skip(f"anthropic {anthropic.__version__} has no client.{path}")


@pytest.fixture(params=["sdk-span", "sdk-span-off-by-env", "sdk-span-off-by-option"])
def sdk_tracing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs three times: the anthropic SDK's own span on (its default), and off by
    ``ANTHROPIC_OPEN_TELEMETRY=false`` or by the client option ``open_telemetry=False``. With an SDK
    that makes no span of its own, once (as ``sdk-span-off-by-env``)."""
    if not SDK_TRACES and request.param != "sdk-span-off-by-env":
        pytest.skip(f"anthropic {anthropic.__version__} makes no span of its own (no open_telemetry option)")
    if request.param == "sdk-span-off-by-env":
        monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "false")
    else:
        monkeypatch.delenv("ANTHROPIC_OPEN_TELEMETRY", raising=False)
    return str(request.param)


@pytest.fixture
def finished_spans(store_db: Any) -> Iterator[Callable[[], list[Any]]]:
    """Every span that ended in this test, as the TracerProvider's processors received them."""
    provider = pipeline().provider
    if id(provider) not in _providers_with_exporter:
        provider.add_span_processor(SimpleSpanProcessor(_spans))
        _providers_with_exporter.add(id(provider))
    _spans.clear()
    yield _spans.get_finished_spans
    _spans.clear()


@pytest.fixture
def anthropic_client(sdk_tracing: str) -> Iterator[Callable[..., Any]]:
    """``anthropic_client(handler, is_async=False, **client_kwargs)``: the real anthropic client over
    a ``MockTransport`` (`anthropic_http`), without retries unless asked, in the test's tracing mode."""
    clients: list[Any] = []

    def make(handler: Callable[[Any], Any], *, is_async: bool = False, **kwargs: Any) -> Any:
        kwargs.setdefault("max_retries", 0)
        if sdk_tracing == "sdk-span-off-by-option":
            kwargs.setdefault("open_telemetry", False)
        http_client = mock_http_client("anthropic", handler, is_async=is_async)
        if is_async:
            return anthropic.AsyncAnthropic(api_key="sk-ant-test", http_client=http_client, **kwargs)
        client = anthropic.Anthropic(api_key="sk-ant-test", http_client=http_client, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def llm_spans(spans: Sequence[Any]) -> list[Any]:
    """The spans that are LLM calls: the SDK's own and unitcost's."""
    return [s for s in spans if (s.attributes or {}).get("gen_ai.operation.name") == "chat"]


def assert_counted_once(spans: Sequence[Any], rows: Sequence[dict[str, Any]], sdk_tracing: str) -> None:
    """One LLM span for the call, and the store's one row is that span: the SDK's own when it traces."""
    (span,) = llm_spans(spans)
    (row,) = rows
    assert row["span_id"] == format(span.context.span_id, "016x")
    scope = span.instrumentation_scope.name
    assert scope == (SDK_SCOPE if sdk_tracing == "sdk-span" else "unitcost"), scope

