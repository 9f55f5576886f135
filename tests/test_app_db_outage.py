"""The application database refusing connections while a workflow runs its
transaction is no outcome of the workflow (found by bench/fleet.py's chaos run: a
full server made 22 workflows ERROR for good): the workflow stays PENDING, resumes
when the database is back, and the transaction's effect happens once."""

from __future__ import annotations

import threading
from typing import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from conftest import (
    PG_BASE_URL,
    Backend,
    Harness,
    _create_pg_database,
    _drop_pg_database,
    _psycopg_url,
    eventually,
)

from dbos import DBOS

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

gate = threading.Event()


@DBOS.transaction()
def ado_pay(order: str) -> str:
    DBOS.sql_session.execute(sa.text("INSERT INTO ado_paid (order_id) VALUES (:o)"), {"o": order})
    return f"paid {order}"


@DBOS.workflow()
def ado_workflow(order: str) -> str:
    gate.wait(30)
    return ado_pay(order)


@pytest.fixture
def app_db() -> Iterator[tuple[str, str]]:
    name, url = _create_pg_database()
    with psycopg.connect(_psycopg_url(url), autocommit=True) as conn:
        conn.execute("CREATE TABLE ado_paid (order_id TEXT)")
    try:
        yield name, url
    finally:
        _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        _drop_pg_database(name)


def _admin(sql: str) -> None:
    with psycopg.connect(_psycopg_url(PG_BASE_URL), autocommit=True) as conn:
        conn.execute(sql)


def _paid(url: str) -> list[str]:
    with psycopg.connect(_psycopg_url(url)) as conn:
        return [r[0] for r in conn.execute("SELECT order_id FROM ado_paid")]


def test_transaction_during_an_app_database_outage_resumes_after_it(
    harness: Harness, backend: Backend, app_db: tuple[str, str]
) -> None:
    name, url = app_db
    gate.clear()
    harness.launch(application_database_url=url)
    handle = DBOS.start_workflow(ado_workflow, "o-1")
    _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    gate.set()  # the transaction now meets a database that refuses connections
    threading.Event().wait(1.5)
    assert handle.get_status().status == "PENDING"  # not ERROR: an outage is no outcome
    _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    eventually(lambda: handle.get_status().status == "SUCCESS", timeout=20, what="(resumed and done)")
    assert handle.get_result() == "paid o-1"
    assert _paid(url) == ["o-1"]
