"""DBOSClient.enqueue_in_transaction, send_in_transaction and send_bulk_in_transaction
(issue 18): writes in a transaction the caller owns, on a SQLAlchemy Connection or ORM
Session on the system database. Rolled back: nothing enqueued or sent; committed: the
workflow is dequeued and runs, the message is received. On PostgreSQL and SQLite."""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest
import sqlalchemy as sa
from conftest import Backend, Harness, eventually
from sqlalchemy.orm import Session

from dbos import DBOS, DBOSClient, DBOSException, Queue, SetWorkflowID, WorkflowSerializationFormat
from dbos._api.missing import DBOSNotImplementedError
from dbos.error import DBOSNonExistentWorkflowError, DBOSQueueDeduplicatedError

TX_Q = Queue("ctx_queue", polling_interval_sec=0.1)


@DBOS.workflow(name="ctx_add")
def ctx_add(a: int, b: int) -> int:
    return a + b


@DBOS.workflow(name="ctx_inbox")
def ctx_inbox(n: int, timeout: float) -> list[Any]:
    return [DBOS.recv("t", timeout_seconds=timeout) for _ in range(n)]


@pytest.fixture
def client(dbos: Harness, backend: Backend) -> Iterator[DBOSClient]:
    with DBOSClient(backend.url) as c:
        yield c


def _caller_engine(backend: Backend) -> sa.Engine:
    """The application's own engine on the system database (not the client's)."""
    return backend.engine


def _opts(**extra: Any) -> Any:
    return {"workflow_name": "ctx_add", "queue_name": "ctx_queue", **extra}


def test_enqueue_in_a_rolled_back_connection_enqueues_nothing(client: DBOSClient, backend: Backend) -> None:
    wid = f"ctx-{uuid.uuid4().hex[:8]}"
    with _caller_engine(backend).connect() as conn:
        tx = conn.begin()
        client.enqueue_in_transaction(conn, _opts(workflow_id=wid), 1, 2)
        assert backend.status(wid) is None  # not visible to others before the commit
        tx.rollback()
    assert backend.status(wid) is None
    assert client.get_workflow(wid) is None


def test_enqueue_in_a_committed_connection_runs(client: DBOSClient, backend: Backend) -> None:
    wid = f"ctx-{uuid.uuid4().hex[:8]}"
    with _caller_engine(backend).begin() as conn:
        handle = client.enqueue_in_transaction(conn, _opts(workflow_id=wid), 1, 2)
        assert handle.workflow_id == wid
    assert handle.get_result() == 3
    status = handle.get_status()
    assert (status.status, status.queue_name, status.name) == ("SUCCESS", "ctx_queue", "ctx_add")


def test_enqueue_in_an_orm_session_commits_with_it(client: DBOSClient, backend: Backend) -> None:
    rolled, committed = (f"ctx-{uuid.uuid4().hex[:8]}" for _ in range(2))
    with Session(_caller_engine(backend)) as session:
        client.enqueue_in_transaction(session, _opts(workflow_id=rolled), 5, 5)
        session.rollback()
        handle = client.enqueue_in_transaction(session, _opts(workflow_id=committed), 20, 1)
        session.commit()
    assert handle.get_result() == 21
    assert backend.status(rolled) is None


def test_the_callers_own_statements_keep_their_schema(client: DBOSClient, backend: Backend) -> None:
    """Our schema translation lasts for our statements only: the caller's schema-less
    table in the same transaction stays where the caller's database puts it."""
    meta = sa.MetaData()
    orders = sa.Table("ctx_orders", meta, sa.Column("id", sa.Integer, primary_key=True))
    engine = _caller_engine(backend)
    meta.create_all(engine)
    wid = f"ctx-{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(orders.insert().values(id=1))
        client.enqueue_in_transaction(conn, _opts(workflow_id=wid), 2, 2)
        conn.execute(orders.insert().values(id=2))
        assert conn.get_execution_options().get("schema_translate_map") is None
    assert client.retrieve_workflow(wid).get_result() == 4
    assert [r[0] for r in backend.rows("SELECT id FROM ctx_orders ORDER BY id")] == [1, 2]


def test_a_deduplicated_enqueue_in_a_transaction(client: DBOSClient, backend: Backend) -> None:
    TX_Q_HOLD = {"deduplication_id": "dd-1", "delay_seconds": 60}  # stays queued (DELAYED)
    first = client.enqueue(_opts(**TX_Q_HOLD), 1, 1)
    with _caller_engine(backend).connect() as conn:
        with conn.begin():
            with pytest.raises(DBOSQueueDeduplicatedError):
                client.enqueue_in_transaction(conn, _opts(**TX_Q_HOLD), 2, 2)
        with conn.begin():
            # DBOS 2.31.1's phrase, then which call it was.
            with pytest.raises(DBOSException, match="'return-existing' is not supported by "
                                                    r"enqueue_in_transaction \(DBOSClient.enqueue_in_transaction\)"):
                client.enqueue_in_transaction(conn, _opts(duplication_policy="return-existing", **TX_Q_HOLD), 2, 2)
    assert [w.workflow_id for w in client.list_workflows(name="ctx_add")] == [first.workflow_id]


