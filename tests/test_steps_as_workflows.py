"""Steps and transactions as workflows (issue 18), as in DBOS Transact 2.31.1: a
transaction called outside a workflow is a one-step temporary workflow; a step or a
transaction can be started or enqueued as one; role checks, step numbering and
unserializable results behave as DBOS's do."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from conftest import Backend, Harness

from dbos import DBOS, Queue, SetWorkflowID
from dbos.error import DBOSSerializationError


class Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def hit(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


# -- item 14: an unpicklable step result ------------------------------------------


def test_unpicklable_step_result_is_a_type_error(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    def returns_lock() -> Any:
        counter.hit("step")
        return threading.Lock()

    @DBOS.workflow()
    def wf() -> str:
        try:
            returns_lock()
        except TypeError as e:  # what DBOS code catches
            assert isinstance(e, DBOSSerializationError)
            return "caught"
        return "not raised"

    with SetWorkflowID("unpicklable-step"):
        assert wf() == "caught"
    assert counter["step"] == 1
    # The replay raises the same type (the step is recorded with its error).
    backend.force_pending("unpicklable-step")
    with SetWorkflowID("unpicklable-step"):
        assert wf() == "caught"
    assert counter["step"] == 1


def test_unpicklable_workflow_result_is_a_type_error(dbos: Harness) -> None:
    @DBOS.workflow()
    def wf() -> Any:
        return threading.Lock()

    with pytest.raises(TypeError):
        wf()


# -- item 13: retries outside a workflow --------------------------------------------


def test_step_with_retries_outside_a_workflow_runs_once(dbos: Harness) -> None:
    counter = Counter()

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=5)
    def fails() -> None:
        counter.hit("fails")
        raise ValueError("own error")

    with pytest.raises(ValueError, match="own error"):
        fails()
    assert counter["fails"] == 1

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=5)
    async def fails_async() -> None:
        counter.hit("async")
        raise KeyError("own async error")

    import asyncio

    with pytest.raises(KeyError):
        asyncio.run(fails_async())
    assert counter["async"] == 1


# -- item 6: transactions (and steps) as one-step temporary workflows --------------


def _orders_table(backend: Backend) -> None:
    backend.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, amount INTEGER NOT NULL)")


def _orders(backend: Backend) -> list[tuple[str, int]]:
    return [(r[0], r[1]) for r in backend.rows("SELECT id, amount FROM orders ORDER BY id")]


@DBOS.transaction(name="temp_tests.insert_order")
def insert_order(order_id: str, amount: int) -> str:
    import sqlalchemy as sa

    DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES (:i, :a)"), {"i": order_id, "a": amount})
    return f"{order_id}:{DBOS.workflow_id}:{DBOS.step_id}"


queue = Queue("temp_tests_queue")


@DBOS.step(name="temp_tests.double")
def double(x: int) -> int:
    return 2 * x


@DBOS.step(name="temp_tests.double_async")
async def double_async(x: int) -> int:
    return 2 * x


def test_transaction_outside_a_workflow_is_a_durable_temp_workflow(dbos: Harness, backend: Backend) -> None:
    _orders_table(backend)
    with SetWorkflowID("temp-tx"):
        assert insert_order("o1", 5) == "o1:temp-tx:1"
    # A second call under the same ID returns the recorded result without running again.
    with SetWorkflowID("temp-tx"):
        assert insert_order("o1", 5) == "o1:temp-tx:1"
    assert _orders(backend) == [("o1", 5)]
    assert backend.status("temp-tx") == "SUCCESS"
    assert backend.steps("temp-tx") == [(1, "temp_tests.insert_order")]
    listed = DBOS.list_workflows(workflow_ids=["temp-tx"])
    assert [(w.workflow_id, w.name, w.status) for w in listed] == [("temp-tx", "<temp>.temp_tests.insert_order",
                                                                     "SUCCESS")]
    # Without an ID: a new temporary workflow each call, each listed.
    insert_order("o2", 1)
    assert len(DBOS.list_workflows(name="<temp>.temp_tests.insert_order")) == 2


def test_unserializable_transaction_result_outside_a_workflow(dbos: Harness, backend: Backend) -> None:
    _orders_table(backend)

    @DBOS.transaction()
    def returns_lock() -> Any:
        import sqlalchemy as sa

        DBOS.sql_session.execute(sa.text("INSERT INTO orders (id, amount) VALUES ('lock', 1)"))
        return threading.Lock()

    with SetWorkflowID("temp-tx-lock"), pytest.raises(TypeError):
        returns_lock()
    assert _orders(backend) == []  # the output is checked before the transaction commits
    assert backend.status("temp-tx-lock") == "ERROR"


def test_start_and_enqueue_a_step_or_a_transaction(dbos: Harness, backend: Backend) -> None:
    import asyncio

    _orders_table(backend)
    with SetWorkflowID("started-step"):
        handle = DBOS.start_workflow(double, 21)
    assert handle.get_result() == 42
    with SetWorkflowID("started-tx"):
        tx_handle = DBOS.start_workflow(insert_order, "s1", 2)
    assert tx_handle.get_result() == "s1:started-tx:1"
    with SetWorkflowID("queued-step"):
        queued = queue.enqueue(double, 5)
    with SetWorkflowID("queued-tx"):
        queued_tx = queue.enqueue(insert_order, "q1", 3)
    assert queued.get_result() == 10
    assert queued_tx.get_result() == "q1:queued-tx:1"

    async def start_async() -> Any:
        with SetWorkflowID("started-async-step"):
            h = await DBOS.start_workflow_async(double_async, 4)
        return await h.get_result()

    assert asyncio.run(start_async()) == 8
    assert _orders(backend) == [("q1", 3), ("s1", 2)]
    for wid, name in [("started-step", "temp_tests.double"), ("queued-step", "temp_tests.double"),
                      ("started-tx", "temp_tests.insert_order"), ("started-async-step", "temp_tests.double_async")]:
        assert backend.status(wid) == "SUCCESS"
        assert backend.steps(wid) == [(1, name)], wid
    assert DBOS.get_workflow_status("queued-tx").queue_name == "temp_tests_queue"  # type: ignore[union-attr]


def test_temp_workflow_of_a_step_is_recovered(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("recovered-step"):
        assert DBOS.start_workflow(double, 3).get_result() == 6
    backend.force_pending("recovered-step")
    backend.delete_steps_from("recovered-step", 1)
    dbos.restart()
    handle = DBOS.retrieve_workflow("recovered-step")
    assert handle.get_result() == 6
    assert backend.status("recovered-step") == "SUCCESS"


def test_plain_step_outside_a_workflow_records_nothing(dbos: Harness, backend: Backend) -> None:
    assert double(4) == 8
    assert backend.workflow_count() == 0


# -- item 7: role checks of started and enqueued workflows ---------------------------


@DBOS.required_roles(["admin"])
@DBOS.workflow(name="temp_tests.admin_only")
def admin_only() -> str:
    return f"ran as {DBOS.assumed_role}"


@DBOS.required_roles(["admin"])
@DBOS.transaction(name="temp_tests.admin_tx")
def admin_tx() -> str:
    return "tx ran"


def test_denied_start_and_enqueue_are_recorded_as_error(dbos: Harness, backend: Backend) -> None:
    from dbos import DBOSContextSetAuth, DBOSNotAuthorizedError

    with DBOSContextSetAuth("eve", ["user"]):
        with pytest.raises(DBOSNotAuthorizedError):
            admin_only()  # a direct call raises at once, records nothing
        with pytest.raises(DBOSNotAuthorizedError):
            admin_tx()
        assert backend.workflow_count() == 0
        with SetWorkflowID("denied-start"):
            started = DBOS.start_workflow(admin_only)
        with SetWorkflowID("denied-queued"):
            queued = queue.enqueue(admin_only)
        with SetWorkflowID("denied-tx"):
            started_tx = DBOS.start_workflow(admin_tx)
    for handle in (started, queued, started_tx):
        with pytest.raises(DBOSNotAuthorizedError, match="admin"):
            handle.get_result()
        status = handle.get_status()
        assert (status.status, status.authenticated_user) == ("ERROR", "eve")
        assert isinstance(status.error, DBOSNotAuthorizedError)
    with DBOSContextSetAuth("ada", ["user", "admin"]), SetWorkflowID("allowed-queued"):
        assert queue.enqueue(admin_only).get_result() == "ran as admin"


# -- item 8: step numbering ------------------------------------------------------------

numbering = Counter()


@DBOS.step(name="temp_tests.count")
def count(label: str) -> str:
    numbering.hit(label)
    return label


@DBOS.workflow(name="temp_tests.child")
def child(x: int) -> int:
    numbering.hit("child")
    return x * 10


@DBOS.workflow(name="temp_tests.child_async")
async def child_async(x: int) -> int:
    numbering.hit("child_async")
    return x * 100


@DBOS.workflow(name="temp_tests.family")
def family() -> list[Any]:
    a = count("a")  # 1
    b = child(1)  # 2 (child <id>-2), 3 its DBOS.getResult
    c = count("c")  # 4
    d = child(2)  # 5 (child <id>-5), 6 its DBOS.getResult
    return [a, b, c, d, count("e")]  # 7


def test_a_direct_child_call_records_its_get_result(dbos: Harness, backend: Backend) -> None:
    numbering.counts.clear()
    with SetWorkflowID("fam"):
        assert family() == ["a", 10, "c", 20, "e"]
    assert backend.steps("fam") == [(1, "temp_tests.count"), (2, "temp_tests.child"), (3, "DBOS.getResult"),
                                    (4, "temp_tests.count"), (5, "temp_tests.child"), (6, "DBOS.getResult"),
                                    (7, "temp_tests.count")]
    steps = DBOS.list_workflow_steps("fam")
    assert [(s["child_workflow_id"], s["output"]) for s in steps[1:3]] == [("fam-2", None), ("fam-2", 10)]
    assert backend.status("fam-5") == "SUCCESS"
    # fork_workflow(start_step) counts as DBOS does: from step 4, the first child is not re-run.
    forked = DBOS.fork_workflow("fam", 4)
    assert forked.get_result() == ["a", 10, "c", 20, "e"]
    assert numbering["a"] == 1 and numbering["c"] == 2 and numbering["child"] == 3
    # A replay answers from the recorded getResult, without the child.
    backend.force_pending("fam")
    with SetWorkflowID("fam"):
        assert family() == ["a", 10, "c", 20, "e"]
    assert numbering["child"] == 3 and numbering["a"] == 1


def test_a_direct_async_child_records_its_get_result(dbos: Harness, backend: Backend) -> None:
    import asyncio

    @DBOS.workflow()
    async def parent() -> list[int]:
        return list(await asyncio.gather(child_async(1), child_async(2)))

    with SetWorkflowID("afam"):
        assert asyncio.run(parent()) == [100, 200]
    # Each child's getResult ID is taken with the child's, before either ends.
    names = [(fid, name) for fid, name in backend.steps("afam")]
    assert names == [(1, "temp_tests.child_async"), (2, "DBOS.getResult"), (3, "temp_tests.child_async"),
                     (4, "DBOS.getResult")]
    assert [s["child_workflow_id"] for s in DBOS.list_workflow_steps("afam")] == ["afam-1", "afam-1", "afam-3",
                                                                                 "afam-3"]


def test_a_history_recorded_before_get_result_steps_replays(dbos: Harness, backend: Backend) -> None:
    """A workflow in flight across the upgrade: its history numbers a direct child as one
    step. Its replay keeps that numbering (no DBOSUnexpectedStepError, no getResult)."""
    numbering.counts.clear()
    with SetWorkflowID("old"):
        family()
    oo = backend.table("operation_outputs")
    # Rewrite it to the old numbering (1 a, 2 child, 3 c, 4 child, 5 e), crashed before e.
    backend.execute(f"DELETE FROM {oo} WHERE workflow_uuid = 'old' AND function_name = 'DBOS.getResult'")
    for new, old in ((4, 3), (5, 4), (7, 5)):
        backend.execute(f"UPDATE {oo} SET function_id = :o WHERE workflow_uuid = 'old' AND function_id = :n",
                        o=old, n=new)
    backend.delete_steps_from("old", 5)
    backend.force_pending("old")
    dbos.restart()
    assert DBOS.retrieve_workflow("old").get_result() == ["a", 10, "c", 20, "e"]
    assert backend.steps("old") == [(1, "temp_tests.count"), (2, "temp_tests.child"), (3, "temp_tests.count"),
                                    (4, "temp_tests.child"), (5, "temp_tests.count")]
    assert numbering["child"] == 2 and numbering["e"] == 2


dedup_queue = Queue("temp_tests_dedup")


@DBOS.workflow(name="temp_tests.dedup_parent")
def dedup_parent() -> list[str]:
    from dbos import DBOSQueueDeduplicatedError, SetEnqueueOptions

    out = [count("before")]  # 1
    with SetEnqueueOptions(deduplication_id="held"):
        try:
            dedup_queue.enqueue(child, 7)  # 2: refused, recorded with the error
            out.append("enqueued")
        except DBOSQueueDeduplicatedError:
            out.append("refused")
    out.append(count("after"))  # 3
    return out


def test_an_enqueue_refused_by_deduplication_is_a_recorded_step(dbos: Harness, backend: Backend) -> None:
    from dbos import SetEnqueueOptions

    with SetEnqueueOptions(deduplication_id="held", delay_seconds=3600):
        holder = dedup_queue.enqueue(child, 1)  # holds the ID
    with SetWorkflowID("dedup-parent"):
        assert dedup_parent() == ["before", "refused", "after"]
    assert backend.steps("dedup-parent") == [(1, "temp_tests.count"), (2, "temp_tests.child"),
                                             (3, "temp_tests.count")]
    DBOS.cancel_workflow(holder.workflow_id)  # the ID is free now
    # The replay is refused as the first execution was: deterministic, nothing enqueued.
    backend.force_pending("dedup-parent")
    backend.delete_steps_from("dedup-parent", 3)
    with SetWorkflowID("dedup-parent"):
        assert dedup_parent() == ["before", "refused", "after"]
    assert backend.workflow_count() == 2


@DBOS.workflow(name="temp_tests.calls_denied_child")
def calls_denied_child() -> str:
    from dbos import DBOSNotAuthorizedError

    try:
        admin_only()  # refused before it takes a step ID, as in DBOS
    except DBOSNotAuthorizedError:
        pass
    return count("after-denied")  # step 1


def test_a_denied_direct_child_takes_no_step_id(dbos: Harness, backend: Backend) -> None:
    from dbos import DBOSContextSetAuth

    with DBOSContextSetAuth("eve", ["user"]), SetWorkflowID("denied-parent"):
        assert calls_denied_child() == "after-denied"
    assert backend.steps("denied-parent") == [(1, "temp_tests.count")]
    assert backend.workflow_count() == 1


release_child = threading.Event()
child_entered = threading.Event()


@DBOS.step(name="temp_tests.block")
def block() -> None:
    child_entered.set()
    release_child.wait(30)


@DBOS.workflow(name="temp_tests.slow_child")
def slow_child() -> str:
    block()
    return "slow done"


@DBOS.workflow(name="temp_tests.slow_parent")
def slow_parent() -> list[str]:
    return [slow_child(), count("after-slow")]  # 1 the child, 2 its getResult, 3


def test_a_cancelled_parent_records_no_get_result(dbos: Harness, backend: Backend) -> None:
    from conftest import eventually

    release_child.clear()
    child_entered.clear()
    with SetWorkflowID("slow-parent"):
        handle = DBOS.start_workflow(slow_parent)
    assert child_entered.wait(10)
    DBOS.cancel_workflow("slow-parent")  # while its direct child runs
    release_child.set()
    from dbos._api.instance import runtime

    eventually(lambda: backend.status("slow-parent-1") == "SUCCESS")
    eventually(lambda: "slow-parent" not in runtime().running_ids())  # its execution has stopped
    # Preempted: the child's outcome is not the parent's step; its resume waits again.
    assert backend.steps("slow-parent") == [(1, "temp_tests.slow_child")]
    DBOS.resume_workflow("slow-parent")
    assert handle.get_result() == ["slow done", "after-slow"]
    assert backend.steps("slow-parent") == [(1, "temp_tests.slow_child"), (2, "DBOS.getResult"),
                                            (3, "temp_tests.count")]
