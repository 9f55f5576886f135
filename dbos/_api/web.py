"""What ``DBOS(fastapi=app)`` and ``DBOS(flask=app)`` do around each HTTP request (issue 18).

For the extent of one request's handling (web_fastapi.py and web_flask.py adapt it
to ASGI and WSGI):

- a non-empty ``dbos-idempotency-key`` header is the ID of the first workflow the
  handler starts (as ``SetWorkflowID``), so a retried request gets the recorded
  result instead of a second run; an unusable key is a 400;
- a handler span (name: the URL path) is current; its parent is the current span
  when the application's own instrumentation made one, else the caller's W3C trace
  context from the ``traceparent``/``tracestate`` headers. The workflows the handler
  starts are its children, and queued ones carry the trace to their executor;
- the authentication the application sets while handling the request (its middleware,
  a dependency, a ``before_request`` hook or the handler calling
  ``DBOS.set_authentication``) is the request's, and goes with the workflows it starts.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from dbos._api.context_managers import SetWorkflowID
from dbos._execution import context
from dbos._execution.ids import new_id
from dbos._telemetry import tracing
from dbos.error import DBOSException, DBOSNotAuthorizedError

IDEMPOTENCY_HEADER = "dbos-idempotency-key"
REQUEST_ID_HEADER = "x-request-id"


@dataclass(frozen=True)
class Request:
    """What the integrations need of a request, whatever the framework."""

    path: str
    url: str
    method: str
    client_ip: Optional[str]
    header: Callable[[str], Optional[str]]  # case-insensitive lookup


class Handling:
    """The request being handled: its span (INVALID_SPAN when spans are off)."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def responded(self, status_code: Optional[int]) -> None:
        if status_code is not None and self.span.is_recording():
            self.span.set_attribute(tracing.ATTR_RESPONSE_CODE, status_code)


def workflow_id(request: Request) -> Optional[SetWorkflowID]:
    """The request's workflow ID as a SetWorkflowID (None without the header); a
    DBOSException, for a 400, when the key cannot be a workflow ID."""
    key = request.header(IDEMPOTENCY_HEADER)
    if not key:
        return None
    return SetWorkflowID(key)


@contextlib.contextmanager
def handling(request: Request, set_id: Optional[SetWorkflowID]) -> Iterator[Handling]:
    with contextlib.ExitStack() as stack:
        parent = None if tracing.in_span() else tracing.extract_headers(request.header)
        span: trace.Span = trace.INVALID_SPAN
        if tracing.enabled():
            attributes: dict[str, Any] = {
                tracing.ATTR_REQUEST_ID: request.header(REQUEST_ID_HEADER) or new_id(),
                tracing.ATTR_REQUEST_URL: request.url,
                tracing.ATTR_REQUEST_METHOD: request.method,
            }
            if request.client_ip is not None:
                attributes[tracing.ATTR_REQUEST_IP] = request.client_ip
            span = stack.enter_context(tracing.span(request.path, "handler", attributes, parent=parent))
        elif parent is not None:
            # No spans recorded here, but a workflow enqueued by the handler still carries
            # the caller's trace to the executor that runs it.
            stack.enter_context(tracing.attached(parent))
        stack.enter_context(context.request_scope())
        if set_id is not None:
            stack.enter_context(set_id)
        yield Handling(span)
        if span.is_recording():
            span.set_status(Status(StatusCode.OK))


def error_body(exc: DBOSException) -> tuple[int, dict[str, str]]:
    """The HTTP status and JSON body of a DBOSException a handler let escape."""
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = 403 if isinstance(exc, DBOSNotAuthorizedError) else 500
    return status, {
        "message": exc.message,
        "dbos_error_code": str(exc.dbos_error_code),
        "dbos_error": type(exc).__name__,
    }


def bad_request(exc: DBOSException) -> dict[str, str]:
    """The JSON body of the 400 for an unusable ``dbos-idempotency-key``."""
    return {"message": f"{IDEMPOTENCY_HEADER}: {exc.message}", "dbos_error_code": str(exc.dbos_error_code),
            "dbos_error": type(exc).__name__}


def install(*, fastapi: Any = None, flask: Any = None) -> None:
    """``DBOS(fastapi=app)`` / ``DBOS(flask=app)``: add the middleware (once per app)."""
    if fastapi is not None:
        from dbos._api.web_fastapi import install_fastapi

        install_fastapi(fastapi)
    if flask is not None:
        from dbos._api.web_flask import install_flask

        install_flask(flask)
