"""``DBOS.destroy(workflow_completion_timeout_sec=N)`` (issue 18, item 5): waits up to N
seconds for running workflows to finish, never longer; what still runs then stays
PENDING and is recovered at the next launch."""

from __future__ import annotations

import threading
import time

from conftest import Harness, eventually

from dbos import DBOS

release = threading.Event()


@DBOS.step()
def dt_wait_step() -> str:
    release.wait(30)
    return "done"


@DBOS.workflow()
def dt_workflow() -> str:
    return dt_wait_step()


def test_destroy_returns_after_its_timeout_and_the_rest_is_recovered(harness: Harness) -> None:
    release.clear()
    harness.launch()
    handle = DBOS.start_workflow(dt_workflow)
    eventually(lambda: DBOS.get_workflow_status(handle.workflow_id) is not None, what="(started)")
    started = time.monotonic()
    DBOS.destroy(workflow_completion_timeout_sec=1.0)
    took = time.monotonic() - started
    assert 0.9 <= took < 5.0, took
    release.set()  # the abandoned thread may now end; it records nothing
    harness.launch()
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result() == "done"


def test_destroy_waits_for_a_workflow_that_finishes_in_time(harness: Harness) -> None:
    release.clear()
    harness.launch()
    handle = DBOS.start_workflow(dt_workflow)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    DBOS.destroy(workflow_completion_timeout_sec=10.0)
    assert time.monotonic() - started < 5.0
    harness.launch()
    status = DBOS.get_workflow_status(handle.workflow_id)
    assert status is not None and status.status == "SUCCESS"
