"""OTLP exporters for traces and metrics, over HTTP/protobuf or gRPC: OpenTelemetry's own, configured
from `unitcost.configure` arguments or the standard variables.

What is not given explicitly is left to the exporters, which read the standard variables themselves:
``OTEL_EXPORTER_OTLP_ENDPOINT`` (a base URL: ``/v1/traces`` and ``/v1/metrics`` are added over HTTP),
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the full URL), ``..._HEADERS`` (``key=value,key2=value2``),
``..._TIMEOUT`` (seconds), ``..._COMPRESSION``, ``..._CERTIFICATE`` and the ``_METRICS_`` twins. The
protocol comes from ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` or ``OTEL_EXPORTER_OTLP_PROTOCOL``:
``http/protobuf`` (the default) or ``grpc`` (``pip install 'unitcost[grpc]'``). OpenTelemetry's Python
exporters have no ``http/json``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..common.errors import ConfigurationError

__all__ = ["env_endpoint", "metric_exporter", "resolve_protocol", "span_exporter"]

HTTP = "http/protobuf"
GRPC = "grpc"
PROTOCOLS = (HTTP, GRPC)


def resolve_protocol(explicit: str | None = None, signal: str = "TRACES") -> str:
    """The OTLP protocol in force: ``explicit``, else the signal's variable, else the general one."""
    protocol = (
        explicit
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or HTTP
    ).strip().lower()
    if protocol not in PROTOCOLS:
        raise ConfigurationError(
            f"OTLP protocol {protocol!r} is not supported: use 'http/protobuf' or 'grpc' "
            "(OpenTelemetry's Python exporters have no http/json)"
        )
    if protocol == GRPC:
        try:
            import grpc  # noqa: F401
            import opentelemetry.exporter.otlp.proto.grpc  # noqa: F401
        except ImportError as exc:
            raise ConfigurationError(
                "OTLP over gRPC needs opentelemetry-exporter-otlp-proto-grpc: pip install 'unitcost[grpc]'"
            ) from exc
    return protocol


def env_endpoint(signal: str = "TRACES") -> str | None:
    """The OTLP endpoint the standard variables name for a signal, if any."""
    return os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")


def _http_url(base: str, path: str) -> str:
    url = base.rstrip("/")
    return url if url.endswith(path) else url + path


def _options(headers: Mapping[str, str] | None, timeout: float | None) -> dict[str, Any]:
    """The keyword arguments both OTLP exporters take; what is not given is left to the variables."""
    kwargs: dict[str, Any] = {}
    if headers:
        kwargs["headers"] = dict(headers)
    if timeout is not None:
        kwargs["timeout"] = timeout
    return kwargs


def span_exporter(
    protocol: str = HTTP,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Any:
    """An OTLP span exporter. ``endpoint`` is a base URL (``http://collector:4318``; over gRPC
    ``http://collector:4317``); None leaves it, and anything else not given, to the variables."""
    kwargs = _options(headers, timeout)
    if protocol == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter

        return GrpcSpanExporter(endpoint=endpoint, **kwargs)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=_http_url(endpoint, "/v1/traces") if endpoint else None, **kwargs)


def metric_exporter(
    protocol: str = HTTP,
    endpoint: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Any:
    """An OTLP metric exporter, configured as `span_exporter` is."""
    kwargs = _options(headers, timeout)
    if protocol == GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter

        return GrpcMetricExporter(endpoint=endpoint, **kwargs)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=_http_url(endpoint, "/v1/metrics") if endpoint else None, **kwargs)
