"""OTLP export, set up only when configured: no exporter threads or sockets otherwise.

Setup is all or nothing. Every exporter thread, provider and handler it
creates is registered for shutdown as soon as it exists; if a later part
fails (say the logs exporter, after the trace exporter's thread started),
everything already started is shut down again and a
``DBOSInitializationError`` names the config key at fault, so a failed
launch leaves no thread, handler or tracer behind. (A malformed endpoint
never gets here: ``load_settings`` rejects it at ``DBOS(config=...)``.)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from typing import Any, Callable, Iterator

from dbos._config.settings import Settings
from dbos._telemetry.tracing import TRACERS
from dbos.error import DBOSInitializationError

SHUTDOWN_TIMEOUT_SEC = 2.0  # how long DBOS.destroy() waits for the exporters to flush
EXPORT_TIMEOUT_SEC = 2.0  # one export request (the exporters' default is 10 s)
TRACES_KEY = "otlp_traces_endpoints"
LOGS_KEY = "otlp_logs_endpoints"


def setup(settings: Settings, logger: logging.Logger) -> Callable[[], None]:
    """Install OTLP trace and log exporters; return the function that shuts them down."""
    if not settings.enable_otlp or not (settings.otlp_traces_endpoints or settings.otlp_logs_endpoints):
        return lambda: None
    undo: list[Callable[[], None]] = []  # in creation order; run in reverse

    def undo_all() -> None:
        while undo:
            try:
                undo.pop()()
            except Exception:
                pass

    def shutdown() -> None:
        # Unhook the tracer and the log handler at once; the providers flush on shutdown
        # and retry with backoff while the collector is down (10-20 s): wait for them at
        # most SHUTDOWN_TIMEOUT_SEC, then drop what is unsent.
        flushes = [f for f in undo if isinstance(f, _Flush)]
        undo[:] = [f for f in undo if not isinstance(f, _Flush)]
        undo_all()
        def flush_all() -> None:
            for flush in reversed(flushes):
                flush()

        _bounded(flush_all, SHUTDOWN_TIMEOUT_SEC, logger)

    try:
        from opentelemetry.sdk.resources import Resource

        resource = Resource.create(
            {"service.name": settings.name, "dbos.executor_id": settings.executor_id, **settings.otlp_attributes}
        )
        if settings.otlp_traces_endpoints:
            with _blame(TRACES_KEY):
                _setup_traces(settings.otlp_traces_endpoints, resource, undo)
        if settings.otlp_logs_endpoints:
            with _blame(LOGS_KEY):
                _setup_logs(settings.otlp_logs_endpoints, resource, logger, undo)
    except BaseException:
        undo_all()
        raise
    return shutdown


class _Flush:
    """A provider's shutdown (it flushes to the collector): may take long, run bounded."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn

    def __call__(self) -> None:
        try:
            self._fn()
        except Exception:
            pass


def _bounded(fn: Callable[[], Any], timeout: float, logger: logging.Logger) -> None:
    thread = threading.Thread(target=fn, name="dbos-otlp-shutdown", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        logger.warning(
            "OTLP export did not finish within %.0f s (is the collector down?); unsent spans and logs are dropped",
            timeout,
        )


@contextlib.contextmanager
def _blame(key: str) -> Iterator[None]:
    """Report any failure in this part of the setup as one of config key ``key``."""
    try:
        yield
    except Exception as e:
        raise DBOSInitializationError(f"could not set up OTLP export for config key '{key}': {e}") from e


def _setup_traces(endpoints: tuple[str, ...], resource: Any, undo: list[Callable[[], None]]) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # DBOS's own provider (not the global one), so destroy() can shut its
    # exporter threads down and a later launch can start fresh ones.
    provider = TracerProvider(resource=resource)
    undo.append(_Flush(provider.shutdown))  # also shuts down every processor added below
    for endpoint in endpoints:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT_SEC)))  # starts a thread
    TRACERS.use(provider.get_tracer("dbos"))
    undo.append(lambda: TRACERS.use(None))


def _setup_logs(
    endpoints: tuple[str, ...], resource: Any, logger: logging.Logger, undo: list[Callable[[], None]]
) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    log_provider = LoggerProvider(resource=resource)
    undo.append(_Flush(log_provider.shutdown))
    for endpoint in endpoints:
        log_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT_SEC)))
    with warnings.catch_warnings():
        # opentelemetry-sdk >= 1.39 deprecates its LoggingHandler; it still works, and
        # the warning must not break launch for apps that run with -W error.
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(logger_provider=log_provider)
    logger.addHandler(handler)
    undo.append(lambda: logger.removeHandler(handler))
