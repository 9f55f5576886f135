"""The web integrations (issue 18): ``DBOS(fastapi=app)`` and ``DBOS(flask=app)``, driven
by each framework's own test client on a real database (PostgreSQL and SQLite).

- The ``dbos-idempotency-key`` header is the ID of the workflow the handler starts; a
  second request with the same key gets the recorded result, the workflow not run again.
  An unusable key is a 400.
- A W3C ``traceparent`` header: the request's handler span continues that trace, and
  the workflow's span is the handler span's child.
- Authentication the app sets while handling a request (a FastAPI dependency on a worker
  thread, a Flask before_request hook) goes with the workflows it starts; a role check
  that fails is a 403 from FastAPI, with DBOS's JSON body.
- FastAPI: the app's lifespan launches DBOS and destroys it at shutdown.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterator

import pytest
from auth_helpers import SpanCapture, parent_id, span_capture, span_id, trace_id, wid
from conftest import Harness, eventually
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from flask import Flask, jsonify

from dbos import DBOS, Queue
from dbos.error import DBOSException

runs: dict[str, int] = {}  # workflow ID -> times its body ran

web_queue = Queue("web_tests_queue")

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture
def spans() -> Iterator[SpanCapture]:
    cap = span_capture()
    cap.install()
    cap.clear()
    try:
        yield cap
    finally:
        cap.uninstall()
        cap.clear()


@DBOS.workflow(name="web_tests.order")
def order(item: str) -> dict[str, Any]:
    workflow_id = DBOS.workflow_id
    assert workflow_id is not None
    runs[workflow_id] = runs.get(workflow_id, 0) + 1
    return {"workflow_id": workflow_id, "item": item, "user": DBOS.authenticated_user,
            "roles": DBOS.authenticated_roles}


@DBOS.workflow(name="web_tests.order_async")
async def order_async(item: str) -> dict[str, Any]:
    workflow_id = DBOS.workflow_id
    assert workflow_id is not None
    runs[workflow_id] = runs.get(workflow_id, 0) + 1
    return {"workflow_id": workflow_id, "item": item, "user": DBOS.authenticated_user}


@DBOS.required_roles(["admin"])
@DBOS.workflow(name="web_tests.admin_only")
def admin_only() -> str:
    return f"done by {DBOS.authenticated_user} as {DBOS.assumed_role}"


def fastapi_app(*, native_tracing: bool = True) -> FastAPI:
    """``native_tracing=False``: without FastAPI's own server span (FastAPI >= 0.16x makes one
    from traceparent when a TracerProvider is set; DBOS's handler span is then its child)."""
    if not native_tracing and "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        app = FastAPI(telemetry={"tracing": False})
    else:
        app = FastAPI()

    def user_from_headers(request: Request) -> None:
        # A sync dependency: FastAPI runs it on a worker thread, under a copy of the request's context.
        user = request.headers.get("x-user")
        if user is not None:
            DBOS.set_authentication(user, request.headers.get("x-roles", "").split(",") or None)

    @app.middleware("http")
    async def user_from_middleware(request: Request, call_next: Any) -> Any:
        # The app's own middleware, added before DBOS(fastapi=app): it runs inside DBOS's.
        user = request.headers.get("x-middleware-user")
        if user is not None:
            DBOS.set_authentication(user, ["staff"])
        return await call_next(request)

    @app.get("/order/{item}")
    def order_endpoint(item: str, _auth: None = Depends(user_from_headers)) -> dict[str, Any]:
        return order(item)

    @app.get("/order_async/{item}")
    async def order_async_endpoint(item: str, _auth: None = Depends(user_from_headers)) -> dict[str, Any]:
        return await order_async(item)

    @app.get("/enqueue/{item}")
    def enqueue_endpoint(item: str) -> dict[str, Any]:
        handle = web_queue.enqueue(order, item)
        return {"workflow_id": handle.workflow_id, "result": handle.get_result()}

    @app.get("/admin")
    def admin_endpoint(_auth: None = Depends(user_from_headers)) -> str:
        return admin_only()

    @app.get("/fails")
    def fails() -> None:
        raise DBOSException("a DBOS error in the handler", 7)

    return app


def flask_app() -> Flask:
    app = Flask(__name__)

    @app.before_request
    def user_from_headers() -> None:
        from flask import request

        user = request.headers.get("x-user")
        if user is not None:
            DBOS.set_authentication(user, request.headers.get("x-roles", "").split(","))

    @app.get("/order/<item>")
    def order_endpoint(item: str) -> Any:
        return jsonify(order(item))

    return app


def status_row(workflow_id: str) -> Any:
    status = DBOS.get_workflow_status(workflow_id)
    assert status is not None
    return status


# -- FastAPI ------------------------------------------------------------------------------


