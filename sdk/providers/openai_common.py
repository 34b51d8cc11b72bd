"""What the OpenAI API mappings share: the provider named from the host, field access that works on
SDK objects and JSON alike, usage found in error bodies, and the stream watcher's common half."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..pricing.usage import TokenUsage
from ..record import content as _content
from ..record.estimate import estimate
from ..record.llm import LLMCall, StreamWatcher
from ..record.llm import field_of as get  # the OpenAI mappings' short name for it

__all__ = ["API", "TextStreamWatcher", "get", "given", "provider_for_host", "usage_in_error"]

# Hosts of OpenAI-compatible services, named as gen_ai.provider.name: the OpenTelemetry well-known
# value where there is one (x_ai, mistral_ai, gcp.gemini...), else genai-prices' provider id.
# unitcost.pricing.book.genai_prices_provider maps these names to genai-prices ids, in one place.
_HOSTS = {
    "api.openai.com": "openai",
    "api.groq.com": "groq",
    "api.together.xyz": "together",
    "api.together.ai": "together",
    "openrouter.ai": "openrouter",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "x_ai",
    "api.mistral.ai": "mistral_ai",
    "api.fireworks.ai": "fireworks",
    "api.cerebras.ai": "cerebras",
    "api.perplexity.ai": "perplexity",
    "api.moonshot.ai": "moonshotai",
    "generativelanguage.googleapis.com": "gcp.gemini",
}
_HOST_SUFFIXES = (
    (".openai.azure.com", "azure.ai.openai"),
    (".cognitiveservices.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.openai"),
    (".azure-api.net", "azure.ai.openai"),
)
OLLAMA_PORT = 11434


def provider_for_host(host: str | None, port: int | None = None) -> str:
    """gen_ai.provider.name for an OpenAI client talking to ``host``.

    An unknown host is named ``openai``: most are gateways and proxies in front of OpenAI (LiteLLM,
    a corporate gateway, a test server), priced as OpenAI. A self-hosted server (vLLM, llama.cpp,
    TGI) is named ``openai`` too; its models are not in OpenAI's price list, so its calls are
    unpriced until the price file (unitcost.toml) prices them.
    """
    if not host:
        return "openai"
    host = host.lower()
    if host in _HOSTS:
        return _HOSTS[host]
    for suffix, name in _HOST_SUFFIXES:
        if host.endswith(suffix):
            return name
    if port == OLLAMA_PORT:
        return "ollama"
    return "openai"


def given(value: Any) -> bool:
    """False for None and for the SDK's ``omit`` / ``NOT_GIVEN`` sentinels."""
    return value is not None and type(value).__name__ not in ("Omit", "NotGiven")


def usage_in_error(error: BaseException, usage_of: Callable[[Any], TokenUsage | None]) -> TokenUsage | None:
    """Usage an API error's body carries (at the top or in its ``response``), if any."""
    bodies: list[Any] = [getattr(error, "body", None)]
    response = getattr(error, "response", None)
    if response is not None and getattr(response, "is_closed", False):
        try:
            bodies.append(response.json())
        except Exception:  # noqa: BLE001 - not JSON: no usage in it
            pass
    for body in bodies:
        if isinstance(body, dict):
            usage = body.get("usage") or get(body.get("response"), "usage")
            if usage:
                return usage_of(usage)
    return None


@dataclass(frozen=True)
class API:
    """One OpenAI API as the wrappers see it."""

    operation: str  # gen_ai.operation.name
    finish: Callable[[LLMCall, Any], None]  # end the call from a result (SDK object or JSON body)
    error_usage: Callable[[BaseException], TokenUsage | None]
    watcher: Callable[[dict[str, Any], bool], StreamWatcher] | None = None  # (request kwargs, hide usage chunk)
    asks_for_usage: bool = False  # streams report usage only when asked (stream_options.include_usage)
    # Where the request's text is, for content capture (off unless the user opted in).
    request_field: str = "messages"
    system_field: str | None = None


class TextStreamWatcher(StreamWatcher):
    """The half of a stream watcher every OpenAI API shares: identity, usage, and the text kept in
    memory (never on a span) to estimate usage when the stream reports none."""

    def __init__(self, request_model: Any, input_texts: list[str], input_messages: int) -> None:
        self.request_model = str(request_model) if given(request_model) else ""
        self.input_texts = input_texts
        self.input_messages = input_messages
        self.output_texts: list[str] = []
        self.usage: TokenUsage | None = None
        self.response_id: str | None = None
        self.model: str | None = None
        self.service_tier: str | None = None
        self.finish_reasons: list[str] = []
        self.error_type: str | None = None
        # All the text streamed back, kept only when content capture is on (unitcost.record.content).
        self.captured: list[str] | None = [] if _content.enabled else None

    def seen_text(self, text: Any) -> None:
        if isinstance(text, str) and text and self.usage is None:
            self.output_texts.append(text)
        if self.captured is not None and isinstance(text, str):
            self.captured.append(text)

    def seen_usage(self, usage: TokenUsage | None) -> None:
        if usage is not None:
            self.usage = usage
            self.output_texts = []  # no estimate needed: let the text go

    def finish(self, call: LLMCall, *, incomplete: bool, error: BaseException | None) -> None:
        usage = self.usage
        if usage is None and (self.output_texts or self.input_texts):
            usage = estimate(self.model or self.request_model, self.input_texts, self.input_messages, self.output_texts)
        self.output_texts = []
        call.end_stream(
            usage,
            error=error,
            incomplete=incomplete and self.usage is None,
            texts=self.captured,
            response_id=self.response_id,
            response_model=self.model,
            finish_reasons=self.finish_reasons,
            service_tier=self.service_tier,
            error_type=self.error_type,
        )
