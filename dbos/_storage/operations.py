"""SQL for the ``operation_outputs`` table: one row a recorded step."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import sqlalchemy as sa

from dbos._storage.database import Database
from dbos._storage.dialect import Dialect
from dbos._storage.schema import operation_outputs as oo


# Not frozen: built on every call, and a frozen dataclass's __init__ costs ~4x more. Never mutated.
@dataclass
class StepRow:
    function_id: int
    function_name: str
    output: Optional[bytes]
    error: Optional[bytes]
    child_workflow_id: Optional[str]
    started_at: Optional[int] = None
    completed_at: Optional[int] = None
    attempts: Optional[int] = None  # None: once


_COLS = (
    oo.c.function_id,
    oo.c.function_name,
    oo.c.output,
    oo.c.error,
    oo.c.child_workflow_id,
    oo.c.started_at,
    oo.c.completed_at,
    oo.c.attempts,
)
_LIST = sa.select(*_COLS).where(oo.c.workflow_uuid == sa.bindparam("wid")).order_by(oo.c.function_id)
_GET = sa.select(*_COLS).where(
    oo.c.workflow_uuid == sa.bindparam("wid"), oo.c.function_id == sa.bindparam("fid")
)


@functools.cache
def _insert_stmt(dialect: Dialect) -> Any:
    return (
        dialect.insert(oo)
        .on_conflict_do_nothing(index_elements=[oo.c.workflow_uuid, oo.c.function_id])
        .returning(oo.c.function_id)
    )


def _insert_sql(db: Database) -> str:
    # A plain INSERT: a step recorded by another execution meanwhile is a rare
    # race, reported as a duplicate key (record() returns False then).
    return (
        f"INSERT INTO {db.qualify('operation_outputs')} (workflow_uuid, function_id, function_name,"
        " output, error, child_workflow_id, started_at, completed_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    )


def _insert_attempts_sql(db: Database) -> str:
    return (
        f"INSERT INTO {db.qualify('operation_outputs')} (workflow_uuid, function_id, function_name,"
        " output, error, child_workflow_id, started_at, completed_at, attempts)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )


def record(
    db: Database,
    workflow_id: str,
    function_id: int,
    function_name: str,
    output: Optional[bytes],
    error: Optional[bytes],
    child_workflow_id: Optional[str],
    started_at: int,
    completed_at: int,
    attempts: int = 1,
) -> bool:
    """The per-step checkpoint: one autocommit statement. False if already recorded
    (by another execution of the workflow: see ``_insert_sql``). A step that took more
    than one attempt (retries) records how many."""
    params: tuple[Any, ...] = (
        workflow_id, function_id, function_name, output, error, child_workflow_id, started_at, completed_at
    )
    if attempts > 1:
        sql = db.sql("operations.record_attempts", _insert_attempts_sql)
        return db.execute_count(sql, (*params, attempts), duplicate_is_zero=True) == 1
    return db.execute_count(db.sql("operations.record", _insert_sql), params, duplicate_is_zero=True) == 1


def insert(
    conn: sa.Connection,
    dialect: Dialect,
    workflow_id: str,
    step: StepRow,
) -> bool:
    """Record a step once; False if (workflow, function_id) was already recorded."""
    values = {
        "workflow_uuid": workflow_id,
        "function_id": step.function_id,
        "function_name": step.function_name,
        "output": step.output,
        "error": step.error,
        "child_workflow_id": step.child_workflow_id,
        "started_at": step.started_at,
        "completed_at": step.completed_at,
        "attempts": step.attempts,
    }
    return conn.execute(_insert_stmt(dialect), values).first() is not None


def get(conn: sa.Connection, workflow_id: str, function_id: int) -> Optional[StepRow]:
    row = conn.execute(_GET, {"wid": workflow_id, "fid": function_id}).first()
    return StepRow(*row) if row is not None else None


def list_for(
    conn: sa.Connection,
    workflow_id: str,
    *,
    limit: Optional[int] = None,
    offset: Optional[int] = None,
    outputs: bool = True,
) -> list[StepRow]:
    """The workflow's steps in step order; ``outputs=False`` reads ``output`` and ``error``
    as NULL (the database does not send them)."""
    if limit is None and offset is None and outputs:
        return [StepRow(*r) for r in conn.execute(_LIST, {"wid": workflow_id})]
    cols = [sa.null().label(c.name) if not outputs and c.name in ("output", "error") else c for c in _COLS]
    stmt = sa.select(*cols).where(oo.c.workflow_uuid == workflow_id).order_by(oo.c.function_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset is not None:
        stmt = stmt.offset(offset)
    return [StepRow(*r) for r in conn.execute(stmt)]


def copy_prefix(
    conn: sa.Connection, source_id: str, target_id: str, before_function_id: int,
    replacements: Optional[Mapping[str, str]] = None,
) -> int:
    """Copy the steps of ``source_id`` with function_id < ``before_function_id`` (fork).
    ``replacements``: the copies name these child workflows instead of the recorded ones."""
    child: Any = oo.c.child_workflow_id
    if replacements:
        child = sa.case(dict(replacements), value=oo.c.child_workflow_id, else_=oo.c.child_workflow_id)
    sel = sa.select(
        sa.literal(target_id),
        oo.c.function_id,
        oo.c.function_name,
        oo.c.output,
        oo.c.error,
        child,
        oo.c.started_at,
        oo.c.completed_at,
        oo.c.attempts,
    ).where(oo.c.workflow_uuid == source_id, oo.c.function_id < before_function_id)
    stmt = oo.insert().from_select([c.name for c in oo.c], sel)
    return conn.execute(stmt).rowcount
