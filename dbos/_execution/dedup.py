"""Writing an enqueued workflow's row when its deduplication ID may be taken.

A queue holds one queued (DELAYED, ENQUEUED or PENDING) workflow per deduplication ID
(the partial unique index ``ws_queue_dedup``). An enqueue that collides is, by its
duplication policy (DBOS 2.x):

- ``reject`` (the default): refused with ``DBOSQueueDeduplicatedError``; from a
  workflow the refusal is recorded as its step, so a replay is refused the same way;
- ``return-existing``: given the workflow holding the ID; from a workflow that holder
  is recorded as its child at that step, so a replay returns the same one. A holder
  that left the queue between the collision and the look-up freed the ID: the insert
  is tried again (a few times, then refused as under ``reject``).
"""

from __future__ import annotations

import functools
from typing import Optional

import sqlalchemy as sa

from dbos._execution.context import WorkflowRun
from dbos._execution.runtime import Runtime, now_ms
from dbos._execution.serialization import serialize_error
from dbos._storage import operations, queues, workflows
from dbos._storage.dialect import Dialect
from dbos._storage.operations import StepRow
from dbos._storage.workflows import WorkflowRow
from dbos.error import DBOSQueueDeduplicatedError

_ATTEMPTS = 5  # inserts tried under "return-existing" while holders keep leaving the queue


def insert(
    rt: Runtime, row: WorkflowRow, name: str, parent: Optional[WorkflowRun], fid: Optional[int], now: int, *,
    return_existing: bool = False, conn: Optional[sa.Connection] = None,
) -> tuple[bool, Optional[str]]:
    """Insert ``row``: (True, None) if this call created it, (False, None) if a row with its
    ID exists, (False, holder) for the workflow holding its deduplication ID under
    ``return-existing``. ``conn``: the caller's transaction (``return-existing`` cannot
    retry there: a collision aborts the caller's transaction on PostgreSQL)."""
    db, dialect = rt.sys_db, rt.sys_db.dialect
    for attempt in range(_ATTEMPTS):
        try:
            if conn is not None:
                return workflows.insert(conn, dialect, row), None
            return workflows.create(db, row), None
        except Exception as e:
            if row.deduplication_id is None or not Dialect.is_unique_violation(e):
                raise
            if not return_existing or conn is not None or attempt == _ATTEMPTS - 1:
                _refuse(rt, row, name, parent, fid, now)
            holder = db.query(functools.partial(queues.deduplicated_holder, queue_name=row.queue_name or "",
                                                deduplication_id=row.deduplication_id))
            if holder is not None:
                if parent is not None and fid is not None:
                    step = StepRow(fid, name, None, None, holder, now, now_ms())
                    db.run(functools.partial(operations.insert, dialect=dialect, workflow_id=parent.workflow_id,
                                             step=step))
                return False, holder
    raise AssertionError("unreachable")


def _refuse(rt: Runtime, row: WorkflowRow, name: str, parent: Optional[WorkflowRun], fid: Optional[int],
            now: int) -> None:
    refused = DBOSQueueDeduplicatedError(row.workflow_uuid, row.queue_name or "", row.deduplication_id or "")
    if parent is not None and fid is not None:
        # Recorded as the step, carrying the error: a replay is refused the same way,
        # whatever the queue holds by then (as in DBOS).
        data = serialize_error(refused, rt.settings.max_value_bytes)
        refusal = StepRow(fid, name, None, data, None, now, now_ms())
        rt.sys_db.run(lambda c: operations.insert(c, rt.sys_db.dialect, parent.workflow_id, refusal))
    raise refused from None
