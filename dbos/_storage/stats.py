"""Read-only SQL for the console: per-queue counts and starts, a workflow's children
and undelivered messages.

Every statement is served by an index: the live-row partial indexes for queue
counts (history never slows them), ``ws_queue_started`` for starts over the
last minutes, ``ws_parent`` for children, ``notifications_dest_topic`` for
messages. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from dbos._storage.schema import notifications as nt
from dbos._storage.schema import status_in
from dbos._storage.schema import workflow_status as ws


@dataclass(frozen=True)
class QueueCount:
    queue_name: str
    status: str  # ENQUEUED | PENDING
    count: int
    oldest_ms: int  # the oldest row's updated_at: when it became ENQUEUED (or was claimed)


@dataclass(frozen=True)
class ChildRow:
    workflow_id: str
    status: str
    name: str


@dataclass(frozen=True)
class MessageRow:
    topic: str  # '' for no topic
    message: bytes
    created_at: int


def queue_counts(conn: sa.Connection) -> list[QueueCount]:
    """ENQUEUED and PENDING workflows per queue (direct work, with no queue, left out)."""
    stmt = (
        sa.select(ws.c.queue_name, ws.c.status, sa.func.count(), sa.func.min(ws.c.updated_at))
        .where(ws.c.queue_name.is_not(None), status_in("ENQUEUED", "PENDING"))
        .group_by(ws.c.queue_name, ws.c.status)
    )
    return [QueueCount(str(r[0]), str(r[1]), int(r[2]), int(r[3] or 0)) for r in conn.execute(stmt)]


def queue_starts(conn: sa.Connection, queue_name: str, since_ms: int, bucket_ms: int) -> dict[int, int]:
    """Workflows of ``queue_name`` started since ``since_ms``: bucket start (epoch ms) -> count."""
    bucket = ws.c.started_at // bucket_ms
    stmt = (
        sa.select(bucket.label("b"), sa.func.count())
        .where(ws.c.queue_name == queue_name, ws.c.started_at >= since_ms)
        .group_by(sa.literal_column("b"))
    )
    return {int(r[0]) * bucket_ms: int(r[1]) for r in conn.execute(stmt)}


def children(conn: sa.Connection, parent_id: str, limit: int) -> list[ChildRow]:
    stmt = (
        sa.select(ws.c.workflow_uuid, ws.c.status, ws.c.name)
        .where(ws.c.parent_workflow_id == parent_id)
        .order_by(ws.c.created_at, ws.c.workflow_uuid)
        .limit(limit)
    )
    return [ChildRow(str(r[0]), str(r[1]), str(r[2])) for r in conn.execute(stmt)]


def pending_messages(conn: sa.Connection, destination_id: str, limit: int) -> list[MessageRow]:
    """Messages sent to ``destination_id`` that no ``recv`` has consumed yet, oldest first."""
    stmt = (
        sa.select(nt.c.topic, nt.c.message, nt.c.created_at)
        .where(nt.c.destination_uuid == destination_id)
        .order_by(nt.c.seq)
        .limit(limit)
    )
    return [MessageRow(str(r[0]), bytes(r[1]), int(r[2])) for r in conn.execute(stmt)]


def started_at(conn: sa.Connection, workflow_id: str) -> Optional[int]:
    """When an executor began the workflow (not part of ``WorkflowStatus``)."""
    value = conn.execute(sa.select(ws.c.started_at).where(ws.c.workflow_uuid == workflow_id)).scalar()
    return None if value is None else int(value)
