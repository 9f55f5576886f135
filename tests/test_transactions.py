"""@DBOS.transaction: the user's writes and the checkpoint commit together, exactly once."""

from __future__ import annotations

import asyncio
import pickle
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import Backend, Harness

from dbos import DBOS, DBOSException, SetWorkflowID
from dbos.error import DBOSSerializationError


class Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def hit(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


def _orders_table(backend: Backend) -> None:
    backend.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, amount INTEGER NOT NULL)")


def _orders(backend: Backend) -> list[tuple[str, int]]:
    return [(r[0], r[1]) for r in backend.rows("SELECT id, amount FROM orders ORDER BY id")]


def _tx_outputs(backend: Backend, workflow_id: str) -> list[tuple[int, Any]]:
    return [
        (int(r[0]), pickle.loads(r[1]) if r[1] is not None else None)
        for r in backend.rows(
            f"SELECT function_id, output FROM {backend.table('transaction_outputs')} "
            "WHERE workflow_uuid = :w ORDER BY function_id",
            w=workflow_id,
        )
    ]


def test_transaction_writes_app_db_with_its_checkpoint(dbos: Harness, backend: Backend) -> None:
    _orders_table(backend)
    seen: dict[str, Any] = {}

    @DBOS.transaction()
    def record(order_id: str, amount: int) -> int:
        seen["wid"] = DBOS.workflow_id
        seen["step_id"] = DBOS.step_id
        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES (:i, :a)"), {"i": order_id, "a": amount})
        # Same session sees its own uncommitted write.
        return int(DBOS.sql_session.execute(sa.text("SELECT sum(amount) FROM orders")).scalar_one())

    @DBOS.workflow()
    def wf() -> int:
        return record("o1", 5) + record("o2", 7)

    with SetWorkflowID("tx-1"):
        assert wf() == 5 + 12
    assert seen == {"wid": "tx-1", "step_id": 2}
    assert _orders(backend) == [("o1", 5), ("o2", 7)]
    # The checkpoint in the application database: one row per transaction, with its output.
    assert _tx_outputs(backend, "tx-1") == [(1, 5), (2, 12)]
    name = "test_transaction_writes_app_db_with_its_checkpoint.<locals>.record"
    assert backend.steps("tx-1") == [(1, name), (2, name)]


def test_transaction_checkpoint_commits_atomically_with_user_writes(dbos: Harness, backend: Backend) -> None:
    """While the transaction is open, neither its write nor its checkpoint is visible outside."""
    _orders_table(backend)
    inside, release = threading.Event(), threading.Event()

    @DBOS.transaction()
    def slow_insert() -> str:
        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES ('slow', 1)"))
        inside.set()
        assert release.wait(30)
        return "committed"

    @DBOS.workflow()
    def wf() -> str:
        return slow_insert()

    try:
        with SetWorkflowID("tx-atomic"):
            handle = DBOS.start_workflow(wf)
        assert inside.wait(10)
        if not backend.is_sqlite:  # SQLite readers see the last commit too, but WAL makes this racy to probe
            assert _orders(backend) == []
            assert _tx_outputs(backend, "tx-atomic") == []
        assert backend.steps("tx-atomic") == []
    finally:
        release.set()
    assert handle.get_result() == "committed"
    assert _orders(backend) == [("slow", 1)]
    assert _tx_outputs(backend, "tx-atomic") == [(1, "committed")]


def test_failed_transaction_rolls_back_and_records_the_error(dbos: Harness, backend: Backend) -> None:
    _orders_table(backend)
    counter = Counter()

    @DBOS.transaction()
    def bad_insert() -> None:
        counter.hit("bad")
        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES ('x', 1)"))
        raise ValueError("refused")

    @DBOS.transaction()
    def good_insert() -> None:
        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES ('y', 2)"))

    @DBOS.workflow()
    def wf() -> str:
        good_insert()
        try:
            bad_insert()
        except ValueError as e:
            return f"caught {e}"
        return "no error"

    with SetWorkflowID("tx-fail"):
        assert wf() == "caught refused"
    assert _orders(backend) == [("y", 2)]  # the failed transaction's write was rolled back
    assert [fid for fid, _ in _tx_outputs(backend, "tx-fail")] == [1]  # no checkpoint for the failed one
    error_blob = backend.scalar(
        f"SELECT error FROM {backend.table('operation_outputs')} WHERE workflow_uuid = 'tx-fail' AND function_id = 2"
    )
    assert isinstance(pickle.loads(error_blob), ValueError)
    # Replay: the recorded error is raised again; the transaction does not run again.
    backend.force_pending("tx-fail")
    with SetWorkflowID("tx-fail"):
        assert wf() == "caught refused"
    assert counter["bad"] == 1
    assert _orders(backend) == [("y", 2)]


def test_database_error_in_transaction_rolls_back(dbos: Harness, backend: Backend) -> None:
    _orders_table(backend)
    backend.execute("INSERT INTO orders (id, amount) VALUES ('dup', 1)")

    @DBOS.transaction()
    def dup() -> None:
        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES ('new', 1)"))
        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES ('dup', 2)"))

    @DBOS.workflow()
    def wf() -> None:
        dup()

    with SetWorkflowID("tx-integrity"):
        with pytest.raises(sa.exc.IntegrityError):
            wf()
    assert _orders(backend) == [("dup", 1)]
    assert backend.status("tx-integrity") == "ERROR"
    assert _tx_outputs(backend, "tx-integrity") == []


