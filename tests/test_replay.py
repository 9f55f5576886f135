"""Replay: re-running a workflow returns recorded step outputs without re-executing
them; a replay that meets a different step at a recorded position fails clearly."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from conftest import Backend, Harness

from dbos import DBOS, DBOSUnexpectedStepError, SetWorkflowID


class Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def hit(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


def test_rerun_replays_recorded_steps_and_runs_the_rest(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    def step(i: int) -> str:
        counter.hit(f"step{i}")
        return f"{i}:{uuid.uuid4()}"  # not deterministic: replay must return the recorded value

    @DBOS.workflow()
    def wf() -> list[str]:
        counter.hit("body")
        return [step(1), step(2), step(3)]

    with SetWorkflowID("replay-1"):
        first = wf()
    # As if the process died after step 2: step 3's checkpoint and the outcome are lost.
    backend.delete_steps_from("replay-1", 3)
    backend.force_pending("replay-1")
    with SetWorkflowID("replay-1"):
        second = wf()
    assert second[:2] == first[:2]  # recorded outputs, not new uuids
    assert second[2] != first[2]  # step 3 ran again
    assert counter["step1"] == 1 and counter["step2"] == 1 and counter["step3"] == 2
    assert counter["body"] == 2
    assert backend.status("replay-1") == "SUCCESS"
    assert DBOS.retrieve_workflow("replay-1").get_result() == second
    assert [fid for fid, _ in backend.steps("replay-1")] == [1, 2, 3]


def test_rerun_via_start_workflow_replays(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    def step(i: int) -> int:
        counter.hit(f"s{i}")
        return i * 10

    @DBOS.workflow()
    def wf(n: int) -> int:
        return sum(step(i) for i in range(n))

    with SetWorkflowID("replay-start"):
        assert DBOS.start_workflow(wf, 4).get_result() == 60
    backend.delete_steps_from("replay-start", 4)
    backend.force_pending("replay-start")
    with SetWorkflowID("replay-start"):
        handle = DBOS.start_workflow(wf, 4)
    assert handle.get_result() == 60
    assert [counter[f"s{i}"] for i in range(4)] == [1, 1, 1, 2]
    status = handle.get_status()
    assert status.status == "SUCCESS"
    assert status.recovery_attempts == 2  # the re-run counted as an attempt


def test_fully_recorded_rerun_executes_no_step(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    def a() -> str:
        counter.hit("a")
        return "a"

    @DBOS.transaction()
    def t() -> str:
        counter.hit("t")
        return "t"

    @DBOS.workflow()
    def wf() -> str:
        return a() + t() + a()

    with SetWorkflowID("replay-all"):
        assert wf() == "ata"
    backend.force_pending("replay-all")
    with SetWorkflowID("replay-all"):
        assert wf() == "ata"
    assert counter.counts == {"a": 2, "t": 1}


def test_replay_with_different_step_name_raises(dbos: Harness, backend: Backend) -> None:
    counter = Counter()
    version = {"v": 1}

    @DBOS.step()
    def charge() -> str:
        counter.hit("charge")
        return "charged"

    @DBOS.step()
    def refund() -> str:
        counter.hit("refund")
        return "refunded"

    @DBOS.workflow()
    def wf() -> str:
        if version["v"] == 1:
            return charge()
        return refund()  # the code changed: a different step at position 1

    with SetWorkflowID("nondet"):
        assert wf() == "charged"
    backend.force_pending("nondet")
    version["v"] = 2
    with SetWorkflowID("nondet"):
        with pytest.raises(DBOSUnexpectedStepError) as info:
            wf()
    message = str(info.value)
    assert "nondet" in message
    assert "refund" in message and "charge" in message
    assert counter["refund"] == 0  # never executed instead of returning the recorded output
    assert counter["charge"] == 1


def test_replay_with_child_workflow_at_a_step_position_raises(dbos: Harness, backend: Backend) -> None:
    version = {"v": 1}

    @DBOS.step()
    def step() -> int:
        return 1

    @DBOS.workflow()
    def child() -> int:
        return 2

    @DBOS.workflow()
    def wf() -> int:
        return step() if version["v"] == 1 else child()

    with SetWorkflowID("nondet-child"):
        assert wf() == 1
    backend.force_pending("nondet-child")
    version["v"] = 2
    with SetWorkflowID("nondet-child"):
        with pytest.raises(DBOSUnexpectedStepError):
            wf()
    # No child workflow was created instead of the recorded step.
    assert backend.workflow_count() == 1


def test_extra_steps_after_the_recorded_ones_run(dbos: Harness, backend: Backend) -> None:
    """Steps beyond the recorded prefix are new work, not a mismatch."""
    counter = Counter()
    n = {"steps": 2}

    @DBOS.step()
    def step(i: int) -> int:
        counter.hit(f"s{i}")
        return i

    @DBOS.workflow()
    def wf() -> list[int]:
        return [step(i) for i in range(n["steps"])]

    with SetWorkflowID("grow"):
        assert wf() == [0, 1]
    backend.force_pending("grow")
    n["steps"] = 3
    with SetWorkflowID("grow"):
        assert wf() == [0, 1, 2]
    assert counter.counts == {"s0": 1, "s1": 1, "s2": 1}


def test_async_replay(dbos: Harness, backend: Backend) -> None:
    import asyncio

    counter = Counter()

    @DBOS.step()
    async def astep(i: int) -> int:
        counter.hit(f"a{i}")
        return i

    @DBOS.workflow()
    async def awf() -> list[Any]:
        return [await astep(1), await astep(2)]

    async def run() -> list[Any]:
        with SetWorkflowID("areplay"):
            return await awf()

    assert asyncio.run(run()) == [1, 2]
    backend.delete_steps_from("areplay", 2)
    backend.force_pending("areplay")
    assert asyncio.run(run()) == [1, 2]
    assert counter.counts == {"a1": 1, "a2": 2}
