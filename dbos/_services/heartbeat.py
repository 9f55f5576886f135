"""Heartbeat: keeps this executor's row in ``executors`` fresh so the fleet knows it is alive.

It runs on a thread and a database connection of its own (a pool of one), so
neither a saturated pool nor busy workflows can delay it past the fleet's
dead-after. Its one statement carries the executor's state and how many
workflows it runs. A heartbeat refused means this incarnation was declared
DEAD (its work handed over while it was stopped or cut off): it hands the
runtime to ``on_declared_dead``, which stops what it no longer owns and
registers a new incarnation.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Callable, Optional, Sequence

from dbos._execution.runtime import now_ms
from dbos._services.base import Service
from dbos._storage import executors
from dbos._storage.database import Database


class Heartbeat(Service):
    name = "heartbeat"

    def __init__(
        self,
        db: Database,
        executor_id: str,
        app_version: str,
        interval_sec: float,
        logger: logging.Logger,
        queues: Optional[Sequence[str]] = None,
    ) -> None:
        super().__init__(interval_sec, logger)
        self.db = db
        self.executor_id = executor_id
        self.app_version = app_version
        self.queues = json.dumps(sorted(queues)) if queues is not None else None
        self.incarnation = 0
        self.state = "RUNNING"
        self.running: Callable[[], int] = lambda: 0
        self.on_declared_dead: Callable[[], None] = lambda: None
        self.last_beat = 0.0  # time.monotonic() of the last heartbeat written

    def register(self) -> int:
        """Start a new incarnation of this executor (RUNNING); return its number."""
        now = now_ms()
        row = executors.ExecutorRow(
            self.executor_id, self.app_version, socket.gethostname(), os.getpid(), now, now, "RUNNING",
            queues=self.queues,
        )
        self.incarnation = self.db.run(lambda c: executors.register(c, self.db.dialect, row))
        self.state = "RUNNING"
        self.last_beat = time.monotonic()
        return self.incarnation

    def run_once(self) -> None:
        beat = self.state, self.running()
        alive = self.db.run(
            lambda c: executors.heartbeat(c, self.executor_id, self.incarnation, beat[0], beat[1], now_ms())
        )
        if alive:
            self.last_beat = time.monotonic()
        elif self.state != "STOPPED":
            self.logger.warning(
                "executor %s (incarnation %d) was declared dead by the fleet; its work was handed over",
                self.executor_id, self.incarnation,
            )
            self.on_declared_dead()

    def set_state(self, state: str) -> None:
        """Change the state the fleet sees, at once (not at the next beat)."""
        if state != self.state:
            self.logger.info("executor %s: %s -> %s", self.executor_id, self.state, state)
        self.state = state
        if state == "STOPPED":
            self.db.run(lambda c: executors.mark_stopped(c, self.executor_id, self.incarnation, now_ms()))
        else:
            self.run_once()

    def mark_stopped(self) -> None:
        self.set_state("STOPPED")
