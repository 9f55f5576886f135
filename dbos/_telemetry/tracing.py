"""OpenTelemetry spans for workflows, steps and transactions.

Span and attribute names live in this one table. Spans go to whatever
TracerProvider is global (the user's, or the OTLP one DBOS sets up when
configured); with none configured they are no-ops and cost almost nothing.
Trace context travels with a queued workflow in its status row (W3C
traceparent), so a workflow run by another process continues the trace.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, Callable, ContextManager, Iterator, Optional

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.environment_variables import OTEL_PYTHON_TRACER_PROVIDER
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

ATTR_WORKFLOW_ID = "dbos.workflow_id"
ATTR_STEP_ID = "dbos.step_id"
ATTR_EXECUTOR_ID = "dbos.executor_id"
ATTR_APP_VERSION = "dbos.app_version"
ATTR_QUEUE = "dbos.queue_name"
ATTR_OPERATION = "dbos.operation_type"  # workflow | step | transaction | handler
ATTR_NAME = "dbos.function_name"
# The span of an HTTP request handled under DBOS(fastapi=...) / DBOS(flask=...).
ATTR_REQUEST_ID = "dbos.request_id"  # the x-request-id header, else a new UUID
ATTR_REQUEST_IP = "dbos.request_ip"
ATTR_REQUEST_URL = "dbos.request_url"
ATTR_REQUEST_METHOD = "dbos.request_method"
ATTR_RESPONSE_CODE = "dbos.response_code"

_PROPAGATOR = TraceContextTextMapPropagator()


class _Tracers:
    """Which tracer DBOS spans use: the global one, or DBOS's own OTLP provider's."""

    def __init__(self) -> None:
        self.default = trace.get_tracer("dbos")
        self.active = self.default

    def use(self, tracer: Optional[trace.Tracer]) -> None:
        self.active = tracer if tracer is not None else self.default


TRACERS = _Tracers()


def current_context() -> otel_context.Context:
    return otel_context.get_current()


def inject() -> Optional[str]:
    """The current trace context as text to store with a workflow (None outside any span)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return json.dumps(carrier) if carrier else None


def extract(text: Optional[str]) -> Optional[otel_context.Context]:
    if not text:
        return None
    try:
        return _PROPAGATOR.extract(json.loads(text))
    except (ValueError, TypeError):
        return None


def extract_headers(get_header: Callable[[str], Optional[str]]) -> Optional[otel_context.Context]:
    """The caller's W3C trace context (traceparent, tracestate) from request headers;
    None when there is no valid one."""
    parent = get_header("traceparent")
    if not parent:
        return None
    carrier = {"traceparent": parent}
    state = get_header("tracestate")
    if state:
        carrier["tracestate"] = state
    found = _PROPAGATOR.extract(carrier)
    return found if trace.get_current_span(found).get_span_context().is_valid else None


@contextlib.contextmanager
def attached(ctx: otel_context.Context) -> Iterator[None]:
    """``ctx`` is the current trace context for the block (no span of DBOS's own)."""
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


def in_span() -> bool:
    """Whether a valid span (DBOS's, or the application's own instrumentation's) is current."""
    return trace.get_current_span().get_span_context().is_valid


NO_SPAN: ContextManager[trace.Span] = contextlib.nullcontext(trace.INVALID_SPAN)
_UNKNOWN = object()


def enabled() -> bool:
    """Whether DBOS spans are recorded: DBOS's own provider, or a global one set.

    Until a global provider is set, spans are no-ops, and callers skip building
    them. This runs on every step: OpenTelemetry's module-level slot is read
    (a provider, once set, stays set) instead of ``get_tracer_provider()``,
    which reads the environment on each call while none is set; only a provider
    named by the environment at import needs that call (it loads the provider).
    """
    if TRACERS.active is not TRACERS.default:
        return True
    installed = getattr(trace, "_TRACER_PROVIDER", _UNKNOWN)
    if installed is None and not _PROVIDER_FROM_ENVIRONMENT:
        return False
    if installed is None or installed is _UNKNOWN:
        return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    return True


_PROVIDER_FROM_ENVIRONMENT = OTEL_PYTHON_TRACER_PROVIDER in os.environ


def span(
    name: str, operation: str, attributes: dict[str, Any], parent: Optional[otel_context.Context] = None
) -> ContextManager[trace.Span]:
    if not enabled():
        return NO_SPAN
    attributes[ATTR_OPERATION] = operation
    attributes[ATTR_NAME] = name
    return TRACERS.active.start_as_current_span(name, context=parent, attributes=attributes)
