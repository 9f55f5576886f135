"""Cancellation cannot be swallowed (issue 18, item 1): ``DBOSWorkflowCancelledError``
is a ``BaseException``, as in DBOS 2.x, so a workflow that wraps its steps in
``try/except Exception`` still stops when cancelled or timed out."""

from __future__ import annotations

import threading

import pytest
from conftest import Harness, eventually

from dbos import DBOS, SetWorkflowTimeout
from dbos.error import DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError

started = threading.Event()
steps_after: list[int] = []
reached_end: list[bool] = []


@DBOS.step()
def cb_step(i: int) -> int:
    started.set()
    threading.Event().wait(0.05)
    return i


@DBOS.workflow()
def cb_swallowing_workflow() -> str:
    for i in range(200):
        try:
            cb_step(i)
            steps_after.append(i)
        except Exception:  # user code that catches everything it can
            pass
    reached_end.append(True)  # the body after its steps: must not run once cancelled
    return "ran to the end"


def test_cancelled_error_is_a_base_exception() -> None:
    assert issubclass(DBOSWorkflowCancelledError, BaseException)
    assert not issubclass(DBOSWorkflowCancelledError, Exception)


def test_except_exception_cannot_swallow_a_cancel(harness: Harness) -> None:
    harness.launch()
    started.clear()
    steps_after.clear()
    reached_end.clear()
    handle = DBOS.start_workflow(cb_swallowing_workflow)
    assert started.wait(10)
    DBOS.cancel_workflow(handle.workflow_id)
    eventually(lambda: handle.get_status().status == "CANCELLED", what="(cancelled)")
    count = len(steps_after)
    threading.Event().wait(0.5)
    assert len(steps_after) <= count + 1, "the workflow kept running its steps after the cancel"
    assert reached_end == [], "the workflow swallowed its cancellation and ran on to its end"


def test_except_exception_cannot_swallow_a_timeout(harness: Harness) -> None:
    harness.launch()
    steps_after.clear()
    reached_end.clear()
    with SetWorkflowTimeout(0.5):
        handle = DBOS.start_workflow(cb_swallowing_workflow)
    eventually(lambda: handle.get_status().status == "CANCELLED", timeout=15, what="(timed out)")
    threading.Event().wait(0.5)
    assert reached_end == [], "the workflow swallowed its timeout and ran on to its end"
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