def test_send_in_transaction_commit_and_rollback(client: DBOSClient, backend: Backend) -> None:
    with SetWorkflowID(f"ctx-inbox-{uuid.uuid4().hex[:8]}") as _:
        inbox = DBOS.start_workflow(ctx_inbox, 2, 2.0)
    engine = _caller_engine(backend)
    with engine.connect() as conn:
        with conn.begin() as tx:
            client.send_in_transaction(conn, inbox.workflow_id, "rolled back", "t")
            tx.rollback()
        with conn.begin():
            client.send_in_transaction(conn, inbox.workflow_id, "from a connection", "t")
    with Session(engine) as session:
        client.send_in_transaction(session, inbox.workflow_id, "never", "t")
        session.rollback()
        client.send_bulk_in_transaction(session, [{"destination_id": inbox.workflow_id, "message": "from a session",
                                                   "topic": "t"}])
        session.commit()
    assert inbox.get_result() == ["from a connection", "from a session"]


def test_a_keyed_send_in_transaction_is_delivered_once(client: DBOSClient, backend: Backend) -> None:
    with SetWorkflowID(f"ctx-inbox-{uuid.uuid4().hex[:8]}") as _:
        inbox = DBOS.start_workflow(ctx_inbox, 2, 1.5)
    engine = _caller_engine(backend)
    with engine.connect() as conn:
        with conn.begin() as tx:
            client.send_in_transaction(conn, inbox.workflow_id, "rolled back", "t", idempotency_key="k1")
            tx.rollback()
        for _ in range(2):
            with conn.begin():
                client.send_in_transaction(conn, inbox.workflow_id, "once", "t", idempotency_key="k1")
    client.send(inbox.workflow_id, "once", "t", idempotency_key="k1")  # outside: finds it sent
    assert inbox.get_result() == ["once", None]


def test_send_in_transaction_refuses_what_send_refuses(client: DBOSClient, backend: Backend) -> None:
    with _caller_engine(backend).begin() as conn:
        with pytest.raises(DBOSNonExistentWorkflowError):
            client.send_in_transaction(conn, f"nobody-{uuid.uuid4().hex[:6]}", "m")
        with pytest.raises(DBOSNotImplementedError, match="PORTABLE"):
            client.send_in_transaction(conn, "x", "m", serialization_type=WorkflowSerializationFormat.PORTABLE)
        with pytest.raises(DBOSException, match="duplicate idempotency keys: a"):
            client.send_bulk_in_transaction(conn, [{"destination_id": "x", "message": 1, "idempotency_key": "a"},
                                                   {"destination_id": "y", "message": 2, "idempotency_key": "a"}])


def test_a_connection_on_another_database_is_refused(client: DBOSClient, backend: Backend) -> None:
    other = backend.other_database()
    with other.engine.begin() as conn:
        with pytest.raises(DBOSException, match="not on the DBOS system database"):
            client.enqueue_in_transaction(conn, _opts(), 1, 1)
        with pytest.raises(DBOSException, match="not on the DBOS system database"):
            client.send_in_transaction(conn, "x", "m")
    with pytest.raises(DBOSException, match="synchronous SQLAlchemy Connection or ORM Session"):
        client.enqueue_in_transaction(object(), _opts(), 1, 1)  # type: ignore[arg-type]


def test_enqueue_in_transaction_reads_its_own_rows(client: DBOSClient, backend: Backend) -> None:
    """An ID enqueued twice in one transaction: the second finds the first (uncommitted) row."""
    wid = f"ctx-{uuid.uuid4().hex[:8]}"
    with _caller_engine(backend).begin() as conn:
        a = client.enqueue_in_transaction(conn, _opts(workflow_id=wid), 1, 1)
        b = client.enqueue_in_transaction(conn, _opts(workflow_id=wid), 9, 9)
    assert a.workflow_id == b.workflow_id == wid
    assert eventually(lambda: backend.status(wid) == "SUCCESS" or None)
    assert a.get_result() == 2


def test_the_clients_system_schema_is_used(backend: Backend) -> None:
    """A client on another system schema writes there, on the caller's connection too."""
    if backend.is_sqlite:
        pytest.skip("PostgreSQL only: SQLite has no schemas, so a client there has no system schema to choose")
    wid = f"ctx-{uuid.uuid4().hex[:8]}"
    with DBOSClient(backend.url, system_database_schema="ctx_custom") as custom:
        with backend.engine.begin() as conn:
            custom.enqueue_in_transaction(conn, _opts(workflow_id=wid), 1, 1)
        assert backend.scalar(f"SELECT status FROM {backend.table('workflow_status', 'ctx_custom')} "
                              "WHERE workflow_uuid = :w", w=wid) == "ENQUEUED"
        assert backend.status(wid) is None  # not in the default schema "dbos"
        assert custom.retrieve_workflow(wid).get_status().queue_name == "ctx_queue"
