"""The canceller: enforces durable deadlines and cancellations from other processes.

Each tick it (1) cancels every live workflow in the fleet whose deadline has
passed (a partial index over deadlines of live rows keeps this cheap), and
(2) preempts local executions whose rows another process cancelled. A
``cancel:`` hint over Redis wakes it at once; without Redis it notices
within one polling interval. It sleeps no longer than until the nearest
local deadline.
"""

from __future__ import annotations

import logging
import time

from dbos._execution.runtime import Runtime, now_ms
from dbos._services.base import Service
from dbos._storage import workflows
from dbos._wakeups import local as keys


class Canceller(Service):
    name = "canceller"

    def __init__(self, rt: Runtime, interval_sec: float, logger: logging.Logger) -> None:
        super().__init__(interval_sec, logger)
        self.rt = rt

    def run_once(self) -> None:
        rt = self.rt
        expired = rt.sys_db.run(lambda c: workflows.expire_deadlines(c, now_ms()))
        for workflow_id in expired:
            rt.preempt_local(workflow_id)
            rt.wakeups.notify(keys.cancelled(workflow_id))
            rt.wakeups.notify(keys.workflow_done(workflow_id))
        running = rt.running_ids()
        if running:
            for workflow_id in rt.sys_db.query(lambda c: workflows.cancelled_among(c, running)):
                rt.preempt_local(workflow_id)

    def next_delay(self) -> float:
        delay = super().next_delay()
        nearest = self.rt.nearest_local_deadline_ms()
        if nearest is not None:
            delay = min(delay, max(0.0, nearest / 1000 - time.time()))
        return delay
