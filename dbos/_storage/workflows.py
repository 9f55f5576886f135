"""SQL for the ``workflow_status`` table: one row a workflow."""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any, Optional, Sequence

import sqlalchemy as sa

from dbos._storage.database import Database
from dbos._storage.dialect import Dialect
from dbos._storage.schema import status_in
from dbos._storage.schema import workflow_status as ws


# Not frozen: built on every call, and a frozen dataclass's __init__ costs ~4x more. Never mutated.
@dataclass
class WorkflowRow:
    workflow_uuid: str
    status: str
    name: str
    class_name: Optional[str] = None
    config_name: Optional[str] = None
    authenticated_user: Optional[str] = None
    assumed_role: Optional[str] = None
    authenticated_roles: Optional[str] = None
    inputs: Optional[bytes] = None
    output: Optional[bytes] = None
    error: Optional[bytes] = None
    executor_id: Optional[str] = None
    application_version: Optional[str] = None
    application_id: Optional[str] = None
    created_at: int = 0
    updated_at: int = 0
    started_at: Optional[int] = None
    recovery_attempts: int = 0
    queue_name: Optional[str] = None
    priority: Optional[int] = None
    deduplication_id: Optional[str] = None
    queue_partition_key: Optional[str] = None
    timeout_ms: Optional[int] = None
    deadline_ms: Optional[int] = None
    parent_workflow_id: Optional[str] = None
    forked_from: Optional[str] = None
    trace_context: Optional[str] = None
    delay_until_epoch_ms: Optional[int] = None  # DELAYED until then
    attributes: Optional[str] = None  # JSON object
    schedule_name: Optional[str] = None  # the schedule whose tick this workflow is
    was_forked_from: bool = False  # a fork names this workflow as its source

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> "WorkflowRow":
        m = row._mapping
        return cls(**{f.name: m[f.name] for f in _FIELDS})


_FIELDS = fields(WorkflowRow)
_COLUMNS = [ws.c[f.name] for f in _FIELDS]
# What ``create`` writes: every field but the last, ``was_forked_from``, which only a fork
# sets on its source (a new row takes the column's default, false; the hot path binds no bool).
_CREATED = _FIELDS[:-1]
assert _FIELDS[-1].name == "was_forked_from"


@functools.cache
def _insert_stmt(dialect: Dialect) -> Any:
    return (
        dialect.insert(ws)
        .on_conflict_do_nothing(index_elements=[ws.c.workflow_uuid])
        .returning(ws.c.workflow_uuid)
    )


_GET = sa.select(*_COLUMNS).where(ws.c.workflow_uuid == sa.bindparam("wid"))
_OUTCOME = sa.select(ws.c.status, ws.c.output, ws.c.error).where(
    ws.c.workflow_uuid == sa.bindparam("wid")
)


def _insert_sql(db: Database) -> str:
    names = ", ".join(f.name for f in _CREATED)
    marks = ", ".join("%s" for _ in _CREATED)
    return (
        f"INSERT INTO {db.qualify('workflow_status')} ({names}) VALUES ({marks})"
        " ON CONFLICT (workflow_uuid) DO NOTHING"
    )


def create(db: Database, row: WorkflowRow) -> bool:
    """Create the status row (one statement); False if a row with this ID already exists."""
    params = tuple(row.__dict__.values())[:-1]  # field order: the dataclass's, as in _insert_sql
    return db.execute_count(db.sql("workflows.create", _insert_sql), params) == 1


def insert(conn: sa.Connection, dialect: Dialect, row: WorkflowRow) -> bool:
    """Create the status row on a caller's connection; False if the ID exists."""
    values = {f.name: getattr(row, f.name) for f in _FIELDS}
    return conn.execute(_insert_stmt(dialect), values).first() is not None


def _finish_sql(db: Database) -> str:
    return (
        f"UPDATE {db.qualify('workflow_status')} SET status = %s, output = %s, error = %s, updated_at = %s"
        " WHERE workflow_uuid = %s AND status = 'PENDING' AND executor_id = %s"
    )


def finish(
    db: Database, workflow_id: str, status: str, output: Optional[bytes], error: Optional[bytes], now: int,
    executor_id: str,
) -> bool:
    """Record the outcome of a workflow PENDING on this executor (one statement); False
    if it was not PENDING here (finished, cancelled, or handed to another executor)."""
    params = (status, output, error, now, workflow_id, executor_id)
    return db.execute_count(db.sql("workflows.finish", _finish_sql), params) == 1


