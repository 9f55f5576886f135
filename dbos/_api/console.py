"""The fleet console: pages and a JSON API over the library's management functions
and fleet views (docs/console.md).

Served by ``dbos console`` and, under ``/``, by the coordinator's HTTP side (its
own routes first). The pages are static HTML, JS and CSS (``console_static/``,
no build step) that draw everything from ``/api/`` with DOM text nodes, so a
workflow's inputs and outputs (user data) are never parsed as markup. Reads go
through ``dbos._execution`` (``fleet``, ``overview``, ``management``); actions
call the same functions as the CLI, through a ``DBOSClient``. Who may call what:
``console_auth``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from dbos._api.console_auth import TOKEN_ENV, ConsoleTokenRequired, Guard, with_security_headers
from dbos._api.console_openapi import openapi
from dbos._execution import checks, fleet, management, overview
from dbos._execution.runtime import now_ms
from dbos._storage.database import Database
from dbos.error import DBOSException

STATIC = Path(__file__).parent / "console_static"
PAGES = ("/", "/fleet", "/versions", "/queues", "/workflows")
SHOWN_CHARS = 2000  # a value longer than this is cut, with "show all" (?full=1) for the rest
__all__ = ["TOKEN_ENV", "Source", "build_console", "mount_console", "serve"]
BULK_MAX = 1000  # a bulk action changes at most this many workflows
_FILTERS = {"status", "name", "queue", "app_version", "executor", "prefix", "start_time", "end_time", "limit",
            "offset", "sort"}
_DAY_MS = 24 * 3600 * 1000
_LIST_FIELDS = ("workflow_id", "status", "name", "queue_name", "executor_id", "app_version", "created_at",
                "updated_at", "recovery_attempts", "parent_workflow_id", "forked_from")


class BadRequest(Exception):
    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


class Source:
    """Where the console reads and acts: a ``DBOSClient`` on the system database,
    opened at the first request (a coordinator serving the console starts even
    while the database is down)."""

    def __init__(self, db_url: str, schema: str = "dbos", redis_url: Optional[str] = None,
                 dead_after_sec: float = fleet.DEAD_AFTER_SEC) -> None:
        self.db_url, self.schema, self.redis_url, self.dead_after_sec = db_url, schema, redis_url, dead_after_sec
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from dbos._api.client import DBOSClient

                self._client = DBOSClient(self.db_url, redis_url=self.redis_url, system_database_schema=self.schema)
            return self._client

    @property
    def db(self) -> Database:
        return self.client.runtime.sys_db  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.destroy()
                self._client = None


# -- values as the pages show them ------------------------------------------------------


def shown(value: Any, full: bool) -> Optional[dict[str, Any]]:
    """A value as text (JSON when it is JSON, else its repr; an error as ``Type: text``),
    cut to ``SHOWN_CHARS`` unless ``full``. The pages put it in a text node."""
    if value is None:
        return None
    if isinstance(value, BaseException):
        text = f"{type(value).__name__}: {value}"
    else:
        try:
            text = json.dumps(value, indent=2, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    cut = not full and len(text) > SHOWN_CHARS
    return {"text": text[:SHOWN_CHARS] if cut else text, "truncated": cut, "length": len(text)}


def _status_row(s: Any) -> dict[str, Any]:
    return {k: getattr(s, k) for k in _LIST_FIELDS}


def _int(params: dict[str, str], name: str, default: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a non-negative integer, got {raw!r}") from None
    if value < 0 or value > maximum:
        raise BadRequest(f"{name} must be between 0 and {maximum}, got {value}")
    return value


def list_filter(params: dict[str, str], max_limit: int = 1000) -> Any:
    """The query string (or a bulk action's ``filters``) as a ``list_workflows`` filter."""
    unknown = sorted(set(params) - _FILTERS)
    if unknown:
        raise BadRequest(f"unknown filter {unknown[0]!r}; the filters are {', '.join(sorted(_FILTERS))}")
    sort = params.get("sort") or "desc"
    if sort not in ("asc", "desc"):
        raise BadRequest(f"sort must be asc or desc, got {sort!r}")
    status = [s for s in (params.get("status") or "").split(",") if s] or None
    text = {k: (params.get(k) or None) for k in ("name", "queue", "app_version", "executor", "prefix")}
    try:
        f = management.workflow_filter(
            status=status, start_time=params.get("start_time") or None, end_time=params.get("end_time") or None,
            name=text["name"], app_version=text["app_version"], workflow_id_prefix=text["prefix"],
            queue_name=text["queue"], limit=_int(params, "limit", 50, max_limit), offset=_int(params, "offset", 0, 10**9),
            sort_desc=sort == "desc", executor_id=text["executor"],
        )
    except DBOSException as e:
        raise BadRequest(str(e)) from None
    return f


# -- handlers (synchronous: Starlette runs them on its thread pool) ------------------------------


class Handlers:
    def __init__(self, source: Source) -> None:
        self.source = source

    def executors(self, q: dict[str, str]) -> Any:
        show_all = q.get("all") in ("1", "true")
        return fleet.executor_view(self.source.db, self.source.dead_after_sec, None if show_all else _DAY_MS)

    def versions(self, q: dict[str, str]) -> Any:
        return fleet.versions_view(self.source.db, self.source.dead_after_sec)

    def leader(self, q: dict[str, str]) -> Any:
        return {"leader": overview.leader_view(self.source.db)}

    def launches(self, q: dict[str, str]) -> Any:
        hours = _int(q, "hours", 24, 24 * 30)
        return overview.launches_view(self.source.db, now_ms() - hours * 3600 * 1000)

    def queues(self, q: dict[str, str]) -> Any:
        return overview.queues_view(self.source.db, self.source.dead_after_sec, _int(q, "minutes", 15, 120))

    def workflows(self, q: dict[str, str]) -> Any:
        f = list_filter(q)
        assert f.limit is not None
        rows = management.list_workflows(self.source.client.runtime, replace(f, limit=f.limit + 1),
                                         load_input=False, load_output=False)
        offset = f.offset or 0
        more = len(rows) > f.limit
        return {"workflows": [_status_row(s) for s in rows[: f.limit]], "limit": f.limit, "offset": offset,
                "next_offset": offset + f.limit if more else None}

    def _status(self, workflow_id: str) -> Any:
        try:
            checks.identifier("workflow_id", workflow_id)
        except DBOSException as e:
            raise BadRequest(str(e)) from None
        client = self.source.client
        try:
            status = client.get_workflow(workflow_id)
            decode_error = None
        except DBOSException as e:  # inputs or output this process cannot unpickle
            decode_error = str(e)
            rows = management.list_workflows(client.runtime, management.workflow_filter(workflow_ids=[workflow_id]),
                                             load_input=False, load_output=False)
            status = rows[0] if rows else None
        if status is None:
            raise BadRequest(f"workflow {workflow_id} does not exist", 404)
        return status, decode_error

    def workflow(self, workflow_id: str, q: dict[str, str]) -> Any:
        status, decode_error = self._status(workflow_id)
        full = q.get("full") in ("1", "true")
        extras = overview.workflow_extras(self.source.db, workflow_id)
        out = _status_row(status)
        out.update(
            input=shown(status.input, full), output=shown(status.output, full), error=shown(status.error, full),
            decode_error=decode_error, started_at=extras["started_at"], children=extras["children"],
            authenticated_user=status.authenticated_user, priority=status.priority,
            deduplication_id=status.deduplication_id, queue_partition_key=status.queue_partition_key,
            workflow_timeout_ms=status.workflow_timeout_ms, workflow_deadline_epoch_ms=status.workflow_deadline_epoch_ms,
        )
        return out

    def steps(self, workflow_id: str, q: dict[str, str]) -> Any:
        self._status(workflow_id)
        full = q.get("full") in ("1", "true")
        steps = overview.step_timeline(self.source.db, workflow_id)
        return [{**s, "output": shown(s["output"], full), "error": shown(s["error"], full)} for s in steps]

    def events(self, workflow_id: str, q: dict[str, str]) -> Any:
        self._status(workflow_id)
        full = q.get("full") in ("1", "true")
        extras = overview.workflow_extras(self.source.db, workflow_id)
        return {"events": [{"key": k, "value": shown(v, full)} for k, v in extras["events"].items()],
                "messages": [{**m, "value": shown(m["value"], full)} for m in extras["messages"]]}

    # -- actions ------------------------------------------------------------------------
    def cancel(self, workflow_id: str, body: dict[str, Any]) -> Any:
        self._status(workflow_id)
        management.cancel(self.source.client.runtime, workflow_id)
        return {"workflow_id": workflow_id, "status": self._status(workflow_id)[0].status}

    def resume(self, workflow_id: str, body: dict[str, Any]) -> Any:
        before = self._status(workflow_id)[0]
        if before.status in ("SUCCESS", "ERROR"):
            raise BadRequest(f"workflow {workflow_id} is {before.status}: finished, nothing to resume", 409)
        management.resume(self.source.client.runtime, workflow_id)
        return {"workflow_id": workflow_id, "status": self._status(workflow_id)[0].status}

    def fork(self, workflow_id: str, body: dict[str, Any]) -> Any:
        self._status(workflow_id)
        step, version = body.get("start_step"), body.get("app_version") or None
        if isinstance(step, bool) or not isinstance(step, int):
            raise BadRequest(f"start_step must be an integer >= 1, got {step!r}")
        if version is not None and not isinstance(version, str):
            raise BadRequest(f"app_version must be a string, got {version!r}")
        # Stricter than fork_workflow (which, as DBOS 2.x, clamps any step): the page offers 1..last+1.
        last = max((s["function_id"] for s in overview.step_timeline(self.source.db, workflow_id)), default=0)
        if not 1 <= step <= last + 1:
            raise BadRequest(f"start_step must be 1..{last + 1} (workflow {workflow_id} has {last} recorded "
                             f"step(s)), got {step}")
        try:
            new_id = management.fork(self.source.client.runtime, workflow_id, step, version)
        except DBOSException as e:
            raise BadRequest(str(e)) from None
        return {"workflow_id": new_id, "forked_from": workflow_id, "start_step": step, "app_version": version}

    def bulk(self, body: dict[str, Any]) -> Any:
        action, filters = body.get("action"), body.get("filters") or {}
        if action not in ("cancel", "resume"):
            raise BadRequest(f"action must be cancel or resume, got {action!r}")
        if not isinstance(filters, dict) or not all(isinstance(v, str) for v in filters.values()):
            raise BadRequest("filters must be an object of strings (the list's query parameters)")
        params = {k: v for k, v in filters.items() if k not in ("limit", "offset")}
        f = replace(list_filter(params), limit=BULK_MAX, offset=None)
        rt = self.source.client.runtime
        rows = management.list_workflows(rt, f, load_input=False, load_output=False)
        changed = []
        for s in rows:
            if action == "cancel" and s.status in ("ENQUEUED", "PENDING"):
                management.cancel(rt, s.workflow_id)
                changed.append(s.workflow_id)
            elif action == "resume" and s.status in ("CANCELLED", "RETRIES_EXCEEDED", "PENDING", "ENQUEUED"):
                management.resume(rt, s.workflow_id)
                changed.append(s.workflow_id)
        return {"action": action, "matched": len(rows), "changed": changed, "capped": len(rows) == BULK_MAX}


# -- the app ------------------------------------------------------------------------------------


def _json_endpoint(fn: Callable[..., Any], *, with_id: bool = False, post: bool = False) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            if post:
                raw = await request.body()
                try:
                    body = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    raise BadRequest("the body must be JSON") from None
                if not isinstance(body, dict):
                    raise BadRequest("the body must be a JSON object")
                arg: Any = body
            else:
                arg = dict(request.query_params)
            args = (request.path_params["workflow_id"], arg) if with_id else (arg,)
            result = await run_in_threadpool(fn, *args)
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, e.code)
        except DBOSException as e:
            return JSONResponse({"error": str(e).splitlines()[0]}, 400)
        except Exception as e:  # the database is down, ...
            logging.getLogger("dbos.console").warning("console request failed: %s", e)
            return JSONResponse({"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}, 503)
        return JSONResponse(result)

    return endpoint


class _GuardMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: Any, guard: Guard) -> None:
        super().__init__(app)
        self.guard = guard

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        start = time.perf_counter()
        refusal = self.guard.refusal(request)
        response = refusal if refusal is not None else await call_next(request)
        # The server's own time for the request (bench/console.py reads it; so do browsers' dev tools).
        response.headers["server-timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
        return with_security_headers(response)


def build_console(source: Source, *, host: str, token: Optional[str]) -> Starlette:
    """The console app; raises ``ConsoleTokenRequired`` on a non-loopback ``host`` without a token."""
    guard = Guard(host, token)
    h = Handlers(source)
    shell = (STATIC / "index.html").read_text()

    async def page(request: Request) -> Response:
        return HTMLResponse(shell.replace("{{csrf}}", guard.csrf).replace("{{auth}}", "token" if guard.token else ""))

    async def spec(request: Request) -> Response:
        return JSONResponse(openapi())

    get = [("executors", h.executors), ("versions", h.versions), ("leader", h.leader), ("launches", h.launches),
           ("queues", h.queues), ("workflows", h.workflows)]
    routes: list[BaseRoute] = [Route(p, page, methods=["GET"]) for p in PAGES]
    routes += [
        Route("/workflows/{workflow_id:path}", page, methods=["GET"]),
        Route("/login", guard.login, methods=["GET", "POST"]),
        Route("/logout", guard.logout, methods=["POST"]),
        Route("/api/openapi.json", spec, methods=["GET"]),
        Route("/favicon.ico", lambda request: Response(status_code=204), methods=["GET"]),
        Route("/api/workflows/bulk", _json_endpoint(h.bulk, post=True), methods=["POST"]),
    ]
    routes += [Route(f"/api/{name}", _json_endpoint(fn), methods=["GET"]) for name, fn in get]
    for suffix, fn in (("/steps", h.steps), ("/events", h.events), ("", h.workflow)):
        routes.append(Route("/api/workflows/{workflow_id:str}" + suffix, _json_endpoint(fn, with_id=True),
                            methods=["GET"]))
    for action, act in (("cancel", h.cancel), ("resume", h.resume), ("fork", h.fork)):
        routes.append(Route("/api/workflows/{workflow_id:str}/" + action, _json_endpoint(act, with_id=True, post=True),
                            methods=["POST"]))
    routes.append(Mount("/static", StaticFiles(directory=str(STATIC)), name="static"))
    return Starlette(routes=routes, middleware=[Middleware(_GuardMiddleware, guard=guard)])


def mount_console(app: Starlette, source: Source, host: str, token: Optional[str], logger: logging.Logger) -> bool:
    """Serve the console under ``/`` of ``app`` (its own routes keep precedence); on a
    non-loopback ``host`` without a token, log why not and leave ``app`` as it is."""
    try:
        console = build_console(source, host=host, token=token)
    except ConsoleTokenRequired as e:
        logger.warning("%s; the coordinator's own endpoints are served, the console is not", e)
        return False
    app.router.routes.append(Mount("/", app=console))
    return True


def serve(db_url: str, schema: str, redis_url: Optional[str], host: str, port: int, dead_after_sec: float,
          token: Optional[str]) -> int:
    """``dbos console``: serve in the foreground until interrupted. Exit 2 when it cannot start."""
    import sys

    import sqlalchemy as sa
    import uvicorn

    source = Source(db_url, schema, redis_url, dead_after_sec)
    try:
        app = build_console(source, host=host, token=token)
        source.client  # noqa: B018  connect (and migrate) now: a bad URL fails at start, not on the first page
    except ConsoleTokenRequired as e:
        print(f"dbos: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        source.close()
        print(f"dbos: error: cannot open the database: {type(e).__name__}: {str(e).strip().splitlines()[0]}",
              file=sys.stderr)
        return 2
    shown_url = sa.make_url(db_url).render_as_string(hide_password=True) if "://" in db_url else db_url
    print(f"dbos console on http://{host}:{port}/ (database {shown_url}"
          f"{'; token required' if token else ''})", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    finally:
        source.close()
    return 0
