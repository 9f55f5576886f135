"""The outcome retrier: writes what workflows of this process owe the database after an outage.

When the database is unreachable at a workflow's last write (``retry_on_disconnect``
gave up), the workflow is not left PENDING until the next launch:
``_execution.workflow`` hands the runtime a :class:`~dbos._execution.runtime.Deferred`
(write this outcome, or resume this workflow from its last recorded step) and
keeps the execution registered, its future pending. Each tick this service tries
them oldest first; the first that fails ends the tick (the database is still
down; the base logs that once, then once more when it recovers).

``stop()`` is bounded: it joins the loop for at most ``stop_timeout_sec`` and then
abandons what is still owed. Local waiters get a ``DBOSDatabaseUnavailableError``
saying so; the workflows stay PENDING and are recovered at the next launch, as
after a crash.
"""

from __future__ import annotations

import logging
from typing import Optional

from dbos._execution.runtime import Runtime
from dbos._services.base import Service
from dbos.error import DBOSDatabaseUnavailableError


class OutcomeRetrier(Service):
    name = "outcome-retrier"

    def __init__(
        self, rt: Runtime, interval_sec: float, logger: logging.Logger, stop_timeout_sec: float = 5.0
    ) -> None:
        super().__init__(interval_sec, logger)
        self.rt = rt
        self.stop_timeout_sec = stop_timeout_sec

    def run_once(self) -> None:
        failure: Optional[Exception] = None
        for work in self.rt.deferred():
            if self._stop.is_set():
                return
            try:
                work.attempt()
            except DBOSDatabaseUnavailableError:
                raise  # still unreachable: the rest would fail the same way; retried next tick
            except Exception as e:
                # Another failure (e.g. "the database system is starting up"): this one is
                # retried next tick, and does not hold up the others.
                failure = failure or e
                continue
            self.rt.drop_deferred(work)
        if failure is not None:
            raise failure

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(min(timeout, self.stop_timeout_sec))
        owed = self.rt.deferred()
        for work in owed:
            self.rt.drop_deferred(work)
            try:
                work.abandon(
                    f"its {work.what} was not written before DBOS.destroy() (the database was unreachable); "
                    "it stays PENDING and is recovered at the next launch"
                )
            except Exception as e:  # never let one owed write stop the others being abandoned
                self.logger.warning("workflow %s: abandoning its %s failed: %s", work.workflow_id, work.what, e)
        if owed:
            self.logger.warning(
                "%d workflow(s) left PENDING (database unreachable): %s",
                len(owed), ", ".join(w.workflow_id for w in owed),
            )