def get(conn: sa.Connection, workflow_id: str) -> Optional[WorkflowRow]:
    row = conn.execute(_GET, {"wid": workflow_id}).first()
    return WorkflowRow.from_row(row) if row is not None else None


def get_outcome(conn: sa.Connection, workflow_id: str) -> Optional[tuple[str, Optional[bytes], Optional[bytes]]]:
    row = conn.execute(_OUTCOME, {"wid": workflow_id}).first()
    return (row[0], row[1], row[2]) if row is not None else None


def outcomes_among(
    conn: sa.Connection, workflow_ids: Sequence[str]
) -> dict[str, tuple[str, Optional[bytes], Optional[bytes]]]:
    """(status, output, error) of each of these workflows that exists (``DBOS.wait_first``)."""
    stmt = sa.select(ws.c.workflow_uuid, ws.c.status, ws.c.output, ws.c.error).where(
        ws.c.workflow_uuid.in_(list(workflow_ids))
    )
    return {str(r[0]): (str(r[1]), r[2], r[3]) for r in conn.execute(stmt)}


def begin_attempt(
    conn: sa.Connection, workflow_id: str, executor_id: str, now: int
) -> Optional[int]:
    """Count one more execution attempt of a PENDING workflow, owned by this executor.

    Returns the new attempt count, or None if the workflow is not PENDING.
    """
    stmt = (
        sa.update(ws)
        .where(ws.c.workflow_uuid == workflow_id, status_in("PENDING"))
        .values(
            recovery_attempts=ws.c.recovery_attempts + 1,
            executor_id=executor_id,
            updated_at=now,
        )
        .returning(ws.c.recovery_attempts)
    )
    row = conn.execute(stmt).first()
    return int(row[0]) if row is not None else None


def set_attributes(conn: sa.Connection, workflow_id: str, attributes: Optional[str], now: int) -> bool:
    """Replace a workflow's attributes (JSON text, or NULL); False if it does not exist."""
    stmt = sa.update(ws).where(ws.c.workflow_uuid == workflow_id).values(attributes=attributes, updated_at=now)
    return conn.execute(stmt).rowcount == 1


def set_status(
    conn: sa.Connection,
    workflow_id: str,
    status: str,
    now: int,
    only_if: Sequence[str] = ("PENDING", "ENQUEUED"),
) -> bool:
    stmt = (
        sa.update(ws)
        .where(ws.c.workflow_uuid == workflow_id, status_in(*only_if))
        .values(status=status, updated_at=now)
    )
    return conn.execute(stmt).rowcount == 1


def list_pending(conn: sa.Connection, executor_id: str, app_version: str) -> list[WorkflowRow]:
    """PENDING workflows this executor owns and may run (same app version or unpinned)."""
    stmt = sa.select(*_COLUMNS).where(
        ws.c.executor_id == executor_id,
        status_in("PENDING"),
        sa.or_(ws.c.application_version == app_version, ws.c.application_version.is_(None)),
    ).order_by(ws.c.created_at)
    return [WorkflowRow.from_row(r) for r in conn.execute(stmt)]


def cancel(conn: sa.Connection, dialect: Dialect, workflow_ids: Sequence[str], now: int) -> list[str]:
    """Mark these workflows CANCELLED unless they finished already; return those of them
    that are CANCELLED after (now or before: unknown and otherwise finished ones are not)."""
    if not workflow_ids:
        return []
    among = dialect.among(ws.c.workflow_uuid, workflow_ids)
    conn.execute(
        sa.update(ws).where(among, status_in("PENDING", "ENQUEUED", "DELAYED")).values(status="CANCELLED", updated_at=now)
    )
    return list(conn.execute(sa.select(ws.c.workflow_uuid).where(among, status_in("CANCELLED"))).scalars())


def descendants(
    conn: sa.Connection, dialect: Dialect, workflow_ids: Sequence[str], via: Any = ws.c.parent_workflow_id
) -> list[str]:
    """Every workflow below these through ``via`` (``parent_workflow_id``: children; or
    ``forked_from``: forks), at any depth, not the given ones, level by level: one
    statement a level, served by ``ws_parent`` / ``ws_forked_from``."""
    seen = set(workflow_ids)
    found: list[str] = []
    frontier = list(workflow_ids)
    while frontier:
        stmt = sa.select(ws.c.workflow_uuid).where(dialect.among(via, frontier))
        frontier = [w for w in conn.execute(stmt).scalars() if w not in seen]
        seen.update(frontier)
        found += frontier
    return found


