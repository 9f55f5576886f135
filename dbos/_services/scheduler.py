"""The scheduler: fires the due ticks of every schedule this executor can run.

Each tick it reads the schedules (one small query), fires what is due and
sleeps until the next tick of any schedule (at most ``refresh_sec``, so new,
paused and deleted schedules are seen within that); with nothing to fire here it
reads every ``idle_sec`` (a schedule created elsewhere starts within that; one
created, changed or paused in this process wakes it at once). Every executor runs one;
the deterministic workflow ID of a tick (``_execution/schedules.py``) makes the
fleet run each tick once.
"""

from __future__ import annotations

import datetime
import logging
from typing import Optional

from dbos._execution import cron
from dbos._execution import schedules as rules
from dbos._execution.runtime import Runtime
from dbos._services.base import Service
from dbos._storage import schedules as store
from dbos.error import DBOSException

UTC = datetime.timezone.utc
_MAX_CATCH_UP = 60  # ticks due at once within a run (a long pause): more, and only the latest runs


class Scheduler(Service):
    name = "scheduler"

    def __init__(self, rt: Runtime, logger: logging.Logger, refresh_sec: float = 1.0, idle_sec: float = 5.0) -> None:
        super().__init__(refresh_sec, logger, jitter=0.0)
        self.idle_sec = idle_sec
        self.rt = rt
        # name -> (crontab, zone, next tick): a changed crontab or zone starts afresh
        self._next: dict[str, tuple[str, Optional[str], datetime.datetime]] = {}
        self._parsed: dict[tuple[str, Optional[str]], cron.Crontab] = {}
        self._soonest: Optional[datetime.datetime] = None

    def _crontab(self, text: str, zone: Optional[str]) -> cron.Crontab:
        c = self._parsed.get((text, zone))
        if c is None:
            c = self._parsed[(text, zone)] = cron.parse(text, zone)
        return c

    def run_once(self) -> None:
        self.fire_due()

    def fire_due(self, now: Optional[datetime.datetime] = None) -> list[str]:
        """Fire what is due at ``now``; return the workflow IDs enqueued (tests)."""
        rt = self.rt
        now = now or datetime.datetime.now(UTC)
        rows = [r for r in rt.sys_db.query(lambda c: store.list_all(c)) if rules.fires_here(rt, r)]
        fired: list[str] = []
        seen = set()
        for row in rows:
            seen.add(row.schedule_name)
            try:
                c = self._crontab(row.schedule, row.cron_timezone)
            except DBOSException as e:  # a bad crontab, or a zone this machine does not know
                self.logger.error("schedule %s: %s", row.schedule_name, e)
                continue
            state = self._next.get(row.schedule_name)
            if state is None or state[:2] != (row.schedule, row.cron_timezone):
                for missed in rules.missed_ticks(row, c, now):
                    fired.append(rules.enqueue_tick(rt, row, missed))
                self._next[row.schedule_name] = (row.schedule, row.cron_timezone, c.next_after(now))
                continue
            due = []
            tick = state[2]
            while tick <= now:
                due.append(tick)
                tick = c.next_after(tick)
            for t in due if row.automatic_backfill else due[-_MAX_CATCH_UP:]:
                fired.append(rules.enqueue_tick(rt, row, t))
            self._next[row.schedule_name] = (row.schedule, row.cron_timezone, tick)
        for name in list(self._next):
            if name not in seen:  # paused, deleted: starts afresh (missed-tick rule) when back
                del self._next[name]
        self._soonest = min((state[2] for state in self._next.values()), default=None)
        return fired

    def next_delay(self) -> float:
        if self._soonest is None:
            return self.idle_sec
        until = (self._soonest - datetime.datetime.now(UTC)).total_seconds()
        return max(0.0, min(self.interval_sec, until + 0.005))
