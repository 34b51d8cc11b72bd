"""``unitcost serve``: a local OTLP/HTTP receiver that writes GenAI spans from any instrumentation
into the store.

- `decode_traces` reads an ``ExportTraceServiceRequest`` (protobuf, or OTLP/JSON with hex ids, gzip
  or not) into OpenTelemetry `ReadableSpan` objects, with OpenTelemetry's own protobuf classes.
- `TraceGrouper` gives each LLM or tool span of another instrumentation its task: the nearest
  unitcost task above it, else the root span of its trace, which becomes a task named after its agent
  or workflow (else the span's name). Children end, and usually arrive, before their root, so such
  spans wait for their root, at most ``root_wait`` seconds; then they are stored as calls outside any
  task. A root that is itself an LLM call is a call outside any task, as unitcost's own would be.
- The spans, translated into unitcost's names (`unitcost.store.foreign_spans`), are written by the same
  `StoreSpanExporter` as unitcost's own, and priced by it: `unitcost report` shows them like any others.

It listens on 127.0.0.1 unless told otherwise, and anywhere else only with a bearer token: the store
says what an organisation's agents did and cost.
"""

from __future__ import annotations

import base64
import hmac
import ipaddress
import json
import logging
import re
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ..common import attributes as A
from ..store.foreign_spans import as_unitcost_span, task_attributes, task_key, task_kind
from .store import span_type

__all__ = ["OTLPReceiver", "TraceGrouper", "check_bind", "is_loopback"]

logger = logging.getLogger("unitcost")

