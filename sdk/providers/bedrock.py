"""The Amazon Bedrock adapter (boto3 / botocore ``bedrock-runtime``): ``converse``,
``converse_stream``, ``invoke_model`` and ``invoke_model_with_response_stream``.

botocore makes each client's class at run time, so its operation methods cannot be patched ahead of
time; every one of them goes through ``BaseClient._make_api_call(operation_name, api_params)``,
which unitcost wraps. Any other service's call (S3, DynamoDB...) passes straight through after one
dictionary look-up of its operation name.

Usage. Converse's ``usage`` (and a Converse stream's last ``metadata`` event): ``inputTokens``
EXCLUDES the cache, so all input is ``inputTokens + cacheReadInputTokens + cacheWriteInputTokens``
(``totalTokens`` adds the output to those three); ``cacheDetails`` splits the cache writes by how
long they are kept (``5m``, ``1h``: priced apart). ``invoke_model`` returns the model's own JSON:
Anthropic's Messages usage (read as the Anthropic adapter reads it), Amazon Nova's ``usage``,
Meta Llama's ``prompt_token_count`` / ``generation_token_count``, Amazon Titan's
``inputTextTokenCount``; anything else falls back to the ``x-amzn-bedrock-*-token-count``
response headers. To read it, unitcost reads the response ``body`` before ``invoke_model``
returns and hands back an equivalent in-memory ``StreamingBody`` holding the same bytes.
A response stream's chunks end with ``amazon-bedrock-invocationMetrics``.

The provider is ``aws.bedrock`` (genai-prices' ``aws``); the model is the ``modelId`` as called,
inference-profile prefixes (``us.``, ``eu.``, ``global.``...) and ARNs included: genai-prices
prices a global and a regional profile differently.
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import urlsplit

from botocore.response import StreamingBody

from ..common import attributes as A
from ..common.errors import internal_error
from ..pricing.usage import TokenUsage, clean_count
from ..record import content as _content
from ..record.estimate import estimate, texts_of
from ..record.llm import LLMCall, StreamWatcher, SyncStreamProxy, run_call
from .anthropic import MessageStreamWatcher, message_usage

__all__ = ["PATCHES", "converse_usage", "invoke_usage"]

SERVICE = "bedrock-runtime"
_INVOCATION_METRICS = "amazon-bedrock-invocationMetrics"


def converse_usage(usage: Any) -> TokenUsage | None:
    """Converse's ``usage`` (or Nova's) -> TokenUsage. Its input count excludes the cache."""
    if not isinstance(usage, dict):
        return None
    uncached = clean_count(usage.get("inputTokens"))
    read = clean_count(usage.get("cacheReadInputTokens", usage.get("cacheReadInputTokenCount")))
    write = clean_count(usage.get("cacheWriteInputTokens", usage.get("cacheWriteInputTokenCount")))
    output = clean_count(usage.get("outputTokens"))
    write_1h = sum(
        clean_count(d.get("inputTokens")) or 0
        for d in usage.get("cacheDetails") or ()
        if isinstance(d, dict) and d.get("ttl") == "1h"
    )
    return TokenUsage(
        input_tokens=(uncached or 0) + (read or 0) + (write or 0),
        output_tokens=output or 0,
        cache_read_tokens=read or 0,
        cache_write_tokens=write or 0,
        cache_write_1h_tokens=min(write_1h, write or 0),
        counts_reported=not (uncached is None and read is None and write is None and output is None),
    )


def _metrics_usage(metrics: Any) -> TokenUsage | None:
    """``amazon-bedrock-invocationMetrics`` (or the same counts from the response headers)."""
    if not isinstance(metrics, dict):
        return None
    return converse_usage({
        "inputTokens": metrics.get("inputTokenCount"),
        "outputTokens": metrics.get("outputTokenCount"),
        "cacheReadInputTokens": metrics.get("cacheReadInputTokenCount"),
        "cacheWriteInputTokens": metrics.get("cacheWriteInputTokenCount"),
    })


_HEADERS = {
    "inputTokenCount": "x-amzn-bedrock-input-token-count",
    "outputTokenCount": "x-amzn-bedrock-output-token-count",
    "cacheReadInputTokenCount": "x-amzn-bedrock-cache-read-input-token-count",
    "cacheWriteInputTokenCount": "x-amzn-bedrock-cache-write-input-token-count",
}


def invoke_usage(body: Any, headers: Any, model: str) -> TokenUsage | None:
    """The usage of an ``invoke_model`` response: from the model's JSON body, else the headers."""
    if isinstance(body, dict):
        usage = body.get("usage")
        if isinstance(usage, dict) and "input_tokens" in usage:  # Anthropic Messages
            return message_usage(usage, model)
        if isinstance(usage, dict) and "inputTokens" in usage:  # Amazon Nova
            return converse_usage(usage)
        if "prompt_token_count" in body or "generation_token_count" in body:  # Meta Llama
            return converse_usage(
                {"inputTokens": body.get("prompt_token_count"), "outputTokens": body.get("generation_token_count")}
            )
        if "inputTextTokenCount" in body:  # Amazon Titan Text
            results = body.get("results") or ()
            output = sum(clean_count(r.get("tokenCount")) or 0 for r in results if isinstance(r, dict))
            return converse_usage({"inputTokens": body.get("inputTextTokenCount"), "outputTokens": output})
        if isinstance(body.get(_INVOCATION_METRICS), dict):
            return _metrics_usage(body[_INVOCATION_METRICS])
    if isinstance(headers, dict) and _HEADERS["inputTokenCount"] in headers:
        return _metrics_usage({key: headers.get(name) for key, name in _HEADERS.items()})
    return None


