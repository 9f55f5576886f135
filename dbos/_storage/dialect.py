"""The few places where PostgreSQL and SQLite differ, in one object.

Storage modules write one statement for both databases and ask the Dialect
only for what truly differs: the INSERT construct with ON CONFLICT, how to
recognise a unique violation, and how a claim locks rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE for a duplicate key


@dataclass(frozen=True)
class Dialect:
    name: str  # "postgresql" | "sqlite"
    insert: Callable[[sa.Table], Any]
    # FOR UPDATE SKIP LOCKED on PostgreSQL; nothing on SQLite, whose writers are
    # serialized by BEGIN IMMEDIATE.
    skip_locked: bool

    @property
    def is_sqlite(self) -> bool:
        return self.name == "sqlite"

    def lock_for_claim(self, select: sa.Select[Any]) -> sa.Select[Any]:
        return select.with_for_update(skip_locked=True) if self.skip_locked else select

    def among(self, column: Any, values: Sequence[str]) -> sa.ColumnElement[bool]:
        """``column`` is one of ``values`` (text): on PostgreSQL ``= ANY(:array)``, one bind
        parameter however many values (an IN list of hundreds is compiled and bound value by
        value); on SQLite, which has no arrays, an IN list."""
        if self.is_sqlite:
            return column.in_(list(values))  # type: ignore[no-any-return]
        return column == sa.any_(sa.literal(list(values), postgresql.ARRAY(sa.Text)))  # type: ignore[no-any-return]

    @staticmethod
    def is_unique_violation(exc: BaseException) -> bool:
        orig = getattr(exc, "orig", exc)
        sqlstate = getattr(orig, "sqlstate", None)
        if sqlstate is not None:
            return bool(sqlstate == UNIQUE_VIOLATION)
        return "UNIQUE constraint failed" in str(orig)


POSTGRES = Dialect(name="postgresql", insert=postgresql.insert, skip_locked=True)
SQLITE = Dialect(name="sqlite", insert=sqlite.insert, skip_locked=False)
