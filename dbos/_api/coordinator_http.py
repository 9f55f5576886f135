"""The coordinator's HTTP side: ``/healthz``, ``/metrics`` and a read-only JSON API
(``/api/executors``, ``/api/versions``) the console builds on. Served by uvicorn
on a thread of its own, like the executor's admin server (``dbos._api.admin``)."""

from __future__ import annotations

import logging
import os
import time
from typing import Iterator, Optional

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dbos._api import console
from dbos._api.http_thread import HTTPServerThread
from dbos._execution import fleet
from dbos._services.coordinator import Coordinator
from dbos._telemetry.metrics import histogram_family

_DAY_MS = 24 * 3600 * 1000


class _Collector:
    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord

    def collect(self) -> Iterator[Metric]:
        coord = self.coord
        leader = GaugeMetricFamily("dbos_coordinator_leader", "1 while this coordinator holds the leader lease")
        leader.add_metric([], 1 if coord.is_leader else 0)
        yield leader
        handovers = CounterMetricFamily("dbos_coordinator_handovers", "Workflows handed over from dead executors")
        handovers.add_metric([], coord.stats.handovers)
        yield handovers
        dead = CounterMetricFamily("dbos_coordinator_executors_declared_dead", "Executors this coordinator declared DEAD")
        dead.add_metric([], coord.stats.dead_declared)
        yield dead
        yield histogram_family(
            "dbos_coordinator_handover_latency_seconds",
            "From a dead executor's last heartbeat to its workflows' release", coord.stats.handover_seconds,
        )
        waiting = GaugeMetricFamily(
            "dbos_fleet_waiting_workflows", "ENQUEUED workflows of a version no live executor runs",
            labels=["app_version"],
        )
        for version, n in sorted(coord.stats.waiting.items()):
            waiting.add_metric([version], n)
        yield waiting
        desired = GaugeMetricFamily(
            "dbos_fleet_desired_executors", "Executors each version's ENQUEUED and PENDING work needs "
            "(per queue ceil(n / worker_concurrency), capped by its concurrency)", labels=["app_version"],
        )
        for version, n in sorted(coord.stats.desired.items()):
            desired.add_metric([version], n)
        yield desired
        launches = CounterMetricFamily("dbos_coordinator_launches", "Executor launches by version and outcome",
                                       labels=["app_version", "outcome"])
        for (version, outcome), n in sorted(coord.stats.launches.items()):
            launches.add_metric([version, outcome], n)
        yield launches
        by_state = GaugeMetricFamily(
            "dbos_fleet_executors", "Executors by derived state and app version", labels=["state", "app_version"]
        )
        try:
            rows = fleet.executor_view(coord.db, coord.dead_after_sec, _DAY_MS)
        except Exception:
            rows = []
        counts: dict[tuple[str, str], int] = {}
        for r in rows:
            key = (r["state"], r["app_version"])
            counts[key] = counts.get(key, 0) + 1
        for (state, version), n in sorted(counts.items()):
            by_state.add_metric([state, version], n)
        yield by_state


def build_app(coord: Coordinator) -> Starlette:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(coord))

    async def healthz(request: Request) -> Response:
        age = time.monotonic() - coord.stats.last_tick if coord.stats.last_tick else None
        healthy = age is not None and age < max(10.0, 5 * coord.interval_sec)
        body = {"status": "healthy" if healthy else "unhealthy", "leader": coord.is_leader,
                "holder": coord.holder, "last_tick_age_s": None if age is None else round(age, 3)}
        return JSONResponse(body, 200 if healthy else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def api_executors(request: Request) -> Response:
        show_all = request.query_params.get("all") in ("1", "true")
        try:
            rows = fleet.executor_view(coord.db, coord.dead_after_sec, None if show_all else _DAY_MS)
        except Exception as e:
            return JSONResponse({"error": f"database unreachable: {str(e).splitlines()[0]}"}, 503)
        return JSONResponse(rows)

    async def api_versions(request: Request) -> Response:
        try:
            rows = fleet.versions_view(coord.db, coord.dead_after_sec)
        except Exception as e:
            return JSONResponse({"error": f"database unreachable: {str(e).splitlines()[0]}"}, 503)
        for row in rows:
            row["desired_executors"] = coord.stats.desired.get(row["app_version"], 0)
        return JSONResponse(rows)

    async def api_scaling(request: Request) -> Response:
        """For a KEDA ``metrics-api`` trigger: ``valueLocation: desired_executors``."""
        version = request.path_params.get("version")
        if version is not None:
            return JSONResponse({"app_version": version, "desired_executors": coord.stats.desired.get(version, 0)})
        return JSONResponse({"desired_executors": dict(coord.stats.desired)})

    return Starlette(routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/api/executors", api_executors, methods=["GET"]),
        Route("/api/versions", api_versions, methods=["GET"]),
        Route("/api/scaling", api_scaling, methods=["GET"]),
        Route("/api/scaling/{version}", api_scaling, methods=["GET"]),
    ])


class CoordinatorHTTP(HTTPServerThread):
    def __init__(self, coord: Coordinator, host: str, port: int, logger: logging.Logger,
                 redis_url: Optional[str] = None) -> None:
        app = build_app(coord)
        # The fleet console under / (its token rule: dbos._api.console_auth); the routes above come first.
        self.console = console.Source(coord.db.url, coord.db.schema or "dbos", redis_url, coord.dead_after_sec)
        console.mount_console(app, self.console, host, os.environ.get(console.TOKEN_ENV) or None, logger)
        super().__init__(app, host, port, "coordinator HTTP", logger)

    def stop(self) -> None:
        super().stop()
        self.console.close()
