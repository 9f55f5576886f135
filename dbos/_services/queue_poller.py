"""The queue poller: claims queued work this executor can run now, and starts it.

It claims on a wakeup (an enqueue or a completion anywhere in the fleet, via
the hub) or at the queue's polling interval, whichever comes first. It claims
at most the free local capacity, so a backlog spreads over the fleet. When a
claim was cut short by a limit it knows when to look again: at once after a
full batch, a few milliseconds after losing the claim lock to another
executor, or when the rate-limit window opens.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable

from dbos._execution.queues import QueueSpec, claim_and_start, promote_delayed, requeue_orphans
from dbos._execution.runtime import Runtime
from dbos._services.base import Service
from dbos._wakeups.local import queue_ready
from dbos.error import DBOSDatabaseUnavailableError

_LOCKED_OUT_RETRY = 0.005


class QueuePoller(Service):
    name = "queue-poller"

    def __init__(
        self,
        rt: Runtime,
        queues: Callable[[], list[QueueSpec]],
        default_worker_concurrency: int,
        logger: logging.Logger,
    ) -> None:
        super().__init__(1.0, logger)
        self.rt = rt
        self._queues = queues
        self._default_worker = default_worker_concurrency
        self._due: dict[str, float] = {}  # queue name -> monotonic time of its next poll
        self._woken: set[str] = set()  # queues woken since their poll began
        self._broken: set[str] = set()  # queues whose last claim failed (logged once)
        self._delay = 0.0
        self._promote_at = 0.0  # monotonic time of the next promotion of due DELAYED workflows
        self._promote_every = min(1.0, rt.settings.polling_interval_sec)

    def start(self) -> None:
        self.rt.claims_open = True
        super().start()

    def stop(self, timeout: float = 10.0) -> None:
        self.rt.claims_open = False
        super().stop(timeout)

    def run_once(self) -> None:
        if self.rt.take_orphan_sweep() or self._failing:
            # The last tick failed (typically the database went away), or a slot
            # handover's outcome is unknown. A claim may have committed without its
            # rows reaching us: they are PENDING under this executor but run
            # nowhere. Put them back before claiming again.
            self._requeue_orphans()
        self._promote_delayed()  # every executor polls at least the internal queue, about once a second
        now = time.monotonic()
        next_due = now + 3600.0
        for spec in self._queues():
            due = self._due.get(spec.name, 0.0)
            if due <= now:
                self._woken.discard(spec.name)
                due = self._poll_alone(spec, now)
                # A wake during the claim (capacity freed, new work) must not be lost.
                if spec.name in self._woken:
                    due = 0.0
                self._due[spec.name] = due
            next_due = min(next_due, due)
        self._delay = max(0.0, next_due - time.monotonic())

    def _poll_alone(self, spec: QueueSpec, now: float) -> float:
        """``_poll``, where one queue's failure is that queue's alone: it is logged by
        name and retried at its interval, and the other queues are still claimed. A
        lost database fails the whole tick (the base retries, then orphans are swept)."""
        try:
            due = self._poll(spec, now)
        except DBOSDatabaseUnavailableError:
            raise
        except Exception as e:
            self.rt.request_orphan_sweep()  # in case a claim committed before the error
            if spec.name not in self._broken:
                self._broken.add(spec.name)
                self.logger.error("queue %r: claiming failed: %s: %s (will retry)", spec.name, type(e).__name__, e)
            return now + spec.polling_interval_sec
        if spec.name in self._broken:
            self._broken.discard(spec.name)
            self.logger.info("queue %r: claiming works again", spec.name)
        return due

    def _promote_delayed(self) -> None:
        """Make DELAYED workflows now due ENQUEUED, fleet-wide (any executor may: the change
        is conditional), at most once per ``_promote_every``; wake their queues everywhere."""
        now = time.monotonic()
        if now < self._promote_at:
            return
        self._promote_at = now + self._promote_every
        for name in promote_delayed(self.rt):
            self._due[name] = 0.0
            self.rt.wakeups.notify(queue_ready(name))

    def _requeue_orphans(self) -> None:
        for name in requeue_orphans(self.rt):
            self._due[name] = 0.0

    def wake_queue(self, queue_name: str) -> None:
        """A hint: this queue may have work (an enqueue, or capacity freed)."""
        self._due[queue_name] = 0.0
        self._woken.add(queue_name)
        self.wake()

    def next_delay(self) -> float:
        return self._delay

    def _poll(self, spec: QueueSpec, now: float) -> float:
        """Claim once; return the monotonic time this queue should be polled next."""
        limits = spec.limits(self._default_worker)
        result = claim_and_start(self.rt, limits)
        interval = spec.polling_interval_sec * (1 + random.uniform(-0.1, 0.1))
        if result.locked_out:
            return now + _LOCKED_OUT_RETRY
        if result.rate_limited_until_ms is not None:
            wait = max(0.0, result.rate_limited_until_ms / 1000 - time.time())
            return now + min(wait, interval)
        # Otherwise wait: an enqueue or a completion anywhere wakes us sooner.
        return now + interval
