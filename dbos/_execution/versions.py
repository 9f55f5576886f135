"""Application versions as DBOS 2.x exposes them: every version an executor launched
with is registered; the latest (highest timestamp) is where clients send work
that names no version; ``set_latest`` promotes one (promoting an older one is a
rollback). Shared by ``DBOS``, ``DBOSClient`` and the CLI."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from dbos._storage import versions
from dbos._storage.database import Database
from dbos.error import DBOSException


@dataclass(frozen=True)
class VersionInfo:
    version_id: str
    version_name: str
    version_timestamp: int  # epoch ms; the highest is the latest
    created_at: int  # epoch ms, when an executor of it first launched
    application_name: Optional[str] = None  # DBOS 2.x's owner; one application per system database here

    def __getitem__(self, key: str) -> object:
        """DBOS 2.x's VersionInfo is a TypedDict: ``info["version_name"]`` works too."""
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)


def _info(row: versions.VersionRow) -> VersionInfo:
    return VersionInfo(row.version_id, row.version_name, row.version_timestamp, row.created_at)


def register(db: Database, name: str) -> None:
    db.run(lambda c: versions.register(c, db.dialect, name, int(time.time() * 1000)))


def list_versions(db: Database) -> list[VersionInfo]:
    return [_info(r) for r in db.query(versions.list_all)]


def latest(db: Database) -> Optional[VersionInfo]:
    row = db.query(versions.latest)
    return _info(row) if row is not None else None


def set_latest(db: Database, name: str) -> None:
    if not isinstance(name, str) or not name or "\x00" in name:
        raise DBOSException(f"version_name must be a non-empty string without NUL, got {name!r}")
    if not db.run(lambda c: versions.set_latest(c, name, int(time.time() * 1000))):
        raise DBOSException(f"Application version {name!r} is not registered (no executor of it ever launched)")


class LatestCache:
    """The latest version's name, read at most once a second (a client enqueue asks
    on every call)."""

    def __init__(self, db: Database, ttl_sec: float = 1.0) -> None:
        self.db, self.ttl = db, ttl_sec
        self._value: Optional[str] = None
        self._read_at = -1e9

    def get(self) -> Optional[str]:
        now = time.monotonic()
        if now - self._read_at >= self.ttl:
            info = latest(self.db)
            self._value, self._read_at = (info.version_name if info else None), now
        return self._value
