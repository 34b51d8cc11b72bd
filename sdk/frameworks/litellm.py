"""LiteLLM: every ``completion``/``acompletion`` (streamed or not), ``responses``/``aresponses``,
``text_completion`` and ``embedding`` call recorded as an LLM call, with no user code change.

LiteLLM posts with the openai client's low-level ``post()``, below the methods unitcost's openai
adapter patches, and calls most providers over its own HTTP client, so unitcost listens to LiteLLM
itself: `install` appends a ``CustomLogger`` to ``litellm.callbacks``.

- ``log_pre_api_call`` runs on the caller's thread, in its context: it keeps the caller's span and
  task for the call (LiteLLM's sync success hook runs on a thread of its own, without the caller's
  context when streaming), with the call's start time, under LiteLLM's call id.
- The success hook (sync or async, once per call; for a stream, once the stream is consumed, with
  the assembled response) records the call there: provider and model as LiteLLM resolved them
  (``custom_llm_provider``, ``model``), tokens from the response's usage, priced by the underlying
  provider's prices as every call is. LiteLLM's own ``response_cost`` is not used. A response
  LiteLLM served from its cache was not billed and is not recorded.
- The failure hook records a failed call.

The entry points are also wrapped so that, while one runs, an openai or anthropic method that
unitcost patches and LiteLLM happens to call is not recorded a second time: one call, one record.
"""

from __future__ import annotations

import datetime as dt
import inspect
import sys
import threading
import time
from collections import OrderedDict
from typing import Any

from opentelemetry import context as otel_context

from ..common import attributes as A
from ..common.errors import internal_error
from ..pricing.usage import TokenUsage, clean_count
from ..providers.openai_chat import chat_usage
from ..providers.openai_common import get
from ..providers.openai_responses import responses_usage
from ..record.context import current_run
from ..record.llm import LLMCall, mark_wrapped, unmark_wrapped
from .spans import FRAMEWORK

__all__ = ["ENTRY_POINTS", "MODULE", "install", "uninstall", "usage_of"]

MODULE = "litellm"
ENTRY_POINTS = (
    "completion", "acompletion", "text_completion", "atext_completion", "responses", "aresponses",
    "embedding", "aembedding",
)
_MAX_PENDING = 10_000  # calls started and not yet finished (a call whose hooks never come is forgotten)

# LiteLLM's provider names -> gen_ai.provider.name (the rest are the same word in both).
_PROVIDERS = {
    "text-completion-openai": "openai",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "sagemaker": "aws.sagemaker",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "xai": "x_ai",
    "cohere_chat": "cohere",
    "watsonx": "ibm.watsonx.ai",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
}

_lock = threading.Lock()
_logger: Any = None
_enabled = False
_originals: dict[str, Any] = {}
# litellm_call_id -> (the caller's OpenTelemetry context, its task run, start time in ns)
_pending: OrderedDict[str, tuple[Any, Any, int]] = OrderedDict()
_done: OrderedDict[str, None] = OrderedDict()  # ids already recorded: LiteLLM may call a sync and an async hook


def _operation(call_type: str) -> str:
    if "embedding" in call_type:
        return A.OP_EMBEDDINGS
    if "text_completion" in call_type:
        return A.OP_TEXT_COMPLETION
    return A.OP_CHAT


def usage_of(response: Any, call_type: str) -> TokenUsage | None:
    """A LiteLLM response's usage as unitcost's buckets (all input, cache reads and writes included)."""
    usage = get(response, "usage")
    if usage is None:
        return None
    if get(usage, "prompt_tokens") is None and get(usage, "input_tokens") is not None:
        return responses_usage(usage)  # a Responses usage as the API sent it (LiteLLM mostly converts it)
    if "embedding" in call_type:
        return TokenUsage(input_tokens=clean_count(get(usage, "prompt_tokens")) or 0)
    found = chat_usage(usage)
    if found is None:
        return None
    # LiteLLM reports Anthropic's (and Bedrock's) cache writes apart, already counted in prompt_tokens,
    # with the 1-hour writes (priced apart) in the prompt details.
    written = clean_count(get(usage, "cache_creation_input_tokens")) or 0
    if written > found.cache_write_tokens:
        found.cache_write_tokens = written
    details = get(get(usage, "prompt_tokens_details"), "cache_creation_token_details")
    found.cache_write_1h_tokens = min(clean_count(get(details, "ephemeral_1h_input_tokens")) or 0,
                                      found.cache_write_tokens)
    return found


def _ns(moment: Any) -> int | None:
    if isinstance(moment, dt.datetime):
        return int(moment.timestamp() * 1_000_000_000)
    if isinstance(moment, (int, float)):
        return int(moment * 1_000_000_000)
    return None


