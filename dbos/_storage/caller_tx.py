"""A connection whose transaction the caller owns (``DBOSClient.enqueue_in_transaction``
and ``send_in_transaction``): the storage functions run on it unchanged, and never
begin, commit, roll back or retry it.

Our tables name no schema: our engines translate it (``schema_translate_map``). A
caller's connection does not, so ``bound`` sets the translation on it for the span of
our statements only and puts the caller's options back afterwards (the caller's own
schema-less tables are never redirected). It first checks, in one round trip, that the
connection is on this system database: an application database (or another DBOS
system database) fails clearly instead of writing rows no executor reads.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Union

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dbos._storage.database import Database
from dbos.error import DBOSException


def connection_of(conn_or_session: Union[sa.Connection, Session]) -> sa.Connection:
    """The Connection of a Connection or of an ORM Session (its current transaction's)."""
    if isinstance(conn_or_session, Session):
        return conn_or_session.connection()
    if isinstance(conn_or_session, sa.Connection):
        return conn_or_session
    raise DBOSException(
        "expected a synchronous SQLAlchemy Connection or ORM Session on the system database, got "
        f"{type(conn_or_session).__name__} (from async code: await conn.run_sync(lambda c: ...))"
    )


@contextlib.contextmanager
def bound(db: Database, conn_or_session: Union[sa.Connection, Session]) -> Iterator[sa.Connection]:
    """The caller's connection, checked to be on ``db`` and translating our schema meanwhile."""
    conn = connection_of(conn_or_session)
    if conn.dialect.name != db.dialect.name:
        raise DBOSException(
            f"the connection is on a {conn.dialect.name} database, but the system database is {db.dialect.name}"
        )
    previous = conn.get_execution_options().get("schema_translate_map")
    if db.schema is not None:
        conn.execution_options(schema_translate_map={**(previous or {}), None: db.schema})
    try:
        _check_database(conn, db)
        yield conn
    finally:
        if db.schema is not None:
            conn.execution_options(schema_translate_map=previous)


def _check_database(conn: sa.Connection, db: Database) -> None:
    expected = sa.make_url(db.url).database or ""
    if db.dialect.is_sqlite:
        files = {str(r[1]): str(r[2] or "") for r in conn.exec_driver_sql("PRAGMA database_list")}
        actual = files.get("main", "")
        has_table = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'workflow_status'"
        ).first() is not None
        same = not expected or expected == ":memory:" or not actual \
            or os.path.realpath(actual) == os.path.realpath(expected)
    else:
        row: Any = conn.execute(
            sa.text("SELECT current_database(), to_regclass(:t) IS NOT NULL"),
            {"t": f'"{db.schema}".workflow_status'},
        ).one()
        actual, has_table = str(row[0]), bool(row[1])
        same = not expected or actual == expected
    if not same or not has_table:
        where = f"schema {db.schema!r} of " if db.schema else ""
        raise DBOSException(
            f"the connection is not on the DBOS system database: it is on {actual or 'another database'!r}"
            + ("" if has_table else f", which has no {where}DBOS system tables")
            + f"; the client's system database is {expected!r}"
            + (f" (schema {db.schema!r})" if db.schema else "")
        )
