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


gate = threading.Event()
left_body = threading.Event()
RACE_RUNS: list[str] = []


@DBOS.step()
def dt_first() -> str:
    return "first"


@DBOS.workflow()
def dt_between_calls() -> str:
    RACE_RUNS.append("run")
    first = dt_first()
    try:
        gate.wait(30)  # not a DBOS call: destroy() runs meanwhile
        DBOS.recv("dt-topic", timeout_seconds=0.01)  # the first DBOS call after destroy(): it must preempt
    finally:
        left_body.set()
    return first


def test_a_workflow_calling_dbos_while_it_is_destroyed_stays_pending(harness: Harness) -> None:
    """A workflow whose next DBOS call comes after destroy() is preempted by it: no
    outcome is recorded, it stays PENDING and the next launch recovers it."""
    gate.clear()
    left_body.clear()
    RACE_RUNS.clear()
    harness.launch()
    handle = DBOS.start_workflow(dt_between_calls)
    eventually(lambda: RACE_RUNS == ["run"], what="(started)")
    DBOS.destroy()
    gate.set()
    assert left_body.wait(10)
    time.sleep(0.2)  # whatever the abandoned thread records, it has recorded by now
    assert harness.backend.status(handle.workflow_id) == "PENDING"
    harness.launch()
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result() == "first"
    assert RACE_RUNS == ["run", "run"]


def test_a_workflow_between_unpublishing_and_preemption_uses_its_own_runtime(harness: Harness) -> None:
    """The window inside destroy() (the runtime unpublished, the services stopping): a DBOS
    call there once raised "DBOS is not launched", an ordinary error the workflow recorded
    as its outcome. It now runs on the workflow's own runtime."""
    from dbos._api.instance import HOLDER

    gate.clear()
    left_body.clear()
    RACE_RUNS.clear()
    harness.launch()
    handle = DBOS.start_workflow(dt_between_calls)
    eventually(lambda: RACE_RUNS == ["run"], what="(started)")
    published, HOLDER.runtime = HOLDER.runtime, None  # as destroy() does first
    try:
        gate.set()
        assert left_body.wait(10)
    finally:
        HOLDER.runtime = published
    assert handle.get_result() == "first"
    assert harness.backend.status(handle.workflow_id) == "SUCCESS"
