"""SQL for ``notifications`` (messages to a workflow) and ``workflow_events``."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import sqlalchemy as sa

from dbos._storage import operations, workflows
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


def get_all_events(conn: sa.Connection, workflow_id: str) -> dict[str, bytes]:
    """Every event a workflow has set: key -> latest value."""
    rows = conn.execute(sa.select(ev.c.key, ev.c.value).where(ev.c.workflow_uuid == workflow_id).order_by(ev.c.key))
    return {str(r[0]): bytes(r[1]) for r in rows}


def workflow_exists(conn: sa.Connection, workflow_id: str) -> bool:
    return conn.execute(sa.select(ws.c.workflow_uuid).where(ws.c.workflow_uuid == workflow_id)).first() is not None


def send_recorded(
    conn: sa.Connection, dialect: Dialect, sender: Optional[tuple[str, int]], message_id: str,
    destination: str, topic: str, message: bytes, now: int, *, forks: bool,
) -> Optional[list[str]]:
    """Store a message for ``destination`` and (``forks``) for every workflow forked from
    it, in the caller's transaction: the copy for fork F has the ID ``<message_id>::F``. ``sender``:
    (workflow_id, function_id) of a send from a workflow, whose step is recorded here too
    (already recorded: nothing is sent again). None if ``destination`` does not exist;
    else the workflows a copy went to (none for a replayed send)."""
    if not workflow_exists(conn, destination):
        return None
    if sender is not None:
        step = StepRow(sender[1], "DBOS.send", None, None, None, now, now)
        if not operations.insert(conn, dialect, sender[0], step):
            return []
    forked = workflows.descendants(conn, dialect, [destination], via=ws.c.forked_from) if forks else []
    targets = [destination, *sorted(forked)]
    for target in targets:
        mid = message_id if target == destination else f"{message_id}::{target}"
        send(conn, dialect, mid, target, topic, message, now)
    return targets


# -- a message or event and the step that records it, written together ------------
#
# On PostgreSQL one autocommit statement: a data-modifying CTE runs exactly once
# whether or not the outer query reads it, and the whole statement commits or
# fails as one. SQLite has no data-modifying CTEs: a transaction there.
#
# Hand-off (PostgreSQL): a recv that waits first registers its step in
# ``recv_waits`` (in the statement that records its deadline). A send to that
# workflow and topic, when no older message is queued for it, records the
# message as that recv step's output instead of queueing it: the receiver is
# then done without a database round trip of its own once it learns the
# message from the wakeup (or it finds the recorded step when it next looks).
# Races resolve on the step's primary key: whoever records the recv step
# first wins, and a send that loses queues its message as usual.


class Sent(NamedTuple):
    exists: bool  # the destination workflow exists (else nothing was written)
    handed_to: Optional[int]  # the waiting recv step the message was recorded as, if any


def _send_sql(db: Database, recorded: bool) -> str:
    """Hand off or queue a message. ``recorded``: a send from a workflow, which also
    records its step and delivers only if this execution recorded it. A send from
    outside a workflow only queues: its message ID is what makes a retried
    statement (after a lost connection) store it once, and a hand-off leaves no
    message row for that ID to find."""
    oo_, n_ = db.qualify("operation_outputs"), db.qualify("notifications")
    exists = f"WITH d AS (SELECT 1 FROM {db.qualify('workflow_status')} WHERE workflow_uuid = %(dest)s),"

    def queue(source: str) -> str:
        return (
            f" m AS (INSERT INTO {n_} (message_id, destination_uuid, topic, message, created_at)"
            f" SELECT %(mid)s, %(dest)s, %(topic)s, %(msg)s, %(now)s FROM {source}"
            " ON CONFLICT (message_id) DO NOTHING)"
        )

    if not recorded:
        return exists + queue("d") + " SELECT (SELECT count(*) FROM d), NULL::integer"
    return (
        exists
        + f" o AS (INSERT INTO {oo_} (workflow_uuid, function_id, function_name, started_at, completed_at)"
        " SELECT %(wid)s, %(fid)s, 'DBOS.send', %(now)s, %(now)s FROM d"
        " ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING 1),"
        f" w AS (DELETE FROM {db.qualify('recv_waits')} WHERE workflow_uuid = %(dest)s AND topic = %(topic)s"
        " AND EXISTS (SELECT 1 FROM o)"
        f" AND NOT EXISTS (SELECT 1 FROM {n_} WHERE destination_uuid = %(dest)s AND topic = %(topic)s)"
        " RETURNING function_id),"
        f" h AS (INSERT INTO {oo_} (workflow_uuid, function_id, function_name, output, started_at, completed_at)"
        " SELECT %(dest)s, function_id, 'DBOS.recv', %(msg)s, %(now)s, %(now)s FROM w"
        " ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING function_id),"
        + queue("o WHERE NOT EXISTS (SELECT 1 FROM h)")
        + " SELECT (SELECT count(*) FROM d), (SELECT function_id FROM h)"
    )


def send_message(
    db: Database, sender: Optional[tuple[str, int]], message_id: str,
    destination: str, topic: str, message: bytes, now: int,
) -> Sent:
    """Deliver a message: handed to the destination's waiting recv, or queued.

    ``sender`` is (workflow_id, function_id) for a send from a workflow: its step
    is recorded in the same statement (transaction on SQLite), and a replayed
    send delivers nothing twice. Only such a send can hand off, and only on
    PostgreSQL; the others queue. Nothing is written if the destination does
    not exist.
    """
    if db.dialect.is_sqlite:

        def in_tx(conn: sa.Connection) -> bool:
            if not workflow_exists(conn, destination):
                return False
            if sender is not None:
                step = StepRow(sender[1], "DBOS.send", None, None, None, now, now)
                if not operations.insert(conn, db.dialect, sender[0], step):
                    return True  # another execution recorded this send and delivered it
            send(conn, db.dialect, message_id, destination, topic, message, now)
            return True

        return Sent(db.run(in_tx, tx=True), None)
    recorded = sender is not None
    params: dict[str, Any] = {"dest": destination, "topic": topic, "msg": message, "mid": message_id, "now": now}
    if sender is not None:
        params.update(wid=sender[0], fid=sender[1])
    sql = db.sql(f"messages.send.{int(recorded)}", lambda d: _send_sql(d, recorded))
    row = db.execute_raw(sql, params)
    assert row is not None
    return Sent(row[0] > 0, row[1])


def _recv_deadline_sql(db: Database) -> str:
    return (
        f"WITH w AS (INSERT INTO {db.qualify('recv_waits')} (workflow_uuid, topic, function_id)"
        " VALUES (%(wid)s, %(topic)s, %(rfid)s) ON CONFLICT (workflow_uuid, topic)"
        " DO UPDATE SET function_id = EXCLUDED.function_id)"
        f" INSERT INTO {db.qualify('operation_outputs')}"
        " (workflow_uuid, function_id, function_name, output, started_at, completed_at)"
        " SELECT %(wid)s, %(dfid)s, 'DBOS.sleep', %(end)s, %(now)s, %(now)s WHERE %(record)s"
        " ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING function_id"
    )


def register_recv(
    db: Database, workflow_id: str, topic: str, recv_fid: int, deadline: Optional[tuple[int, bytes]], now: int,
) -> bool:
    """PostgreSQL: register recv step ``recv_fid`` as waiting on ``topic`` and, given
    ``deadline`` = (function_id, output), record its deadline step in the same
    statement. False if the deadline step was already recorded (by another
    execution); the wait is registered either way."""
    dfid, end = deadline if deadline is not None else (0, b"")
    params = {
        "wid": workflow_id, "topic": topic, "rfid": recv_fid, "dfid": dfid, "end": end,
        "now": now, "record": deadline is not None,
    }
    row = db.execute_raw(db.sql("messages.register_recv", _recv_deadline_sql), params)
    return row is not None


def _consume_recorded_sql(db: Database) -> str:
    n_, oo_ = db.qualify("notifications"), db.qualify("operation_outputs")
    return (
        f"WITH r AS (SELECT output FROM {oo_} WHERE workflow_uuid = %(wid)s AND function_id = %(fid)s),"
        f" m AS (DELETE FROM {n_} WHERE seq = (SELECT seq FROM {n_}"
        " WHERE destination_uuid = %(wid)s AND topic = %(topic)s ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " AND NOT EXISTS (SELECT 1 FROM r) RETURNING message),"
        f" o AS (INSERT INTO {oo_} (workflow_uuid, function_id, function_name, output, started_at, completed_at)"
        " SELECT %(wid)s, %(fid)s, 'DBOS.recv', message, %(started)s, %(now)s FROM m),"
        f" x AS (DELETE FROM {db.qualify('recv_waits')} WHERE workflow_uuid = %(wid)s AND topic = %(topic)s"
        " AND function_id = %(fid)s AND EXISTS (SELECT 1 FROM m))"
        " SELECT false, message FROM m UNION ALL SELECT true, output FROM r"
    )


class StepAlreadyRecorded(Exception):
    """The consuming step was recorded by another execution (or a message was
    handed to it); nothing was consumed. ``output`` is the recorded output when
    the statement read it, else None (read it)."""

    def __init__(self, output: Optional[bytes] = None) -> None:
        super().__init__("the recv step is already recorded")
        self.output = output


def consume_recorded(
    db: Database, workflow_id: str, function_id: int, topic: str, started: int, now: int
) -> Optional[bytes]:
    """Delete the oldest message and record it as the recv step (started at ``started``,
    the recv's call, completed ``now``), together (on
    PostgreSQL one statement, on SQLite one transaction). None if there is no
    message. If the step is already recorded (by another execution, or by a
    sender that handed it a message) nothing is consumed (the message stays)
    and StepAlreadyRecorded is raised."""
    if db.dialect.is_sqlite:

        def in_tx(conn: sa.Connection) -> Optional[bytes]:
            payload = consume(conn, db.dialect, workflow_id, topic)
            if payload is not None:
                step = StepRow(function_id, "DBOS.recv", payload, None, None, started, now)
                if not operations.insert(conn, db.dialect, workflow_id, step):
                    raise StepAlreadyRecorded  # rolls the transaction back
            return payload

        return db.run(in_tx, tx=True)
    params = {"wid": workflow_id, "fid": function_id, "topic": topic, "started": started, "now": now}
    try:
        row = db.execute_raw(db.sql("messages.consume_recorded", _consume_recorded_sql), params)
    except Exception as e:
        if Dialect.is_unique_violation(e):
            raise StepAlreadyRecorded() from e
        raise
    if row is None:
        return None
    if row[0]:
        raise StepAlreadyRecorded(bytes(row[1]) if row[1] is not None else None)
    return bytes(row[1])


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
