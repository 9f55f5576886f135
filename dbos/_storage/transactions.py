"""SQL for ``transaction_outputs`` in the application database.

Written inside the user's own transaction, so a committed transaction and its
record are one atomic fact: replay finds the record and never runs it twice.
"""

from __future__ import annotations

from typing import Optional

import sqlalchemy as sa

from dbos._storage.schema import transaction_outputs as to

_GET = sa.select(to.c.output).where(
    to.c.workflow_uuid == sa.bindparam("wid"), to.c.function_id == sa.bindparam("fid")
)
_INSERT = to.insert()


def insert(conn: sa.Connection, workflow_id: str, function_id: int, output: Optional[bytes], now: int) -> None:
    conn.execute(
        _INSERT,
        {"workflow_uuid": workflow_id, "function_id": function_id, "output": output, "created_at": now},
    )


def get(conn: sa.Connection, workflow_id: str, function_id: int) -> tuple[bool, Optional[bytes]]:
    row = conn.execute(_GET, {"wid": workflow_id, "fid": function_id}).first()
    return (True, row[0]) if row is not None else (False, None)
