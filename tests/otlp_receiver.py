"""A minimal OTLP/HTTP receiver for tests, written without unitcost's code: http.server on 127.0.0.1
and OpenTelemetry's own protobuf classes. It keeps every request (path, headers, decoded body)."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def any_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return None if which is None else getattr(value, which)


def attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in pairs}


@dataclass
class Span:
    """One received span, in plain Python."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: int
    attrs: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]
    scope: str


def spans_of(request: ExportTraceServiceRequest) -> list[Span]:
    found = []
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                found.append(Span(
                    s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex() or None, s.kind,
                    attributes(s.attributes), [(e.name, attributes(e.attributes)) for e in s.events], resource,
                    ss.scope.name,
                ))
    return found


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)

    def spans(self) -> list[Span]:
        return [s for r in self.requests if r.path == "/v1/traces" for s in spans_of(r.body)]

    def metric_names(self) -> set[str]:
        return {
            m.name
            for r in self.requests if r.path == "/v1/metrics"
            for rm in r.body.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            assert self.headers["Content-Type"] == "application/x-protobuf"
            message: Any = ExportTraceServiceRequest() if self.path == "/v1/traces" else ExportMetricsServiceRequest()
            message.ParseFromString(body)
            receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, message))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def otlp_receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Receiver("")))
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
