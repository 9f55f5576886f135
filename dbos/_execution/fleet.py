"""Fleet rules for one executor: hand its work back, rejoin after being declared dead.

What a drain, a zombie and a recovery request change lives here, beside the
other durable-execution rules, so the worker, the admin server and the
coordinator share one implementation (docs/fleet.md). No SQL, no threads.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Iterable

import sqlalchemy as sa

from dbos._execution import workflow as wf
from dbos._execution.queues import INTERNAL_QUEUE
from dbos._execution.runtime import Runtime, now_ms
from dbos._storage import executors, workflows
from dbos._storage.database import Database
from dbos._wakeups.local import queue_ready
from dbos.error import DBOSException

if TYPE_CHECKING:
    from dbos._services.heartbeat import Heartbeat


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
                if wf.recover(rt, row):
                    started.append(row.workflow_uuid)
            except DBOSException as e:
                rt.logger.error("cannot recover workflow %s: %s", row.workflow_uuid, e)
    return started

