"""SQL for the ``executors`` table: one row an executor ID, live, draining, stopped or dead.

Each start of a process under an ID bumps the row's ``incarnation``. Every
write an executor makes to its own row names its incarnation, and none
revives a row declared DEAD: a process that finds its heartbeat refused has
been declared dead (its work handed over) and must re-register as a new
incarnation before it goes on (docs/fleet.md).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Optional

import sqlalchemy as sa

from dbos._storage.dialect import Dialect
from dbos._storage.schema import executors as ex

LIVE_STATES = ("RUNNING", "DRAINING")


@dataclass(frozen=True)
class ExecutorRow:
    executor_id: str
    app_version: str
    hostname: str
    pid: int
    started_at: int
    heartbeat_at: int
    state: str
    incarnation: int = 0
    queues: Optional[str] = None  # JSON list; None: every queue
    running: int = 0
    queue_specs: Optional[str] = None  # JSON list of {name, concurrency, worker_concurrency}


_ROW = [ex.c[name] for name in ExecutorRow.__dataclass_fields__]


@functools.cache
def _register_stmt(dialect: Dialect) -> Any:
    stmt = dialect.insert(ex)
    return stmt.on_conflict_do_update(
        index_elements=[ex.c.executor_id],
        set_={
            "app_version": stmt.excluded.app_version,
            "hostname": stmt.excluded.hostname,
            "pid": stmt.excluded.pid,
            "started_at": stmt.excluded.started_at,
            "heartbeat_at": stmt.excluded.heartbeat_at,
            "state": stmt.excluded.state,
            "queues": stmt.excluded.queues,
            "queue_specs": stmt.excluded.queue_specs,
            "running": 0,
            "incarnation": ex.c.incarnation + 1,
        },
    ).returning(ex.c.incarnation)


def register(conn: sa.Connection, dialect: Dialect, row: ExecutorRow) -> int:
    """Start a new incarnation of ``row.executor_id`` (RUNNING); return its number.

    On PostgreSQL this waits for a hand-over holding the row (``lock_dead``), so
    a hand-over decided against the old incarnation commits before the new one
    reads the work it owns.
    """
    values = {**row.__dict__, "incarnation": 1, "running": 0}
    return int(conn.execute(_register_stmt(dialect), values).scalar_one())


def get(conn: sa.Connection, executor_id: str) -> Optional[ExecutorRow]:
    r = conn.execute(sa.select(*_ROW).where(ex.c.executor_id == executor_id)).first()
    return ExecutorRow(*r) if r is not None else None


def heartbeat(
    conn: sa.Connection, executor_id: str, incarnation: int, state: str, running: int, now: int
) -> bool:
    """Refresh this incarnation's row; False if it was declared DEAD or superseded."""
    stmt = (
        sa.update(ex)
        .where(ex.c.executor_id == executor_id, ex.c.incarnation == incarnation, ex.c.state.in_(LIVE_STATES))
        .values(heartbeat_at=now, state=state, running=running)
    )
    return conn.execute(stmt).rowcount == 1


def mark_stopped(conn: sa.Connection, executor_id: str, incarnation: int, now: int) -> None:
    conn.execute(
        sa.update(ex)
        .where(ex.c.executor_id == executor_id, ex.c.incarnation == incarnation)
        .values(heartbeat_at=now, state="STOPPED", running=0)
    )


def list_all(conn: sa.Connection, since: Optional[int] = None) -> list[ExecutorRow]:
    """Every row; with ``since``, stopped and dead rows only if they heartbeat after it."""
    stmt = sa.select(*_ROW).order_by(ex.c.executor_id)
    if since is not None:
        stmt = stmt.where(sa.or_(ex.c.state.in_(LIVE_STATES), ex.c.heartbeat_at >= since))
    return [ExecutorRow(*r) for r in conn.execute(stmt)]


def mark_dead(conn: sa.Connection, stale_before: int) -> list[ExecutorRow]:
    """Declare DEAD every live row whose heartbeat is older than ``stale_before``."""
    stmt = (
        sa.update(ex)
        .where(ex.c.state.in_(LIVE_STATES), ex.c.heartbeat_at < stale_before)
        .values(state="DEAD")
        .returning(*_ROW)
    )
    return [ExecutorRow(*r) for r in conn.execute(stmt)]


def list_dead(conn: sa.Connection) -> list[ExecutorRow]:
    return [ExecutorRow(*r) for r in conn.execute(sa.select(*_ROW).where(ex.c.state == "DEAD"))]


def lock_dead(conn: sa.Connection, dialect: Dialect, executor_id: str, incarnation: int) -> bool:
    """In a hand-over's transaction: hold the row if it is still this DEAD incarnation.

    Held until the transaction ends, so a new incarnation cannot register (and
    read the work it owns) in between. SQLite's write lock serializes it anyway.
    """
    stmt = sa.select(ex.c.executor_id).where(
        ex.c.executor_id == executor_id, ex.c.incarnation == incarnation, ex.c.state == "DEAD"
    )
    if not dialect.is_sqlite:
        stmt = stmt.with_for_update()
    return conn.execute(stmt).first() is not None


def dead_with_work(conn: sa.Connection) -> list[ExecutorRow]:
    """DEAD executors that still own PENDING workflows (what a hand-over has left to do)."""
    from dbos._storage.schema import status_in
    from dbos._storage.schema import workflow_status as ws

    owns = sa.select(ws.c.workflow_uuid).where(ws.c.executor_id == ex.c.executor_id, status_in("PENDING"))
    stmt = sa.select(*_ROW).where(ex.c.state == "DEAD", owns.exists())
    return [ExecutorRow(*r) for r in conn.execute(stmt)]


def stranded_pending_by_version(conn: sa.Connection, stale_before: int) -> dict[str, tuple[int, int]]:
    """Per version: (PENDING workflows owned by executors that are not live, the oldest
    one's ``updated_at``): work waiting for a hand-over."""
    from dbos._storage.schema import status_in
    from dbos._storage.schema import workflow_status as ws

    dead = sa.or_(ex.c.state.not_in(LIVE_STATES), ex.c.heartbeat_at < stale_before)
    stmt = (
        sa.select(ws.c.application_version, sa.func.count(), sa.func.min(ws.c.updated_at))
        .select_from(ws.join(ex, ws.c.executor_id == ex.c.executor_id))
        .where(status_in("PENDING"), dead, ws.c.application_version.is_not(None))
        .group_by(ws.c.application_version)
    )
    return {str(r[0]): (int(r[1]), int(r[2] or 0)) for r in conn.execute(stmt)}
