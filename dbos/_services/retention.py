"""Periodic garbage collection, run by the coordinators' leader (``--retention-days``,
``--retention-rows``): finished workflows only, in short batches (``_execution/retention``).

A loop of its own, beside the coordinator's tick: a long collection never delays
the lease renewal or a hand-over. It acts only while ``is_leader()`` holds, so of
many coordinators one collects; two overlapping for a moment delete the same
finished rows at most once (each delete is conditional, SKIP LOCKED on PostgreSQL).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional

from dbos._execution import retention
from dbos._services.base import Service
from dbos._storage.database import Database


@dataclass(frozen=True)
class RetentionConfig:
    retention_days: Optional[float] = None
    retention_rows: Optional[int] = None
    interval_sec: float = 60.0
    batch_size: int = retention.DEFAULT_BATCH
    pause_sec: float = 0.01  # between batches: the fleet's statements go first
    duty: float = 0.25  # at most this share of the time in batches (bench/README.md, "retention.py")


class Retention(Service):
    name = "retention"

    def __init__(self, db: Database, config: RetentionConfig, is_leader: Callable[[], bool],
                 logger: logging.Logger) -> None:
        super().__init__(config.interval_sec, logger)
        self.db = db
        self.config = config
        self.is_leader = is_leader
        self.deleted_total = 0
        self.last: Optional[retention.GcResult] = None

    def run_once(self) -> None:
        c = self.config
        if not self.is_leader() or (c.retention_days is None and c.retention_rows is None):
            return
        cutoff = int((time.time() - c.retention_days * 86400) * 1000) if c.retention_days is not None else None
        result = retention.collect(self.db, self.db, cutoff_epoch_timestamp_ms=cutoff,
                                   rows_threshold=c.retention_rows, batch_size=c.batch_size, pause_sec=c.pause_sec,
                                   duty=c.duty)
        self.last = result
        self.deleted_total += result.deleted
        if result.deleted:
            self.logger.info("retention: deleted %d finished workflow(s) in %d batch(es), %.2f s",
                             result.deleted, result.batches, result.seconds)