def _remember(store: OrderedDict[str, Any], key: str, value: Any) -> None:
    store[key] = value
    while len(store) > _MAX_PENDING:
        store.popitem(last=False)


class UnitcostLogger:
    """LiteLLM's ``CustomLogger`` hooks (mixed with LiteLLM's class at `install`). Parameter names
    are LiteLLM's exactly: it passes them by keyword."""

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        if not _enabled:
            return
        try:
            call_id = kwargs.get("litellm_call_id")
            if call_id and call_id not in _pending:  # a retry keeps the first attempt's start
                with _lock:
                    _remember(_pending, call_id, (otel_context.get_current(), current_run.get(), time.time_ns()))
        except Exception as exc:  # noqa: BLE001
            internal_error("litellm pre-call", exc)

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        _record(kwargs, response_obj, start_time, end_time, None)

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        _record(kwargs, response_obj, start_time, end_time, None)

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        _record(kwargs, response_obj, start_time, end_time, kwargs.get("exception") or RuntimeError("failed"))

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        _record(kwargs, response_obj, start_time, end_time, kwargs.get("exception") or RuntimeError("failed"))


def _record(kwargs: Any, response: Any, start_time: Any, end_time: Any, error: BaseException | None) -> None:
    if not _enabled:
        return
    try:
        call_id = str(kwargs.get("litellm_call_id") or id(response))
        with _lock:
            if call_id in _done:
                return
            _remember(_done, call_id, None)
            pending = _pending.pop(call_id, None)
        if kwargs.get("cache_hit"):
            return  # served from LiteLLM's cache: no provider billed it
        context, run, started = pending if pending is not None else (None, current_run.get(), None)
        call_type = str(kwargs.get("call_type") or "completion")
        provider = str(kwargs.get("custom_llm_provider") or "")
        provider = _PROVIDERS.get(provider, provider)
        model = str(kwargs.get("model") or get(response, "model") or "")
        token = otel_context.attach(context) if context is not None else None
        run_token = current_run.set(run)
        try:
            call = LLMCall.start(
                provider=provider, operation=_operation(call_type), model=model,
                stream=bool(kwargs.get("stream")), start_time_ns=started or _ns(start_time),
                attributes={FRAMEWORK: "litellm"},
            )
        finally:
            current_run.reset(run_token)
            if token is not None:
                otel_context.detach(token)
        if call is None:
            return
        end_ns = _ns(end_time)
        if error is not None:
            call.fail(error)
            return
        call.finish(
            usage_of(response, call_type),
            response_id=get(response, "id"),
            response_model=get(response, "model"),
            end_time_ns=end_ns if end_ns is not None and end_ns >= (started or 0) else None,
        )
    except Exception as exc:  # noqa: BLE001 - LiteLLM logs a callback's error and goes on; so does unitcost
        internal_error("litellm call", exc)


def _one_record(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    token = mark_wrapped()
    try:
        return wrapped(*args, **kwargs)
    finally:
        unmark_wrapped(token)


async def _one_record_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    token = mark_wrapped()
    try:
        return await wrapped(*args, **kwargs)
    finally:
        unmark_wrapped(token)


def install() -> None:
    """Append unitcost's logger to ``litellm.callbacks`` and wrap its entry points (once)."""
    global _logger, _enabled
    litellm = sys.modules.get(MODULE)
    if litellm is None:
        return
    with _lock:
        try:
            if _logger is None:
                # LiteLLM is imported already (this runs when it is): no import cost here.
                from litellm.integrations.custom_logger import CustomLogger

                _logger = type("UnitcostLogger", (UnitcostLogger, CustomLogger), {})()
            if _logger not in litellm.callbacks:
                litellm.callbacks.append(_logger)
            import wrapt  # here: wrapt pulls in asyncio, too slow for `import unitcost` (start-up time)

            for name in ENTRY_POINTS:
                original = getattr(litellm, name, None)
                if original is None or name in _originals:
                    continue
                wrapper = _one_record_async if inspect.iscoroutinefunction(original) else _one_record
                _originals[name] = original
                setattr(litellm, name, wrapt.FunctionWrapper(original, wrapper))
            _enabled = True
        except Exception as exc:  # noqa: BLE001
            internal_error("instrumenting litellm", exc)


def uninstall() -> None:
    global _enabled
    litellm = sys.modules.get(MODULE)
    with _lock:
        _enabled = False
        if litellm is None:
            return
        for name, original in _originals.items():
            setattr(litellm, name, original)
        _originals.clear()
        if _logger is not None and _logger in litellm.callbacks:
            litellm.callbacks.remove(_logger)
