"""A workflow's outcome: recorded once, then the local outcome completed and its waiters
woken; on a queue with a fleet-wide limit the freed slot handed to the next row in the
same statement; while the database is unreachable, what the workflow owes it (its
outcome, or its resumption) handed to the outcome retrier, nothing lost."""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from typing import Any, Callable, Optional

from dbos._execution import checks, results
from dbos._execution.context import WorkflowRun
from dbos._execution.runtime import Deferred, LocalExecution, Runtime, now_ms
from dbos._execution.serialization import serialize, serialize_error
from dbos._storage import queues, workflows
from dbos._storage.queues import QueueLimits
from dbos._storage.workflows import WorkflowRow
from dbos._wakeups.local import queue_ready, workflow_done
from dbos.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSDatabaseUnavailableError,
    DBOSWorkflowCancelledError,
)


def finish(rt: Runtime, run: WorkflowRun, local: LocalExecution, result: Any, error: Optional[BaseException]) -> None:
    """Record the outcome, then complete the local outcome and wake waiters (``settle``).

    While the database is unreachable nothing is lost: what the workflow owes it
    is handed to the outcome retrier (``defer_outcome`` / ``defer_resume``), and
    the execution stays registered here, its outcome pending, until that is done.
    """
    wid = run.workflow_id
    if isinstance(error, DBOSWorkflowCancelledError) or local.cancel_event.is_set():
        # Preempted (cancelled, timed out, or DBOS destroyed): record no outcome.
        settle(rt, wid, run.queue_name, local, None, DBOSAwaitedWorkflowCancelledError(wid))
        return
    if error is not None and not isinstance(error, Exception):
        # KeyboardInterrupt, SystemExit, asyncio.CancelledError...: an interrupt of this
        # process, not the workflow's outcome. It stays PENDING and is recovered like after
        # a crash; the interrupt goes on to end the process (docs/decisions.md, "Interrupts").
        rt.logger.warning(
            "workflow %s interrupted by %s: it stays PENDING and is recovered", wid, type(error).__name__
        )
        settle(rt, wid, run.queue_name, local, None, error)
        return
    if isinstance(error, DBOSDatabaseUnavailableError):
        # A write inside the workflow (a step's checkpoint, a send...) failed: that is no
        # outcome of the workflow. It resumes here once the database is back.
        defer_resume(rt, wid, run.queue_name, local, error)
        return
    try:  # only the outcome write can raise DBOSDatabaseUnavailableError
        output: Optional[bytes] = None
        if error is None:
            try:
                output = serialize(result, "the result of workflow %s", wid)
                checks.check_size(output, rt.settings.max_value_bytes, f"the result of workflow {wid}")
            except Exception as e:
                error = e
        status, data = ("ERROR", serialize_error(error, rt.settings.max_value_bytes)) if error is not None else ("SUCCESS", None)
        write = functools.partial(workflows.finish, rt.sys_db, wid, status, output, data, now_ms(), rt.executor_id)
        limits = _slot_handover(rt, run.queue_name)
        successors: list[tuple[WorkflowRow, LocalExecution, bool]] = []
        if limits is None:
            recorded = write()
        else:
            recorded, successors = _finish_and_hand_over(rt, wid, status, output, data, limits)
    except DBOSDatabaseUnavailableError as e:
        defer_outcome(rt, wid, run.queue_name, local, result, error, write)
        raise DBOSDatabaseUnavailableError(
            f"workflow {wid} {'failed' if error is not None else 'completed'}, but its outcome could not "
            f"be recorded ({e}); this executor records it as soon as the database is reachable again"
        ) from e
    except BaseException as e:  # any other failure to record: the workflow stays PENDING for recovery
        settle(rt, wid, run.queue_name, local, None, e)
        raise
    hint = results.outcome_hint(status, output if error is None else data) if recorded else b""
    if recorded:
        rt.stats.workflow_finished(local.name, run.queue_name, status, time.monotonic() - local.began)
    settle(rt, wid, run.queue_name, local, result, error, hint, slot_handed_on=bool(successors))
    if successors:
        from dbos._execution import recovery  # which imports workflow, which imports this module

        for row, successor, fresh in successors:
            recovery.launch(rt, row, successor, fresh=fresh)


def _slot_handover(rt: Runtime, queue_name: Optional[str]) -> Optional[QueueLimits]:
    """The limits of this workflow's queue if its finish hands the slot it frees to
    the queue's next row (``queues.finish_and_claim``): PostgreSQL, a queue with a
    global concurrency and neither partitions nor a rate limit, while this
    executor claims work (its poller runs)."""
    if queue_name is None or not rt.claims_open or rt.sys_db.dialect.is_sqlite:
        return None
    spec = rt.registry.queues.get(queue_name)
    if spec is None or spec.concurrency is None or spec.partitioned or spec.limit is not None:
        return None
    limits: QueueLimits = spec.limits(rt.settings.default_worker_concurrency)
    return limits


