"""SQL for deleting finished workflows and everything recorded for them.

Only rows whose status is terminal are ever deleted, and the status condition is
in the DELETE itself: a workflow resumed (made ENQUEUED again) between a caller's
read and the delete is re-checked by the database and stays. On PostgreSQL the
batch skips rows another transaction holds (SKIP LOCKED), so garbage collection
never waits on a claim, a checkpoint or a cancel, and they never wait on it for
longer than one bounded batch holds the rows it deletes (finished rows, which
no claim or checkpoint touches). Each function is one statement group that the
caller runs as one transaction.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import sqlalchemy as sa

from dbos._storage import schema as s
from dbos._storage.dialect import Dialect
from dbos._storage.schema import TERMINAL, status_in
from dbos._storage.schema import workflow_status as ws

_DEPENDENTS = (
    (s.operation_outputs, "workflow_uuid"),
    (s.workflow_events, "workflow_uuid"),
    (s.notifications, "destination_uuid"),
    (s.recv_waits, "workflow_uuid"),
)


def finished_among(conn: sa.Connection, workflow_ids: Sequence[str]) -> list[str]:
    q = sa.select(ws.c.workflow_uuid).where(ws.c.workflow_uuid.in_(list(workflow_ids)), status_in(*TERMINAL))
    return list(conn.execute(q).scalars())


def delete_finished(conn: sa.Connection, dialect: Dialect, workflow_ids: Sequence[str]) -> list[str]:
    """Delete those of ``workflow_ids`` that are finished, with their steps, events,
    messages and recv waits; return the IDs deleted."""
    if not workflow_ids:
        return []
    pick = dialect.lock_for_claim(
        sa.select(ws.c.workflow_uuid).where(dialect.among(ws.c.workflow_uuid, workflow_ids), status_in(*TERMINAL))
    )
    return _delete(conn, dialect, pick)


def collect_batch(conn: sa.Connection, dialect: Dialect, cutoff_ms: int, limit: int) -> list[str]:
    """Delete up to ``limit`` finished workflows created before ``cutoff_ms`` (and what
    they recorded); return their IDs. Served by ``ws_status_created`` (finished rows only)."""
    pick = dialect.lock_for_claim(
        sa.select(ws.c.workflow_uuid).where(status_in(*TERMINAL), ws.c.created_at < cutoff_ms).limit(limit)
    )
    return _delete(conn, dialect, pick)


def _delete(conn: sa.Connection, dialect: Dialect, pick: sa.Select[Any]) -> list[str]:
    ids: list[str] = list(conn.execute(pick).scalars())
    if not ids:
        return []
    # The status condition again: the row lock (PostgreSQL) or the write lock (SQLite)
    # makes it the truth at the time of the delete.
    deleted = list(conn.execute(
        ws.delete().where(dialect.among(ws.c.workflow_uuid, ids), status_in(*TERMINAL)).returning(ws.c.workflow_uuid)
    ).scalars())
    if deleted:
        for table, column in _DEPENDENTS:
            conn.execute(table.delete().where(dialect.among(table.c[column], deleted)))
    return deleted


def delete_transaction_outputs(conn: sa.Connection, dialect: Dialect, workflow_ids: Sequence[str]) -> int:
    """In the application database: the transaction records of deleted workflows (none
    where the table is absent: a client's system database without an application's)."""
    if not workflow_ids:
        return 0
    schema = (conn.get_execution_options().get("schema_translate_map") or {}).get(None)
    if not sa.inspect(conn).has_table(s.transaction_outputs.name, schema=schema):
        return 0
    to = s.transaction_outputs
    return int(conn.execute(to.delete().where(dialect.among(to.c.workflow_uuid, workflow_ids))).rowcount)


def cutoff_for_rows(conn: sa.Connection, rows_threshold: int) -> Optional[int]:
    """The ``created_at`` of the ``rows_threshold``-th newest workflow (any status): rows
    older than it are past the threshold. None when there are not that many."""
    if rows_threshold <= 0:
        return None
    q = sa.select(ws.c.created_at).order_by(ws.c.created_at.desc()).offset(rows_threshold - 1).limit(1)
    return conn.execute(q).scalar()


def count_finished_before(conn: sa.Connection, cutoff_ms: int) -> int:
    q = sa.select(sa.func.count()).select_from(ws).where(status_in(*TERMINAL), ws.c.created_at < cutoff_ms)
    return int(conn.execute(q).scalar() or 0)
