"""A workflow's result, as those who wait for it see it.

``wait_result`` blocks until a workflow finishes here or anywhere in the fleet
and returns or raises its outcome. A workflow finishing here completes its
local future; elsewhere, its recorded outcome may ride along with the wakeup
(``outcome_hint``), else the waiter reads it from the database.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from dbos._execution import context
from dbos._execution.context import WorkflowRun
from dbos._execution.runtime import Runtime
from dbos._execution.serialization import deserialize, deserialize_error
from dbos._execution.waits import Wait, run_sync
from dbos._storage import workflows
from dbos._storage.schema import TERMINAL
from dbos._wakeups.hub import hint_data
from dbos._wakeups.local import Waiter, cancelled, workflow_created, workflow_done
from dbos.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSNonExistentWorkflowError,
)

# A recorded outcome's hint: one status byte, then the serialized output (or error).
_HINT_STATUS = {"SUCCESS": b"S", "ERROR": b"E"}


def outcome_hint(status: str, payload: Optional[bytes]) -> bytes:
    """What the wakeup of a recorded outcome carries (nothing if it is too large)."""
    code = _HINT_STATUS.get(status)
    if code is None or payload is None:
        return b""
    return hint_data(code, payload)


def _hinted_outcome(data: Optional[bytes]) -> Optional[tuple[str, Optional[bytes], Optional[bytes]]]:
    """(status, output, error) from an outcome hint, or None."""
    if not data:
        return None
    payload = bytes(data[1:])
    if data[:1] == b"S":
        return "SUCCESS", payload, None
    if data[:1] == b"E":
        return "ERROR", None, payload
    return None


def outcome_value(workflow_id: str, status: str, output: Optional[bytes], error: Optional[bytes]) -> Any:
    if status == "SUCCESS":
        return deserialize(output, f"the result of workflow {workflow_id}")
    if status == "ERROR":
        err = deserialize_error(error)
        raise err if err is not None else RuntimeError(f"workflow {workflow_id} failed")
    if status == "CANCELLED":
        raise DBOSAwaitedWorkflowCancelledError(workflow_id)
    if status == "RETRIES_EXCEEDED":
        raise DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(workflow_id)
    raise AssertionError(f"not a final status: {status}")


def wait_result(
    rt: Runtime, workflow_id: str, timeout: Optional[float] = None, *, await_creation: bool = False,
    poll_interval: Optional[float] = None,
) -> Any:
    """``result_wait`` in this thread."""
    return run_sync(result_wait(rt, workflow_id, timeout, await_creation=await_creation, poll_interval=poll_interval))


def result_wait(
    rt: Runtime, workflow_id: str, timeout: Optional[float] = None, *, await_creation: bool = False,
    poll_interval: Optional[float] = None,
) -> Wait[Any]:
    """Wait until the workflow finishes (here or anywhere in the fleet); return or raise its outcome.
    ``await_creation``: a workflow that does not exist yet is waited for (woken by its
    creation anywhere in the fleet), not reported missing. ``poll_interval``: the longest
    wait between two reads of the database when no wakeup comes (else the configured
    ``polling_interval_sec``).

    Called from a workflow (or one of its steps), the wait is also that workflow's:
    cancelling it, or its deadline passing, wakes the wait and raises
    ``DBOSWorkflowCancelledError`` at once, whatever the awaited workflow is doing.
    """
    caller = context.current().run
    end = None if timeout is None else time.monotonic() + timeout
    watch = [workflow_done(workflow_id)]
    if await_creation:
        watch.append(workflow_created(workflow_id))
    if caller is not None:
        watch.append(cancelled(caller.workflow_id))
        caller.check_cancelled()
    done_key = watch[0]
    with rt.wakeups.subscribe(*watch) as waiter:
        while True:
            local = rt.local(workflow_id)
            if local is not None:
                # Running here: its finish wakes us, so no database read until then.
                if not local.outcome.done() and not (yield from _pause(rt, waiter, caller, end, poll_interval)):
                    raise TimeoutError(f"workflow {workflow_id} did not finish in {timeout} s")
                if local.outcome.done():
                    try:
                        return local.outcome.result()
                    except DBOSAwaitedWorkflowCancelledError:
                        pass  # cancelled here; the database says what it is now
            # An outcome recorded after we subscribed may have come with its wakeup.
            found = _hinted_outcome(waiter.take(done_key))
            if found is None:
                found = rt.sys_db.query(lambda c: workflows.get_outcome(c, workflow_id))
            if found is None:
                if not await_creation:
                    raise DBOSNonExistentWorkflowError(workflow_id)
                if not (yield from _pause(rt, waiter, caller, end, poll_interval)):
                    raise TimeoutError(f"workflow {workflow_id} did not finish in {timeout} s")
                continue
            status, output, error = found
            if status in TERMINAL:
                return outcome_value(workflow_id, status, output, error)
            if not (yield from _pause(rt, waiter, caller, end, poll_interval)):
                raise TimeoutError(f"workflow {workflow_id} did not finish in {timeout} s")


def wait_first(
    rt: Runtime, workflow_ids: list[str], timeout: Optional[float] = None, poll_interval: Optional[float] = None
) -> str:
    """``first_wait`` in this thread."""
    return run_sync(first_wait(rt, workflow_ids, timeout, poll_interval))


def first_wait(
    rt: Runtime, workflow_ids: list[str], timeout: Optional[float] = None, poll_interval: Optional[float] = None
) -> Wait[str]:
    """Wait until one of these workflows has finished (here or anywhere in the fleet);
    return its ID (the first of the list among those already finished). Woken by the
    finish of any of them; polls one statement for all of them as the fallback."""
    caller = context.current().run
    end = None if timeout is None else time.monotonic() + timeout
    watch = [workflow_done(w) for w in workflow_ids]
    if caller is not None:
        watch.append(cancelled(caller.workflow_id))
        caller.check_cancelled()
    with rt.wakeups.subscribe(*watch) as waiter:
        while True:
            found = rt.sys_db.query(lambda c: workflows.outcomes_among(c, workflow_ids))
            for wid in workflow_ids:
                row = found.get(wid)
                if row is not None and row[0] in TERMINAL:
                    return wid
            if not (yield from _pause(rt, waiter, caller, end, poll_interval)):
                raise TimeoutError(f"none of workflows {workflow_ids} finished in {timeout} s")


def _pause(
    rt: Runtime, waiter: Waiter, caller: Optional[WorkflowRun], end: Optional[float], poll: Optional[float] = None
) -> Wait[bool]:
    """One bounded wait of ``wait_result``: until a wakeup, the poll interval, the calling
    workflow's deadline or ``end``, whichever is first; False once ``end`` has passed.
    A cancelled (or timed-out) caller is preempted here."""
    wait = rt.settings.polling_interval_sec if poll is None else poll
    if end is not None:
        wait = min(wait, end - time.monotonic())
        if wait <= 0:
            return False
    if caller is not None and caller.deadline_ms is not None:
        wait = min(wait, max(0.0, caller.deadline_ms / 1000 - time.time()))
    yield waiter, wait
    waiter.clear()
    if caller is not None:
        caller.check_cancelled()
    return True
