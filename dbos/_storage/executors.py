"""SQL for the ``executors`` table: one row a live or stopped executor process."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dbos._storage.dialect import Dialect
from dbos._storage.schema import executors as ex


@dataclass(frozen=True)
class ExecutorRow:
    executor_id: str
    app_version: str
    hostname: str
    pid: int
    started_at: int
    heartbeat_at: int
    state: str


@functools.cache
def _upsert_stmt(dialect: Dialect) -> Any:
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
        },
    )


def upsert(conn: sa.Connection, dialect: Dialect, row: ExecutorRow) -> None:
    conn.execute(_upsert_stmt(dialect), row.__dict__)


def heartbeat(conn: sa.Connection, executor_id: str, now: int) -> None:
    conn.execute(
        sa.update(ex).where(ex.c.executor_id == executor_id).values(heartbeat_at=now, state="RUNNING")
    )


def mark_stopped(conn: sa.Connection, executor_id: str, now: int) -> None:
    conn.execute(
        sa.update(ex).where(ex.c.executor_id == executor_id).values(heartbeat_at=now, state="STOPPED")
    )


def list_all(conn: sa.Connection) -> list[ExecutorRow]:
    return [ExecutorRow(*r) for r in conn.execute(sa.select(*ex.c).order_by(ex.c.executor_id))]