def test_fastapi_idempotency_key_is_the_workflow_id(harness: Harness) -> None:
    app = fastapi_app()
    harness.dbos = DBOS(config=harness.config(), fastapi=app)
    key = wid("web-key")
    with TestClient(app) as client:  # the lifespan launches DBOS
        first = client.get("/order/book", headers={"dbos-idempotency-key": key})
        assert first.status_code == 200, first.text
        assert first.json()["workflow_id"] == key
        # The same key again, other arguments: the recorded result, the body not run again.
        again = client.get("/order/lamp", headers={"dbos-idempotency-key": key})
        assert again.json() == first.json() and again.json()["item"] == "book"
        assert runs[key] == 1
        assert status_row(key).status == "SUCCESS"

        # Async endpoint and workflow: the same.
        key_async = wid("web-key-async")
        out = client.get("/order_async/pen", headers={"dbos-idempotency-key": key_async}).json()
        assert out["workflow_id"] == key_async
        assert client.get("/order_async/cup", headers={"dbos-idempotency-key": key_async}).json() == out
        assert runs[key_async] == 1

        # No header (or an empty one): a fresh ID per request.
        ids = {client.get("/order/x").json()["workflow_id"],
               client.get("/order/x", headers={"dbos-idempotency-key": ""}).json()["workflow_id"]}
        assert len(ids) == 2 and key not in ids

        # The key names one workflow: the one the handler starts (an enqueue here).
        queued_key = wid("web-key-queued")
        out = client.get("/enqueue/mug", headers={"dbos-idempotency-key": queued_key}).json()
        assert out["workflow_id"] == queued_key and out["result"]["workflow_id"] == queued_key
        assert status_row(queued_key).queue_name == "web_tests_queue"

        bad = client.get("/order/x", headers={"dbos-idempotency-key": "k" * 3000})
        assert bad.status_code == 400 and "dbos-idempotency-key" in bad.json()["message"]
        assert DBOS._instance is harness.dbos and harness.dbos._launched
    # The lifespan's shutdown destroyed it.
    assert DBOS._instance is None


def test_fastapi_authentication_flows_into_workflows(harness: Harness) -> None:
    app = fastapi_app()
    harness.dbos = DBOS(config=harness.config(), fastapi=app)

    @app.middleware("http")
    async def user_from_outer_middleware(request: Request, call_next: Any) -> Any:
        # Added after DBOS(fastapi=app), as most DBOS apps do: it runs outside DBOS's.
        user = request.headers.get("x-outer-user")
        if user is not None:
            DBOS.set_authentication(user, ["outer"])
        return await call_next(request)

    with TestClient(app) as client:
        key = wid("web-auth")
        out = client.get("/order/book", headers={"dbos-idempotency-key": key, "x-user": "alice",
                                                 "x-roles": "admin,staff"}).json()
        assert out["user"] == "alice" and out["roles"] == ["admin", "staff"]
        status = status_row(key)
        assert status.authenticated_user == "alice" and status.authenticated_roles == ["admin", "staff"]

        out = client.get("/order_async/pen", headers={"x-user": "bob", "x-roles": "staff"}).json()
        assert out["user"] == "bob"
        # Nothing leaks from one request to the next.
        assert client.get("/order/book").json()["user"] is None
        out = client.get("/order/book", headers={"x-middleware-user": "erin"}).json()
        assert out["user"] == "erin" and out["roles"] == ["staff"]
        out = client.get("/order_async/pen", headers={"x-outer-user": "frank"}).json()
        assert out["user"] == "frank"
        assert client.get("/order/book").json()["user"] is None

        assert client.get("/admin", headers={"x-user": "carol", "x-roles": "admin"}).json() == \
            "done by carol as admin"
        denied = client.get("/admin", headers={"x-user": "dave", "x-roles": "staff"})
        assert denied.status_code == 403
        assert denied.json()["dbos_error"] == "DBOSNotAuthorizedError"
        assert denied.json()["dbos_error_code"] == "8"

        failed = client.get("/fails")
        assert failed.status_code == 500
        assert failed.json() == {"message": "a DBOS error in the handler", "dbos_error_code": "7",
                                 "dbos_error": "DBOSException"}


def ancestors(span: Any, found: list[Any]) -> list[str]:
    """The span IDs of a span's parents, nearest first, up to the remote caller's."""
    by_id = {span_id(s): s for s in found}
    chain = []
    while span.parent is not None:
        chain.append(parent_id(span))
        if span.parent.is_remote:
            break
        span = by_id[parent_id(span)]
    return chain


