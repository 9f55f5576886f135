"""SQL for listing workflows with filters (management and queued listings).

Each filter is served by an index on ``created_at`` paired with the filtered
column (see migrations); queued listings only touch the partial index of
live rows, so a large history does not slow them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import sqlalchemy as sa

from dbos._storage.schema import status_in
from dbos._storage.schema import workflow_status as ws
from dbos._storage.workflows import _COLUMNS, WorkflowRow


@dataclass(frozen=True)
class WorkflowFilter:
    workflow_ids: Optional[Sequence[str]] = None
    statuses: Optional[Sequence[str]] = None
    start_time_ms: Optional[int] = None
    end_time_ms: Optional[int] = None
    name: Optional[str] = None
    app_version: Optional[str] = None
    user: Optional[str] = None
    limit: Optional[int] = None
    offset: Optional[int] = None
    sort_desc: bool = False
    workflow_id_prefix: Optional[str] = None
    queue_name: Optional[str] = None
    queued_only: bool = False
    executor_id: Optional[str] = None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _columns(inputs: bool, outputs: bool) -> list[Any]:
    """Every status column; the ones a listing did not ask for read as NULL, so the
    database never sends (or even assembles) large inputs and outputs it does not need."""
    skipped = set() if inputs else {"inputs"}
    if not outputs:
        skipped |= {"output", "error"}
    return [sa.null().label(c.name) if c.name in skipped else c for c in _COLUMNS]


def list_rows(
    conn: sa.Connection, f: WorkflowFilter, *, inputs: bool = True, outputs: bool = True
) -> list[WorkflowRow]:
    stmt = sa.select(*_columns(inputs, outputs))
    if f.queued_only:
        stmt = stmt.where(ws.c.queue_name.is_not(None), status_in("DELAYED", "ENQUEUED", "PENDING"))
    if f.workflow_ids is not None:
        stmt = stmt.where(ws.c.workflow_uuid.in_(list(f.workflow_ids)))
    if f.statuses is not None:
        stmt = stmt.where(status_in(*f.statuses))
    if f.start_time_ms is not None:
        stmt = stmt.where(ws.c.created_at >= f.start_time_ms)
    if f.end_time_ms is not None:
        stmt = stmt.where(ws.c.created_at <= f.end_time_ms)
    if f.name is not None:
        stmt = stmt.where(ws.c.name == f.name)
    if f.app_version is not None:
        stmt = stmt.where(ws.c.application_version == f.app_version)
    if f.user is not None:
        stmt = stmt.where(ws.c.authenticated_user == f.user)
    if f.workflow_id_prefix is not None:
        stmt = stmt.where(ws.c.workflow_uuid.like(_escape_like(f.workflow_id_prefix) + "%", escape="\\"))
    if f.queue_name is not None:
        stmt = stmt.where(ws.c.queue_name == f.queue_name)
    if f.executor_id is not None:
        stmt = stmt.where(ws.c.executor_id == f.executor_id)
    order = ws.c.created_at.desc() if f.sort_desc else ws.c.created_at.asc()
    stmt = stmt.order_by(order, ws.c.workflow_uuid.desc() if f.sort_desc else ws.c.workflow_uuid.asc())
    if f.limit is not None:
        stmt = stmt.limit(f.limit)
    if f.offset is not None:
        stmt = stmt.offset(f.offset)
    return [WorkflowRow.from_row(r) for r in conn.execute(stmt)]
