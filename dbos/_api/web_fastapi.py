"""``DBOS(fastapi=app)`` (issue 18): one ASGI middleware and an exception handler.

- Each HTTP request is handled under web.handling (workflow ID header, handler span,
  trace context, the request's authentication). A pure ASGI middleware, so the
  context it sets is the one the endpoint runs in (a sync endpoint or dependency
  runs on a worker thread under a copy of it).
- The app's lifespan launches DBOS once the app's own startup is done (unless it is
  launched already) and destroys it after the app's shutdown, as DBOS 2.x does; a
  TestClient used as ``with TestClient(app):`` runs both.
- A DBOSException a handler lets escape becomes a JSON response: 403 for
  DBOSNotAuthorizedError, else 500, with ``message``, ``dbos_error_code`` and
  ``dbos_error`` (the class name).
"""

from __future__ import annotations

from typing import Any, MutableMapping, Optional

from fastapi import FastAPI
from fastapi import Request as FastAPIRequest
from starlette.datastructures import URL, Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from dbos._api import web
from dbos.error import DBOSException

Message = MutableMapping[str, Any]


class DBOSMiddleware:
    """Launch and destroy DBOS with the app's lifespan; handle each request under DBOS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._launched: Any = None  # the DBOS this lifespan launched (destroyed at shutdown)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
        elif scope["type"] == "http":
            await self._request(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _lifespan_send(self, send: Send) -> Send:
        from dbos._api.dbos import DBOS

        async def on_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                instance = DBOS._instance
                if instance is not None and not instance._launched:
                    DBOS.launch()  # on the app's event loop, as in DBOS
                    self._launched = instance
            elif message["type"] == "lifespan.shutdown.complete":
                if self._launched is not None and DBOS._instance is self._launched:
                    DBOS.destroy()
                self._launched = None
            await send(message)

        return on_send

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        client = scope.get("client")
        request = web.Request(
            path=str(scope.get("path", "")),
            url=str(URL(scope=scope)),
            method=str(scope.get("method", "")),
            client_ip=str(client[0]) if client else None,
            header=headers.get,
        )
        try:
            set_id = web.workflow_id(request)
        except DBOSException as e:
            await JSONResponse(web.bad_request(e), status_code=400)(scope, receive, send)
            return
        status: list[Optional[int]] = [None]

        async def on_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        with web.handling(request, set_id) as handling:
            await self.app(scope, receive, on_send)
            handling.responded(status[0])


async def _dbos_error(request: FastAPIRequest, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBOSException)
    status, body = web.error_body(exc)
    return JSONResponse(body, status_code=status)


def install_fastapi(app: FastAPI) -> None:
    if getattr(app.state, "dbos_middleware", False):
        return  # a second DBOS(fastapi=app) on the same app: installed already
    app.state.dbos_middleware = True
    app.add_middleware(DBOSMiddleware)
    app.add_exception_handler(DBOSException, _dbos_error)
