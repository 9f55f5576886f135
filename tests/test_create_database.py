"""``DBOS.launch()`` creates a missing PostgreSQL database, as DBOS does (issue 18,
item 2): every first run on a fresh server would otherwise fail."""

from __future__ import annotations

import uuid

import psycopg
from conftest import PG_BASE_URL, _drop_pg_database, _psycopg_url, _with_database

from dbos import DBOS


@DBOS.workflow()
def cdb_workflow(x: int) -> int:
    return x + 1


def _exists(name: str) -> bool:
    with psycopg.connect(_psycopg_url(PG_BASE_URL), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_launch_creates_a_missing_system_database() -> None:
    name = f"t_missing_{uuid.uuid4().hex[:12]}"
    assert not _exists(name)
    try:
        DBOS(config={"name": "cdb", "system_database_url": _with_database(PG_BASE_URL, name),
                     "log_level": "WARNING"})
        DBOS.launch()
        assert _exists(name)
        assert cdb_workflow(1) == 2
        DBOS.destroy()
        DBOS(config={"name": "cdb", "system_database_url": _with_database(PG_BASE_URL, name),
                     "log_level": "WARNING"})
        DBOS.launch()  # exists now: used as it is
        assert cdb_workflow(2) == 3
    finally:
        DBOS.destroy()
        _drop_pg_database(name)
