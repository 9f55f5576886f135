"""SQL for ``leader_lease``: one row per role, held by whoever renewed it last and
not yet expired (the coordinator's leader election, docs/fleet.md).

A lease, not a session-level advisory lock: it works behind a transaction
pooler (PgBouncer) and lapses by itself when its holder hangs. Every change is
one conditional upsert, so two contenders never both hold it; ``term`` grows
each time the holder changes, which tells a log reader where leadership moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from dbos._storage.dialect import Dialect
from dbos._storage.schema import leader_lease as ll


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_at: int
    term: int


def acquire(conn: sa.Connection, dialect: Dialect, name: str, holder: str, now: int, ttl_ms: int) -> Optional[int]:
    """Take or renew ``name`` for ``holder`` until ``now + ttl_ms``; return the term
    held, or None if another holder's lease has not expired."""
    stmt = dialect.insert(ll).values(name=name, holder=holder, expires_at=now + ttl_ms, term=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[ll.c.name],
        set_={
            "holder": stmt.excluded.holder,
            "expires_at": stmt.excluded.expires_at,
            "term": sa.case((ll.c.holder == stmt.excluded.holder, ll.c.term), else_=ll.c.term + 1),
        },
        where=sa.or_(ll.c.holder == stmt.excluded.holder, ll.c.expires_at < now),
    ).returning(ll.c.term)
    term = conn.execute(stmt).scalar()
    return int(term) if term is not None else None


def release(conn: sa.Connection, name: str, holder: str) -> None:
    """Give ``name`` up at once (if ``holder`` still holds it) so a standby takes it at its next try."""
    conn.execute(sa.update(ll).where(ll.c.name == name, ll.c.holder == holder).values(expires_at=0))


def current(conn: sa.Connection, name: str) -> Optional[Lease]:
    r = conn.execute(sa.select(ll.c.name, ll.c.holder, ll.c.expires_at, ll.c.term).where(ll.c.name == name)).first()
    return Lease(str(r[0]), str(r[1]), int(r[2]), int(r[3])) if r is not None else None
