"""The coordinator's loop: hold the leader lease, declare silent executors DEAD,
hand their work over, report work no live executor can run (docs/fleet.md).

Any number of coordinators run this; the one holding the lease acts. Every
tick (``interval``, or at once on a ``fleet:`` Redis hint) the leader:

1. renews its lease (standbys try to take an expired one);
2. marks DEAD every RUNNING or DRAINING executor silent for ``dead_after``;
3. hands over the PENDING work of every DEAD incarnation that still owns some
   (``fleet.hand_over``: one conditional transaction per executor), and wakes
   the queues it released over Redis;
4. counts the ENQUEUED work of versions no live executor runs ("waiting").

Each step is a conditional change, so two leaders overlapping for a moment, or
a leader killed half-way, change nothing twice; a hand-over that failed is
simply found again at the next tick.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import sqlalchemy as sa

from dbos._execution import fleet
from dbos._execution.runtime import now_ms
from dbos._services.base import Service
from dbos._storage import executors, leases, versions
from dbos._storage.database import Database
from dbos._telemetry.metrics import Histogram
from dbos._wakeups.hub import Hub
from dbos._wakeups.local import queue_ready

LEASE_NAME = "coordinator"
# Hand-over latency buckets, seconds from the dead executor's last heartbeat.
HANDOVER_BUCKETS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 60.0)


class Launcher(Protocol):
    """Starts an executor of one app version (``coordinator/launchers.py``: local, kubernetes)."""

    kind: str

    def launch(self, app_version: str, executor_id: str, launch_id: str) -> str:
        """Start it; return a handle (pid, Job name). Raise to report a failed start."""
        ...

    def failed(self, launch: versions.LaunchRow) -> Optional[str]:
        """Why this launch failed (it exited, its Job failed), or None (running, or unknown here)."""
        ...

    def abandon(self, launch: versions.LaunchRow) -> None:
        """Stop a launch given up on (timed out)."""
        ...


def launch_backoff_sec(attempt: int) -> float:
    """After the ``attempt``-th failed launch in a row: 2, 4, 8, ... up to 60 s."""
    return float(min(60, 2 ** max(1, attempt)))


@dataclass
class CoordinatorStats:
    handovers: int = 0  # workflows handed over
    dead_declared: int = 0
    handover_seconds: Histogram = field(default_factory=lambda: Histogram(buckets=HANDOVER_BUCKETS))
    waiting: dict[str, int] = field(default_factory=dict)  # version -> ENQUEUED with no live executor
    last_tick: float = 0.0
    desired: dict[str, int] = field(default_factory=dict)  # version -> executors its work needs
    launches: dict[tuple[str, str], int] = field(default_factory=dict)  # (version, started|succeeded|failed)

    def launch_event(self, version: str, what: str) -> None:
        self.launches[(version, what)] = self.launches.get((version, what), 0) + 1


class Coordinator(Service):
    name = "coordinator"

    def __init__(
        self,
        db: Database,
        hub: Hub,
        logger: logging.Logger,
        *,
        dead_after_sec: float = fleet.DEAD_AFTER_SEC,
        interval_sec: float = 1.0,
        holder: Optional[str] = None,
        launcher: Optional[Launcher] = None,
        max_launches_per_version: int = 1,
        launch_timeout_sec: float = 120.0,
    ) -> None:
        super().__init__(interval_sec, logger, jitter=0.05)
        self.db = db
        self.hub = hub
        self.dead_after_sec = dead_after_sec
        self.holder = holder or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        # Long enough to survive a missed renewal, short enough that a standby acts
        # within about three intervals after the leader dies.
        self.lease_ms = int(max(3.0, 2.5 * interval_sec) * 1000)
        self.term: Optional[int] = None
        self.stats = CoordinatorStats()
        self._reported_waiting: dict[str, int] = {}
        self._backoff = 0.0
        self.launcher = launcher
        self.max_launches_per_version = max_launches_per_version
        self.launch_timeout_sec = launch_timeout_sec
        self.launcher = launcher
        self.max_launches_per_version = max_launches_per_version
        self.launch_timeout_sec = launch_timeout_sec

    def next_delay(self) -> float:
        """The interval; while the database fails, doubling up to 10 s."""
        if self._failing:
            self._backoff = min(10.0, max(self._backoff * 2, self.interval_sec))
            return self._backoff
        self._backoff = 0.0
        return super().next_delay()

    @property
    def is_leader(self) -> bool:
        return self.term is not None

    def run_once(self) -> None:
        try:
            self._tick()
        except Exception:
            # The database failed under the lease or under the scan: act as a standby until a
            # tick renews the lease again (logged once; the Service logs the failure once).
            if self.term is not None:
                self.logger.warning("coordinator %s: cannot renew the leader lease; acting as standby", self.holder)
            self.term = None
            raise

    def _tick(self) -> None:
        now = now_ms()
        term = self.db.run(
            lambda c: leases.acquire(c, self.db.dialect, LEASE_NAME, self.holder, now, self.lease_ms)
        )
        if term != self.term:
            if term is None:
                self.logger.info("coordinator %s: lost the leader lease; standby", self.holder)
            else:
                self.logger.info("coordinator %s: leader (term %d)", self.holder, term)
        self.term = term
        self.stats.last_tick = time.monotonic()
        if term is None:
            # A standby acts on nothing, but reports what it sees (any replica may
            # answer an autoscaler's or a console's request).
            self._count_waiting()
            return
        self.scan()

    def scan(self) -> None:
        """One leader pass: declare the silent dead, hand their work over, count the waiting."""
        now = now_ms()
        stale_before = now - int(self.dead_after_sec * 1000)
        for row in self.db.run(lambda c: executors.mark_dead(c, stale_before), tx=True):
            self.stats.dead_declared += 1
            self.logger.warning(
                "executor %s (incarnation %d, version %s, pid %d on %s) declared DEAD: no heartbeat for %.1f s",
                row.executor_id, row.incarnation, row.app_version, row.pid, row.hostname,
                (now - row.heartbeat_at) / 1000,
            )
        for row in self.db.query(executors.dead_with_work):
            released = fleet.hand_over(self.db, row.executor_id, row.incarnation)
            if not released:
                continue
            age = max(0.0, (now_ms() - row.heartbeat_at) / 1000)
            self.stats.handovers += len(released)
            for _ in released:
                self.stats.handover_seconds.observe(age)
            for queue in sorted({q for _, q in released}):
                self.hub.notify(queue_ready(queue))
            self.logger.info(
                "handed over %d workflow(s) of dead executor %s (incarnation %d) %.1f s after its last heartbeat",
                len(released), row.executor_id, row.incarnation, age,
            )
        view = self._count_waiting()
        if self.launcher is not None:
            self._launch_pass(self.launcher, view)

    def _launch_pass(self, launcher: Launcher, view: list[dict[str, Any]]) -> None:
        """Settle the launches in flight, then start an executor for every version
        with waiting work and no live executor (within the per-version cap and the
        backoff after failures)."""
        live = {e["app_version"] for e in view if e["live_executors"] > 0}
        now = now_ms()
        in_flight = self.db.query(lambda c: versions.in_flight(c))
        # A launch is done once an executor of its version registered after it started,
        # even one that already ran the work and exited (idle) before this tick saw it.
        since = min((launch.started_at for launch in in_flight), default=now)
        registered = [r for r in self.db.query(lambda c: executors.list_all(c, since)) if r.started_at >= since]
        for launch in in_flight:
            started_since = any(r.app_version == launch.app_version and r.started_at >= launch.started_at
                                for r in registered)
            if launch.app_version in live or started_since:
                if self._finish_launch(launch.launch_id, "SUCCEEDED"):
                    self.stats.launch_event(launch.app_version, "succeeded")
                    self.logger.info("launch %s of version %s: its executor runs (%.1f s after the launch)",
                                     launch.launch_id, launch.app_version, (now - launch.started_at) / 1000)
                continue
            why = launcher.failed(launch)
            if why is None and now - launch.started_at > self.launch_timeout_sec * 1000:
                why = f"no executor of version {launch.app_version} heartbeat within {self.launch_timeout_sec:g} s"
                launcher.abandon(launch)
            if why is not None and self._finish_launch(launch.launch_id, "FAILED", why):
                self.stats.launch_event(launch.app_version, "failed")
                self.logger.warning(
                    "launch %s of version %s (attempt %d) failed: %s; retrying in %.0f s",
                    launch.launch_id, launch.app_version, launch.attempt, why, launch_backoff_sec(launch.attempt),
                )
        for entry in view:
            version = entry["app_version"]
            if entry["waiting"] > 0 and version not in live:
                self._maybe_launch(launcher, version, entry["waiting"])

    def _finish_launch(self, launch_id: str, state: str, why: Optional[str] = None) -> bool:
        return bool(self.db.run(lambda c: versions.finish_launch(c, launch_id, state, now_ms(), why)))

    def _maybe_launch(self, launcher: Launcher, version: str, waiting: int) -> None:
        now = now_ms()
        launch_id = uuid.uuid4().hex[:12]
        executor_id = f"launch-{launch_id}"

        def decide(c: sa.Connection) -> Optional[versions.LaunchRow]:
            versions.lock_version(c, self.db.dialect, version)  # two leaders decide one at a time
            if len(versions.in_flight(c, version)) >= self.max_launches_per_version:
                return None
            last = versions.last_for(c, version)
            attempt = 1
            if last is not None and last.state == "FAILED":
                attempt = last.attempt + 1
                if now < (last.finished_at or last.started_at) + launch_backoff_sec(last.attempt) * 1000:
                    return None
            row = versions.LaunchRow(launch_id, version, launcher.kind, "LAUNCHING", attempt, now,
                                     None, None, executor_id, None)
            versions.insert_launch(c, row)
            return row

        row = self.db.run(decide, tx=True)
        if row is None:
            return
        self.stats.launch_event(version, "started")
        self.logger.info("launching an executor of version %s (%s, attempt %d, launch %s): %d workflow(s) wait",
                         version, launcher.kind, row.attempt, launch_id, waiting)
        try:
            handle = launcher.launch(version, executor_id, launch_id)
        except Exception as e:
            why = f"{type(e).__name__}: {e}"
            self._finish_launch(launch_id, "FAILED", why)
            self.stats.launch_event(version, "failed")
            self.logger.warning("launch %s of version %s (attempt %d) could not start: %s; retrying in %.0f s",
                                launch_id, version, row.attempt, why, launch_backoff_sec(row.attempt))
            return
        self.db.run(lambda c: versions.set_handle(c, launch_id, handle))

    def _count_waiting(self) -> list[dict[str, Any]]:
        """Refresh the per-version report (waiting work, desired executors) and log each
        version that starts or stops waiting, once; return the versions view."""
        self.stats.desired = fleet.desired_executors(self.db)
        view = fleet.versions_view(self.db, self.dead_after_sec)
        waiting = {e["app_version"]: e["waiting"] for e in view if e["waiting"] > 0}
        self.stats.waiting = waiting
        for version, n in waiting.items():
            if version not in self._reported_waiting:
                self.logger.warning(
                    "%d workflow(s) of app version %s wait: no live executor runs that version", n, version
                )
        for version in self._reported_waiting:
            if version not in waiting:
                self.logger.info("app version %s has a live executor again (or nothing waiting)", version)
        self._reported_waiting = dict(waiting)
        return view

    def step_down(self) -> None:
        """Give the lease up at once (a clean stop), so a standby takes over at its next tick."""
        if self.term is None:
            return
        try:
            self.db.run(lambda c: leases.release(c, LEASE_NAME, self.holder))
            self.logger.info("coordinator %s: gave up the leader lease", self.holder)
        except Exception as e:
            self.logger.warning("coordinator %s: could not give up the lease (%s); it expires by itself", self.holder, e)
        self.term = None