def _metadata(result: Any) -> dict[str, Any]:
    metadata = result.get("ResponseMetadata") if isinstance(result, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _server(client: Any) -> tuple[str | None, int | None]:
    try:
        parts = urlsplit(client.meta.endpoint_url)
        return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except Exception:  # noqa: BLE001 - no endpoint to name: the call is recorded without it
        return None, None


def _start(client: Any, params: dict[str, Any], stream: bool) -> LLMCall | None:
    host, port = _server(client)
    model = params.get("modelId")
    call = LLMCall.start(
        provider="aws.bedrock",
        operation=A.OP_CHAT,
        model=str(model) if model else "unknown",
        server_address=host,
        server_port=port,
        stream=stream,
    )
    if call is not None and _content.enabled:
        if "messages" in params:  # Converse
            call.capture_input(params.get("messages"), params.get("system"))
        else:
            call.capture_input(*_invoke_request(params.get("body")))
    return call


def _invoke_request(body: Any) -> tuple[Any, Any]:
    """(messages, system) of an ``invoke_model`` request body, for content capture: Anthropic's and
    Nova's ``messages``, Llama's ``prompt``, Titan's ``inputText``."""
    try:
        request = json.loads(body) if isinstance(body, str | bytes | bytearray) else None
    except ValueError:
        return None, None
    if not isinstance(request, dict):
        return None, None
    messages = request.get("messages")
    if messages is None:
        messages = request.get("prompt", request.get("inputText"))
    return messages, request.get("system")


def _texts(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    return [block.get("text") for block in content or () if isinstance(block, dict) and "text" in block]


def _finish_converse(call: LLMCall, result: Any) -> Any:
    stop = result.get("stopReason")
    if _content.enabled:
        call.capture_output(lambda: _texts((result.get("output") or {}).get("message")), stop)
    call.finish(
        converse_usage(result.get("usage")),
        response_id=_metadata(result).get("RequestId"),
        finish_reasons=[str(stop)] if stop else None,
    )
    return result


class ConverseStreamWatcher(StreamWatcher):
    """A ``converse_stream``'s events: the usage comes last, in the ``metadata`` event. A stream
    left before it (abandoned, closed, failed) is estimated from the request's and the answer's
    text, marked estimated and incomplete."""

    def __init__(self, params: dict[str, Any], response_id: str | None) -> None:
        self.model = str(params.get("modelId") or "")
        messages = params.get("messages")
        self.input_texts = texts_of(messages) + texts_of(params.get("system"))
        self.input_messages = len(messages) if isinstance(messages, list) else 1
        self.output_texts: list[str] = []
        self.usage: TokenUsage | None = None
        self.stop_reason: str | None = None
        self.response_id = response_id
        self.texts: list[str] | None = [] if _content.enabled else None

    def on_chunk(self, event: Any) -> bool:
        if not isinstance(event, dict):
            return True
        delta = event.get("contentBlockDelta")
        if delta is not None:
            delta = delta.get("delta") or {}
            text = delta.get("text")
            if isinstance(text, str):
                self.output_texts.append(text)
                if self.texts is not None:
                    self.texts.append(text)
            tool = (delta.get("toolUse") or {}).get("input")
            if isinstance(tool, str):
                self.output_texts.append(tool)
            reasoning = (delta.get("reasoningContent") or {}).get("text")
            if isinstance(reasoning, str):
                self.output_texts.append(reasoning)
        elif "messageStop" in event:
            self.stop_reason = event["messageStop"].get("stopReason")
        elif "metadata" in event:
            self.usage = converse_usage((event["metadata"] or {}).get("usage"))
            self.output_texts = []
        return True

    def finish(self, call: LLMCall, *, incomplete: bool, error: BaseException | None) -> None:
        usage = self.usage
        if usage is None:
            usage = estimate(self.model, self.input_texts, self.input_messages, self.output_texts)
        self.output_texts = []
        call.end_stream(
            usage,
            error=error,
            incomplete=incomplete or self.usage is None,
            texts=self.texts,
            response_id=self.response_id,
            finish_reasons=[self.stop_reason] if self.stop_reason else None,
        )


class ResponseStreamWatcher(StreamWatcher):
    """An ``invoke_model_with_response_stream``: each event's ``chunk.bytes`` is the model's own
    JSON. Anthropic's Messages events are read as the Anthropic adapter reads them; for the other
    models, the last chunk's ``amazon-bedrock-invocationMetrics`` (or Llama's own counts)."""

    def __init__(self, params: dict[str, Any], response_id: str | None) -> None:
        self.model = str(params.get("modelId") or "")
        self.messages: MessageStreamWatcher | None = None  # from the first Anthropic event
        self.usage: TokenUsage | None = None
        self.llama: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.response_id = response_id

    def on_chunk(self, event: Any) -> bool:
        raw = ((event or {}).get("chunk") or {}).get("bytes") if isinstance(event, dict) else None
        if not raw:
            return True
        try:
            payload = json.loads(raw)
        except ValueError:  # not JSON (an image model's bytes): nothing to read in it
            return True
        if not isinstance(payload, dict):
            return True
        if isinstance(payload.get("type"), str):  # an Anthropic Messages event
            if self.messages is None:
                self.messages = MessageStreamWatcher()
            self.messages.on_chunk(payload)
        for name in ("prompt_token_count", "generation_token_count"):
            if payload.get(name) is not None:
                self.llama[name] = payload[name]  # the generation count is cumulative
        if (reason := payload.get("stop_reason") or payload.get("completionReason")) is not None:
            self.stop_reason = str(reason)
        metrics = payload.get(_INVOCATION_METRICS)
        if isinstance(metrics, dict):
            self.usage = _metrics_usage(metrics)
        return True

    def finish(self, call: LLMCall, *, incomplete: bool, error: BaseException | None) -> None:
        messages = self.messages
        if messages is not None and messages.usage:
            messages.finish(call, incomplete=incomplete, error=error)
            return
        usage = self.usage
        if usage is None and self.llama:
            usage = converse_usage(
                {"inputTokens": self.llama.get("prompt_token_count"),
                 "outputTokens": self.llama.get("generation_token_count")}
            )
        call.end_stream(
            usage,
            error=error,
            incomplete=incomplete or self.usage is None,
            response_id=self.response_id,
            finish_reasons=[self.stop_reason] if self.stop_reason else None,
        )


def _read_body(result: Any, read: list[bytes]) -> Any:
    """Read ``invoke_model``'s body now (its usage is in it) into ``read``, and give back the same
    bytes in an in-memory ``StreamingBody``: the caller reads exactly what it would have read. A
    read that fails raises here, from ``invoke_model``, and the call is recorded as failed."""
    body = result.get("body") if isinstance(result, dict) else None
    if body is not None and hasattr(body, "read"):
        data = body.read()
        result["body"] = StreamingBody(io.BytesIO(data), len(data))
        read.append(data)
    return result


def _invoke_texts(body: dict[str, Any]) -> list[Any]:
    """The answer's text in an ``invoke_model`` body (content capture only)."""
    if isinstance(body.get("content"), list):  # Anthropic
        return [b.get("text") for b in body["content"] if isinstance(b, dict) and b.get("type") == "text"]
    if isinstance(body.get("output"), dict):  # Nova
        return _texts(body["output"].get("message"))
    if "generation" in body:  # Llama
        return [body.get("generation")]
    return [r.get("outputText") for r in body.get("results") or () if isinstance(r, dict)]  # Titan


def _finish_invoke(params: dict[str, Any], read: list[bytes]) -> Any:
    def finish(call: LLMCall, result: Any) -> Any:
        try:
            body = json.loads(read[0]) if read and read[0] else None
        except ValueError:  # not JSON (an image model's bytes): the headers may still say
            body = None
        read.clear()
        headers = _metadata(result).get("HTTPHeaders")
        stop = (body.get("stop_reason") or body.get("stopReason")) if isinstance(body, dict) else None
        if _content.enabled and isinstance(body, dict):
            call.capture_output(lambda: _invoke_texts(body), str(stop) if stop else None)
        call.finish(
            invoke_usage(body, headers, str(params.get("modelId") or "")),
            response_id=_metadata(result).get("RequestId"),
            finish_reasons=[str(stop)] if stop else None,
        )
        return result

    return finish


def _watch(result_key: str, watcher_type: Any, params: dict[str, Any]) -> Any:
    def on_result(call: LLMCall, result: Any) -> Any:
        stream = result.get(result_key) if isinstance(result, dict) else None
        if stream is None:
            call.finish(None)
            return result
        watcher = watcher_type(params, _metadata(result).get("RequestId"))
        result[result_key] = SyncStreamProxy(stream, call, watcher, chunks=iter(stream))
        return result

    return on_result


def _is_bedrock(client: Any) -> bool:
    try:
        return client.meta.service_model.service_name == SERVICE  # type: ignore[no-any-return]
    except AttributeError:
        return False


def wrap_make_api_call(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``BaseClient._make_api_call(operation_name, api_params)``: Bedrock's inference operations
    are recorded; every other call passes through untouched."""
    operation = args[0] if args else kwargs.get("operation_name")
    if operation not in _OPERATIONS or not _is_bedrock(instance):
        return wrapped(*args, **kwargs)
    try:
        params = args[1] if len(args) > 1 else kwargs.get("api_params")
        params = params if isinstance(params, dict) else {}
        call = _start(instance, params, stream=operation in _STREAMS)
        read: list[bytes] = []
        if operation == "Converse":
            on_result = _finish_converse
        elif operation == "ConverseStream":
            on_result = _watch("stream", ConverseStreamWatcher, params)
        elif operation == "InvokeModel":
            on_result = _finish_invoke(params, read)
        else:
            on_result = _watch("body", ResponseStreamWatcher, params)
    except Exception as exc:  # noqa: BLE001
        internal_error("bedrock call start", exc)
        return wrapped(*args, **kwargs)
    if operation == "InvokeModel" and call is not None:
        return run_call(call, lambda: _read_body(wrapped(*args, **kwargs), read), on_result)
    return run_call(call, lambda: wrapped(*args, **kwargs), on_result)


_OPERATIONS = frozenset({"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream"})
_STREAMS = frozenset({"ConverseStream", "InvokeModelWithResponseStream"})

# What `unitcost.instrument()` patches: (module, "Class.method", wrapper).
PATCHES = (("botocore.client", "BaseClient._make_api_call", wrap_make_api_call),)
