"""The queue poller: claims queued work this executor can run now, and starts it.

It claims on a wakeup (an enqueue or a completion anywhere in the fleet, via
the hub) or at the queue's polling interval, whichever comes first. It claims
at most the free local capacity, so a backlog spreads over the fleet. When a
claim was cut short by a limit it knows when to look again: at once after a
full batch, a few milliseconds after losing the claim lock to another
executor, or when the rate-limit window opens.

Queues stored in the database (``DBOS.register_queue``) are polled beside the
ones declared in code: their list is read about once a second (at once on a
wakeup naming a queue not known here), and each claim reads the queue's limits
afresh, so a change made anywhere applies to the next claim.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable

from dbos._execution import stored_queues
from dbos._execution.queues import QueueSpec, claim_and_start, promote_delayed, requeue_orphans
from dbos._execution.runtime import Runtime
from dbos._services.base import Service
from dbos._wakeups.local import queue_ready
from dbos.error import DBOSDatabaseUnavailableError

_LOCKED_OUT_RETRY = 0.005
_STORED_LIST_EVERY = 1.0  # how often the list of stored queues is read


class QueuePoller(Service):
    name = "queue-poller"

    def __init__(
        self,
        rt: Runtime,
        queues: Callable[[], list[QueueSpec]],
        default_worker_concurrency: int,
        logger: logging.Logger,
        listens: Callable[[str], bool] = lambda _name: True,
    ) -> None:
        super().__init__(1.0, logger)
        self.rt = rt
        self._queues = queues
        self._listens = listens  # whether this executor serves a stored queue of this name
        self._stored_at = 0.0  # monotonic time of the next read of the stored queues' list
        self._shadowed: set[str] = set()  # stored queues also declared in code here (logged once)
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
        declared = self._queues()
        self._list_stored(declared)
        now = time.monotonic()
        next_due = now + 3600.0
        for spec in (*declared, *self.rt.stored_queues.values()):
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

    def _list_stored(self, declared: list[QueueSpec]) -> None:
        """Read which stored queues exist (at most every _STORED_LIST_EVERY seconds) into
        ``rt.stored_queues``: those this executor serves and does not declare in code. A
        name declared in code here is claimed with the code's settings (logged once)."""
        now = time.monotonic()
        if now < self._stored_at:
            return
        self._stored_at = now + _STORED_LIST_EVERY
        names = {spec.name for spec in declared}
        found: dict[str, QueueSpec] = {}
        for spec in stored_queues.list_all(self.rt):
            if spec.name in names:
                if spec.name not in self._shadowed:
                    self._shadowed.add(spec.name)
                    self.logger.warning(
                        "queue %r is both declared in code and stored in the database; this executor "
                        "claims it with the settings declared in code", spec.name,
                    )
            elif self._listens(spec.name):
                found[spec.name] = spec
                if spec.name not in self.rt.stored_queues:
                    self._due[spec.name] = 0.0  # new here (or registered again): claim at once
        self.rt.stored_queues = found  # replaced whole: other threads read it

    def _requeue_orphans(self) -> None:
        for name in requeue_orphans(self.rt):
            self._due[name] = 0.0

    def wake_queue(self, queue_name: str) -> None:
        """A hint: this queue may have work (an enqueue, or capacity freed)."""
        self._due[queue_name] = 0.0
        self._woken.add(queue_name)
        if queue_name not in self.rt.stored_queues and queue_name not in self.rt.registry.queues:
            self._stored_at = 0.0  # perhaps a queue registered just now: read the list again
        self.wake()

    def next_delay(self) -> float:
        return self._delay

    def _poll(self, spec: QueueSpec, now: float) -> float:
        """Claim once; return the monotonic time this queue should be polled next."""
        if spec.stored:
            result, fresh = stored_queues.claim_and_start(self.rt, spec.name, self._default_worker)
            if fresh is None and not result.locked_out:  # deleted
                self.rt.stored_queues = {n: s for n, s in self.rt.stored_queues.items() if n != spec.name}
                return now + 3600.0
            if fresh is not None:
                spec = fresh  # its polling interval may have changed too
                if spec.name in self.rt.stored_queues:
                    self.rt.stored_queues[spec.name] = fresh
        else:
            result = claim_and_start(self.rt, spec.limits(self._default_worker))
        interval = spec.polling_interval_sec * (1 + random.uniform(-0.1, 0.1))
        if result.locked_out:
            return now + _LOCKED_OUT_RETRY
        if result.rate_limited_until_ms is not None:
            wait = max(0.0, result.rate_limited_until_ms / 1000 - time.time())
            return now + min(wait, interval)
        # Otherwise wait: an enqueue or a completion anywhere wakes us sooner.
        return now + interval
