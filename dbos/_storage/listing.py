"""SQL for listing workflows with filters (management and queued listings).

Each filter is served by an index on ``created_at`` paired with the filtered
column (see migrations); queued listings only touch the partial index of
live rows, so a large history does not slow them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from dbos._storage.schema import TERMINAL, status_in
from dbos._storage.schema import workflow_status as ws
from dbos._storage.workflows import _COLUMNS, WorkflowRow


@dataclass(frozen=True)
class WorkflowFilter:
    workflow_ids: Optional[Sequence[str]] = None
    statuses: Optional[Sequence[str]] = None
    start_time_ms: Optional[int] = None
    end_time_ms: Optional[int] = None
    # Each list filter matches a row whose column is any of its values (an empty list: none).
    name: Optional[Sequence[str]] = None
    app_version: Optional[Sequence[str]] = None
    user: Optional[Sequence[str]] = None
    limit: Optional[int] = None
    offset: Optional[int] = None
    sort_desc: bool = False
    workflow_id_prefix: Optional[Sequence[str]] = None  # IDs starting with any of these
    queue_name: Optional[Sequence[str]] = None
    queued_only: bool = False
    executor_id: Optional[Sequence[str]] = None
    forked_from: Optional[Sequence[str]] = None
    parent_workflow_id: Optional[Sequence[str]] = None
    has_parent: Optional[bool] = None  # True: only children; False: only top-level workflows
    was_forked_from: Optional[bool] = None  # True: only sources of forks; False: only others
    # WorkflowStatus.completed_at (updated_at of a finished row) and dequeued_at (started_at
    # of a row that went through a queue) within these bounds, epoch ms.
    completed_after_ms: Optional[int] = None
    completed_before_ms: Optional[int] = None
    dequeued_after_ms: Optional[int] = None
    dequeued_before_ms: Optional[int] = None
    attributes: Optional[dict[str, Any]] = None  # rows whose attributes hold all these pairs
    schedule_name: Optional[Sequence[str]] = None  # ticks of these schedules


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _any_of(column: Any, values: Sequence[str]) -> Any:
    """One value: ``=`` (the index of that column serves it); several: ``IN``."""
    return column == values[0] if len(values) == 1 else column.in_(list(values))


def _prefixed(prefixes: Sequence[str]) -> Any:
    return sa.or_(
        sa.false(), *[ws.c.workflow_uuid.like(_escape_like(p) + "%", escape="\\") for p in prefixes]
    )


def _holds(conn: sa.Connection, attributes: dict[str, Any]) -> Any:
    """Attributes (JSON text) holding every given key with an equal value: PostgreSQL's
    jsonb containment; on SQLite one json_extract per key (the stored JSON and the value
    are both written with sorted keys, so equal objects compare equal as text)."""
    if conn.dialect.name == "postgresql":
        return sa.cast(ws.c.attributes, JSONB).contains(attributes)
    clauses = []
    for key, value in attributes.items():
        path = "$." + json.dumps(key)
        if value is None:
            clauses.append(sa.func.json_type(ws.c.attributes, path) == "null")
        elif isinstance(value, (dict, list)):
            clauses.append(sa.func.json_extract(ws.c.attributes, path)
                           == json.dumps(value, sort_keys=True, separators=(",", ":")))
        elif isinstance(value, bool):
            clauses.append(sa.func.json_type(ws.c.attributes, path) == ("true" if value else "false"))
        else:
            clauses.append(sa.func.json_extract(ws.c.attributes, path) == value)
    return sa.and_(ws.c.attributes.is_not(None), *clauses)


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
    for column, values in (
        (ws.c.name, f.name),
        (ws.c.application_version, f.app_version),
        (ws.c.authenticated_user, f.user),
        (ws.c.queue_name, f.queue_name),
        (ws.c.executor_id, f.executor_id),
        (ws.c.forked_from, f.forked_from),
        (ws.c.parent_workflow_id, f.parent_workflow_id),
        (ws.c.schedule_name, f.schedule_name),
    ):
        if values is not None:
            stmt = stmt.where(_any_of(column, values) if values else sa.false())
    if f.workflow_id_prefix is not None:
        stmt = stmt.where(_prefixed(f.workflow_id_prefix))
    if f.completed_after_ms is not None or f.completed_before_ms is not None:
        stmt = stmt.where(status_in(*TERMINAL))
        if f.completed_after_ms is not None:
            stmt = stmt.where(ws.c.updated_at >= f.completed_after_ms)
        if f.completed_before_ms is not None:
            stmt = stmt.where(ws.c.updated_at <= f.completed_before_ms)
    if f.dequeued_after_ms is not None or f.dequeued_before_ms is not None:
        stmt = stmt.where(ws.c.queue_name.is_not(None))
        if f.dequeued_after_ms is not None:
            stmt = stmt.where(ws.c.started_at >= f.dequeued_after_ms)
        if f.dequeued_before_ms is not None:
            stmt = stmt.where(ws.c.started_at <= f.dequeued_before_ms)
    if f.attributes:
        stmt = stmt.where(_holds(conn, f.attributes))
    if f.has_parent is not None:
        parent = ws.c.parent_workflow_id
        stmt = stmt.where(parent.is_not(None) if f.has_parent else parent.is_(None))
    if f.was_forked_from is not None:  # no index: narrows what the created_at order reads
        stmt = stmt.where(ws.c.was_forked_from == f.was_forked_from)
    order = ws.c.created_at.desc() if f.sort_desc else ws.c.created_at.asc()
    stmt = stmt.order_by(order, ws.c.workflow_uuid.desc() if f.sort_desc else ws.c.workflow_uuid.asc())
    if f.limit is not None:
        stmt = stmt.limit(f.limit)
    if f.offset is not None:
        stmt = stmt.offset(f.offset)
    return [WorkflowRow.from_row(r) for r in conn.execute(stmt)]
