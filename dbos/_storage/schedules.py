"""SQL for the ``schedules`` table: one row a cron schedule (decorated or dynamic)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import sqlalchemy as sa

from dbos._storage.dialect import Dialect
from dbos._storage.schema import schedules as t


@dataclass(frozen=True)
class ScheduleRow:
    schedule_name: str
    workflow_name: str
    workflow_class_name: Optional[str]
    schedule: str
    context: Optional[bytes]
    status: str  # ACTIVE | PAUSED
    kind: str  # decorator | dynamic
    queue_name: Optional[str]
    last_fired_at: Optional[int]
    created_at: int
    updated_at: int
    schedule_id: Optional[str] = None  # a UUID (NULL only before migration v11 filled it)
    automatic_backfill: bool = False  # on start, every missed tick runs (else only the latest)
    cron_timezone: Optional[str] = None  # IANA zone of the crontab; None: UTC


def _row(r: Any) -> ScheduleRow:
    m = r._mapping
    values = {c.name: m[c.name] for c in t.columns}
    values["automatic_backfill"] = bool(values["automatic_backfill"])
    return ScheduleRow(**values)


def insert(conn: sa.Connection, dialect: Dialect, row: ScheduleRow) -> bool:
    """Create a schedule; False when the name is taken."""
    stmt = dialect.insert(t).values(**vars(row)).on_conflict_do_nothing(index_elements=[t.c.schedule_name])
    return conn.execute(stmt.returning(t.c.schedule_name)).first() is not None


def upsert(conn: sa.Connection, dialect: Dialect, row: ScheduleRow, *, keep_status: bool) -> None:
    """Create or redefine a schedule (``apply_schedules``, and each launch for the decorated
    ones). ``keep_status``: a PAUSED schedule stays paused. Its last fired tick and its
    schedule_id are kept."""
    changes = {
        "workflow_name": row.workflow_name, "workflow_class_name": row.workflow_class_name,
        "schedule": row.schedule, "context": row.context, "kind": row.kind,
        "queue_name": row.queue_name, "updated_at": row.updated_at,
        "automatic_backfill": row.automatic_backfill, "cron_timezone": row.cron_timezone,
    }
    if not keep_status:
        changes["status"] = row.status
    stmt = dialect.insert(t).values(**vars(row))
    conn.execute(stmt.on_conflict_do_update(index_elements=[t.c.schedule_name], set_=changes))


def get(conn: sa.Connection, name: str) -> Optional[ScheduleRow]:
    r = conn.execute(sa.select(t).where(t.c.schedule_name == name)).first()
    return _row(r) if r is not None else None


def list_all(
    conn: sa.Connection,
    *,
    statuses: Optional[Sequence[str]] = None,
    workflow_names: Optional[Sequence[str]] = None,
    name_prefixes: Optional[Sequence[str]] = None,
) -> list[ScheduleRow]:
    q = sa.select(t).order_by(t.c.schedule_name)
    if statuses is not None:
        q = q.where(t.c.status.in_(list(statuses)))
    if workflow_names is not None:
        q = q.where(t.c.workflow_name.in_(list(workflow_names)))
    if name_prefixes is not None:
        q = q.where(sa.or_(sa.false(), *[t.c.schedule_name.startswith(p, autoescape=True) for p in name_prefixes]))
    return [_row(r) for r in conn.execute(q)]


def set_status(conn: sa.Connection, name: str, status: str, now: int) -> bool:
    stmt = t.update().where(t.c.schedule_name == name).values(status=status, updated_at=now)
    return conn.execute(stmt.returning(t.c.schedule_name)).first() is not None


def delete(conn: sa.Connection, names: Sequence[str]) -> int:
    return int(conn.execute(t.delete().where(t.c.schedule_name.in_(list(names)))).rowcount)


def mark_fired(conn: sa.Connection, name: str, tick_ms: int) -> None:
    """Move ``last_fired_at`` forward to ``tick_ms`` (never back: executors race here)."""
    conn.execute(
        t.update()
        .where(t.c.schedule_name == name)
        .where(sa.or_(t.c.last_fired_at.is_(None), t.c.last_fired_at < tick_ms))
        .values(last_fired_at=tick_ms)
    )
