"""SQL for the ``queues`` table: queues stored in the database (``DBOS.register_queue``).

A change to a queue's limits takes the queue's claim lock (PostgreSQL; SQLite's
BEGIN IMMEDIATE serializes every writer), so each claim runs wholly before or
wholly after it: a claim that commits after the change has read the new limits.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Optional

import sqlalchemy as sa

from dbos._storage.dialect import Dialect
from dbos._storage.queues import lock_queue
from dbos._storage.schema import queues as t


@dataclass(frozen=True)
class QueueRow:
    name: str
    concurrency: Optional[int] = None
    worker_concurrency: Optional[int] = None
    rate_limit_max: Optional[int] = None
    rate_limit_period_sec: Optional[float] = None
    priority_enabled: bool = False
    partition_queue: bool = False
    partition_concurrency: Optional[int] = None
    partition_worker_concurrency: Optional[int] = None
    partition_rate_limit_max: Optional[int] = None
    partition_rate_limit_period_sec: Optional[float] = None
    polling_interval_sec: float = 1.0
    created_at: int = 0
    updated_at: int = 0


SETTINGS = tuple(f.name for f in fields(QueueRow) if f.name not in ("name", "created_at", "updated_at"))


def _row(r: Any) -> QueueRow:
    m = r._mapping
    return QueueRow(**{c.name: m[c.name] for c in t.columns})


def insert(conn: sa.Connection, dialect: Dialect, row: QueueRow) -> bool:
    """Create a queue; False when the name is taken."""
    stmt = dialect.insert(t).values(**vars(row)).on_conflict_do_nothing(index_elements=[t.c.name])
    return conn.execute(stmt.returning(t.c.name)).first() is not None


def get(conn: sa.Connection, name: str) -> Optional[QueueRow]:
    r = conn.execute(sa.select(t).where(t.c.name == name)).first()
    return _row(r) if r is not None else None


def list_all(conn: sa.Connection) -> list[QueueRow]:
    return [_row(r) for r in conn.execute(sa.select(t).order_by(t.c.name))]


def update(
    conn: sa.Connection, dialect: Dialect, name: str, changes: dict[str, Any], now: int,
    check: Any = None,
) -> Optional[QueueRow]:
    """Change some settings of a queue, ordered with its claims (see the module's note);
    return the queue as it is now, or None if there is no such queue. ``check``
    (the new row) raises to refuse the change, rolling it back."""
    unknown = set(changes) - set(SETTINGS)
    if unknown:
        raise ValueError(f"not queue settings: {sorted(unknown)}")
    lock_queue(conn, dialect, name)
    current = get(conn, name)
    if current is None:
        return None
    new = replace(current, **changes, updated_at=now)
    if check is not None:
        check(new)
    conn.execute(t.update().where(t.c.name == name).values(**changes, updated_at=now))
    return new


def delete(conn: sa.Connection, dialect: Dialect, name: str) -> bool:
    lock_queue(conn, dialect, name)
    return bool(conn.execute(t.delete().where(t.c.name == name)).rowcount)
