"""``DBOS(flask=app)`` (issue 18): a WSGI middleware around ``app.wsgi_app``.

Each request is handled under web.handling (workflow ID header, handler span, trace
context, the request's authentication). Flask runs a request's hooks and view on
one thread, inside the middleware's block. As in DBOS 2.x, Flask gets no lifespan:
the application calls ``DBOS.launch()``; and no error handler: a DBOSException is
Flask's to render.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Optional

from flask import Flask
from werkzeug.wrappers import Request as WerkzeugRequest
from werkzeug.wrappers import Response as WerkzeugResponse

from dbos._api import web
from dbos.error import DBOSException

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class DBOSWSGIMiddleware:
    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        wrapped = WerkzeugRequest(environ)
        request = web.Request(
            path=wrapped.path,
            url=wrapped.url,
            method=wrapped.method,
            client_ip=wrapped.remote_addr,
            header=wrapped.headers.get,
        )
        try:
            set_id = web.workflow_id(request)
        except DBOSException as e:
            response = WerkzeugResponse(json.dumps(web.bad_request(e)), 400, mimetype="application/json")
            return response(environ, start_response)
        status: list[Optional[int]] = [None]

        def on_start(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status[0] = int(status_line.split(" ", 1)[0])
            return start_response(status_line, headers, exc_info)

        with web.handling(request, set_id) as handling:
            body = self.app(environ, on_start)
            handling.responded(status[0])
        return body


def install_flask(app: Flask) -> None:
    if "dbos" in app.extensions:
        return  # a second DBOS(flask=app) on the same app: installed already
    app.extensions["dbos"] = True
    app.wsgi_app = DBOSWSGIMiddleware(app.wsgi_app)  # type: ignore[method-assign]
