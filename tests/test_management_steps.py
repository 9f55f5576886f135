"""Management calls made from a workflow are recorded steps under DBOS Transact 2.31's
names (issue 18): list_workflow_steps shows DBOS's names and numbering, a replay
returns (or raises) what the first execution saw and does not act again (no second
fork, no second cancel), a call inside a step stays a plain call, and the ``_async``
forms record the same steps, numbered in call order."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest
from conftest import Backend, Harness
from mgmt_helpers import wait_status

from dbos import DBOS, DBOSException, DBOSNonExistentWorkflowError, SetWorkflowID


@DBOS.workflow(name="mgmt_steps_source")
def source(x: int) -> int:
    return x + 1


@DBOS.workflow(name="mgmt_steps_waiter")
def waiter() -> Any:
    return DBOS.recv("go", 60)


@DBOS.workflow(name="mgmt_steps_scheduled")
def scheduled_job(scheduled_time: datetime.datetime, context: Any) -> None:
    pass


# What each call records, in order (DBOS 2.31.1, dbos/_dbos.py).
SYNC_NAMES = [
    "DBOS.listWorkflows",
    "DBOS.listQueuedWorkflows",
    "DBOS.listWorkflowSteps",
    "DBOS.forkWorkflow", "DBOS.getStatus",  # the fork, then the retrieve of its handle
    "DBOS.getStatus",  # retrieve_workflow
    "DBOS.getStatus",  # retrieve_workflow of an unknown ID: its error replays
    "DBOS.cancelWorkflow",
    "DBOS.resumeWorkflow",
    "DBOS.cancelWorkflow",  # cancel_workflows: one step for the list
    "DBOS.resumeWorkflow",  # resume_workflows: one step for the list
    "DBOS.setWorkflowDelay",  # fails (not DELAYED): the error is recorded
    "DBOS.deleteWorkflow",
    "DBOS.deleteWorkflow",  # delete_workflows: one step for the list
    "DBOS.createSchedule",
    "DBOS.listSchedules",
    "DBOS.getSchedule",
    "DBOS.pauseSchedule",
    "DBOS.resumeSchedule",
    "DBOS.deleteSchedule",
]


def _prepare(backend: Backend) -> None:
    """A finished source, a waiter (PENDING in recv), three finished workflows to delete."""
    with SetWorkflowID("ms-src"):
        assert source(1) == 2
    for i in range(3):
        with SetWorkflowID(f"ms-del-{i}"):
            source(i)
    with SetWorkflowID("ms-wait"):
        DBOS.start_workflow(waiter)
    wait_status(backend, "ms-wait", "PENDING")


def _forks() -> list[str]:
    return [s.workflow_id for s in DBOS.list_workflows(forked_from="ms-src")]


def _rerun(backend: Backend, workflow_id: str, run: Any) -> Any:
    """Run the workflow again from its stored row, as a recovery would after a crash
    that lost its outcome (its steps are kept)."""
    backend.force_pending(workflow_id)
    with SetWorkflowID(workflow_id):
        return run()


def _names(workflow_id: str) -> list[str]:
    steps = DBOS.list_workflow_steps(workflow_id)
    assert [s["function_id"] for s in steps] == list(range(1, len(steps) + 1))
    return [s["function_name"] for s in steps]


def test_management_calls_are_steps_with_dbos_names(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def manager() -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["listed"] = [s.workflow_id for s in DBOS.list_workflows(workflow_ids=["ms-src"])]
        out["queued"] = [s.workflow_id for s in DBOS.list_queued_workflows(queue_name="no-such-queue")]
        out["src_steps"] = DBOS.list_workflow_steps("ms-src")
        out["fork"] = DBOS.fork_workflow("ms-src", 1).workflow_id
        out["retrieved"] = DBOS.retrieve_workflow("ms-src").workflow_id
        try:
            DBOS.retrieve_workflow("ms-no-such-workflow")
        except DBOSNonExistentWorkflowError as e:
            out["missing"] = type(e).__name__
        DBOS.cancel_workflow("ms-wait")
        out["resumed"] = DBOS.resume_workflow("ms-wait").workflow_id
        DBOS.cancel_workflows(["ms-wait", "ms-unknown"])
        out["resumed_all"] = [h.workflow_id for h in DBOS.resume_workflows(["ms-wait"])]
        try:
            DBOS.set_workflow_delay("ms-src", delay_seconds=5)
        except DBOSException as e:
            out["delay_error"] = str(e)
        DBOS.delete_workflow("ms-del-0")
        DBOS.delete_workflows(["ms-del-1", "ms-del-2"])
        DBOS.create_schedule(schedule_name="ms-sched", workflow_fn=scheduled_job, schedule="0 0 1 1 *")
        out["schedules"] = [s["schedule_name"] for s in DBOS.list_schedules(schedule_name_prefix="ms-")]
        got = DBOS.get_schedule("ms-sched")
        out["schedule"] = got["schedule"] if got else None
        DBOS.pause_schedule("ms-sched")
        DBOS.resume_schedule("ms-sched")
        DBOS.delete_schedule("ms-sched")
        return out

    _prepare(backend)
    with SetWorkflowID("ms-manager"):
        first = manager()
    assert first["listed"] == ["ms-src"] and first["queued"] == []
    assert [s["function_name"] for s in first["src_steps"]] == []
    assert first["retrieved"] == "ms-src" and first["missing"] == "DBOSNonExistentWorkflowError"
    assert first["resumed"] == "ms-wait" and first["resumed_all"] == ["ms-wait"]
    assert "not DELAYED" in first["delay_error"]
    assert first["schedules"] == ["ms-sched"] and first["schedule"] == "0 0 1 1 *"
    assert _names("ms-manager") == SYNC_NAMES
    steps = DBOS.list_workflow_steps("ms-manager")
    assert isinstance(steps[SYNC_NAMES.index("DBOS.setWorkflowDelay")]["error"], DBOSException)
    assert _forks() == [first["fork"]]
    assert DBOS.get_schedule("ms-sched") is None
    assert backend.status("ms-del-0") is None and backend.status("ms-del-2") is None

    # A replay sees what the first execution saw: the same fork, the same lists (the
    # deleted workflows and the schedule are gone now), the same errors; nothing acts again.
    wait_status(backend, "ms-wait", "PENDING")
    second = _rerun(backend, "ms-manager", manager)
    assert second == first
    assert _names("ms-manager") == SYNC_NAMES
    assert _forks() == [first["fork"]]
    assert DBOS.get_schedule("ms-sched") is None
    assert backend.status("ms-wait") == "PENDING"  # not cancelled again


def test_replay_does_not_fork_or_cancel_again(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def forker() -> str:
        new_id = DBOS.fork_workflow("ms-src", 1).workflow_id
        DBOS.cancel_workflow("ms-wait")
        return new_id

    _prepare(backend)
    with SetWorkflowID("ms-forker"):
        fork_id = forker()
    assert _forks() == [fork_id]
    assert DBOS.retrieve_workflow(fork_id).get_result() == 2
    wait_status(backend, "ms-wait", "CANCELLED")
    DBOS.resume_workflow("ms-wait")
    wait_status(backend, "ms-wait", "PENDING")

    assert _rerun(backend, "ms-forker", forker) == fork_id
    assert _forks() == [fork_id]  # no second fork
    assert backend.status("ms-wait") == "PENDING"  # not cancelled again
    assert _names("ms-forker") == ["DBOS.forkWorkflow", "DBOS.getStatus", "DBOS.cancelWorkflow"]


def test_calls_inside_a_step_are_plain(dbos: Harness, backend: Backend) -> None:
    @DBOS.step()
    def inside() -> str:
        assert [s.workflow_id for s in DBOS.list_workflows(workflow_ids=["ms-src"])] == ["ms-src"]
        DBOS.list_workflow_steps("ms-src")
        return DBOS.fork_workflow("ms-src", 1).workflow_id

    @DBOS.workflow()
    def outer() -> str:
        DBOS.list_workflows(workflow_ids=["ms-src"])
        fork_id = inside()
        DBOS.list_workflow_steps("ms-src")
        return fork_id

    _prepare(backend)
    with SetWorkflowID("ms-outer"):
        fork_id = outer()
    # The step's own calls record nothing: no nested steps, and the numbering goes on.
    assert _names("ms-outer") == ["DBOS.listWorkflows", inside.__qualname__, "DBOS.listWorkflowSteps"]
    assert _forks() == [fork_id]
    assert _rerun(backend, "ms-outer", outer) == fork_id
    assert _forks() == [fork_id]


def test_outside_a_workflow_calls_record_nothing(dbos: Harness, backend: Backend) -> None:
    _prepare(backend)
    forked = DBOS.fork_workflow("ms-src", 1)
    assert forked.get_result() == 2
    DBOS.list_workflows()
    DBOS.cancel_workflow("ms-wait")
    DBOS.resume_workflow("ms-wait")
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.retrieve_workflow("ms-no-such-workflow")
    assert backend.steps("ms-src") == [] and backend.steps(forked.workflow_id) == []
    DBOS.send("ms-wait", "done", "go")
    assert DBOS.retrieve_workflow("ms-wait").get_result() == "done"


ASYNC_NAMES = [
    "DBOS.listWorkflows",
    "DBOS.listQueuedWorkflows",
    "DBOS.listWorkflowSteps",
    "DBOS.forkWorkflow", "DBOS.getStatus",
    "DBOS.getStatus",
    "DBOS.cancelWorkflow",
    "DBOS.resumeWorkflow",
    "DBOS.cancelWorkflow",
    "DBOS.resumeWorkflow",
    "DBOS.setWorkflowDelay",
    "DBOS.deleteWorkflow",
    "DBOS.deleteWorkflow",
    "DBOS.createSchedule",
    "DBOS.listSchedules",
    "DBOS.getSchedule",
    "DBOS.deleteSchedule",
]


def test_async_forms_are_steps_in_call_order(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    async def manager() -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["listed"] = [s.workflow_id for s in await DBOS.list_workflows_async(workflow_ids=["ms-src"])]
        out["queued"] = await DBOS.list_queued_workflows_async(queue_name="no-such-queue")
        out["src_steps"] = await DBOS.list_workflow_steps_async("ms-src")
        out["fork"] = (await DBOS.fork_workflow_async("ms-src", 1)).workflow_id
        out["retrieved"] = (await DBOS.retrieve_workflow_async("ms-src")).workflow_id
        await DBOS.cancel_workflow_async("ms-wait")
        out["resumed"] = (await DBOS.resume_workflow_async("ms-wait")).workflow_id
        await DBOS.cancel_workflows_async(["ms-wait"])
        out["resumed_all"] = [h.workflow_id for h in await DBOS.resume_workflows_async(["ms-wait"])]
        try:
            await DBOS.set_workflow_delay_async("ms-src", delay_seconds=5)
        except DBOSException as e:
            out["delay_error"] = str(e)
        await DBOS.delete_workflow_async("ms-del-0")
        await DBOS.delete_workflows_async(["ms-del-1", "ms-del-2"])
        await DBOS.create_schedule_async(schedule_name="ms-sched", workflow_fn=scheduled_job, schedule="0 0 1 1 *")
        out["schedules"] = [s["schedule_name"] for s in await DBOS.list_schedules_async(schedule_name_prefix="ms-")]
        out["schedule"] = (await DBOS.get_schedule_async("ms-sched") or {}).get("schedule")
        await DBOS.delete_schedule_async("ms-sched")
        # Concurrent calls number their steps in call order (a fork takes both its IDs).
        concurrent = await asyncio.gather(
            DBOS.fork_workflow_async("ms-src", 1),
            DBOS.list_workflows_async(workflow_ids=["ms-src"]),
            DBOS.retrieve_workflow_async("ms-src"),
            DBOS.list_workflow_steps_async("ms-src"),
        )
        out["concurrent_fork"] = concurrent[0].workflow_id
        return out

    _prepare(backend)

    async def run() -> dict[str, Any]:
        with SetWorkflowID("ms-async"):
            return await manager()

    first = asyncio.run(run())
    assert first["listed"] == ["ms-src"] and first["queued"] == [] and first["resumed_all"] == ["ms-wait"]
    assert "not DELAYED" in first["delay_error"]
    assert first["schedules"] == ["ms-sched"] and first["schedule"] == "0 0 1 1 *"
    concurrent_names = ["DBOS.forkWorkflow", "DBOS.getStatus", "DBOS.listWorkflows", "DBOS.getStatus",
                        "DBOS.listWorkflowSteps"]
    assert _names("ms-async") == ASYNC_NAMES + concurrent_names
    assert sorted(_forks()) == sorted([first["fork"], first["concurrent_fork"]])

    wait_status(backend, "ms-wait", "PENDING")
    second = _rerun(backend, "ms-async", lambda: asyncio.run(manager()))
    assert second == first
    assert _names("ms-async") == ASYNC_NAMES + concurrent_names
    assert sorted(_forks()) == sorted([first["fork"], first["concurrent_fork"]])
    assert backend.status("ms-wait") == "PENDING"


def _refuse_step_records(backend: Backend, function_name: str) -> None:
    """A fault in the database: recording a step of this name fails (a trigger)."""
    table = backend.table("operation_outputs")
    if backend.is_sqlite:
        backend.execute(
            f"CREATE TRIGGER ms_refuse BEFORE INSERT ON {table} WHEN NEW.function_name = '{function_name}' "
            "BEGIN SELECT RAISE(ABORT, 'ms: step record refused'); END"
        )
    else:
        backend.execute(
            "CREATE FUNCTION ms_refuse() RETURNS trigger AS $$ BEGIN "
            f"IF NEW.function_name = '{function_name}' THEN RAISE EXCEPTION 'ms: step record refused'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        backend.execute(f"CREATE TRIGGER ms_refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION ms_refuse()")


def test_a_schedule_change_commits_with_its_step(dbos: Harness, backend: Backend) -> None:
    """As DBOS's call_txn_as_step: the change and its step record are one transaction, so
    when the record cannot be written the schedule is not created either (a replay would
    otherwise meet the schedule it made and fail with "already exists")."""

    @DBOS.workflow()
    def creator() -> None:
        DBOS.create_schedule(schedule_name="ms-atomic", workflow_fn=scheduled_job, schedule="0 0 1 1 *")

    _refuse_step_records(backend, "DBOS.createSchedule")
    with SetWorkflowID("ms-creator"), pytest.raises(Exception, match="step record refused"):
        creator()
    assert DBOS.get_schedule("ms-atomic") is None
    assert backend.steps("ms-creator") == []
