"""OpenTelemetry: each request is a span whose parent is the supervisor's ``_meta.traceparent``.

The API is always used (a no-op without an SDK); the SDK and the OTLP/HTTP exporter are set up
only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, and read their usual OTEL_* variables.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_log = logging.getLogger(__name__)
_propagator = TraceContextTextMapPropagator()
_TRACER_NAME = "dops_worker"


def configure_tracing() -> bool:
    """Installs the SDK + OTLP exporter when configured; returns whether it did. Never raises."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "dops-worker")})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
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


@contextmanager
def request_span(method: str, request_id: object, traceparent: str | None) -> Iterator[Span]:
    """A SERVER span for one request, current for the block; an invalid traceparent starts a new trace."""
    parent = _propagator.extract({"traceparent": traceparent}) if traceparent else None
    tracer = trace.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        method,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "jsonrpc", "rpc.method": method, "rpc.jsonrpc.request_id": str(request_id)},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def mark_span_error(span: Span, code: str, message: str) -> None:
    span.set_attribute("dops.error.code", code)
    span.set_status(Status(StatusCode.ERROR, message))
