"""The OpenAI adapter: which SDK methods are wrapped, and how a request starts its call.

Chat Completions, Responses, Embeddings and legacy Completions, sync and async, plain and streamed,
``.parse``, ``with_raw_response`` and ``with_streaming_response``. Each API's mapping from SDK
objects to unitcost's usage record lives in its own small module (`openai_chat`,
`openai_responses`); this one only decides what to start and hands the result to that mapping.
Everything provider-neutral (the span, stream and raw-response proxies) is in `unitcost.record.llm` and
`unitcost.record.raw`.
"""

from __future__ import annotations

from typing import Any

from ..pipeline.config import pipeline
from ..record import content as _content
from ..record.instrument import observer
from ..record.llm import (
    AsyncStreamProxy,
    LLMCall,
    StreamWatcher,
    SyncStreamProxy,
    note_retries,
    note_retry_count,
    run_call,
    run_call_async,
)
from ..record.raw import is_raw_response, wrap_raw_response
from .openai_chat import CHAT, COMPLETIONS, EMBEDDINGS
from .openai_common import API, given, provider_for_host
from .openai_responses import RESPONSES
from .server import server_of

__all__ = ["PATCHES", "provider_for_host"]

_RAW_HEADER = "X-Stainless-Raw-Response"  # set by with_raw_response ("true") and with_streaming_response


def _raw_mode(kwargs: dict[str, Any]) -> bool:
    headers = kwargs.get("extra_headers")
    return isinstance(headers, dict) and any(str(k).lower() == _RAW_HEADER.lower() for k in headers)


def _streams(kwargs: dict[str, Any]) -> bool:
    value = kwargs.get("stream")
    return given(value) and bool(value)


def _start(api: API, instance: Any, kwargs: dict[str, Any], stream: bool) -> tuple[LLMCall | None, Any]:
    host, port = server_of(instance)
    model = kwargs.get("model")
    call = LLMCall.start(
        provider=provider_for_host(host, port),
        operation=api.operation,
        model=str(model) if given(model) else "unknown",
        server_address=host,
        server_port=port,
        stream=stream,
    )
    if call is not None and _content.enabled:
        call.capture_input(kwargs.get(api.request_field), kwargs.get(api.system_field) if api.system_field else None)
    if call is None or not stream or api.watcher is None:
        return call, None
    hide = False
    # Ask for the usage chunk on the caller's behalf, unless they chose stream_options themselves
    # or asked for the raw HTTP response (then they receive exactly what their request returns).
    if api.asks_for_usage and not _raw_mode(kwargs) and pipeline().settings.openai_include_usage:
        options = kwargs.get("stream_options")
        if not given(options):
            kwargs["stream_options"] = {"include_usage": True}
            hide = True
        elif isinstance(options, dict) and "include_usage" not in options:
            kwargs["stream_options"] = {**options, "include_usage": True}
            hide = True
    return call, api.watcher(kwargs, hide)


def _on_result(api: API, watcher: StreamWatcher | None, *, is_async: bool) -> Any:
    # The proxy is chosen by the client's kind, not by the object's methods: another instrumentation's
    # stream wrapper (the official openai-v2's, OpenLLMetry's) defines both __next__ and __anext__,
    # and an async proxy around a sync stream lets a plain ``for`` bypass it.
    proxy, step = (AsyncStreamProxy, "__anext__") if is_async else (SyncStreamProxy, "__next__")

    def on_result(call: LLMCall, result: Any) -> Any:
        if is_raw_response(result):
            return wrap_raw_response(result, call, on_result, watcher)
        if watcher is not None and hasattr(result, step):
            return proxy(result, call, watcher)
        api.finish(call, result)
        return result

    return on_result


