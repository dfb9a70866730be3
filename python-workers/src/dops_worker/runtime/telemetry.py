"""OpenTelemetry: each request is a span whose parent is the supervisor's ``_meta.traceparent``.

The API is always used (a no-op without an SDK). The SDK and an OTLP exporter are set up only
when the supervisor passes ``DOPS_TELEMETRY_OTLP_ENDPOINT`` (the service's own setting) with
``DOPS_TELEMETRY_OTLP_PROTOCOL`` (``grpc``, the default, or ``http/protobuf``; ``http/json``,
which the Python SDK has no exporter for, is sent as ``http/protobuf`` to the same URL, which
OTLP/HTTP receivers accept) and ``DOPS_TELEMETRY_SERVICE_NAME``. Heartbeats (``worker.ping``) are
never traced, nor are ``memory.stats`` calls that carry no traceparent (metrics scrapes).
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_log = logging.getLogger(__name__)
_propagator = TraceContextTextMapPropagator()
_TRACER_NAME = "dops_worker"
_NEVER_TRACED = frozenset({"worker.ping"})
_TRACED_ONLY_WITH_PARENT = frozenset({"memory.stats"})


def otlp_http_traces_url(endpoint: str) -> str:
    """``<endpoint>/v1/traces`` when the URL has no path, else the URL as given (as the services do)."""
    parts = urlsplit(endpoint)
    if parts.path in ("", "/"):
        parts = parts._replace(path="/v1/traces")
    return urlunsplit(parts)


def _exporter(endpoint: str, protocol: str):  # noqa: ANN202 - the SDK's SpanExporter, imported lazily
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    if protocol not in ("http/protobuf", "http/json"):
        raise ValueError(f"unknown OTLP protocol {protocol!r} (grpc, http/protobuf, http/json)")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=otlp_http_traces_url(endpoint))


def configure_tracing() -> bool:
    """Installs the SDK + OTLP exporter when configured; returns whether it did. Never raises."""
    endpoint = os.environ.get("DOPS_TELEMETRY_OTLP_ENDPOINT", "").strip()
    if not endpoint:
        return False
    protocol = os.environ.get("DOPS_TELEMETRY_OTLP_PROTOCOL", "").strip() or "grpc"
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        name = os.environ.get("DOPS_TELEMETRY_SERVICE_NAME", "").strip() or "dops-worker"
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(BatchSpanProcessor(_exporter(endpoint, protocol)))
        trace.set_tracer_provider(provider)
        return True
    except Exception:  # telemetry must never stop the worker
        _log.warning("OpenTelemetry SDK setup failed; tracing disabled", exc_info=True)
        return False


def shutdown_tracing() -> None:
    """Flushes pending spans if an SDK provider is installed."""
    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if callable(shutdown):
        try:
            shutdown()
        except Exception:
            _log.debug("tracer provider shutdown failed", exc_info=True)


def start_request_span(method: str, request_id: object, traceparent: str | None) -> Span:
    """A started SERVER span for one request (not made current; the caller ends it when the reply
    leaves, which for a deferred reply is after the handler returned); an invalid traceparent
    starts a new trace. Heartbeats, and memory reads no traced call asked for, get the invalid
    (non-recording) span.
    """
    if method in _NEVER_TRACED or (method in _TRACED_ONLY_WITH_PARENT and not traceparent):
        return INVALID_SPAN
    parent = _propagator.extract({"traceparent": traceparent}) if traceparent else None
    return trace.get_tracer(_TRACER_NAME).start_span(
        method,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "jsonrpc", "rpc.method": method, "rpc.jsonrpc.request_id": str(request_id)},
        record_exception=False,
        set_status_on_exception=False,
    )


def current_span(span: Span) -> AbstractContextManager[Span]:
    """``span`` as the current span for a block (log lines and step events go to it); never ends it."""
    return trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)


def mark_span_error(span: Span, code: str, message: str) -> None:
    span.set_attribute("dops.error.code", code)
    span.set_status(Status(StatusCode.ERROR, message))


def step_event(step: int, total: int, phase: str | None = None) -> None:
    """Adds a ``step`` event (step, total) to the current request's span, or a ``writing`` event
    when the device work ended (``phase="writing"``); a no-op outside a span."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(phase or "step", {"dops.step": step, "dops.total": total})
