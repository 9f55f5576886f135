"""Fleet rules for one executor: hand its work back, rejoin after being declared dead.

What a drain, a zombie and a recovery request change lives here, beside the
other durable-execution rules, so the worker, the admin server and the
coordinator share one implementation (docs/fleet.md). No SQL, no threads.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable, Optional

import sqlalchemy as sa

from dbos._execution import recovery
from dbos._execution import stored_queues as stored_rules
from dbos._execution.queues import INTERNAL_QUEUE
from dbos._execution.runtime import Runtime, now_ms
from dbos._storage import executors, queues, stored_queues, versions, workflows
from dbos._storage.database import Database
from dbos._wakeups.local import queue_ready
from dbos.error import DBOSException, DBOSInitializationError

if TYPE_CHECKING:
    from dbos._services.heartbeat import Heartbeat


# A RUNNING or DRAINING row whose heartbeat is older than this is dead to the fleet
# (the coordinator's and ``dbos fleet executors``' default ``--dead-after``).
DEAD_AFTER_SEC = 3.0

# What a launch does when its executor ID is held by another live process:
# "warn" (plain ``DBOS.launch()``: run without recovering or heartbeating that ID)
# or "refuse" (``dbos-worker``: wait up to twice the dead-after, then fail).
identity_policy = "warn"
# Set by ``dbos-worker`` to its stop event: a signal before the executor ID is taken (or
# while waiting for a holder elsewhere) fails the launch with ``LaunchInterrupted``
# instead of letting it go on to claim work after the signal.
identity_abort: Optional[threading.Event] = None


class ExecutorIdInUse(DBOSInitializationError):
    """Another live process holds this executor ID."""

    def __init__(self, executor_id: str, holder: executors.ExecutorRow) -> None:
        super().__init__(
            f"executor ID {executor_id!r} is held by a live executor: pid {holder.pid} on host "
            f"{holder.hostname!r} ({holder.state}, heartbeat {max(0, now_ms() - holder.heartbeat_at) / 1000:.1f} s ago); "
            "give this process its own DBOS__VMID"
        )
        self.executor_id = executor_id
        self.holder = holder


class LaunchInterrupted(DBOSInitializationError):
    """The process was told to stop before its launch took its executor ID."""


def _interrupted(executor_id: str, wait_sec: float = 0.0) -> None:
    """Raise ``LaunchInterrupted`` if ``identity_abort`` is set (waiting up to ``wait_sec`` for it)."""
    if identity_abort is None:
        time.sleep(wait_sec)
    elif identity_abort.wait(wait_sec):
        raise LaunchInterrupted(f"stopped before taking executor ID {executor_id!r}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_holder(row: Optional[executors.ExecutorRow], now: int, dead_after_sec: float = DEAD_AFTER_SEC) -> bool:
    """Whether ``row`` is another process that still holds its executor ID: RUNNING or
    DRAINING with a fresh heartbeat, and, on this host, a pid that is not ours and exists."""
    if row is None or row.state not in executors.LIVE_STATES:
        return False
    if now - row.heartbeat_at >= dead_after_sec * 1000:
        return False
    if row.hostname == socket.gethostname():
        return row.pid != os.getpid() and _pid_alive(row.pid)
    return True


def check_identity(
    db: Database, executor_id: str, logger: logging.Logger, dead_after_sec: float = DEAD_AFTER_SEC
) -> Optional[executors.ExecutorRow]:
    """Before registering: None if this process may take ``executor_id``; else the live holder.

    Under the "refuse" policy a holder on another host gets up to twice the
    dead-after to go stale (a pod restarted under its stable name right after a
    crash), then ``ExecutorIdInUse`` is raised."""
    _interrupted(executor_id)
    row = db.query(lambda c: executors.get(c, executor_id))
    if not live_holder(row, now_ms(), dead_after_sec):
        return None
    assert row is not None
    if identity_policy != "refuse":
        return row
    if row.hostname != socket.gethostname():
        logger.warning(
            "executor ID %s is held by pid %d on %s with a fresh heartbeat; waiting up to %.0f s for it to go stale",
            executor_id, row.pid, row.hostname, 2 * dead_after_sec,
        )
        end = time.monotonic() + 2 * dead_after_sec
        while time.monotonic() < end:
            _interrupted(executor_id, 0.2)
            row = db.query(lambda c: executors.get(c, executor_id))
            if not live_holder(row, now_ms(), dead_after_sec):
                return None
        assert row is not None
    raise ExecutorIdInUse(executor_id, row)


def derived_state(row: executors.ExecutorRow, now: int, dead_after_sec: float = DEAD_AFTER_SEC) -> str:
    """The state the fleet should see: a live row whose heartbeat is stale is DEAD,
    whether or not a coordinator has marked it yet."""
    if row.state in executors.LIVE_STATES and now - row.heartbeat_at >= dead_after_sec * 1000:
        return "DEAD"
    return row.state


def executor_view(db: Database, dead_after_sec: float, hide_older_than_ms: Optional[int]) -> list[dict[str, Any]]:
    """Every executor as ``dbos fleet executors`` and the coordinator show it (JSON-ready).
    With ``hide_older_than_ms``, STOPPED and DEAD rows silent longer than that are left out."""
    now = now_ms()
    since = None if hide_older_than_ms is None else now - hide_older_than_ms
    out = []
    for row in db.query(lambda c: executors.list_all(c, since)):
        state = derived_state(row, now, dead_after_sec)
        if since is not None and state == "DEAD" and row.heartbeat_at < since:
            continue
        out.append({
            "executor_id": row.executor_id,
            "app_version": row.app_version,
            "state": state,
            "heartbeat_age_s": round(max(0, now - row.heartbeat_at) / 1000, 3),
            "running": row.running if state in executors.LIVE_STATES else 0,
            "hostname": row.hostname,
            "pid": row.pid,
            "queues": json.loads(row.queues) if row.queues is not None else None,
            "incarnation": row.incarnation,
            "started_at": row.started_at,
        })
    return out


def versions_view(db: Database, dead_after_sec: float = DEAD_AFTER_SEC) -> list[dict[str, Any]]:
    """Per app version, what ``dbos fleet versions`` and the coordinator's ``/api/versions``
    show: live executors (RUNNING, fresh), workflows waiting for an executor of it
    (ENQUEUED while none runs, plus PENDING work of dead executors), the oldest
    waiting age, launches in flight, and whether it is the latest."""
    now = now_ms()
    stale_before = now - int(dead_after_sec * 1000)

    def read(c: sa.Connection) -> tuple[Any, ...]:
        return (
            executors.list_all(c, now - 24 * 3600 * 1000),
            queues.oldest_waiting_by_version(c),
            executors.stranded_pending_by_version(c, stale_before),
            versions.in_flight(c),
            versions.list_all(c),
        )

    rows, enqueued, stranded, launching, registered = db.query(read)
    latest = registered[0].version_name if registered else None
    out: dict[str, dict[str, Any]] = {}

    def entry(v: str) -> dict[str, Any]:
        return out.setdefault(v, {
            "app_version": v, "live_executors": 0, "draining_executors": 0, "running": 0, "enqueued": 0,
            "waiting": 0, "oldest_waiting_age_s": None, "launches_in_flight": 0, "latest": v == latest,
        })

    for v in registered:
        entry(v.version_name)
    for r in rows:
        e = entry(r.app_version)
        state = derived_state(r, now, dead_after_sec)
        if state == "RUNNING":
            e["live_executors"] += 1
            e["running"] += r.running
        elif state == "DRAINING":
            e["draining_executors"] += 1
    for v, (n, _) in enqueued.items():
        entry(v)["enqueued"] = n
    for launch in launching:
        entry(launch.app_version)["launches_in_flight"] += 1
    for v, e in out.items():
        oldest: list[int] = []
        if e["live_executors"] == 0 and v in enqueued:
            e["waiting"] += enqueued[v][0]
            oldest.append(enqueued[v][1])
        if v in stranded:
            e["waiting"] += stranded[v][0]
            oldest.append(stranded[v][1])
        if oldest:
            e["oldest_waiting_age_s"] = round(max(0, now - min(oldest)) / 1000, 3)
    return sorted(out.values(), key=lambda e: e["app_version"])


def desired_executors(db: Database, default_worker_concurrency: int = 16) -> dict[str, int]:
    """The autoscaling signal: per pinned version, how many executors its work needs.

    Per queue: ``ceil((ENQUEUED + PENDING) / worker_concurrency)``, capped by what the
    queue's global concurrency lets run at once, summed over the version's queues.
    The limits come from the queue specs its executors published (the newest one's);
    for a version no executor ever ran, each queue counts as unlimited with the
    default worker concurrency, so waiting work always asks for at least one."""

    def read(c: sa.Connection) -> tuple[Any, ...]:
        return executors.list_all(c), queues.active_by_version_queue(c), stored_queues.list_all(c)

    rows, active, stored_rows = db.query(read)
    specs: dict[str, dict[str, dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: r.heartbeat_at):  # the newest executor's specs win
        if row.queue_specs:
            specs[row.app_version] = {q["name"]: q for q in json.loads(row.queue_specs)}
    # A queue stored in the database has the same limits for every version (unless declared in code).
    stored = {r.name: stored_rules.published(r) for r in stored_rows}
    desired: dict[str, int] = {}
    for (version, queue), n in active.items():
        name = queue or INTERNAL_QUEUE.name
        spec = specs.get(version, {}).get(name) or stored.get(name, {})
        per_worker = int(spec.get("worker_concurrency") or default_worker_concurrency)
        need = -(-n // per_worker)
        if spec.get("concurrency"):
            need = min(need, -(-int(spec["concurrency"]) // per_worker))
        desired[version] = desired.get(version, 0) + max(1, need)
    return desired


def hand_back(rt: Runtime) -> list[tuple[str, str]]:
    """Give every workflow this executor holds back to the fleet at once (its queue,
    or the internal queue for direct work) and wake the fleet; return (ID, queue).

    Called by a drain once claims stopped and what still runs was told to stop at
    its next step: what it had recorded stays, and whoever claims it resumes from
    there. A workflow still finishing here either records its outcome first (and
    is not handed back) or finds itself handed back and records nothing.
    """
    for workflow_id in rt.running_ids():
        rt.preempt_local(workflow_id)
    released = rt.sys_db.run(
        lambda c: workflows.release_owned(c, rt.executor_id, INTERNAL_QUEUE.name, now_ms()), tx=True
    )
    for queue in sorted({q for _, q in released}):
        rt.wakeups.notify(queue_ready(queue))
    return released


def hand_over(db: Database, executor_id: str, incarnation: int) -> list[tuple[str, str]]:
    """The coordinator's hand-over of a DEAD executor's work: the same release as a
    drain's, decided against one incarnation. One transaction that holds the
    executor's row: if it is no longer that DEAD incarnation (it re-registered),
    nothing changes; two coordinators or a repeated scan find nothing left."""

    def release(c: sa.Connection) -> list[tuple[str, str]]:
        if not executors.lock_dead(c, db.dialect, executor_id, incarnation):
            return []
        return workflows.release_owned(c, executor_id, INTERNAL_QUEUE.name, now_ms())

    return db.run(release, tx=True)


def rejoin(rt: Runtime, heartbeat: "Heartbeat") -> None:
    """This incarnation was declared DEAD while it still ran (a pause, a network cut):
    stop the workflows handed to others at their next step (they record nothing),
    keep those still ours, and go on as a new incarnation."""
    running = rt.running_ids()
    ours = rt.sys_db.query(lambda c: workflows.owned_among(c, rt.executor_id, running))
    lost = [w for w in running if w not in ours]
    for workflow_id in lost:
        rt.preempt_local(workflow_id)
    rt.incarnation = heartbeat.register()
    rt.logger.warning(
        "executor %s rejoined as incarnation %d; %d workflow(s) now owned elsewhere were stopped here",
        rt.executor_id, rt.incarnation, len(lost),
    )


def recover_executors(rt: Runtime, executor_ids: Iterable[str]) -> list[str]:
    """Run here the PENDING workflows of these executors that this version may run
    (the admin server's ``/dbos-workflow-recovery``); return their IDs."""
    started: list[str] = []
    for executor_id in executor_ids:
        rows = rt.sys_db.query(functools.partial(workflows.list_pending, executor_id=executor_id,
                                                 app_version=rt.app_version))
        for row in rows:
            try:
                if recovery.recover(rt, row):
                    started.append(row.workflow_uuid)
            except DBOSException as e:
                rt.logger.error("cannot recover workflow %s: %s", row.workflow_uuid, e)
    return started