def test_sql_session_outside_a_transaction_raises(dbos: Harness) -> None:
    with pytest.raises(DBOSException, match="transaction"):
        _ = DBOS.sql_session

    @DBOS.step()
    def in_step() -> None:
        _ = DBOS.sql_session

    @DBOS.workflow()
    def in_workflow() -> None:
        _ = DBOS.sql_session

    with pytest.raises(DBOSException, match="transaction"):
        in_workflow()
    with pytest.raises(DBOSException, match="transaction"):
        in_step()

    @DBOS.workflow()
    def via_step() -> None:
        in_step()

    with pytest.raises(DBOSException, match="transaction"):
        via_step()


def test_transaction_is_exactly_once_on_replay(dbos: Harness, backend: Backend) -> None:
    """A crash after the transaction committed but before its step checkpoint: replay
    finds the transaction's own checkpoint and does not run it again."""
    _orders_table(backend)
    counter = Counter()

    @DBOS.transaction()
    def pay(order_id: str) -> str:
        counter.hit("pay")
        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES (:i, 10)"), {"i": order_id})
        return f"paid {order_id}"

    @DBOS.step()
    def notify(msg: str) -> str:
        counter.hit("notify")
        return msg.upper()

    @DBOS.workflow()
    def wf(order_id: str) -> str:
        return notify(pay(order_id))

    with SetWorkflowID("tx-once"):
        assert wf("o1") == "PAID O1"
    # Lose every step checkpoint (as if the process died after the commit), mark it PENDING.
    backend.delete_steps_from("tx-once", 1)
    backend.force_pending("tx-once")
    with SetWorkflowID("tx-once"):
        assert wf("o1") == "PAID O1"
    assert counter["pay"] == 1
    assert counter["notify"] == 2  # a step is at-least-once
    assert _orders(backend) == [("o1", 10)]
    assert _tx_outputs(backend, "tx-once") == [(1, "paid o1")]
    assert len(backend.steps("tx-once")) == 2


def test_transaction_outside_a_workflow(dbos: Harness, backend: Backend) -> None:
    _orders_table(backend)

    @DBOS.transaction()
    def plain(order_id: str) -> str:
        # As in DBOS 2.x: a one-step temporary workflow (issue 18; tests/test_steps_as_workflows.py).
        assert DBOS.workflow_id is not None and DBOS.step_id == 1
        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES (:i, 1)"), {"i": order_id})
        return order_id

    assert plain("solo") == "solo"
    assert _orders(backend) == [("solo", 1)]
    assert backend.scalar(f"SELECT count(*) FROM {backend.table('transaction_outputs')}") == 1

    @DBOS.transaction()
    def failing() -> None:
        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES ('gone', 1)"))
        raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        failing()
    assert _orders(backend) == [("solo", 1)]


def test_async_def_transaction_is_rejected_at_decoration(dbos: Harness, backend: Backend) -> None:
    """As in DBOS 2.x: a transaction is a sync function (its session is sync); an async
    workflow calls a sync transaction."""
    _orders_table(backend)
    with pytest.raises(DBOSException, match="coroutine function, but DBOS.transaction does not support"):

        @DBOS.transaction()
        async def ainsert(order_id: str) -> str:
            return order_id

    @DBOS.transaction()
    def insert(order_id: str) -> str:
        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES (:i, 3)"), {"i": order_id})
        return order_id

    @DBOS.workflow()
    async def awf() -> str:
        return insert("async-order")

    async def main() -> str:
        with SetWorkflowID("tx-async"):
            return await awf()

    assert asyncio.run(main()) == "async-order"
    assert _orders(backend) == [("async-order", 3)]
    assert _tx_outputs(backend, "tx-async") == [(1, "async-order")]


def test_unserializable_transaction_result_rolls_back(dbos: Harness, backend: Backend) -> None:
    _orders_table(backend)

    @DBOS.transaction()
    def returns_lock() -> Any:
        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES ('lock', 1)"))
        return threading.Lock()

    @DBOS.workflow()
    def wf() -> None:
        returns_lock()

    with SetWorkflowID("tx-unser"):
        with pytest.raises(DBOSSerializationError):
            wf()
    assert _orders(backend) == []
    assert _tx_outputs(backend, "tx-unser") == []
    assert backend.status("tx-unser") == "ERROR"


def test_transaction_isolation_level(dbos: Harness, backend: Backend) -> None:
    @DBOS.transaction(isolation_level="SERIALIZABLE")
    def serializable() -> str:
        if backend.is_sqlite:
            return "serializable"  # SQLite transactions are serializable
        return str(DBOS.sql_session.execute(sa.text("SHOW transaction_isolation")).scalar_one())

    @DBOS.transaction()
    def default() -> str:
        if backend.is_sqlite:
            return "read committed"
        return str(DBOS.sql_session.execute(sa.text("SHOW transaction_isolation")).scalar_one())

    @DBOS.workflow()
    def wf() -> tuple[str, str]:
        return serializable(), default()

    assert wf() == ("serializable", "read committed")


def test_separate_application_database(harness: Harness, backend: Backend) -> None:
    app = backend.other_database()
    harness.launch(application_database_url=app.url)
    app.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, amount INTEGER NOT NULL)")

    @DBOS.transaction()
    def insert() -> str:
        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES ('app', 1)"))
        return "ok"

    @DBOS.workflow()
    def wf() -> str:
        return insert()

    with SetWorkflowID("tx-appdb"):
        assert wf() == "ok"
    assert _orders(app) == [("app", 1)]
    assert _tx_outputs(app, "tx-appdb") == [(1, "ok")]
    # The system database holds the step checkpoint, not the transaction's own one.
    assert len(backend.steps("tx-appdb")) == 1
    if sa.inspect(backend.engine).has_table("transaction_outputs", schema=None if backend.is_sqlite else "dbos"):
        assert _tx_outputs(backend, "tx-appdb") == []
