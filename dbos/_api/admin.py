"""The admin server: health, readiness, drain, recovery and metrics over HTTP.

The endpoints DBOS users' probes and scripts already call (``/dbos-healthz``,
``/dbos-workflow-recovery``, ...) plus ``/readyz`` and ``/metrics``. A Starlette
app served by uvicorn on a thread of its own, so it answers while every
executor thread is busy. Started by ``dbos-worker --admin-port`` or by the
config keys ``run_admin_server`` / ``admin_port`` for a plain ``DBOS.launch()``.

Bound to loopback without a token it trusts its callers (as DBOS's does).
With ``$DBOS_ADMIN_TOKEN`` set, the mutating endpoints (``/deactivate``,
``/dbos-workflow-recovery``) require ``Authorization: Bearer <token>``; bound
to any address other than loopback the server refuses to start without one.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from typing import Any, Callable, Iterator, Optional

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from dbos._api import fleet
from dbos._api.http_thread import HTTPServerThread
from dbos._api.instance import maybe_runtime
from dbos._execution.queues import INTERNAL_QUEUE
from dbos._execution.registry import REGISTRY
from dbos._storage import executors
from dbos._telemetry.metrics import histogram_family
from dbos.error import DBOSException, DBOSInitializationError

TOKEN_ENV = "DBOS_ADMIN_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _launched() -> bool:
    try:
        fleet.runtime()
    except DBOSInitializationError:
        return False
    return True


class _Collector:
    """Turns the executor's counters into Prometheus families at scrape time."""

    def collect(self) -> Iterator[Metric]:
        if not _launched():
            return
        rt = fleet.runtime()
        stats = rt.stats
        started = CounterMetricFamily(
            "dbos_workflows_started", "Workflows started on this executor", labels=["name", "queue"]
        )
        for (name, queue), n in list(stats.started.items()):
            started.add_metric([name, queue], n)
        yield started
        finished = CounterMetricFamily(
            "dbos_workflows_finished", "Workflows that ended on this executor", labels=["name", "queue", "status"]
        )
        for (name, queue, status), n in list(stats.finished.items()):
            finished.add_metric([name, queue, status], n)
        yield finished
        claims = CounterMetricFamily("dbos_queue_claims", "Queued workflows claimed by this executor", labels=["queue"])
        for queue, n in list(stats.claims.items()):
            claims.add_metric([queue], n)
        yield claims
        yield histogram_family("dbos_workflow_duration_seconds", "Workflow run time on this executor", stats.workflow_seconds)
        yield histogram_family("dbos_step_duration_seconds", "Step run time on this executor", stats.step_seconds)
        running = GaugeMetricFamily("dbos_workflows_running", "Workflows running on this executor now")
        running.add_metric([], len(rt.running_ids()))
        yield running
        inst = fleet._launched()
        hb = inst._heartbeat
        if hb is not None and hb.last_beat:
            age = GaugeMetricFamily("dbos_heartbeat_age_seconds", "Seconds since this executor's last heartbeat")
            age.add_metric([], max(0.0, time.monotonic() - hb.last_beat))
            yield age
        info = GaugeMetricFamily(
            "dbos_executor_info", "This executor (1), its version and state",
            labels=["executor_id", "app_version", "state"],
        )
        info.add_metric([rt.executor_id, rt.app_version, fleet.state()], 1)
        yield info
        depth = GaugeMetricFamily(
            "dbos_queue_depth", "Workflows waiting on a served queue for this version", labels=["queue"]
        )
        try:
            for queue, n in fleet.queue_depths().items():
                depth.add_metric([queue], n)
        except Exception:  # the database is down: the other families still answer
            pass
        yield depth


def _queues_metadata() -> list[dict[str, Any]]:
    """The registered queues as DBOS's ``/dbos-workflow-queues-metadata`` lists them (those
    declared in code, then the stored ones as this executor's poller last read them)."""
    out = []
    rt = maybe_runtime()
    stored = [s for n, s in (rt.stored_queues if rt is not None else {}).items() if n not in REGISTRY.queues]
    for spec in (*REGISTRY.queues.values(), *stored):
        if spec.name == INTERNAL_QUEUE.name:
            continue
        entry: dict[str, Any] = {"name": spec.name}
        if spec.concurrency is not None:
            entry["concurrency"] = spec.concurrency
        if spec.worker_concurrency is not None:
            entry["workerConcurrency"] = spec.worker_concurrency
        if spec.limit is not None:
            entry["rateLimit"] = {"limit": spec.limit, "period": spec.period_sec}
        entry["priorityEnabled"] = spec.priority_enabled
        entry["partitionQueue"] = spec.partitioned
        out.append(entry)
    return out


def build_app(token: Optional[str], logger: logging.Logger) -> Starlette:
    """The ASGI app. With ``token``, the mutating endpoints require it as a Bearer token."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def mutating(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            if not authorized(request):
                return JSONResponse({"error": f"unauthorized: send Authorization: Bearer ${TOKEN_ENV}"}, 401)
            result: Response = await fn(request)
            return result

        return endpoint

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "healthy"})

    async def readyz(request: Request) -> Response:
        if not _launched():
            return JSONResponse({"status": "not launched"}, 503)
        state = fleet.state()
        if state != "RUNNING":
            return JSONResponse({"status": state.lower()}, 503)
        rt = fleet.runtime()
        try:
            rt.sys_db.query(lambda c: executors.get(c, rt.executor_id))
        except Exception as e:
            return JSONResponse({"status": "database unreachable", "error": str(e).splitlines()[0]}, 503)
        return JSONResponse({"status": "ready"})

    async def deactivate(request: Request) -> Response:
        if not _launched():
            return JSONResponse({"error": "DBOS is not launched"}, 503)
        fleet.deactivate()
        logger.info("admin: deactivated (no more queue claims)")
        return PlainTextResponse("deactivated")

    async def recovery(request: Request) -> Response:
        if not _launched():
            return JSONResponse({"error": "DBOS is not launched"}, 503)
        try:
            ids = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body must be a JSON list of executor IDs"}, 400)
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            return JSONResponse({"error": "the body must be a JSON list of executor IDs"}, 400)
        try:
            started = fleet.recover(ids)
        except DBOSException as e:
            return JSONResponse({"error": str(e)}, 500)
        logger.info("admin: recovered %d workflow(s) of executor(s) %s", len(started), ", ".join(ids))
        return JSONResponse(started)

    async def queues_metadata(request: Request) -> Response:
        return JSONResponse(_queues_metadata())

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/dbos-healthz", healthz, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/deactivate", mutating(deactivate), methods=["GET", "POST"]),
        Route("/dbos-deactivate", mutating(deactivate), methods=["GET", "POST"]),
        Route("/dbos-workflow-recovery", mutating(recovery), methods=["POST"]),
        Route("/dbos-workflow-queues-metadata", queues_metadata, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes)


class AdminServer(HTTPServerThread):
    """The admin endpoints on their own thread; ``start`` returns once it listens (or raises)."""

    def __init__(self, host: str, port: int, logger: logging.Logger, token: Optional[str] = None) -> None:
        if token is None:
            token = os.environ.get(TOKEN_ENV) or None
        if not is_loopback(host) and token is None:
            raise DBOSInitializationError(
                f"the admin server binds {host}, which is not loopback: set {TOKEN_ENV} "
                "(its mutating endpoints then require it as a Bearer token)"
            )
        super().__init__(build_app(token, logger), host, port, "admin server", logger)
