"""OpenTelemetry tracing, Prometheus metrics and structured JSON logs."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from libs.common.settings import TelemetrySettings

_configured = False


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the active trace id when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = f"{span.trace_id:032x}"
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(settings: TelemetrySettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Access logs carry URLs (ids), never bodies; keep them but at the configured level.
    # httpx/httpcore log every outgoing request's full URL at INFO, and webhook URLs may carry
    # credentials in their query string: they only log at WARNING and above (as nats does).
    for noisy in ("nats", "faststream", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def setup_tracing(settings: TelemetrySettings) -> None:
    """Install a tracer provider once per process; export over OTLP/HTTP when configured."""
    global _configured
    if _configured:
        return
    _configured = True
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    if settings.otel_exporter_otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)


def current_trace_headers() -> dict[str, str]:
    """W3C trace-context headers of the current span (stored with outbox events)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def instrument_app(app: Any) -> None:
    """Server spans for every request (so outbox events carry the request's trace context)."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="health,metrics")


def instrument_engine(engine: Any) -> None:
    """Client spans for every SQL statement of an async engine."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine.sync_engine)