def mark_forked(conn: sa.Connection, workflow_id: str) -> None:
    """The source of a fork: ``was_forked_from`` (DBOS 2.x)."""
    conn.execute(sa.update(ws).where(ws.c.workflow_uuid == workflow_id).values(was_forked_from=True))


def requeue(conn: sa.Connection, workflow_id: str, queue_name: str, now: int, *, reset_attempts: bool) -> Optional[str]:
    """Put a workflow that is not finished successfully back on a queue (resume).

    Its timeout clock restarts at the next dequeue. Returns the status it had,
    or None if unknown. SUCCESS and ERROR rows are left alone.
    """
    row = conn.execute(sa.select(ws.c.status).where(ws.c.workflow_uuid == workflow_id)).first()
    if row is None:
        return None
    if row[0] in ("SUCCESS", "ERROR"):
        return str(row[0])
    values: dict[str, Any] = {
        "status": "ENQUEUED",
        "queue_name": queue_name,
        "executor_id": None,
        "updated_at": now,
        "deadline_ms": None,
        "deduplication_id": None,
        "queue_partition_key": None,
    }
    if reset_attempts:
        values["recovery_attempts"] = 0
    conn.execute(sa.update(ws).where(ws.c.workflow_uuid == workflow_id).values(**values))
    return str(row[0])


def expire_deadlines(conn: sa.Connection, now: int) -> list[str]:
    """Cancel every live workflow whose deadline passed; return their IDs."""
    stmt = (
        sa.update(ws)
        .where(ws.c.deadline_ms.is_not(None), ws.c.deadline_ms <= now, status_in("PENDING", "ENQUEUED"))
        .values(status="CANCELLED", updated_at=now)
        .returning(ws.c.workflow_uuid)
    )
    return [str(r[0]) for r in conn.execute(stmt)]


def cancelled_among(conn: sa.Connection, workflow_ids: list[str]) -> list[str]:
    if not workflow_ids:
        return []
    stmt = sa.select(ws.c.workflow_uuid).where(
        ws.c.workflow_uuid.in_(workflow_ids), status_in("CANCELLED", "RETRIES_EXCEEDED")
    )
    return [str(r[0]) for r in conn.execute(stmt)]


def release_owned(conn: sa.Connection, executor_id: str, internal_queue: str, now: int) -> list[tuple[str, str]]:
    """Give every PENDING workflow of ``executor_id`` back to the fleet; return
    (workflow ID, queue) of each.

    Queued work returns to its queue (its slot freed, its priority and enqueue
    time, so its place in claim order, kept); direct work goes to the internal
    queue, where any executor of its app version claims it. The claim counts the
    attempt, so each release adds exactly one to ``recovery_attempts``. A
    conditional change: rows finished or owned by another executor meanwhile
    are not touched.
    """
    stmt = (
        sa.update(ws)
        .where(ws.c.executor_id == executor_id, status_in("PENDING"))
        .values(
            status="ENQUEUED",
            executor_id=None,
            queue_name=sa.func.coalesce(ws.c.queue_name, internal_queue),
            updated_at=now,
        )
        .returning(ws.c.workflow_uuid, ws.c.queue_name)
    )
    return [(str(r[0]), str(r[1])) for r in conn.execute(stmt)]


def owned_among(conn: sa.Connection, executor_id: str, workflow_ids: list[str]) -> set[str]:
    """Which of these workflows are PENDING on ``executor_id``."""
    if not workflow_ids:
        return set()
    stmt = sa.select(ws.c.workflow_uuid).where(
        ws.c.workflow_uuid.in_(workflow_ids), ws.c.executor_id == executor_id, status_in("PENDING")
    )
    return {str(r[0]) for r in conn.execute(stmt)}


def count_pending(conn: sa.Connection, executor_ids: list[str]) -> int:
    if not executor_ids:
        return 0
    stmt = sa.select(sa.func.count()).select_from(ws).where(ws.c.executor_id.in_(executor_ids), status_in("PENDING"))
    return int(conn.execute(stmt).scalar() or 0)
