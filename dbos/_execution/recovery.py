"""Running a stored workflow row here: a PENDING workflow recovered (at launch, or
handed over from a dead executor), a row claimed from a queue, a workflow resumed after
a database outage. The row's function and instance are found by their registered names;
one past its recovery attempts becomes RETRIES_EXCEEDED."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Optional

from dbos._execution.context import Auth
from dbos._execution.registry import WorkflowInfo
from dbos._execution.runtime import LocalExecution, Runtime, now_ms
from dbos._execution.serialization import deserialize, serialize_error
from dbos._execution.workflow import Call, ClassRef, Created, submit
from dbos._storage import workflows
from dbos._storage.workflows import WorkflowRow
from dbos._telemetry import tracing
from dbos._wakeups.local import workflow_done
from dbos.error import DBOSMaxRecoveryAttemptsExceededError, DBOSWorkflowFunctionNotFoundError


def recover(rt: Runtime, row: WorkflowRow) -> bool:
    """Resume a PENDING workflow from its last recorded step. False if it was not started."""
    if rt.registry.workflow(row.name) is None:
        raise DBOSWorkflowFunctionNotFoundError(row.workflow_uuid, f"no workflow named {row.name} is registered")
    local, is_new = rt.claim_local(row.workflow_uuid)
    if not is_new:
        return False
    attempts = rt.sys_db.run(lambda c: workflows.begin_attempt(c, row.workflow_uuid, rt.executor_id, now_ms()))
    if attempts is None:
        release(rt, row.workflow_uuid)
        return False
    return launch(rt, replace(row, recovery_attempts=attempts), local, fresh=False)


def launch(rt: Runtime, row: WorkflowRow, local: LocalExecution, *, fresh: bool) -> bool:
    """Run a PENDING row this executor owns (claimed from a queue, or being recovered).

    ``row.recovery_attempts`` already counts this attempt. ``fresh``: the
    workflow has no recorded steps, so it runs without reading them.
    """
    wid = row.workflow_uuid
    info = rt.registry.workflow(row.name)
    failure: Optional[BaseException] = None
    if info is None:
        failure = DBOSWorkflowFunctionNotFoundError(wid, f"no workflow named {row.name} is registered")
        workflows.finish(rt.sys_db, wid, "ERROR", None, serialize_error(failure), now_ms(), rt.executor_id)
    elif row.recovery_attempts > info.max_recovery_attempts + 1:
        failure = DBOSMaxRecoveryAttemptsExceededError(wid, info.max_recovery_attempts)
        rt.sys_db.run(lambda c: workflows.set_status(c, wid, "RETRIES_EXCEEDED", now_ms(), only_if=("PENDING",)))
        rt.logger.warning("workflow %s exceeded %d recovery attempts: RETRIES_EXCEEDED", wid, info.max_recovery_attempts)
    if failure is not None or info is None:
        release(rt, wid)
        local.outcome.set_exception(failure or RuntimeError(wid))
        rt.wakeups.notify(workflow_done(wid))
        return False
    try:
        call = call_from_row(rt, info, row)
    except Exception as e:
        workflows.finish(rt.sys_db, wid, "ERROR", None, serialize_error(e), now_ms(), rt.executor_id)
        release(rt, wid)
        local.outcome.set_exception(e)
        rt.wakeups.notify(workflow_done(wid))
        return False
    auth = Auth(
        row.authenticated_user,
        tuple(json.loads(row.authenticated_roles)) if row.authenticated_roles else None,
        row.assumed_role,
    )
    created = Created(wid, fresh, row, auth, row.deadline_ms, row.queue_name, tracing.extract(row.trace_context))
    submit(rt, created, call, local)
    return True


def call_from_row(rt: Runtime, info: WorkflowInfo, row: WorkflowRow) -> Call:
    args, kwargs = deserialize(row.inputs, f"the inputs of workflow {row.workflow_uuid}")
    if info.takes_self:
        if row.config_name is not None:
            instance = rt.registry.instance(row.class_name or "", row.config_name)
            if instance is None:
                raise DBOSWorkflowFunctionNotFoundError(
                    row.workflow_uuid,
                    f"no instance of {row.class_name} configured as {row.config_name!r}",
                )
            return Call(info, instance, tuple(args), dict(kwargs))
        owner = args[0]
        if isinstance(owner, ClassRef):
            owner = rt.registry.classes.get(owner.name)
            if owner is None:
                raise DBOSWorkflowFunctionNotFoundError(
                    row.workflow_uuid, f"no class registered as {args[0].name!r} (@DBOS.dbos_class())"
                )
        return Call(info, owner, tuple(args[1:]), dict(kwargs))
    return Call(info, None, tuple(args), dict(kwargs))


def release(rt: Runtime, wid: str) -> None:
    """Unregister this process's execution of ``wid``; if the workflow was claimed from a
    queue again while that execution, preempted, was still ending (cancelled, then resumed
    and claimed before it stopped: ``Runtime.claim_local``), run the claimed row now. It
    would otherwise stay PENDING under this executor, run by nobody, until a restart."""
    successor = rt.release_local(wid)
    while successor is not None:
        try:
            row = rt.sys_db.query(lambda c: workflows.get(c, wid))
        except Exception as e:
            rt.release_local(wid)
            rt.request_orphan_sweep()  # the poller puts it back on its queue
            rt.logger.warning("workflow %s claimed again could not be read (%s): requeued by the sweep", wid, e)
            return
        if row is not None and row.status == "PENDING" and row.executor_id == rt.executor_id:
            launch(rt, row, successor, fresh=False)
            return
        successor = rt.release_local(wid)  # cancelled again, or taken elsewhere, meanwhile