def _finish_and_hand_over(
    rt: Runtime, wid: str, status: str, output: Optional[bytes], error: Optional[bytes], limits: QueueLimits
) -> tuple[bool, list[tuple[WorkflowRow, LocalExecution, bool]]]:
    """Record the outcome and claim the next row into the freed slot, in one
    statement; register what was claimed. Returns (recorded, what to launch).

    On a fleet-wide limited queue a completion otherwise frees a slot that every
    executor then competes for, one at a time, under the queue's lock. If the
    statement's outcome is unknown (an error, or a retry that found the outcome
    already recorded) its claim may have committed unseen: the poller sweeps.
    """
    successors: list[tuple[WorkflowRow, LocalExecution, bool]] = []
    try:
        with rt.claim_gate.shared():  # the poller's orphan sweep waits for the registration
            recorded, claim = queues.finish_and_claim(
                rt.sys_db, wid, status, output, error, now_ms(), limits, rt.executor_id, rt.app_version
            )
            for row in claim.rows:
                successor, is_new = rt.claim_local(row.workflow_uuid, queue_name=limits.name, claimed=True)
                if is_new:
                    successors.append((row, successor, row.workflow_uuid in claim.fresh))
    except BaseException:
        rt.request_orphan_sweep()
        raise
    if not recorded:
        rt.request_orphan_sweep()
    return recorded, successors


def settle(
    rt: Runtime,
    wid: str,
    queue_name: Optional[str],
    local: LocalExecution,
    result: Any,
    error: Optional[BaseException],
    hint: bytes = b"",
    *,
    slot_handed_on: bool = False,
) -> None:
    """Complete the local outcome (once), release the execution and wake whoever waits
    for it (``hint``: the recorded outcome, for waiters elsewhere; see ``results.outcome_hint``).
    A queue slot handed on to the next row frees no capacity: no queue wakeup then."""
    try:
        if not local.outcome.done():
            if error is not None:
                local.outcome.set_exception(error)
            else:
                local.outcome.set_result(result)
    finally:
        from dbos._execution import recovery  # which imports workflow, which imports this module

        recovery.release(rt, wid)
        rt.wakeups.notify(workflow_done(wid), data=hint)
        if queue_name is not None and not slot_handed_on:
            # Capacity freed: this executor's poller may claim more; other executors
            # only where the slot freed is one they share.
            spec = rt.queue_spec(queue_name)
            shared = spec is not None and spec.shares_slots_fleet_wide
            rt.wakeups.notify(queue_ready(queue_name), remote=shared)


def owe(rt: Runtime, what: str, wid: str, queue_name: Optional[str], local: LocalExecution,
         attempt: Callable[[], None]) -> None:
    """Hand the outcome retrier a write this workflow owes the database. Given up
    (at destroy), local waiters are told and the workflow stays PENDING."""

    def abandon(reason: str) -> None:
        settle(rt, wid, queue_name, local, None, DBOSDatabaseUnavailableError(f"workflow {wid}: {reason}"))

    rt.defer(Deferred(wid, what, attempt, abandon))


def defer_outcome(
    rt: Runtime,
    wid: str,
    queue_name: Optional[str],
    local: LocalExecution,
    result: Any,
    error: Optional[BaseException],
    write: Callable[[], Any],
) -> None:
    """The workflow ended (every step recorded) but its outcome write failed: owe it.

    Local waiters keep waiting until it is written, so they only ever see an
    outcome the database holds.
    """

    def attempt() -> None:
        write()  # raises while the database is unreachable
        rt.logger.info("workflow %s: outcome recorded after the database outage", wid)
        settle(rt, wid, queue_name, local, result, error)

    rt.logger.warning("workflow %s: the database is unreachable; its outcome is recorded when it is back", wid)
    owe(rt, "outcome", wid, queue_name, local, attempt)


def defer_resume(
    rt: Runtime, wid: str, queue_name: Optional[str], local: LocalExecution, cause: BaseException
) -> None:
    """A durable write inside the workflow failed: once the database answers, run it
    again here from its last recorded step (what recovery at launch would do)."""

    def attempt() -> None:
        row = rt.sys_db.query(lambda c: workflows.get(c, wid))  # raises while the database is unreachable
        attempts = None
        if row is not None and row.status == "PENDING" and not local.cancel_event.is_set():
            attempts = rt.sys_db.run(lambda c: workflows.begin_attempt(c, wid, rt.executor_id, now_ms()))
        if row is None or attempts is None:
            # Finished, cancelled or taken over meanwhile: the database says what it is now.
            settle(rt, wid, queue_name, local, None, DBOSAwaitedWorkflowCancelledError(wid))
            return
        rt.logger.info("workflow %s: resumed after the database outage", wid)
        from dbos._execution import recovery  # which imports workflow, which imports this module

        recovery.launch(rt, replace(row, recovery_attempts=attempts), local, fresh=False)

    rt.logger.warning(
        "workflow %s: the database is unreachable (%s); it resumes here when the database is back", wid, cause
    )
    owe(rt, "resume", wid, queue_name, local, attempt)