def _wrapper(api: API, *, is_async: bool, may_stream: bool = True) -> Any:
    """A wrapt wrapper ``(wrapped, instance, args, kwargs)`` recording one call of ``api``."""
    # The result handler of a call that is not streamed, made once (a stream's holds its watcher).
    plain = _on_result(api, None, is_async=is_async)
    if is_async:

        async def wrap_async(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            call, watcher = _start(api, instance, kwargs, may_stream and _streams(kwargs))
            return await run_call_async(
                call,
                lambda: wrapped(*args, **kwargs),
                plain if watcher is None else _on_result(api, watcher, is_async=True),
                api.error_usage,
            )

        return wrap_async

    def wrap(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        call, watcher = _start(api, instance, kwargs, may_stream and _streams(kwargs))
        return run_call(
            call,
            lambda: wrapped(*args, **kwargs),
            plain if watcher is None else _on_result(api, watcher, is_async=False),
            api.error_usage,
        )

    return wrap


@observer
def wrap_build_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """Every attempt the SDK makes builds its request here; its retry-count header counts retries.

    The SDK sets that header to ``str(retries_taken)`` unless the request's own headers
    (``extra_headers``) name it, so without such headers the count is read from ``retries_taken``:
    the same number, where reading the header is a pass over every header (httpx's ``Headers.get``,
    ~20,000 instructions an attempt). Otherwise, or when the SDK passes no ``retries_taken``, the
    header itself is read."""
    request = wrapped(*args, **kwargs)
    retries = kwargs.get("retries_taken")
    options = args[0] if args else kwargs.get("options")
    if type(retries) is int and not getattr(options, "headers", True):
        if retries:
            note_retry_count(retries)
    else:
        note_retries(getattr(request, "headers", None))
    return request


_CHAT = "openai.resources.chat.completions.completions"
_CHAT_BETA = "openai.resources.beta.chat.completions"  # openai < 1.92: client.beta.chat.completions.parse
_RESPONSES = "openai.resources.responses.responses"

# What `unitcost.instrument()` patches: (module, "Class.method", wrapper). wrapt wrappers receive
# (wrapped, instance, args, kwargs). The ``.stream()`` helpers of Chat Completions and Responses call
# ``create``, so they are recorded there (once); ``.parse`` posts by itself and is wrapped apart.
# An entry whose module or method this openai version lacks is skipped (`unitcost.record.instrument`).
PATCHES = (
    (_CHAT, "Completions.create", _wrapper(CHAT, is_async=False)),
    (_CHAT, "AsyncCompletions.create", _wrapper(CHAT, is_async=True)),
    (_CHAT, "Completions.parse", _wrapper(CHAT, is_async=False, may_stream=False)),
    (_CHAT, "AsyncCompletions.parse", _wrapper(CHAT, is_async=True, may_stream=False)),
    (_CHAT_BETA, "Completions.parse", _wrapper(CHAT, is_async=False, may_stream=False)),
    (_CHAT_BETA, "AsyncCompletions.parse", _wrapper(CHAT, is_async=True, may_stream=False)),
    (_RESPONSES, "Responses.create", _wrapper(RESPONSES, is_async=False)),
    (_RESPONSES, "AsyncResponses.create", _wrapper(RESPONSES, is_async=True)),
    (_RESPONSES, "Responses.parse", _wrapper(RESPONSES, is_async=False, may_stream=False)),
    (_RESPONSES, "AsyncResponses.parse", _wrapper(RESPONSES, is_async=True, may_stream=False)),
    ("openai.resources.embeddings", "Embeddings.create", _wrapper(EMBEDDINGS, is_async=False)),
    ("openai.resources.embeddings", "AsyncEmbeddings.create", _wrapper(EMBEDDINGS, is_async=True)),
    ("openai.resources.completions", "Completions.create", _wrapper(COMPLETIONS, is_async=False)),
    ("openai.resources.completions", "AsyncCompletions.create", _wrapper(COMPLETIONS, is_async=True)),
    ("openai._base_client", "BaseClient._build_request", wrap_build_request),
)
