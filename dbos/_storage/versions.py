"""SQL for ``application_versions`` (DBOS 2.x's version registry) and ``launches``
(the executors a coordinator's launcher started for a version with waiting work)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Optional

import sqlalchemy as sa

from dbos._storage.dialect import Dialect
from dbos._storage.schema import application_versions as av
from dbos._storage.schema import launches as la


@dataclass(frozen=True)
class VersionRow:
    version_id: str
    version_name: str
    version_timestamp: int
    created_at: int


_VERSION = (av.c.version_id, av.c.version_name, av.c.version_timestamp, av.c.created_at)


def register(conn: sa.Connection, dialect: Dialect, name: str, now: int) -> None:
    """Record ``name`` the first time an executor of it launches (it becomes the latest then)."""
    conn.execute(
        dialect.insert(av)
        .values(version_id=str(uuid.uuid4()), version_name=name, version_timestamp=now, created_at=now)
        .on_conflict_do_nothing(index_elements=[av.c.version_name])
    )


def list_all(conn: sa.Connection) -> list[VersionRow]:
    """Newest (latest) first."""
    stmt = sa.select(*_VERSION).order_by(av.c.version_timestamp.desc(), av.c.created_at.desc())
    return [VersionRow(*r) for r in conn.execute(stmt)]


def latest(conn: sa.Connection) -> Optional[VersionRow]:
    r = conn.execute(
        sa.select(*_VERSION).order_by(av.c.version_timestamp.desc(), av.c.created_at.desc()).limit(1)
    ).first()
    return VersionRow(*r) if r is not None else None


def set_latest(conn: sa.Connection, name: str, now: int) -> bool:
    """Make ``name`` the latest (its timestamp past every other's); False if unknown."""
    top = conn.execute(sa.select(sa.func.max(av.c.version_timestamp))).scalar() or 0
    stamp = max(now, int(top) + 1)
    return conn.execute(sa.update(av).where(av.c.version_name == name).values(version_timestamp=stamp)).rowcount == 1


# -- launches -------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchRow:
    launch_id: str
    app_version: str
    launcher: str
    state: str
    attempt: int
    started_at: int
    finished_at: Optional[int]
    handle: Optional[str]
    executor_id: Optional[str]
    error: Optional[str]


_LAUNCH = [la.c[name] for name in LaunchRow.__dataclass_fields__]


def lock_version(conn: sa.Connection, dialect: Dialect, app_version: str) -> None:
    """Serialize launch decisions for one version until the transaction ends (a
    transaction-level advisory lock: fine behind PgBouncer; SQLite serializes writers)."""
    if not dialect.is_sqlite:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('dbos-launch:' || :v))"), {"v": app_version})


def in_flight(conn: sa.Connection, app_version: Optional[str] = None) -> list[LaunchRow]:
    stmt = sa.select(*_LAUNCH).where(la.c.state == "LAUNCHING").order_by(la.c.started_at)
    if app_version is not None:
        stmt = stmt.where(la.c.app_version == app_version)
    return [LaunchRow(*r) for r in conn.execute(stmt)]


def last_for(conn: sa.Connection, app_version: str) -> Optional[LaunchRow]:
    r = conn.execute(
        sa.select(*_LAUNCH).where(la.c.app_version == app_version).order_by(la.c.started_at.desc()).limit(1)
    ).first()
    return LaunchRow(*r) if r is not None else None


def insert_launch(conn: sa.Connection, row: LaunchRow) -> None:
    conn.execute(sa.insert(la).values(**row.__dict__))


def set_handle(conn: sa.Connection, launch_id: str, handle: str) -> None:
    conn.execute(sa.update(la).where(la.c.launch_id == launch_id).values(handle=handle))


def finish_launch(conn: sa.Connection, launch_id: str, state: str, now: int, error: Optional[str] = None) -> bool:
    """LAUNCHING → SUCCEEDED or FAILED (once)."""
    stmt = (
        sa.update(la)
        .where(la.c.launch_id == launch_id, la.c.state == "LAUNCHING")
        .values(state=state, finished_at=now, error=error)
    )
    return conn.execute(stmt).rowcount == 1


def recent(conn: sa.Connection, since: int) -> list[LaunchRow]:
    stmt = sa.select(*_LAUNCH).where(la.c.started_at >= since).order_by(la.c.started_at.desc())
    return [LaunchRow(*r) for r in conn.execute(stmt)]
