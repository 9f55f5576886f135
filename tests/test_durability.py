"""The durability model: status row first, one checkpoint per step, idempotent IDs,
recorded errors, step retries, child workflows, handles and retrieval."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from typing import Any, Optional

import pytest
from conftest import APP_VERSION, Backend, Harness, eventually

from dbos import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSConflictingWorkflowError,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    SetWorkflowID,
    StepStatus,
    WorkflowHandle,
    WorkflowHandleAsync,
    WorkflowStatus,
)
from dbos._api.instance import runtime


class Counter:
    """Thread-safe execution counts, by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def hit(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- status row and checkpoints ---------------------------------------------------


def test_status_row_is_pending_inside_the_workflow(dbos: Harness, backend: Backend) -> None:
    @DBOS.step()
    def read_own_status() -> tuple[str, int]:
        wid = DBOS.workflow_id
        assert wid is not None
        status = DBOS.retrieve_workflow(wid).get_status()
        return status.status, len(backend.steps(wid))

    @DBOS.workflow()
    def wf() -> tuple[str, int]:
        return read_own_status()

    with SetWorkflowID("own-status"):
        assert wf() == ("PENDING", 0)
    assert backend.status("own-status") == "SUCCESS"


def test_status_row_written_before_first_step(dbos: Harness, backend: Backend) -> None:
    entered, release = threading.Event(), threading.Event()
    counter = Counter()

    @DBOS.step()
    def first() -> int:
        counter.hit("first")
        return 1

    @DBOS.workflow()
    def wf(x: int) -> int:
        entered.set()
        assert release.wait(30)
        return first() + x

    try:
        with SetWorkflowID("before-first"):
            handle = DBOS.start_workflow(wf, 41)
        assert entered.wait(10)
        # The workflow is running and has not taken a step: its row is already there.
        assert backend.status("before-first") == "PENDING"
        assert backend.steps("before-first") == []
        status = handle.get_status()
        assert status.status == "PENDING"
        assert status.output is None and status.error is None
        assert DBOS.retrieve_workflow("before-first").get_status().status == "PENDING"
    finally:
        release.set()
    assert handle.get_result() == 42
    assert handle.get_status().status == "SUCCESS"
    assert counter["first"] == 1


def test_one_checkpoint_per_step(dbos: Harness, backend: Backend) -> None:
    @DBOS.step()
    def a(x: int) -> int:
        return x + 1

    @DBOS.step(name="b-step")
    def b(x: int) -> str:
        return f"b{x}"

    @DBOS.workflow()
    def wf(x: int) -> list[Any]:
        return [a(x), b(x), a(x + 10), DBOS.workflow_id]

    with SetWorkflowID("ckpt"):
        assert wf(1) == [2, "b1", 12, "ckpt"]
    rows = backend.rows(
        f"SELECT function_id, function_name, output, error FROM {backend.table('operation_outputs')} "
        "WHERE workflow_uuid = 'ckpt' ORDER BY function_id"
    )
    a_name = "test_one_checkpoint_per_step.<locals>.a"
    assert [(r[0], r[1]) for r in rows] == [(1, a_name), (2, "b-step"), (3, a_name)]
    assert [pickle.loads(r[2]) for r in rows] == [2, "b1", 12]
    assert all(r[3] is None for r in rows)
    # Exactly one row per step: nothing else for this workflow, and the outcome is recorded.
    assert backend.scalar(
        f"SELECT count(*) FROM {backend.table('operation_outputs')} WHERE workflow_uuid = 'ckpt'"
    ) == 3
    assert backend.status("ckpt") == "SUCCESS"
    output = backend.scalar(f"SELECT output FROM {backend.table('workflow_status')} WHERE workflow_uuid = 'ckpt'")
    assert pickle.loads(output) == [2, "b1", 12, "ckpt"]


def test_each_step_is_recorded_before_the_next_starts(dbos: Harness, backend: Backend) -> None:
    seen: list[list[tuple[int, str]]] = []

    @DBOS.step()
    def look() -> None:
        wid = DBOS.workflow_id
        assert wid is not None
        seen.append(backend.steps(wid))

    @DBOS.workflow()
    def wf() -> None:
        look()
        look()
        look()

    with SetWorkflowID("ordered"):
        wf()
    name = "test_each_step_is_recorded_before_the_next_starts.<locals>.look"
    assert seen == [[], [(1, name)], [(1, name), (2, name)]]


def test_a_step_recorded_by_another_execution_meanwhile_returns_its_record(dbos: Harness, backend: Backend) -> None:
    """Two executions of one workflow (e.g. recovered elsewhere while still running
    here) race on a step: the one that checkpoints second gets the first one's
    recorded output (and error), so both go on alike, and one row stays."""
    from dbos._execution.serialization import serialize, serialize_error

    gate = threading.Event()

    @DBOS.step()
    def slow(x: int) -> str:
        assert gate.wait(20)
        return f"mine-{x}"

    @DBOS.step()
    def failing() -> str:
        return "mine"

    @DBOS.workflow()
    def wf() -> list[Any]:
        first = slow(1)
        try:
            second: Any = failing()
        except ValueError as e:
            second = f"raised {e}"
        return [first, second, slow(3)]

    def record_theirs(fid: int, name: str, output: Optional[bytes], error: Optional[bytes]) -> None:
        backend.execute(
            f"INSERT INTO {backend.table('operation_outputs')} (workflow_uuid, function_id, function_name, output, error)"
            " VALUES ('race-step', :f, :n, :o, :e)",
            f=fid, n=name, o=output, e=error,
        )

    prefix = "test_a_step_recorded_by_another_execution_meanwhile_returns_its_record.<locals>."
    with SetWorkflowID("race-step"):
        handle = DBOS.start_workflow(wf)
    eventually(lambda: backend.status("race-step") == "PENDING", timeout=10, what="(workflow running)")
    record_theirs(1, prefix + "slow", serialize("theirs-1", "t"), None)
    record_theirs(2, prefix + "failing", None, serialize_error(ValueError("theirs-2")))
    gate.set()
    assert handle.get_result() == ["theirs-1", "raised theirs-2", "mine-3"]
    assert backend.scalar(
        f"SELECT count(*) FROM {backend.table('operation_outputs')} WHERE workflow_uuid = 'race-step'"
    ) == 3


# -- SetWorkflowID idempotency ---------------------------------------------------


def test_same_workflow_id_returns_recorded_result_and_runs_nothing(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    def charge(amount: float) -> float:
        counter.hit("charge")
        return amount

    @DBOS.workflow()
    def checkout(order: str, amount: float) -> str:
        counter.hit("checkout")
        charge(amount)
        return f"{order}:{DBOS.workflow_id}"

    with SetWorkflowID("order-1"):
        assert checkout("o1", 9.99) == "o1:order-1"
    with SetWorkflowID("order-1"):
        assert checkout("o1", 9.99) == "o1:order-1"
    # Even with other arguments, the recorded result of that ID is returned.
    with SetWorkflowID("order-1"):
        assert checkout("other", 1.0) == "o1:order-1"
    handle = DBOS.start_workflow(checkout, "ignored", 0)  # a new ID: runs
    handle.get_result()
    with SetWorkflowID("order-1"):
        again = DBOS.start_workflow(checkout, "o1", 9.99)
    assert again.workflow_id == "order-1"
    assert again.get_result() == "o1:order-1"
    assert counter["checkout"] == 2
    assert counter["charge"] == 2
    assert backend.workflow_count() == 2


def test_set_workflow_id_applies_to_the_next_workflow_only(dbos: Harness) -> None:
    @DBOS.workflow()
    def wf() -> Optional[str]:
        return DBOS.workflow_id

    with SetWorkflowID("only-once"):
        first = wf()
        second = wf()
    assert first == "only-once"
    assert second is not None and second != "only-once"


def test_concurrent_call_with_same_id_waits_for_the_running_execution(dbos: Harness) -> None:
    counter = Counter()
    entered, release = threading.Event(), threading.Event()

    @DBOS.workflow()
    def slow() -> str:
        counter.hit("slow")
        entered.set()
        assert release.wait(30)
        return "done"

    results: list[str] = []

    def second_caller() -> None:
        with SetWorkflowID("dup"):
            results.append(slow())

    try:
        with SetWorkflowID("dup"):
            handle = DBOS.start_workflow(slow)
        assert entered.wait(10)
        t = threading.Thread(target=second_caller)
        t.start()
        t.join(0.2)
        assert t.is_alive(), "the second call must wait for the running execution"
    finally:
        release.set()
    t.join(10)
    assert handle.get_result() == "done"
    assert results == ["done"]
    assert counter["slow"] == 1


def test_same_id_for_a_different_workflow_conflicts(dbos: Harness) -> None:
    @DBOS.workflow()
    def one() -> int:
        return 1

    @DBOS.workflow()
    def two() -> int:
        return 2

    with SetWorkflowID("shared-id"):
        one()
    with SetWorkflowID("shared-id"):
        with pytest.raises(DBOSConflictingWorkflowError, match="Workflow already exists with a different function name"):
            two()


# -- errors -----------------------------------------------------------------------


class OrderError(Exception):
    def __init__(self, order: str, code: int) -> None:
        super().__init__(order, code)
        self.order = order
        self.code = code


def test_workflow_error_recorded_and_reraised_without_rerunning(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    def failing_step(order: str) -> None:
        counter.hit("step")
        raise OrderError(order, 402)

    @DBOS.workflow()
    def wf(order: str) -> None:
        counter.hit("wf")
        failing_step(order)

    with SetWorkflowID("err-1"):
        with pytest.raises(OrderError) as first:
            wf("o9")
    assert (first.value.order, first.value.code) == ("o9", 402)
    assert backend.status("err-1") == "ERROR"
    error_blob = backend.scalar(
        f"SELECT error FROM {backend.table('operation_outputs')} WHERE workflow_uuid = 'err-1' AND function_id = 1"
    )
    assert isinstance(pickle.loads(error_blob), OrderError)

    with SetWorkflowID("err-1"):
        with pytest.raises(OrderError) as second:
            wf("o9")
    assert (second.value.order, second.value.code) == ("o9", 402)
    handle = DBOS.retrieve_workflow("err-1")
    with pytest.raises(OrderError):
        handle.get_result()
    status = handle.get_status()
    assert status.status == "ERROR"
    assert isinstance(status.error, OrderError) and status.error.code == 402
    assert counter["wf"] == 1 and counter["step"] == 1


def test_error_raised_by_workflow_body_is_recorded(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def wf() -> None:
        raise KeyError("missing")

    handle = DBOS.start_workflow(wf)
    with pytest.raises(KeyError, match="missing"):
        handle.get_result()
    assert handle.get_status().status == "ERROR"
    assert backend.status(handle.workflow_id) == "ERROR"


def test_caught_step_error_is_replayed_not_rerun(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    def flaky() -> None:
        counter.hit("flaky")
        raise RuntimeError("boom")

    @DBOS.step()
    def after() -> str:
        counter.hit("after")
        return "after"

    @DBOS.workflow()
    def wf() -> str:
        try:
            flaky()
        except RuntimeError as e:
            return f"caught {e}: {after()}"
        return "not caught"

    with SetWorkflowID("caught"):
        assert wf() == "caught boom: after"
    backend.force_pending("caught")
    with SetWorkflowID("caught"):
        assert wf() == "caught boom: after"
    assert counter["flaky"] == 1 and counter["after"] == 1


# -- step retries -------------------------------------------------------------------


def test_step_retries_with_backoff_and_step_status(dbos: Harness, backend: Backend) -> None:
    attempts: list[tuple[StepStatus, float]] = []

    @DBOS.step(retries_allowed=True, max_attempts=4, interval_seconds=0.05, backoff_rate=2.0)
    def flaky() -> str:
        status = DBOS.step_status
        assert status is not None
        attempts.append((status, time.monotonic()))
        if len(attempts) < 3:
            raise ConnectionError(f"attempt {len(attempts)}")
        return "ok"

    @DBOS.workflow()
    def wf() -> str:
        return flaky()

    with SetWorkflowID("retry-ok"):
        assert wf() == "ok"
    statuses = [s for s, _ in attempts]
    assert [s.current_attempt for s in statuses] == [0, 1, 2]
    assert {s.max_attempts for s in statuses} == {4}
    assert {s.step_id for s in statuses} == {1}
    gaps = [b - a for (_, a), (_, b) in zip(attempts, attempts[1:])]
    assert gaps[0] >= 0.045, gaps  # interval_seconds
    assert gaps[1] >= 0.095, gaps  # interval_seconds * backoff_rate
    # One checkpoint for the step, however many attempts it took.
    assert len(backend.steps("retry-ok")) == 1


def test_step_retries_exhausted_raise_max_step_retries_exceeded(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.01, backoff_rate=1.0)
    def always_fails() -> None:
        counter.hit("fails")
        raise ValueError(f"failure {counter['fails']}")

    @DBOS.workflow()
    def wf() -> None:
        always_fails()

    with SetWorkflowID("retry-fail"):
        with pytest.raises(DBOSMaxStepRetriesExceeded) as info:
            wf()
    assert counter["fails"] == 3
    # DBOS 2.x's words and attribute, which code written for DBOS uses.
    assert "has exceeded its maximum of 3 retries; last error: ValueError('failure 3')" in str(info.value)
    assert info.value.max_retries == 3
    assert backend.status("retry-fail") == "ERROR"
    # The recorded error is replayed: no new attempts.
    with SetWorkflowID("retry-fail"):
        with pytest.raises(DBOSMaxStepRetriesExceeded):
            wf()
    backend.force_pending("retry-fail")
    with SetWorkflowID("retry-fail"):
        with pytest.raises(DBOSMaxStepRetriesExceeded):
            wf()
    assert counter["fails"] == 3


def test_cancel_interrupts_a_step_waiting_to_retry(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step(retries_allowed=True, max_attempts=5, interval_seconds=30)
    def flaky() -> None:
        counter.hit("flaky")
        raise ValueError("try again later")

    @DBOS.workflow()
    def wf() -> None:
        flaky()

    with SetWorkflowID("retry-cancel"):
        handle = DBOS.start_workflow(wf)
    eventually(lambda: counter["flaky"] == 1, timeout=10, what="(first attempt)")
    DBOS.cancel_workflow("retry-cancel")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    # The execution itself stops: the 30 s retry delay is cut short.
    eventually(lambda: runtime().local("retry-cancel") is None, timeout=10, what="(execution stopped)")
    assert counter["flaky"] == 1
    assert backend.status("retry-cancel") == "CANCELLED"
    assert backend.steps("retry-cancel") == []


def test_step_without_retries_fails_once_with_its_own_error(dbos: Harness) -> None:
    counter = Counter()

    @DBOS.step()
    def once() -> None:
        counter.hit("once")
        raise ValueError("no retry")

    @DBOS.workflow()
    def wf() -> None:
        once()

    with pytest.raises(ValueError, match="no retry"):
        wf()
    assert counter["once"] == 1


def test_step_outside_a_workflow_is_not_retried(dbos: Harness) -> None:
    counter = Counter()

    @DBOS.step(retries_allowed=True, max_attempts=2, interval_seconds=0.01)
    def fails() -> None:
        counter.hit("fails")
        raise ValueError("x")

    with pytest.raises(ValueError):  # as in DBOS 2.x: a plain call, its own error (issue 18)
        fails()
    assert counter["fails"] == 1


# -- child workflows ------------------------------------------------------------------


def test_child_workflows_get_deterministic_ids(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    def s() -> int:
        counter.hit("s")
        return 1

    @DBOS.workflow()
    def child(x: int) -> str:
        counter.hit("child")
        return f"child{x}:{DBOS.workflow_id}"

    @DBOS.workflow()
    def parent() -> list[str]:
        counter.hit("parent")
        s()  # function_id 1
        direct = child(1)  # function_id 2, and 3 its DBOS.getResult (as in DBOS 2.x)
        handle = DBOS.start_workflow(child, 2)  # function_id 4
        with SetWorkflowID("explicit-child"):
            named = child(3)  # function_id 5, and 6 its DBOS.getResult
        return [direct, handle.get_result(), named]  # get_result: function_id 7

    with SetWorkflowID("parent-1"):
        out = parent()
    assert out[0] == "child1:parent-1-2"
    assert out[1] == "child2:parent-1-4"
    assert out[2] == "child3:explicit-child"
    child_ids: dict[int, str] = dict(
        backend.rows(
            f"SELECT function_id, child_workflow_id FROM {backend.table('operation_outputs')} "
            "WHERE workflow_uuid = 'parent-1' AND child_workflow_id IS NOT NULL ORDER BY function_id"
        )
    )
    # Each get_result (implicit for a direct call) names the child it waited for.
    assert child_ids == {2: "parent-1-2", 3: "parent-1-2", 4: "parent-1-4", 5: "explicit-child",
                         6: "explicit-child", 7: "parent-1-4"}
    for wid in ("parent-1-2", "parent-1-4", "explicit-child"):
        status = DBOS.retrieve_workflow(wid).get_status()
        assert status.status == "SUCCESS"
        assert status.parent_workflow_id == "parent-1"

    # Re-running the parent (as after a crash) reuses the children: nothing re-runs.
    backend.force_pending("parent-1")
    with SetWorkflowID("parent-1"):
        assert parent() == out
    assert counter["child"] == 3 and counter["s"] == 1 and counter["parent"] == 2
    assert backend.workflow_count() == 4


def test_child_of_a_rerun_parent_is_the_same_child(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.workflow()
    def child() -> int:
        counter.hit("child")
        return 7

    @DBOS.workflow()
    def parent() -> int:
        return child() * 2

    with SetWorkflowID("p2"):
        assert parent() == 14
    # The child finished but the parent's result was lost: re-running finds the child.
    backend.force_pending("p2")
    backend.force_pending("p2-1")
    backend.delete_steps_from("p2", 1)
    with SetWorkflowID("p2"):
        assert parent() == 14
    assert DBOS.retrieve_workflow("p2-1").get_result() == 7
    assert backend.workflow_count() == 2


# -- handles ------------------------------------------------------------------------


def test_start_workflow_handle_and_status_fields(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def greet(name: str, *, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    before = _now_ms()
    handle = DBOS.start_workflow(greet, "ann", punctuation="?")
    assert isinstance(handle, WorkflowHandle)
    assert handle.get_result() == "hello ann?"
    assert handle.get_workflow_id() == handle.workflow_id
    status = handle.get_status()
    assert isinstance(status, WorkflowStatus)
    assert status.workflow_id == handle.workflow_id
    assert status.status == "SUCCESS"
    assert status.name == "test_start_workflow_handle_and_status_fields.<locals>.greet"
    assert status.recovery_attempts >= 1
    assert status.executor_id == "local"
    assert status.app_version == APP_VERSION
    assert status.input == {"args": ("ann",), "kwargs": {"punctuation": "?"}}
    assert status.output == "hello ann?"
    assert status.error is None
    assert status.class_name is None and status.config_name is None
    assert status.queue_name is None
    assert status.authenticated_user is None and status.authenticated_roles is None
    assert status.assumed_role is None
    assert isinstance(status.created_at, int) and isinstance(status.updated_at, int)
    assert before - 1000 <= status.created_at <= status.updated_at <= _now_ms() + 1000
    for field in (
        "workflow_id", "status", "name", "recovery_attempts", "class_name", "config_name",
        "authenticated_user", "assumed_role", "authenticated_roles", "input", "output", "error",
        "created_at", "updated_at", "queue_name", "executor_id", "app_version", "app_id",
    ):
        assert hasattr(status, field), field


def test_generated_workflow_ids_are_time_ordered_uuids(dbos: Harness) -> None:
    """Without SetWorkflowID a workflow gets a version-7 UUID: unique, and later
    ones sort later (so the status table's primary key grows at its right end)."""
    import uuid

    @DBOS.workflow()
    def wf() -> Optional[str]:
        return DBOS.workflow_id

    ids = []
    for _ in range(5):
        ids.append(DBOS.start_workflow(wf).workflow_id)
        time.sleep(0.002)
    assert all(uuid.UUID(i).version == 7 and str(uuid.UUID(i)) == i for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert int(ids[0].replace("-", "")[:12], 16) == pytest.approx(time.time() * 1000, abs=60_000)
    assert [DBOS.retrieve_workflow(i).get_result() for i in ids] == ids


def test_start_workflow_with_set_workflow_id(dbos: Harness) -> None:
    @DBOS.workflow()
    def wf(x: int) -> int:
        return x * 2

    with SetWorkflowID("started-1"):
        handle = DBOS.start_workflow(wf, 21)
    assert handle.workflow_id == "started-1"
    assert handle.get_result() == 42
    assert DBOS.retrieve_workflow("started-1").get_result() == 42


def test_start_workflow_async_and_async_handles(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    async def astep(x: int) -> int:
        counter.hit("astep")
        return x + 1

    @DBOS.workflow()
    async def awf(x: int) -> int:
        return await astep(x) * 10

    @DBOS.workflow()
    def swf(x: int) -> int:
        return x - 1

    async def main() -> None:
        with SetWorkflowID("async-start"):
            handle = await DBOS.start_workflow_async(awf, 4)
        assert isinstance(handle, WorkflowHandleAsync)
        assert handle.workflow_id == "async-start"
        assert await handle.get_result() == 50
        status = await handle.get_status()
        assert status.status == "SUCCESS" and status.output == 50

        retrieved = await DBOS.retrieve_workflow_async("async-start")
        assert isinstance(retrieved, WorkflowHandleAsync)
        assert await retrieved.get_result() == 50
        assert retrieved.get_workflow_id() == "async-start"

        sync_handle: WorkflowHandleAsync[int] = await DBOS.start_workflow_async(swf, 10)  # type: ignore[arg-type]
        assert await sync_handle.get_result() == 9

        with pytest.raises(DBOSNonExistentWorkflowError):
            await DBOS.retrieve_workflow_async("no-such-async")

    asyncio.run(main())
    assert counter["astep"] == 1
    assert backend.steps("async-start") == [(1, "test_start_workflow_async_and_async_handles.<locals>.astep")]


def test_async_workflow_concurrency_in_one_loop(dbos: Harness) -> None:
    @DBOS.workflow()
    async def sleeper(i: int) -> int:
        await asyncio.sleep(0.05)
        return i

    async def main() -> list[int]:
        return list(await asyncio.gather(*(sleeper(i) for i in range(10))))

    start = time.monotonic()
    assert asyncio.run(main()) == list(range(10))
    assert time.monotonic() - start < 5


def test_retrieve_unknown_workflow_raises(dbos: Harness) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError) as info:
        DBOS.retrieve_workflow("does-not-exist")
    assert "does-not-exist" in str(info.value)


def test_retrieve_workflow_waits_for_creation(dbos: Harness) -> None:
    @DBOS.workflow()
    def later() -> str:
        return "created later"

    got: list[Any] = []
    errors: list[BaseException] = []
    # The handle comes at once (issue 11); its get_result waits for the workflow to exist.
    handle: WorkflowHandle[Any] = DBOS.retrieve_workflow("later-id", existing_workflow=False)
    assert handle.workflow_id == "later-id"

    def waiter() -> None:
        try:
            got.append(handle.get_result())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    t.join(0.3)
    assert t.is_alive(), "get_result() of a workflow not created yet must wait for it"
    with SetWorkflowID("later-id"):
        DBOS.start_workflow(later)
    t.join(10)
    assert not t.is_alive() and not errors
    assert got == ["created later"]


def test_retrieve_workflow_async_waits_for_creation(dbos: Harness) -> None:
    @DBOS.workflow()
    def later() -> str:
        return "async later"

    def create_soon() -> None:
        with SetWorkflowID("later-async"):
            DBOS.start_workflow(later)

    async def main() -> str:
        handle = await DBOS.retrieve_workflow_async("later-async", existing_workflow=False)
        task = asyncio.ensure_future(handle.get_result())
        await asyncio.sleep(0.1)
        assert not task.done()
        await asyncio.get_running_loop().run_in_executor(None, create_soon)
        return str(await asyncio.wait_for(task, 10))

    assert asyncio.run(main()) == "async later"


def test_handle_from_another_thread_sees_result(dbos: Harness) -> None:
    release = threading.Event()

    @DBOS.workflow()
    def gated() -> int:
        assert release.wait(30)
        return 5

    try:
        handle = DBOS.start_workflow(gated)
        results: list[int] = []
        t = threading.Thread(target=lambda: results.append(DBOS.retrieve_workflow(handle.workflow_id).get_result()))
        t.start()
        eventually(lambda: DBOS.retrieve_workflow(handle.workflow_id).get_status().status == "PENDING")
    finally:
        release.set()
    t.join(10)
    assert results == [5]


def test_get_status_in_workflow_body_is_pending_and_replays(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def wf() -> tuple[str, str]:
        wid = DBOS.workflow_id
        assert wid is not None
        handle = DBOS.retrieve_workflow(wid)
        return handle.get_status().status, handle.workflow_id

    with SetWorkflowID("self-status"):
        assert wf() == ("PENDING", "self-status")
    backend.force_pending("self-status")
    with SetWorkflowID("self-status"):
        assert wf() == ("PENDING", "self-status")
    assert backend.status("self-status") == "SUCCESS"
