"""The per-step hot path on PostgreSQL: statements prepared and sent through libpq
(``Database.execute_count``), outside psycopg's cursor. Errors must come out as
psycopg raises them, a lost connection must be retried, and the connection must
stay usable after a statement the server refused."""

from __future__ import annotations

import pickle
from typing import Any

import psycopg
import pytest
from conftest import Backend, Harness

from dbos import DBOS, SetWorkflowID
from dbos._api.instance import runtime

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


@DBOS.step()
def add_one(x: int) -> int:
    return x + 1


@DBOS.workflow()
def three_steps(x: int) -> int:
    return add_one(add_one(add_one(x)))


def _terminate_dbos_connections(backend: Backend) -> int:
    return int(
        backend.scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'dbos' AND pid <> pg_backend_pid()"
        )
    )


def test_a_lost_connection_is_retried_on_a_new_one(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("before"):
        assert three_steps(0) == 3  # the hot path's connections exist, their statements prepared
    assert _terminate_dbos_connections(backend) >= 1
    with SetWorkflowID("after"):
        assert three_steps(10) == 13
    assert backend.steps("after") == [(i, "add_one") for i in (1, 2, 3)]
    output = backend.scalar(f"SELECT output FROM {backend.table('workflow_status')} WHERE workflow_uuid = 'after'")
    assert pickle.loads(output) == 13


def test_a_refused_statement_raises_the_drivers_error_and_the_connection_is_reused(
    dbos: Harness, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbos._storage import database

    used: list[Any] = []  # the driver connection each hot-path statement ran on
    real = database.exec_prepared

    def recording(pg: Any, *args: Any) -> int:
        used.append(pg)
        return real(pg, *args)

    monkeypatch.setattr(database, "exec_prepared", recording)
    db = runtime().sys_db
    sql = db.raw_sql(f"INSERT INTO {db.qualify('operation_outputs')} (workflow_uuid, function_id, function_name) VALUES (%s, %s, %s)")
    assert db.execute_count(sql, ("direct", 1, "x")) == 1
    with pytest.raises(psycopg.errors.NotNullViolation):
        db.execute_count(sql, ("direct", 2, None))
    # Only a duplicate key counts as "nothing written"; it raises without the option.
    assert db.execute_count(sql, ("direct", 1, "x"), duplicate_is_zero=True) == 0
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute_count(sql, ("direct", 1, "x"))
    with pytest.raises(TypeError, match="float"):
        db.execute_count(sql, ("direct", 3, 1.5))
    assert len(used) == 5 and not any(pg.closed for pg in used)  # none was thrown away
    with SetWorkflowID("next"):
        assert three_steps(1) == 4
    assert backend.steps("direct") == [(1, "x")]


def test_prepared_statement_names_depend_only_on_their_text(dbos: Harness, backend: Backend) -> None:
    """Threads meeting statements for the first time at once must not give two
    statements one name (a connection would then run the wrong one)."""
    from concurrent.futures import ThreadPoolExecutor

    db = runtime().sys_db
    texts = [f"SELECT %s::int + {i}" for i in range(200)]
    db._prepared.clear()
    with ThreadPoolExecutor(8) as pool:
        names = list(pool.map(lambda t: db._prepare(t)[0], texts))
    assert len(set(names)) == len(texts)
    assert [db._prepared[t][0] for t in texts] == names
    assert db.execute_count(texts[7], (5,)) == 1  # SELECT's row count, through the named statement
