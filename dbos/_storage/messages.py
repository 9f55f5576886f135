"""SQL for ``notifications`` (messages to a workflow) and ``workflow_events``."""

from __future__ import annotations

import functools
from typing import Any, Optional

import sqlalchemy as sa

from dbos._storage.dialect import Dialect
from dbos._storage.schema import notifications as n
from dbos._storage.schema import workflow_events as ev
from dbos._storage.schema import workflow_status as ws


@functools.cache
def _send_stmt(dialect: Dialect) -> Any:
    exists = sa.exists().where(ws.c.workflow_uuid == sa.bindparam("dest"))
    source = sa.select(
        sa.bindparam("mid", type_=sa.Text),
        sa.bindparam("dest", type_=sa.Text),
        sa.bindparam("topic", type_=sa.Text),
        sa.bindparam("msg", type_=sa.LargeBinary),
        sa.bindparam("now", type_=sa.BigInteger),
    ).where(exists)
    return (
        dialect.insert(n)
        .from_select(["message_id", "destination_uuid", "topic", "message", "created_at"], source)
        .on_conflict_do_nothing(index_elements=[n.c.message_id])
        .returning(n.c.seq)
    )


def send(
    conn: sa.Connection, dialect: Dialect, message_id: str, destination: str, topic: str, message: bytes, now: int
) -> bool:
    """Store a message if its destination workflow exists; False if it does not
    exist or this message_id was already stored (a replayed send)."""
    params = {"mid": message_id, "dest": destination, "topic": topic, "msg": message, "now": now}
    return conn.execute(_send_stmt(dialect), params).first() is not None


@functools.cache
def _consume_stmt(dialect: Dialect) -> Any:
    oldest = dialect.lock_for_claim(
        sa.select(n.c.seq)
        .where(n.c.destination_uuid == sa.bindparam("dest"), n.c.topic == sa.bindparam("topic"))
        .order_by(n.c.seq)
        .limit(1)
    ).scalar_subquery()
    return sa.delete(n).where(n.c.seq == oldest).returning(n.c.message)


def consume(conn: sa.Connection, dialect: Dialect, destination: str, topic: str) -> Optional[bytes]:
    """Delete and return the oldest message for (destination, topic); None if there is none."""
    row = conn.execute(_consume_stmt(dialect), {"dest": destination, "topic": topic}).first()
    return bytes(row[0]) if row is not None else None


@functools.cache
def _set_event_stmt(dialect: Dialect) -> Any:
    stmt = dialect.insert(ev)
    return stmt.on_conflict_do_update(
        index_elements=[ev.c.workflow_uuid, ev.c.key],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )


def set_event(conn: sa.Connection, dialect: Dialect, workflow_id: str, key: str, value: bytes, now: int) -> None:
    conn.execute(
        _set_event_stmt(dialect), {"workflow_uuid": workflow_id, "key": key, "value": value, "updated_at": now}
    )


_GET_EVENT = sa.select(ev.c.value).where(
    ev.c.workflow_uuid == sa.bindparam("wid"), ev.c.key == sa.bindparam("key")
)


def get_event(conn: sa.Connection, workflow_id: str, key: str) -> Optional[bytes]:
    row = conn.execute(_GET_EVENT, {"wid": workflow_id, "key": key}).first()
    return bytes(row[0]) if row is not None else None


def workflow_exists(conn: sa.Connection, workflow_id: str) -> bool:
    return conn.execute(sa.select(ws.c.workflow_uuid).where(ws.c.workflow_uuid == workflow_id)).first() is not None