@pytest.mark.parametrize("native_tracing", [True, False], ids=["fastapi-span", "no-fastapi-span"])
def test_fastapi_traceparent_parents_the_workflow_span(
    spans: SpanCapture, harness: Harness, native_tracing: bool
) -> None:
    app = fastapi_app(native_tracing=native_tracing)
    harness.dbos = DBOS(config=harness.config(), fastapi=app)
    key = wid("web-trace")
    with TestClient(app) as client:
        response = client.get("/order/book", headers={"dbos-idempotency-key": key, "traceparent": TRACEPARENT,
                                                      "x-request-id": "req-1"})
        assert response.status_code == 200
        found = eventually(lambda: [s for s in spans.finished() if s.name == "/order/book"] and spans.finished())
    [handler] = [s for s in found if s.name == "/order/book"]
    [workflow] = spans.of_workflow(key)
    # The caller's trace: directly, or through the spans FastAPI made for the request
    # (its server span above DBOS's handler span, its endpoint span below).
    assert trace_id(handler) == TRACE_ID and ancestors(handler, found)[-1] == CALLER_SPAN
    assert trace_id(workflow) == TRACE_ID and span_id(handler) in ancestors(workflow, found)
    if not native_tracing:
        assert parent_id(handler) == CALLER_SPAN and parent_id(workflow) == span_id(handler)
    attrs = dict(handler.attributes or {})
    assert attrs["dbos.operation_type"] == "handler"
    assert attrs["dbos.request_method"] == "GET"
    assert attrs["dbos.request_url"].endswith("/order/book")
    assert attrs["dbos.request_id"] == "req-1"
    assert attrs["dbos.response_code"] == 200


def test_fastapi_enqueue_carries_the_trace_without_local_spans(harness: Harness) -> None:
    """No TracerProvider here: the queued workflow still records the caller's trace
    context, for the executor that runs it."""
    app = fastapi_app()
    harness.dbos = DBOS(config=harness.config(), fastapi=app)
    key = wid("web-trace-queued")
    with TestClient(app) as client:
        client.get("/enqueue/mug", headers={"dbos-idempotency-key": key, "traceparent": TRACEPARENT})
        stored = harness.backend.scalar(
            f"SELECT trace_context FROM {harness.backend.table('workflow_status')} WHERE workflow_uuid = :w", w=key
        )
    assert stored is not None and f"00-{TRACE_ID}-{CALLER_SPAN}-01" in stored


# -- Flask --------------------------------------------------------------------------------


def test_flask_idempotency_key_and_authentication(harness: Harness) -> None:
    app = flask_app()
    harness.dbos = DBOS(config=harness.config(), flask=app)
    DBOS.launch()  # Flask has no lifespan: the application launches DBOS, as in DBOS
    client = app.test_client()
    key = wid("flask-key")
    first = client.get("/order/book", headers={"dbos-idempotency-key": key, "x-user": "alice", "x-roles": "admin"})
    assert first.status_code == 200
    assert first.json == {"workflow_id": key, "item": "book", "user": "alice", "roles": ["admin"]}
    again = client.get("/order/lamp", headers={"dbos-idempotency-key": key})
    assert again.json == first.json and runs[key] == 1
    assert status_row(key).authenticated_user == "alice"
    fresh = client.get("/order/book").json
    assert fresh is not None and fresh["workflow_id"] != key and fresh["user"] is None
    bad = client.get("/order/x", headers={"dbos-idempotency-key": "k" * 3000})
    assert bad.status_code == 400 and bad.json is not None and "dbos-idempotency-key" in bad.json["message"]


def test_flask_traceparent_parents_the_workflow_span(spans: SpanCapture, harness: Harness) -> None:
    app = flask_app()
    harness.dbos = DBOS(config=harness.config(), flask=app)
    DBOS.launch()
    key = wid("flask-trace")
    response = app.test_client().get("/order/book", headers={"dbos-idempotency-key": key, "traceparent": TRACEPARENT})
    assert response.status_code == 200
    [handler] = [s for s in spans.finished() if s.name == "/order/book"]
    [workflow] = spans.of_workflow(key)
    assert trace_id(handler) == TRACE_ID and parent_id(handler) == CALLER_SPAN
    assert trace_id(workflow) == TRACE_ID and parent_id(workflow) == span_id(handler)
    assert dict(handler.attributes or {})["dbos.response_code"] == 200


def test_one_app_twice_gets_the_middleware_once(harness: Harness) -> None:
    app = fastapi_app()
    DBOS(config=harness.config(), fastapi=app)
    DBOS.destroy()
    harness.dbos = DBOS(config=harness.config(), fastapi=app)
    assert sum(1 for m in app.user_middleware if m.cls.__name__ == "DBOSMiddleware") == 1
    flask = flask_app()
    DBOS(config=harness.config(), flask=flask)
    DBOS(config=harness.config(), flask=flask)
    assert type(flask.wsgi_app).__name__ == "DBOSWSGIMiddleware"
    assert type(flask.wsgi_app.app).__name__ != "DBOSWSGIMiddleware"  # type: ignore[attr-defined]
