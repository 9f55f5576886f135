"""SQL for ``notifications`` (messages to a workflow) and ``workflow_events``."""

from __future__ import annotations

import functools
from typing import Any, Optional

import sqlalchemy as sa

from dbos._storage import operations
from dbos._storage.database import Database
from dbos._storage.dialect import Dialect
from dbos._storage.operations import StepRow
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


# -- a message or event and the step that records it, written together ------------
#
# On PostgreSQL one autocommit statement: a data-modifying CTE runs exactly once
# whether or not the outer query reads it, and the whole statement commits or
# fails as one. SQLite has no data-modifying CTEs: a transaction there.


def _send_recorded_sql(db: Database) -> str:
    return (
        f"WITH d AS (SELECT 1 FROM {db.qualify('workflow_status')} WHERE workflow_uuid = %s),"
        f" m AS (INSERT INTO {db.qualify('notifications')}"
        " (message_id, destination_uuid, topic, message, created_at)"
        " SELECT %s, %s, %s, %s, %s FROM d ON CONFLICT (message_id) DO NOTHING),"
        f" o AS (INSERT INTO {db.qualify('operation_outputs')}"
        " (workflow_uuid, function_id, function_name, started_at, completed_at)"
        " SELECT %s, %s, 'DBOS.send', %s, %s FROM d"
        " ON CONFLICT (workflow_uuid, function_id) DO NOTHING)"
        " SELECT count(*) FROM d"
    )


def send_recorded(
    db: Database, workflow_id: str, function_id: int, message_id: str,
    destination: str, topic: str, message: bytes, now: int,
) -> bool:
    """Store a message and record the sending step together (on PostgreSQL one
    statement, on SQLite one transaction). False (nothing written) if the
    destination workflow does not exist."""
    if db.dialect.is_sqlite:

        def in_tx(conn: sa.Connection) -> bool:
            stored = send(conn, db.dialect, message_id, destination, topic, message, now)
            if not stored and not workflow_exists(conn, destination):
                return False
            operations.insert(conn, db.dialect, workflow_id, StepRow(function_id, "DBOS.send", None, None, None, now, now))
            return True

        return db.run(in_tx, tx=True)
    params = (destination, message_id, destination, topic, message, now, workflow_id, function_id, now, now)
    row = db.execute_raw(db.sql("messages.send_recorded", _send_recorded_sql), params)
    return row is not None and row[0] > 0


def _consume_recorded_sql(db: Database) -> str:
    n_ = db.qualify("notifications")
    return (
        f"WITH m AS (DELETE FROM {n_} WHERE seq = (SELECT seq FROM {n_}"
        " WHERE destination_uuid = %s AND topic = %s ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING message),"
        f" o AS (INSERT INTO {db.qualify('operation_outputs')}"
        " (workflow_uuid, function_id, function_name, output, started_at, completed_at)"
        " SELECT %s, %s, 'DBOS.recv', message, %s, %s FROM m)"
        " SELECT message FROM m"
    )


class StepAlreadyRecorded(Exception):
    """The consuming step was recorded by another execution; nothing was consumed."""


def consume_recorded(db: Database, workflow_id: str, function_id: int, topic: str, now: int) -> Optional[bytes]:
    """Delete the oldest message and record it as the recv step, together (on
    PostgreSQL one statement, on SQLite one transaction). None if there is no
    message. If the step is already recorded nothing is consumed (the message
    stays) and StepAlreadyRecorded is raised."""
    if db.dialect.is_sqlite:

        def in_tx(conn: sa.Connection) -> Optional[bytes]:
            payload = consume(conn, db.dialect, workflow_id, topic)
            if payload is not None:
                step = StepRow(function_id, "DBOS.recv", payload, None, None, now, now)
                if not operations.insert(conn, db.dialect, workflow_id, step):
                    raise StepAlreadyRecorded  # rolls the transaction back
            return payload

        return db.run(in_tx, tx=True)
    params = (workflow_id, topic, workflow_id, function_id, now, now)
    try:
        row = db.execute_raw(db.sql("messages.consume_recorded", _consume_recorded_sql), params)
    except Exception as e:
        if Dialect.is_unique_violation(e):
            raise StepAlreadyRecorded() from e
        raise
    return bytes(row[0]) if row is not None else None


def _set_event_recorded_sql(db: Database) -> str:
    return (
        f"WITH e AS (INSERT INTO {db.qualify('workflow_events')} (workflow_uuid, key, value, updated_at)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (workflow_uuid, key)"
        " DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at)"
        f" INSERT INTO {db.qualify('operation_outputs')}"
        " (workflow_uuid, function_id, function_name, started_at, completed_at)"
        " VALUES (%s, %s, 'DBOS.setEvent', %s, %s) ON CONFLICT (workflow_uuid, function_id) DO NOTHING"
        " RETURNING function_id"
    )


def set_event_recorded(db: Database, workflow_id: str, function_id: int, key: str, value: bytes, now: int) -> None:
    """Upsert an event and record the step together (on PostgreSQL one statement,
    on SQLite one transaction)."""
    if db.dialect.is_sqlite:

        def in_tx(conn: sa.Connection) -> None:
            set_event(conn, db.dialect, workflow_id, key, value, now)
            operations.insert(conn, db.dialect, workflow_id, StepRow(function_id, "DBOS.setEvent", None, None, None, now, now))

        db.run(in_tx, tx=True)
        return
    params = (workflow_id, key, value, now, workflow_id, function_id, now, now)
    db.execute_raw(db.sql("messages.set_event_recorded", _set_event_recorded_sql), params)
