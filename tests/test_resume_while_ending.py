"""A workflow cancelled and resumed while its cancelled execution is still ending here.

The resume puts it on the internal queue and this executor claims it at once, while the
cancelled execution has not stopped yet (it is inside a step, and stops at the next
check). The claimed row must run when that execution ends: before, the claim found the
workflow "already executing here", was dropped, and the workflow stayed PENDING under
this executor, run by nobody, until a restart. (Found on SQLite with a recv cancelled
and resumed twice: about one run in six hung.)
"""

from __future__ import annotations

import threading
import time

from conftest import Harness, eventually

from dbos import DBOS

in_step = threading.Event()
release_step = threading.Event()
runs: list[str] = []


@DBOS.step()
def held_step() -> int:
    in_step.set()
    release_step.wait(20)
    return 7


@DBOS.workflow()
def ending_slowly() -> str:
    runs.append(DBOS.workflow_id or "")
    value = held_step()
    got = DBOS.recv("go", 30)
    return f"{value}:{got}"


def _pending_claimed(workflow_id: str) -> bool:
    status = DBOS.get_workflow_status(workflow_id)
    return status is not None and status.status == "PENDING" and status.executor_id is not None


def test_a_claim_made_while_the_cancelled_execution_ends_runs_after_it(dbos: Harness) -> None:
    in_step.clear()
    release_step.clear()
    runs.clear()
    handle = DBOS.start_workflow(ending_slowly)
    assert in_step.wait(10)
    DBOS.cancel_workflow(handle.workflow_id)
    DBOS.resume_workflow(handle.workflow_id)
    # Claimed again (PENDING, on this executor) while the first execution is still in its step.
    eventually(lambda: _pending_claimed(handle.workflow_id), what="the resumed workflow claimed")
    time.sleep(0.3)
    assert runs == [handle.workflow_id]  # the claim has not started a second execution beside the first
    release_step.set()  # the cancelled execution leaves its step and stops
    eventually(lambda: len(runs) == 2, what="the claimed row started once the first execution ended")
    DBOS.send(handle.workflow_id, "now", "go")
    assert handle.get_result() == "7:now"
    steps = [s["function_name"] for s in DBOS.list_workflow_steps(handle.workflow_id)]
    assert steps.count("held_step") == 1  # recorded once, replayed by the second execution


def test_cancel_and_resume_twice_in_a_recv(dbos: Harness) -> None:
    for _ in range(3):
        handle = DBOS.start_workflow(_waiter)
        wid = handle.workflow_id
        eventually(lambda wid=wid: _in_recv(wid), what="the waiter in its recv")
        for _ in range(2):
            DBOS.cancel_workflow(handle.workflow_id)
            DBOS.resume_workflow(handle.workflow_id)
        time.sleep(0.3)
        DBOS.send(handle.workflow_id, "x", "go")
        eventually(lambda wid=wid: _status(wid) == "SUCCESS", timeout=15, what="the waiter done")
        assert handle.get_result() == "got x"


@DBOS.workflow()
def _waiter() -> str:
    return f"got {DBOS.recv('go', 60)}"


def _status(workflow_id: str) -> str:
    status = DBOS.get_workflow_status(workflow_id)
    return status.status if status is not None else ""


def _in_recv(workflow_id: str) -> bool:
    return any(s["function_name"] == "DBOS.sleep" for s in DBOS.list_workflow_steps(workflow_id))  # its deadline
