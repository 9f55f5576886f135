"""Workflow handles: a workflow ID plus the ways to wait for it and inspect it."""

from __future__ import annotations

from typing import Any, Callable, Generic, Optional, TypeVar

from dbos._execution import checks, context
from dbos._execution.results import result_wait
from dbos._execution.runtime import Runtime, now_ms
from dbos._execution.status import WorkflowStatus
from dbos._execution.step import Reserved, durable_run, record, replay, reserve, take
from dbos._execution.waits import Wait, no_wait, run_async, run_sync
from dbos._storage import workflows
from dbos.error import DBOSNonExistentWorkflowError, DBOSWorkflowCancelledError

R = TypeVar("R")


def get_status(rt: Runtime, workflow_id: str) -> Optional[WorkflowStatus]:
    checks.identifier("workflow_id", workflow_id)
    row = rt.sys_db.query(lambda c: workflows.get(c, workflow_id))
    return WorkflowStatus.from_row(row) if row is not None else None


def _as_step(
    rt: Runtime, name: str, workflow_id: Optional[str], fn: Callable[[], Any], reserved: Optional[Reserved] = None
) -> Any:
    """Inside a workflow, record what ``fn`` returns so replay sees the same value.
    ``reserved``: the step's ID, taken by an ``_async`` caller on its task (``step.reserve``)."""
    return run_sync(as_step_wait(rt, name, workflow_id, lambda: no_wait(fn), reserved))


async def as_step_async(rt: Runtime, name: str, workflow_id: Optional[str], fn: Callable[[], Any]) -> Any:
    """``_as_step`` from async code: the step ID taken here, ``fn`` and the record in the pool."""
    reserved = reserve()
    return await rt.to_thread(_as_step, rt, name, workflow_id, fn, reserved)


def as_step_wait(
    rt: Runtime, name: str, workflow_id: Optional[str], wait: Callable[[], Wait[Any]],
    reserved: Optional[Reserved] = None,
) -> Wait[Any]:
    """``_as_step`` of a wait (``dbos/_execution/waits.py``): inside a workflow, record
    what the wait ``wait()`` returns (or raises) so replay sees the same."""
    run = durable_run(context.current())
    if run is None:
        return (yield from wait())
    fid, recorded = take(run, name, reserved)
    if recorded is not None:
        return replay(recorded)
    started = now_ms()
    try:
        value = yield from wait()
    except DBOSWorkflowCancelledError:
        raise  # the caller was preempted: nothing to record, the wait replays after a resume
    except Exception as e:
        return record(rt, run, fid, name, None, e, started, child_workflow_id=workflow_id)
    return record(rt, run, fid, name, value, None, started, child_workflow_id=workflow_id)


def _poll_interval(value: Optional[float]) -> Optional[float]:
    if value is None:
        return None
    seconds = checks.duration("polling_interval_sec", value, positive=True)
    return max(seconds, 0.001)  # a shorter interval would spin on the database


class WorkflowHandle(Generic[R]):
    def __init__(self, rt: Runtime, workflow_id: str, *, await_creation: bool = False) -> None:
        self._rt = rt
        self._workflow_id = workflow_id
        # retrieve_workflow(existing_workflow=False): get_result waits for the workflow to exist.
        self._await_creation = await_creation

    @property
    def workflow_id(self) -> str:
        return self._workflow_id

    def get_workflow_id(self) -> str:
        return self._workflow_id

    def get_result(self, *, polling_interval_sec: Optional[float] = None) -> R:
        """Wait for the workflow to finish; return its result or raise its error.

        A finish anywhere in the fleet wakes the wait; ``polling_interval_sec`` bounds how
        long it goes without reading the database when no wakeup comes (default: the
        configured ``polling_interval_sec``)."""
        return run_sync(self._result_wait(_poll_interval(polling_interval_sec)))  # type: ignore[no-any-return]

    def _result_wait(self, poll: Optional[float], reserved: Optional[Reserved] = None) -> Wait[Any]:
        return as_step_wait(
            self._rt, "DBOS.getResult", self._workflow_id,
            lambda: result_wait(self._rt, self._workflow_id, await_creation=self._await_creation, poll_interval=poll),
            reserved,
        )

    def _fetch_status(self) -> WorkflowStatus:
        status = get_status(self._rt, self._workflow_id)
        if status is None:
            raise DBOSNonExistentWorkflowError(self._workflow_id)
        return status

    def get_status(self) -> WorkflowStatus:
        return _as_step(self._rt, "DBOS.getStatus", self._workflow_id, self._fetch_status)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"WorkflowHandle({self._workflow_id!r})"


class WorkflowHandleAsync(Generic[R]):
    def __init__(self, rt: Runtime, workflow_id: str, *, await_creation: bool = False) -> None:
        self._sync: WorkflowHandle[R] = WorkflowHandle(rt, workflow_id, await_creation=await_creation)

    @property
    def workflow_id(self) -> str:
        return self._sync.workflow_id

    def get_workflow_id(self) -> str:
        return self._sync.workflow_id

    async def get_result(self, *, polling_interval_sec: Optional[float] = None) -> R:
        """Wait for the workflow to finish, on the event loop (no thread waits)."""
        # Its step ID taken here, on the calling task (step.reserve), before any await.
        wait = self._sync._result_wait(_poll_interval(polling_interval_sec), reserve())
        return await run_async(self._sync._rt, wait)

    async def get_status(self) -> WorkflowStatus:
        sync = self._sync
        return await as_step_async(sync._rt, "DBOS.getStatus", sync.workflow_id, sync._fetch_status)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"WorkflowHandleAsync({self.workflow_id!r})"
