"""Recovery at launch: this executor's PENDING workflows of this app version resume from
their last recorded step; max_recovery_attempts turns a workflow RETRIES_EXCEEDED.

Restarts are simulated in-process (DBOS.destroy() then a new DBOS on the same
database). A workflow interrupted by destroy() is preempted at its next step and
writes nothing more, like a killed process; tests/test_crash_recovery.py does the
same with real processes and SIGKILL.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest
from conftest import APP_VERSION, Backend, Harness, eventually

from dbos import DBOS, DBOSMaxRecoveryAttemptsExceededError, SetWorkflowID


class Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def hit(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


def _wait_result(workflow_id: str) -> Any:
    return DBOS.retrieve_workflow(workflow_id).get_result()


def _interrupt(
    harness: Harness, gate: threading.Event, finished: threading.Event, restart: Callable[[], Any]
) -> None:
    """'Crash' the running DBOS while a workflow waits at ``gate``; restart once it is gone."""
    harness.destroy()
    gate.set()  # let the old execution go on: it is preempted at its next step
    assert finished.wait(10), "the interrupted execution did not stop"
    restart()


def test_recovery_resumes_from_last_recorded_step(harness: Harness, backend: Backend) -> None:
    counter = Counter()
    reached, gate, old_done = threading.Event(), threading.Event(), threading.Event()
    runs = {"n": 0}

    @DBOS.step()
    def step(i: int) -> int:
        counter.hit(f"step{i}")
        return i

    @DBOS.workflow()
    def wf() -> list[int]:
        runs["n"] += 1
        first_run = runs["n"] == 1
        out = [step(1), step(2)]
        if first_run:
            reached.set()
            gate.wait(30)
        try:
            out.append(step(3))
        finally:
            if first_run:
                old_done.set()
        return out

    harness.launch()
    with SetWorkflowID("recover-me"):
        DBOS.start_workflow(wf)
    assert reached.wait(10)
    assert backend.steps("recover-me") == [(1, step.__qualname__), (2, step.__qualname__)]

    _interrupt(harness, gate, old_done, harness.restart)
    assert _wait_result("recover-me") == [1, 2, 3]
    assert counter.counts == {"step1": 1, "step2": 1, "step3": 1}
    assert runs["n"] == 2
    status = DBOS.retrieve_workflow("recover-me").get_status()
    assert status.status == "SUCCESS"
    assert status.recovery_attempts == 2
    assert [fid for fid, _ in backend.steps("recover-me")] == [1, 2, 3]


def test_recovery_of_rows_left_pending(harness: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    def step(i: int) -> int:
        counter.hit(f"s{i}")
        return i

    @DBOS.transaction()
    def txn() -> str:
        counter.hit("txn")
        return "t"

    @DBOS.workflow()
    def wf(n: int) -> list[Any]:
        return [step(i) for i in range(n)] + [txn()]

    harness.launch()
    for wid in ("left-1", "left-2"):
        with SetWorkflowID(wid):
            wf(3)
    harness.destroy()
    # left-1 lost everything from step 2 on; left-2 only its outcome.
    backend.delete_steps_from("left-1", 2)
    backend.force_pending("left-1")
    backend.force_pending("left-2")
    harness.launch()
    assert _wait_result("left-1") == [0, 1, 2, "t"]
    assert _wait_result("left-2") == [0, 1, 2, "t"]
    assert counter.counts == {"s0": 2, "s1": 3, "s2": 3, "txn": 2}  # only left-1's steps 2.. re-ran
    assert backend.status("left-1") == backend.status("left-2") == "SUCCESS"


def test_recovery_only_picks_this_executor_and_app_version(harness: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.workflow()
    def wf(tag: str) -> str:
        counter.hit(tag)
        return tag

    harness.launch()
    for tag in ("mine", "other-exec", "other-version"):
        with SetWorkflowID(tag):
            wf(tag)
    harness.destroy()
    ws = backend.table("workflow_status")
    for tag in ("mine", "other-exec", "other-version"):
        backend.force_pending(tag)
    backend.execute(f"UPDATE {ws} SET executor_id = 'exec-b' WHERE workflow_uuid = 'other-exec'")
    backend.execute(f"UPDATE {ws} SET application_version = 'v-old' WHERE workflow_uuid = 'other-version'")

    harness.launch()  # executor 'local', version APP_VERSION
    assert _wait_result("mine") == "mine"
    assert counter.counts == {"mine": 2, "other-exec": 1, "other-version": 1}
    assert backend.status("other-exec") == "PENDING"
    assert backend.status("other-version") == "PENDING"

    harness.restart(executor_id="exec-b")
    assert _wait_result("other-exec") == "other-exec"
    assert counter["other-version"] == 1 and backend.status("other-version") == "PENDING"
    assert DBOS.retrieve_workflow("other-exec").get_status().executor_id == "exec-b"

    harness.restart(application_version="v-old")
    assert _wait_result("other-version") == "other-version"
    assert counter.counts == {"mine": 2, "other-exec": 2, "other-version": 2}


def test_recovery_uses_vmid_from_environment(
    harness: Harness, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = Counter()

    @DBOS.workflow()
    def wf() -> str:
        counter.hit("wf")
        return DBOS.executor_id

    monkeypatch.setenv("DBOS__VMID", "vm-1")
    harness.launch(executor_id=None)  # the ID comes from DBOS__VMID
    with SetWorkflowID("vm-wf"):
        assert wf() == "vm-1"
    harness.destroy()
    backend.force_pending("vm-wf")
    monkeypatch.setenv("DBOS__VMID", "vm-2")
    harness.launch(executor_id=None)
    # Not this executor's: left alone.
    assert counter["wf"] == 1 and backend.status("vm-wf") == "PENDING"
    monkeypatch.setenv("DBOS__VMID", "vm-1")
    harness.restart(executor_id=None)
    assert _wait_result("vm-wf") == "vm-1"
    assert counter["wf"] == 2


def test_max_recovery_attempts_makes_workflow_retries_exceeded(harness: Harness, backend: Backend) -> None:
    counter = Counter()
    gates = [threading.Event() for _ in range(3)]
    done = [threading.Event() for _ in range(3)]
    started = [threading.Event() for _ in range(3)]

    @DBOS.step()
    def after() -> None:
        counter.hit("after")

    @DBOS.workflow(max_recovery_attempts=1)
    def stuck() -> None:
        n = counter["stuck"]
        counter.hit("stuck")
        started[n].set()
        gates[n].wait(30)
        try:
            after()
        finally:
            done[n].set()

    try:
        harness.launch()
        with SetWorkflowID("stuck-wf"):
            DBOS.start_workflow(stuck)
        assert started[0].wait(10)
        _interrupt(harness, gates[0], done[0], harness.restart)  # recovery 1: allowed
        assert started[1].wait(10)
        assert DBOS.retrieve_workflow("stuck-wf").get_status().recovery_attempts == 2
        _interrupt(harness, gates[1], done[1], harness.restart)  # recovery 2: one too many
        eventually(lambda: backend.status("stuck-wf") == "RETRIES_EXCEEDED")
        assert counter["stuck"] == 2  # not run a third time
        assert counter["after"] == 0
        with pytest.raises(DBOSMaxRecoveryAttemptsExceededError):
            _wait_result("stuck-wf")
        status = DBOS.retrieve_workflow("stuck-wf").get_status()
        assert status.status == "RETRIES_EXCEEDED"
        # Further restarts leave it alone (it is no longer PENDING).
        harness.restart()
        assert counter["stuck"] == 2
        assert backend.status("stuck-wf") == "RETRIES_EXCEEDED"
    finally:
        for g in gates:
            g.set()


@pytest.mark.parametrize(("attempts_before", "expected"), [(2, "SUCCESS"), (3, "RETRIES_EXCEEDED")])
def test_max_recovery_attempts_boundary(
    harness: Harness, backend: Backend, attempts_before: int, expected: str
) -> None:
    """max_recovery_attempts=2: the first run plus two recoveries may run; a third may not."""
    counter = Counter()

    @DBOS.workflow(max_recovery_attempts=2)
    def wf() -> str:
        counter.hit("wf")
        return "ran"

    harness.launch()
    with SetWorkflowID("boundary"):
        wf()
    harness.destroy()
    backend.force_pending("boundary")
    backend.execute(
        f"UPDATE {backend.table('workflow_status')} SET recovery_attempts = :n WHERE workflow_uuid = 'boundary'",
        n=attempts_before,
    )
    harness.launch()
    eventually(lambda: backend.status("boundary") == expected)
    assert counter["wf"] == (2 if expected == "SUCCESS" else 1)


def test_recovery_of_async_workflow(harness: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    async def astep(i: int) -> int:
        counter.hit(f"a{i}")
        return i

    @DBOS.workflow()
    async def awf() -> list[int]:
        return [await astep(1), await astep(2)]

    import asyncio

    harness.launch()

    async def run() -> list[int]:
        with SetWorkflowID("async-recover"):
            return await awf()

    assert asyncio.run(run()) == [1, 2]
    harness.destroy()
    backend.delete_steps_from("async-recover", 2)
    backend.force_pending("async-recover")
    harness.launch()
    assert _wait_result("async-recover") == [1, 2]
    assert counter.counts == {"a1": 1, "a2": 2}


def test_recovery_of_parent_and_child(harness: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.workflow()
    def child(x: int) -> int:
        counter.hit("child")
        return x + 1

    @DBOS.workflow()
    def parent() -> int:
        counter.hit("parent")
        return child(1) + child(10)

    harness.launch()
    with SetWorkflowID("fam"):
        assert parent() == 13
    harness.destroy()
    # Parent crashed after starting its second child (step 3; step 2 is the first child's
    # DBOS.getResult), which had not finished: the parent's getResult of it (4) is not recorded.
    backend.force_pending("fam")
    backend.force_pending("fam-3")
    backend.delete_steps_from("fam", 4)
    harness.launch()
    assert _wait_result("fam") == 13
    assert _wait_result("fam-3") == 11
    assert counter["child"] == 3  # fam-1 once, fam-3 twice (its own recovery, or the parent's wait)
    assert backend.workflow_count() == 3


def test_unknown_workflow_function_does_not_break_launch(harness: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def wf() -> int:
        return 1

    harness.launch()
    with SetWorkflowID("orphan"):
        wf()
    with SetWorkflowID("healthy"):
        wf()
    harness.destroy()
    ws = backend.table("workflow_status")
    backend.force_pending("orphan")
    backend.force_pending("healthy")
    backend.execute(f"UPDATE {ws} SET name = 'no.such.workflow' WHERE workflow_uuid = 'orphan'")
    harness.launch()
    assert _wait_result("healthy") == 1
    assert backend.status("orphan") == "PENDING"


def test_launch_on_several_fresh_databases_in_one_process(backend: Backend) -> None:
    """Migrations must be repeatable in one process (shared table metadata is not mutated)."""
    dbs = [backend.other_database() for _ in range(3)]
    for db in dbs:
        DBOS(config={"name": "multi", "system_database_url": db.url, "application_version": APP_VERSION})
        DBOS.launch()
        DBOS.destroy()
        assert db.scalar(f"SELECT count(*) FROM {db.table('workflow_status')}") == 0


@pytest.mark.parametrize("next_call", ["step", "transaction", "child", "return"])
def test_destroy_preempts_a_running_workflow_and_records_nothing(
    harness: Harness, backend: Backend, next_call: str
) -> None:
    counter = Counter()
    reached, gate, done = threading.Event(), threading.Event(), threading.Event()

    @DBOS.step()
    def step() -> None:
        counter.hit("step")

    @DBOS.transaction()
    def txn() -> None:
        counter.hit("transaction")

    @DBOS.workflow()
    def child() -> None:
        counter.hit("child")

    @DBOS.workflow()
    def wf() -> str:
        reached.set()
        gate.wait(30)
        try:
            if next_call == "step":
                step()
            elif next_call == "transaction":
                txn()
            elif next_call == "child":
                child()
            return "finished"
        finally:
            done.set()

    harness.launch()
    with SetWorkflowID("preempted"):
        handle = DBOS.start_workflow(wf)
    assert reached.wait(10)
    harness.destroy()
    gate.set()
    assert done.wait(10)
    assert counter.counts == {}
    # Nothing was recorded after the destroy: the workflow is left for recovery.
    assert backend.status("preempted") == "PENDING"
    assert backend.steps("preempted") == []
    assert backend.workflow_count() == 1
    del handle
    harness.launch()
    assert _wait_result("preempted") == "finished"
    assert counter.counts == ({} if next_call == "return" else {next_call: 1})