MAX_BODY = 64 * 1024 * 1024  # what OpenTelemetry's exporters send at most, by default
_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
_HEX_ID = re.compile(r"^[0-9a-fA-F]{16}$|^[0-9a-fA-F]{32}$")
_ID_FIELDS = {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
_SPAN_KINDS = {1: SpanKind.INTERNAL, 2: SpanKind.SERVER, 3: SpanKind.CLIENT, 4: SpanKind.PRODUCER, 5: SpanKind.CONSUMER}
_REMOTE_KNOWN, _REMOTE = 0x100, 0x200  # SpanFlags: the parent's is_remote is known / is true


def _decompress(data: bytes, encoding: str) -> bytes:
    """``data`` decompressed, never holding more than `MAX_BODY` bytes of output: the limit holds
    while decompressing (a 2.5 MB gzip body of zeros is 2.6 GB once decompressed). Concatenated gzip
    members are read one after another, as ``gzip.decompress`` does."""
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    parts: list[bytes] = []
    size = 0
    rest = data
    try:
        while True:
            inflater = zlib.decompressobj(wbits)
            part = inflater.decompress(rest, MAX_BODY + 1 - size)
            size += len(part)
            if size > MAX_BODY or inflater.unconsumed_tail:
                raise ValueError("request too large")
            parts.append(part)
            if not inflater.eof:
                raise ValueError("cannot decompress the body: it ends before its compressed stream does")
            rest = inflater.unused_data
            if encoding != "gzip" or not rest.strip(b"\0"):
                return b"".join(parts)
    except zlib.error as exc:
        raise ValueError(f"cannot decompress the body: {exc}") from exc


class UnsupportedMediaType(ValueError):
    """A body in an encoding OTLP/HTTP does not define."""


# --- decoding ----------------------------------------------------------------------------------


def decode_traces(body: bytes, content_type: str) -> list[ReadableSpan]:
    """The spans of an OTLP ``ExportTraceServiceRequest``, protobuf or JSON. Raises ValueError."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    media = content_type.split(";")[0].strip().lower()
    try:
        if media == _PROTOBUF:
            request.ParseFromString(body)
        elif media == _JSON:
            data = json.loads(body)
            json_format.ParseDict(_ids_as_base64(data), request, ignore_unknown_fields=True)
        else:
            raise UnsupportedMediaType(f"unsupported content type {content_type!r}: use {_PROTOBUF} or {_JSON}")
    except (DecodeError, json_format.ParseError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"not an OTLP trace export request: {exc}") from exc
    spans: list[ReadableSpan] = []
    for resource_spans in request.resource_spans:
        resource = Resource(_attributes(resource_spans.resource.attributes))
        for scope_spans in resource_spans.scope_spans:
            scope = InstrumentationScope(scope_spans.scope.name, scope_spans.scope.version or None)
            spans.extend(_span(span, resource, scope) for span in scope_spans.spans)
    return spans


def _ids_as_base64(value: Any) -> Any:
    """OTLP/JSON writes ids in hex where protobuf's JSON mapping expects base64."""
    if isinstance(value, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode()
            if k in _ID_FIELDS and isinstance(v, str) and _HEX_ID.match(v)
            else _ids_as_base64(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_ids_as_base64(v) for v in value]
    return value


def _any_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_any_value(v) for v in value.array_value.values)
    if which == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    return None if which is None else getattr(value, which)


def _attributes(pairs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in pairs}


def _span(span: Any, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    trace_id = int.from_bytes(span.trace_id, "big")
    if not trace_id or len(span.span_id) != 8:
        raise ValueError("a span without a trace id or a span id")
    flags = TraceFlags(TraceFlags.SAMPLED)
    parent = None
    if span.parent_span_id:
        remote = bool(span.flags & _REMOTE_KNOWN and span.flags & _REMOTE)
        parent = SpanContext(trace_id, int.from_bytes(span.parent_span_id, "big"), remote, flags)
    return ReadableSpan(
        name=span.name,
        context=SpanContext(trace_id, int.from_bytes(span.span_id, "big"), False, flags),
        parent=parent,
        resource=resource,
        attributes=_attributes(span.attributes),
        events=[Event(e.name, _attributes(e.attributes), e.time_unix_nano) for e in span.events],
        links=[
            Link(SpanContext(int.from_bytes(link.trace_id, "big"), int.from_bytes(link.span_id, "big"), True),
                 _attributes(link.attributes))
            for link in span.links
            if len(link.trace_id) == 16 and len(link.span_id) == 8
        ],
        kind=_SPAN_KINDS.get(span.kind, SpanKind.INTERNAL),
        status=Status(StatusCode(span.status.code) if span.status.code in (0, 1, 2) else StatusCode.UNSET,
                      span.status.message or None),
        start_time=span.start_time_unix_nano,
        end_time=span.end_time_unix_nano or span.start_time_unix_nano,
        instrumentation_scope=scope,
    )


# --- grouping into tasks -----------------------------------------------------------------------


class _Trace:
    __slots__ = ("parents", "tasks", "held", "root_id", "root", "root_task", "root_written", "touched")

    def __init__(self) -> None:
        self.parents: dict[int, int | None] = {}  # every span seen -> its (local) parent
        self.tasks: dict[int, str] = {}  # span id -> task id, for the task spans among them
        self.held: list[tuple[ReadableSpan, str]] = []  # other instrumentations' spans and their type
        self.root_id: int | None = None
        self.root: ReadableSpan | None = None
        self.root_task: str | None = None  # the task of what hangs under the root; None: no task
        self.root_written = False
        self.touched = time.monotonic()


def _service(span: ReadableSpan) -> str | None:
    value = span.resource.attributes.get("service.name") if span.resource else None
    return None if value is None else str(value)


class TraceGrouper:
    """Assigns spans of other instrumentations to tasks (see the module docstring). Not thread-safe:
    the receiver calls it under a lock."""

    def __init__(self, root_wait: float = 60.0, max_traces: int = 10_000, max_held: int = 200_000) -> None:
        self.root_wait = root_wait
        self.max_traces = max_traces
        self.max_held = max_held
        self._traces: OrderedDict[int, _Trace] = OrderedDict()
        self._held = 0

    def add(self, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
        """Take received spans; returns those ready for the store (in unitcost's names)."""
        ready: list[ReadableSpan] = []
        touched: dict[int, _Trace] = {}
        for span in spans:
            trace = self._trace(span.context.trace_id)
            touched[span.context.trace_id] = trace
            span_id = span.context.span_id
            parent = span.parent.span_id if span.parent is not None and not span.parent.is_remote else None
            trace.parents[span_id] = parent
            attrs = span.attributes or {}
            kind = span_type(span)
            if A.SPAN_TYPE in attrs:  # unitcost's own span: it knows its task already
                if kind == "task":
                    trace.tasks[span_id] = str(attrs.get(A.TASK_ID) or format(span_id, "016x"))
                    service = _service(span)
                    if A.SERVICE not in attrs and service:
                        span = as_unitcost_span(span, "task", {A.SERVICE: service})
                if parent is None:
                    trace.root_id, trace.root_task = span_id, trace.tasks.get(span_id)
                ready.append(span)
                continue
            if parent is None:
                trace.root_id, trace.root = span_id, span
                # A root that is an LLM or tool call is a call outside any task, as unitcost's own are.
                trace.root_task = None if kind is not None else format(span_id, "016x")
                if kind is not None:
                    ready.append(as_unitcost_span(span, kind))
                    continue
            if kind is not None:
                trace.held.append((span, kind))
                self._held += 1
        for trace in touched.values():
            if trace.root_id is not None:
                ready.extend(self._resolve(trace))
        ready.extend(self._evict())
        return ready

    def expire(self, now: float | None = None, everything: bool = False) -> list[ReadableSpan]:
        """Store the spans whose root has not come within ``root_wait`` seconds (all, when
        ``everything``), outside any task unless a unitcost task above them is known."""
        now = time.monotonic() if now is None else now
        ready: list[ReadableSpan] = []
        for trace in list(self._traces.values()):
            if trace.held and (everything or now - trace.touched >= self.root_wait):
                ready.extend(self._resolve(trace))
        return ready

    def _trace(self, trace_id: int) -> _Trace:
        trace = self._traces.get(trace_id)
        if trace is None:
            trace = self._traces[trace_id] = _Trace()
        else:
            self._traces.move_to_end(trace_id)
            trace.touched = time.monotonic()
        return trace

    def _evict(self) -> list[ReadableSpan]:
        ready: list[ReadableSpan] = []
        while self._traces and (len(self._traces) > self.max_traces or self._held > self.max_held):
            _, trace = self._traces.popitem(last=False)
            ready.extend(self._resolve(trace))
        return ready

    def _resolve(self, trace: _Trace) -> list[ReadableSpan]:
        ready: list[ReadableSpan] = []
        for span, kind in trace.held:
            task = self._task_of(trace, span)
            extra: dict[str, Any] = {}
            if task is not None:
                extra[A.TASK_ID] = task
                if task == trace.root_task and not trace.root_written and trace.root is not None:
                    ready.append(self._root_task(trace.root, task))
                    trace.root_written = True
            ready.append(as_unitcost_span(span, kind, extra))
        self._held -= len(trace.held)
        trace.held = []
        return ready

    def _task_of(self, trace: _Trace, span: ReadableSpan) -> str | None:
        """The nearest task above the span: a unitcost task, else the root's (when the root is known)."""
        step = trace.parents.get(span.context.span_id)
        seen = 0
        while step is not None and seen < 10_000:  # a cycle in bad input must not hang the receiver
            if step in trace.tasks:
                return trace.tasks[step]
            if step == trace.root_id:
                return trace.root_task
            step = trace.parents.get(step)
            seen += 1
        return trace.root_task if trace.root_id is not None else None

    @staticmethod
    def _root_task(root: ReadableSpan, task_id: str) -> ReadableSpan:
        extra: dict[str, Any] = {A.TASK_ID: task_id, A.TASK_KIND: task_kind(root)}
        key = task_key(root)
        if key is not None:
            extra[A.TASK_KEY] = key
        for name, value in task_attributes(root).items():
            extra[A.TASK_ATTR_PREFIX + name] = value
        service = _service(root)
        if service:
            extra[A.SERVICE] = service
        return as_unitcost_span(root, "task", extra)


# --- the HTTP server ---------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond this machine without a bearer token. Raises ValueError."""
    if not is_loopback(host) and not token:
        raise ValueError(
            f"listening on {host} would let anyone who can reach it write into the store: "
            "pass --token (or set UNITCOST_SERVE_TOKEN), which clients send as 'Authorization: Bearer TOKEN'"
        )


class OTLPReceiver(ThreadingHTTPServer):
    """An OTLP/HTTP receiver: POST /v1/traces (protobuf or JSON, gzip or not). /v1/metrics and /v1/logs
    are accepted and ignored, so an SDK that exports everything to one endpoint logs no errors."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        write: Callable[[list[ReadableSpan]], Any],  # returns False when the store did not take them
        *,
        token: str | None = None,
        root_wait: float = 60.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        check_bind(address[0], token)
        self.token = token
        self.write = write
        self.grouper = TraceGrouper(root_wait)
        self.lock = threading.Lock()
        self.log = log
        self.received = 0
        self._stop = threading.Event()
        super().__init__(address, _Handler)
        self._sweeper = threading.Thread(target=self._sweep, name="unitcost-serve-sweeper", daemon=True)
        self._sweeper.start()

    def authorized(self, header: str | None) -> bool:
        if not self.token:
            return True
        expected = f"Bearer {self.token}".encode()
        return header is not None and hmac.compare_digest(header.strip().encode(), expected)

    def receive(self, spans: list[ReadableSpan]) -> bool:
        """Group and store received spans; False when the store did not take them (the client may retry:
        every write is idempotent)."""
        with self.lock:
            ready = self.grouper.add(spans)
            self.received += len(spans)
            if ready:
                return self.write(ready) is not False
        return True

    def _sweep(self) -> None:
        while not self._stop.wait(1.0):
            try:
                with self.lock:
                    ready = self.grouper.expire()
                    if ready:
                        self.write(ready)
            except Exception:  # noqa: BLE001 - the sweeper must outlive one bad batch
                logger.exception("unitcost serve: could not store spans whose root did not come")

    def server_close(self) -> None:
        """Stop, and store what still waits for its root."""
        self._stop.set()
        with self.lock:
            ready = self.grouper.expire(everything=True)
            if ready:
                self.write(ready)
        super().server_close()


class _Handler(BaseHTTPRequestHandler):
    server: OTLPReceiver
    protocol_version = "HTTP/1.1"
    server_version = "unitcost-serve"

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        path = urlsplit(self.path).path.rstrip("/")
        if not self.server.authorized(self.headers.get("Authorization")):
            self._reply(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})
            return
        if path not in ("/v1/traces", "/v1/metrics", "/v1/logs"):
            self._reply(404, f"no OTLP endpoint at {path}: POST /v1/traces")
            return
        try:
            body = self._body()
        except ValueError as exc:
            self._reply(413 if "large" in str(exc) else 400, str(exc))
            return
        media = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if path == "/v1/traces":
            try:
                spans = decode_traces(body, media)
            except UnsupportedMediaType as exc:
                self._reply(415, str(exc))
                return
            except ValueError as exc:
                self._reply(400, str(exc))
                return
            try:
                stored = self.server.receive(spans)
            except Exception as exc:  # noqa: BLE001 - the client hears of it and may retry
                logger.exception("unitcost serve: could not store %d span(s)", len(spans))
                stored, exc_text = False, str(exc)
            else:
                exc_text = "the store did not take them"
            if not stored:
                self._reply(503, f"could not store the spans ({exc_text}); retry", {"Retry-After": "1"})
                return
            if self.server.log:
                self.server.log(f"received {len(spans)} span(s) from {self.client_address[0]}")
        # An empty Export*ServiceResponse: full success.
        if media == _JSON:
            self._send(200, b"{}", _JSON)
        else:
            self._send(200, b"", _PROTOBUF)

    def _body(self) -> bytes:
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            data = self._chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ValueError("request too large")
            data = self.rfile.read(length)
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding in ("gzip", "deflate"):
            data = _decompress(data, encoding)
        if len(data) > MAX_BODY:
            raise ValueError("request too large")
        return data

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise ValueError("request too large")
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _reply(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        # OTLP/HTTP errors carry a google.rpc.Status; a JSON one is what a person debugging reads.
        self._send(status, json.dumps({"code": status, "message": message}).encode(), _JSON, headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        return None  # requests are reported through `log`, not on stderr line by line
