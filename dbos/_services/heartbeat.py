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
import threading
import time
from typing import Any, Callable, Optional, Sequence

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
        queue_specs: Optional[Sequence[dict[str, Any]]] = None,
    ) -> None:
        super().__init__(interval_sec, logger)
        self.db = db
        self.executor_id = executor_id
        self.app_version = app_version
        self.queues = json.dumps(sorted(queues)) if queues is not None else None
        self.queue_specs = json.dumps(list(queue_specs)) if queue_specs is not None else None
        self.incarnation = 0
        self.state = "RUNNING"
        self.running: Callable[[], int] = lambda: 0
        self.on_declared_dead: Callable[[], None] = lambda: None
        self.last_beat = 0.0  # time.monotonic() of the last heartbeat written
        # A step may start only while the last heartbeat is younger than this (else it
        # beats first): well inside the fleet's dead-after, so a paused process learns
        # it was declared dead before it runs anything of work handed to another.
        self.fence_sec = 2.0
        self._beat_lock = threading.Lock()

    def register(self) -> int:
        """Start a new incarnation of this executor (RUNNING); return its number."""
        now = now_ms()
        row = executors.ExecutorRow(
            self.executor_id, self.app_version, socket.gethostname(), os.getpid(), now, now, "RUNNING",
            queues=self.queues, queue_specs=self.queue_specs,
        )
        self.incarnation = self.db.run(lambda c: executors.register(c, self.db.dialect, row))
        self.state = "RUNNING"
        self.last_beat = time.monotonic()
        return self.incarnation

    def confirm_alive(self) -> None:
        """The fence at each step: a fresh heartbeat is an in-memory check; an old one
        (the process was paused, or its thread starved) beats now, and a refusal
        stops the work handed over (``on_declared_dead``) before this step runs.
        With the database unreachable the step goes on (it cannot record either)."""
        if time.monotonic() - self.last_beat < self.fence_sec:
            return
        try:
            self.run_once()
        except Exception:
            pass

    def run_once(self) -> None:
        with self._beat_lock:
            if self.state == "STOPPED":
                return
            self._beat()

    def _beat(self) -> None:
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
