"""Heartbeat: keeps this executor's row in ``executors`` fresh so the fleet knows it is alive."""

from __future__ import annotations

import logging
import os
import socket

from dbos._execution.runtime import now_ms
from dbos._services.base import Service
from dbos._storage import executors
from dbos._storage.database import Database


class Heartbeat(Service):
    name = "heartbeat"

    def __init__(
        self, db: Database, executor_id: str, app_version: str, interval_sec: float, logger: logging.Logger
    ) -> None:
        super().__init__(interval_sec, logger)
        self.db = db
        self.executor_id = executor_id
        self.app_version = app_version

    def register(self) -> None:
        now = now_ms()
        row = executors.ExecutorRow(
            self.executor_id, self.app_version, socket.gethostname(), os.getpid(), now, now, "RUNNING"
        )
        self.db.run(lambda c: executors.upsert(c, self.db.dialect, row))

    def run_once(self) -> None:
        self.db.run(lambda c: executors.heartbeat(c, self.executor_id, now_ms()))

    def mark_stopped(self) -> None:
        self.db.run(lambda c: executors.mark_stopped(c, self.executor_id, now_ms()))
