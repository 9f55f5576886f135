"""OTLP export, set up only when configured: no exporter threads or sockets otherwise."""

from __future__ import annotations

import logging
import warnings
from typing import Callable

from dbos._config.settings import Settings
from dbos._telemetry.tracing import TRACERS


def setup(settings: Settings, logger: logging.Logger) -> Callable[[], None]:
    """Install OTLP trace and log exporters; return the function that shuts them down."""
    if not settings.enable_otlp or not (settings.otlp_traces_endpoints or settings.otlp_logs_endpoints):
        return lambda: None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {"service.name": settings.name, "dbos.executor_id": settings.executor_id, **settings.otlp_attributes}
    )
    shutdowns: list[Callable[[], None]] = []
    if settings.otlp_traces_endpoints:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # DBOS's own provider (not the global one), so destroy() can shut its
        # exporter threads down and a later launch can start fresh ones.
        provider = TracerProvider(resource=resource)
        for endpoint in settings.otlp_traces_endpoints:
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        TRACERS.use(provider.get_tracer("dbos"))

        def stop_traces() -> None:
            TRACERS.use(None)
            provider.shutdown()

        shutdowns.append(stop_traces)
    if settings.otlp_logs_endpoints:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        log_provider = LoggerProvider(resource=resource)
        for endpoint in settings.otlp_logs_endpoints:
            log_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint)))
        with warnings.catch_warnings():
            # opentelemetry-sdk >= 1.39 deprecates its LoggingHandler; it still works, and
            # the warning must not break launch for apps that run with -W error.
            warnings.simplefilter("ignore", DeprecationWarning)
            handler = LoggingHandler(logger_provider=log_provider)
        logger.addHandler(handler)

        def stop_logs() -> None:
            logger.removeHandler(handler)
            log_provider.shutdown()

        shutdowns.append(stop_logs)

    def shutdown() -> None:
        for fn in shutdowns:
            try:
                fn()
            except Exception:
                pass

    return shutdown
