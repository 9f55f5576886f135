"""A ``dbos-worker`` app for tests/test_schedules_fleet.py (issue 16): one workflow
scheduled every second, whose only effect is a transaction inserting one row per
run into the side table ``sched_ticks`` (no key: a second run of a tick would be a
second row). Run with DBOS__VMID, DBOS__APPVERSION and DBOS_SYSTEM_DATABASE_URL set.
"""

from __future__ import annotations

import datetime
import os

import sqlalchemy as sa

from dbos import DBOS

VMID = os.environ.get("DBOS__VMID", "")


@DBOS.transaction()
def record(scheduled_ms: int) -> None:
    DBOS.sql_session.execute(
        sa.text("INSERT INTO sched_ticks (scheduled_ms, executor_id, pid) VALUES (:t, :e, :p)"),
        {"t": scheduled_ms, "e": VMID, "p": os.getpid()},
    )


@DBOS.scheduled("* * * * * *")
@DBOS.workflow(name="every_second")
def every_second(scheduled_time: datetime.datetime, actual_time: datetime.datetime) -> None:
    record(int(scheduled_time.timestamp() * 1000))
