"""Workflow rules: create the status row, run or replay, record the outcome.

The order that makes a workflow durable:

1. inputs serialized (a bad argument fails here, before anything is written);
2. status row inserted (``INSERT .. ON CONFLICT DO NOTHING``): a new row
   means a fresh workflow with no recorded steps, so no step ever reads;
3. an existing row is replayed: its recorded steps are loaded once, and the
   function runs again, returning recorded outputs until the first
   unrecorded step;
4. the outcome is written when the function returns or raises. If the
   database is unreachable then (or at a write inside the workflow), the write
   is owed, not lost: the outcome retrier writes it (or resumes the workflow)
   once the database answers (``outcomes.finish``; docs/decisions.md).

Sync and async executions share every rule; they differ only in how they
wait (``_begin`` and ``outcomes.finish`` are the shared bodies).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, NoReturn, Optional

import sqlalchemy as sa

from dbos._execution import auth as auth_rules
from dbos._execution import checks, context, dedup, outcomes, results, waits
from dbos._execution.auth import authorize
from dbos._execution.context import Auth, Ctx, WorkflowRun
from dbos._execution.ids import new_id
from dbos._execution.registry import WorkflowInfo
from dbos._execution.runtime import LocalExecution, Runtime, creation_ms, now_ms
from dbos._execution.serialization import (
    deserialize_error,
    serialize,
)
from dbos._execution.step import Reserved, replay
from dbos._execution.step import record as record_step
from dbos._storage import operations, workflows
from dbos._storage.operations import StepRow
from dbos._storage.workflows import WorkflowRow
from dbos._telemetry import tracing
from dbos._wakeups.local import workflow_created
from dbos.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSConflictingWorkflowError,
    DBOSDatabaseUnavailableError,
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSNotAuthorizedError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
)


# Not frozen: built on every call, and a frozen dataclass's __init__ costs ~4x more. Never mutated.
@dataclass
class Call:
    """A workflow function and the arguments it is called with."""

    info: WorkflowInfo
    instance: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    @classmethod
    def of(cls, info: WorkflowInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> "Call":
        if info.takes_self and args:
            if info.class_name is None:
                _unregistered_class(info, args[0])
            return cls(info, args[0], args[1:], kwargs)
        return cls(info, None, args, kwargs)

    @property
    def config_name(self) -> Optional[str]:
        return getattr(self.instance, "config_name", None) if self.instance is not None else None

    @property
    def class_name(self) -> Optional[str]:
        if self.instance is None:
            return self.info.class_name
        owner = self.instance if isinstance(self.instance, type) else type(self.instance)
        # The name @DBOS.dbos_class(class_name=...) registered: recovery looks instances up by it.
        return getattr(owner, "__dbos_class_name__", owner.__qualname__)

    def invoke(self) -> Any:
        if self.info.takes_self:
            return self.info.func(self.instance, *self.args, **self.kwargs)
        return self.info.func(*self.args, **self.kwargs)

    def stored_inputs(self) -> bytes:
        args = self.args
        if isinstance(self.instance, type):
            # A classmethod's class travels by its registered name, never by value: a class
            # defined in a function, or holding a lock, cannot be pickled.
            args = (ClassRef(self.class_name or self.instance.__qualname__), *args)
        elif self.instance is not None and self.config_name is None:
            args = (self.instance, *args)  # a plain instance travels by value
        return serialize((args, self.kwargs), "the arguments of workflow %s", self.info.name)


def _unregistered_class(info: WorkflowInfo, target: Any) -> NoReturn:
    """As in DBOS 2.x: a method workflow needs its class registered, or recovery could not
    find the class (or instance) again by name."""
    what = "class" if isinstance(target, type) else "class instance"
    owner = target if isinstance(target, type) else type(target)
    raise DBOSException(
        f"Function target appears to be a {what}, but is not properly registered: workflow {info.name} "
        f"is a method of {owner.__qualname__}, which needs @DBOS.dbos_class()"
    )


@dataclass(frozen=True)
class ClassRef:
    """The class of a classmethod workflow, in its stored inputs: its registered name."""

    name: str


# Not frozen: built on every call, and a frozen dataclass's __init__ costs ~4x more. Never mutated.
@dataclass
class Created:
    workflow_id: str
    fresh: bool  # this call inserted the row: no recorded steps exist
    existing: Optional[WorkflowRow]
    auth: Auth
    deadline_ms: Optional[int]
    queue_name: Optional[str] = None
    trace_parent: Any = None  # OpenTelemetry context the workflow's span continues
    # A direct call from a workflow: the parent's step ID for its DBOS.getResult, and
    # that step's recorded row (replayed instead of waiting for the child).
    result_fid: Optional[int] = None
    result_recorded: Optional[StepRow] = None
    result_parent: Optional[WorkflowRun] = None


def new_workflow_id(ctx: Ctx, parent: Optional[WorkflowRun], fid: Optional[int]) -> str:
    box_id = ctx.id_box.take() if ctx.id_box is not None else None
    if box_id is not None:
        return box_id
    if parent is not None:
        return f"{parent.workflow_id}-{fid}"
    return new_id()


def create(
    rt: Runtime,
    call: Call,
    *,
    queue_name: Optional[str] = None,
    enqueue_fields: Optional[dict[str, Any]] = None,
    direct: bool = False,
    slot: Optional["ChildSlot"] = None,
    reserved: Optional[Reserved] = None,
    return_existing: bool = False,
    conn: Optional[sa.Connection] = None,
) -> Created:
    """Write (or find) the status row of a workflow about to start or be enqueued.

    ``direct``: the workflow is called as a function (``call_direct``, which refuses a
    caller lacking its roles first). Started or enqueued, a workflow whose caller lacks
    them is recorded and its execution ends it as ERROR (``auth.refuse_recorded_caller``), as in DBOS.
    ``slot``: the parent's step IDs, taken already (``take_slot``); or ``reserved``: the
    step ID an async caller took on its task (``step.reserve``), for a started or enqueued child.
    ``return_existing``: a taken deduplication ID gives its holder (``dedup``). ``conn``: the
    row is written in the caller's transaction (``DBOSClient.enqueue_in_transaction``).
    """
    if rt.registry.cleared:
        rt.registry.ensure_call(call.info, call.class_name, call.config_name, call.instance)
    ctx = context.current()
    if slot is None:
        slot = take_slot(call, direct=direct, reserved=reserved)
    parent = slot.parent if slot is not None else None
    fid: Optional[int] = slot.fid if slot is not None else None
    if slot is not None and slot.recorded is not None:
        recorded = slot.recorded
        if ctx.id_box is not None:
            ctx.id_box.take()
        if recorded.error is not None:  # an enqueue refused by deduplication: refused again
            error = deserialize_error(recorded.error)
            assert error is not None
            raise error
        assert recorded.child_workflow_id is not None
        found = _existing(rt, recorded.child_workflow_id, call, slot.parent.auth, slot.parent.deadline_ms,
                          check_name=not return_existing)  # a recorded holder may be another workflow
        return _with_result_step(found, slot)
    auth = auth_rules.caller_auth(ctx, parent)
    if call.info.roles is not None and call.info.roles.roles:
        try:
            auth = authorize(call.info.name, call.info.roles.roles, auth)
        except DBOSNotAuthorizedError:
            pass  # recorded with the caller's auth; its execution ends it ERROR (auth.refuse_recorded_caller)
    workflow_id = new_workflow_id(ctx, parent, fid)
    inputs = call.stored_inputs()
    checks.check_size(inputs, rt.settings.max_value_bytes, f"the arguments of workflow {call.info.name}")
    now = creation_ms()
    timeout_ms, deadline_ms = _timeout(ctx, parent, now, queued=queue_name is not None)
    row = WorkflowRow(
        workflow_uuid=workflow_id,
        status="ENQUEUED" if queue_name is not None else "PENDING",
        name=call.info.name,
        class_name=call.class_name,
        config_name=call.config_name,
        authenticated_user=auth.user,
        assumed_role=auth.assumed_role,
        authenticated_roles=json.dumps(list(auth.roles)) if auth.roles is not None else None,
        inputs=inputs,
        executor_id=rt.executor_id if queue_name is None else None,
        application_version=rt.app_version,
        application_id=rt.settings.app_id,
        created_at=now,
        updated_at=now,
        started_at=now if queue_name is None else None,
        recovery_attempts=1 if queue_name is None else 0,
        queue_name=queue_name,
        timeout_ms=timeout_ms,
        deadline_ms=deadline_ms,
        parent_workflow_id=parent.workflow_id if parent is not None else None,
        trace_context=tracing.inject() if queue_name is not None else None,
        attributes=ctx.attributes,
    )
    if enqueue_fields:
        row = replace(row, **enqueue_fields)
    dialect = rt.sys_db.dialect
    # A taken deduplication ID: refused (recorded as the parent's step), or its holder.
    inserted, holder = dedup.insert(rt, row, call.info.name, parent, fid, now, return_existing=return_existing,
                                    conn=conn)
    if holder is not None:
        return _with_result_step(_existing(rt, holder, call, auth, deadline_ms, check_name=False), slot)
    if parent is not None and fid is not None:
        step = StepRow(fid, call.info.name, None, None, workflow_id, now, now)
        rt.sys_db.run(lambda c: operations.insert(c, dialect, parent.workflow_id, step))
    if inserted:
        if conn is None:  # a caller's transaction: nothing to announce before it commits
            rt.wakeups.notify(workflow_created(workflow_id))
        trace_parent = tracing.current_context() if tracing.enabled() else None
        fresh = Created(workflow_id, True, None, auth, deadline_ms, queue_name, trace_parent)
        return _with_result_step(fresh, slot)
    found = _existing(rt, workflow_id, call, auth, deadline_ms, conn=conn)
    if found.existing is not None and found.existing.inputs != inputs:
        # Idempotency, as in DBOS: the recorded workflow stands, whatever the new arguments.
        rt.logger.debug(
            "workflow %s already exists with other arguments: returning its recorded outcome, the new "
            "arguments are ignored", workflow_id
        )
    return _with_result_step(replace(found, trace_parent=tracing.current_context()), slot)


@dataclass
class ChildSlot:
    """The step IDs a workflow started from a workflow takes in its parent: its own, and
    (a direct call) its DBOS.getResult's; with what the parent recorded at them."""

    parent: WorkflowRun
    fid: int
    recorded: Optional[StepRow]
    result_fid: Optional[int] = None
    result_recorded: Optional[StepRow] = None


def take_slot(call: Call, *, direct: bool, reserved: Optional[Reserved] = None) -> Optional[ChildSlot]:
    """Take the parent's step IDs for a workflow about to be created (None outside a
    workflow). In memory, on the caller's thread: an async caller takes them before its
    first await, so concurrent children number in the order they were called.

    A child called directly takes, after its own ID, the ID of the ``DBOS.getResult``
    step that records its outcome in the parent, as in DBOS 2.x (so later step IDs,
    child IDs and ``fork_workflow(start_step)`` match DBOS's). A replayed history
    recorded before that step existed shows another step at that ID: the execution then
    keeps that history's numbering (``WorkflowRun.legacy_child_results``).

    ``reserved``: the ID an async caller took on its task for a child it starts or
    enqueues (not a direct call: its second ID depends on the history)."""
    ctx = context.current()
    parent = ctx.run if ctx.run is not None and not ctx.in_step else None
    if parent is None:
        return None
    if reserved is not None:
        assert not direct, "a direct call takes its slot on the calling task (call_direct_async)"
        fid = reserved.next_function_id()
    else:
        parent.check_cancelled()
        fid = parent.next_function_id()
    recorded = parent.recorded.get(fid)
    if recorded is not None:
        _check_name(parent, fid, call.info.name, recorded)
    slot = ChildSlot(parent, fid, recorded)
    if not direct or parent.legacy_child_results or (recorded is not None and recorded.error is not None):
        return slot
    result_fid = fid + 1
    result = parent.recorded.get(result_fid)
    if result is not None:
        if recorded is not None:
            child_id = recorded.child_workflow_id
        elif ctx.id_box is not None and not ctx.id_box.used:
            child_id = ctx.id_box.value
        else:
            child_id = f"{parent.workflow_id}-{fid}"
        if result.function_name != RESULT_STEP or result.child_workflow_id != child_id:
            parent.legacy_child_results = True
            parent.runtime.logger.info(
                "workflow %s was recorded before direct child calls took a %s step; it replays with "
                "its recorded step numbering", parent.workflow_id, RESULT_STEP,
            )
            return slot
    parent.next_function_id()
    slot.result_fid, slot.result_recorded = result_fid, result
    return slot


RESULT_STEP = "DBOS.getResult"


def _with_result_step(created: Created, slot: Optional[ChildSlot]) -> Created:
    if slot is not None and slot.result_fid is not None:
        created.result_fid, created.result_recorded, created.result_parent = (
            slot.result_fid, slot.result_recorded, slot.parent
        )
    return created


def _existing(
    rt: Runtime, workflow_id: str, call: Call, auth: Auth, deadline: Optional[int], *,
    check_name: bool = True, conn: Optional[sa.Connection] = None,
) -> Created:
    """The workflow of this ID, as found (``conn``: read in the caller's transaction).
    ``check_name``: it must be the call's workflow (not so for a deduplication holder)."""
    row = workflows.get(conn, workflow_id) if conn is not None else rt.sys_db.query(lambda c: workflows.get(c, workflow_id))
    if row is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    if check_name and row.name != call.info.name:  # DBOS 2.31.1's key phrases
        raise DBOSConflictingWorkflowError(workflow_id, "Workflow already exists with a different function name: "
                                           f"{row.name}, but the provided function name is: {call.info.name}")
    if check_name and row.config_name != call.config_name:  # another configured instance's workflow
        raise DBOSConflictingWorkflowError(workflow_id, "Workflow already exists with a different config name: "
                                           f"{row.config_name}, but the provided config name is: {call.config_name}")
    return Created(workflow_id, False, row, auth, row.deadline_ms, row.queue_name)


def _timeout(
    ctx: Ctx, parent: Optional[WorkflowRun], now: int, queued: bool
) -> tuple[Optional[int], Optional[int]]:
    """(timeout_ms, deadline_ms) for a new workflow; a queued one starts its clock at dequeue."""
    if ctx.timeout is context.UNSET:
        return None, parent.deadline_ms if parent is not None else None
    if ctx.timeout is None:
        return None, None
    timeout_ms = int(ctx.timeout * 1000)
    return timeout_ms, None if queued else now + timeout_ms


def _check_name(run: WorkflowRun, fid: int, name: str, recorded: StepRow) -> None:
    if recorded.function_name != name:
        raise DBOSUnexpectedStepError(run.workflow_id, fid, name, recorded.function_name)


# -- executing --------------------------------------------------------------


def _begin(rt: Runtime, created: Created, call: Call, local: LocalExecution) -> WorkflowRun:
    local.deadline_ms = created.deadline_ms
    local.began = time.monotonic()
    local.name = call.info.name
    rt.stats.workflow_started(call.info.name, created.queue_name)
    recorded: dict[int, StepRow] = {}
    if not created.fresh:
        steps = rt.sys_db.query(lambda c: operations.list_for(c, created.workflow_id))
        recorded = {s.function_id: s for s in steps}
    return WorkflowRun(
        workflow_id=created.workflow_id,
        runtime=rt,
        recorded=recorded,
        deadline_ms=created.deadline_ms,
        cancel_event=local.cancel_event,
        auth=created.auth,
        queue_name=created.queue_name,
        replaying=not created.fresh,
    )



def _span(rt: Runtime, created: Created, call: Call) -> Any:
    if not tracing.enabled():
        return tracing.NO_SPAN
    attributes = {
        tracing.ATTR_WORKFLOW_ID: created.workflow_id,
        tracing.ATTR_EXECUTOR_ID: rt.executor_id,
        tracing.ATTR_APP_VERSION: rt.app_version,
    }
    if created.queue_name is not None:
        attributes[tracing.ATTR_QUEUE] = created.queue_name
    return tracing.span(call.info.name, "workflow", attributes, parent=created.trace_parent)


def _begin_or_defer(rt: Runtime, created: Created, call: Call, local: LocalExecution) -> WorkflowRun:
    """``_begin``; if reading the recorded steps fails the execution is settled (or, while
    the database is unreachable, resumed later) instead of staying registered forever."""
    try:
        return _begin(rt, created, call, local)
    except DBOSDatabaseUnavailableError as e:
        outcomes.defer_resume(rt, created.workflow_id, created.queue_name, local, e)
        raise
    except BaseException as e:
        outcomes.settle(rt, created.workflow_id, created.queue_name, local, None, e)
        raise


def call_direct(rt: Runtime, call: Call) -> Any:
    """A workflow called as a function: create (or find) it, run it here unless it is
    finished or running already (then wait for its outcome), return its result. Called
    from a workflow, the outcome is recorded as the parent's DBOS.getResult step."""
    auth_rules.refuse_unauthorized(call.info)
    created = create(rt, call, direct=True)
    if created.result_recorded is not None:
        return replay(created.result_recorded)
    started = now_ms()
    try:
        local = claim_for_execution(rt, created)
        if local is None:
            result = results.wait_result(rt, created.workflow_id)
        else:
            result = execute(rt, created, call, local)
    except Exception as e:
        return _record_result(rt, created, started, None, e)
    return _record_result(rt, created, started, result, None)


async def call_direct_async(rt: Runtime, call: Call) -> Any:
    rt.note_app_loop()
    auth_rules.refuse_unauthorized(call.info)
    slot = take_slot(call, direct=True)  # before the first await (see take_slot)
    created = await rt.to_thread(functools.partial(create, rt, call, direct=True, slot=slot))
    if created.result_recorded is not None:
        return replay(created.result_recorded)
    started = now_ms()
    try:
        local = await rt.to_thread(claim_for_execution, rt, created)
        if local is None:
            result = await waits.run_async(rt, results.result_wait(rt, created.workflow_id))
        else:
            result = await execute_async(rt, created, call, local)
    except Exception as e:
        return await rt.to_thread(_record_result, rt, created, started, None, e)
    return await rt.to_thread(_record_result, rt, created, started, result, None)


def _record_result(rt: Runtime, created: Created, started: int, result: Any, error: Optional[Exception]) -> Any:
    """Record a direct child's outcome as its parent's DBOS.getResult step (if it took
    one), then return it or raise it. A preempted parent (cancelled, or past its
    deadline) or an unreachable database is no outcome: nothing is recorded and the
    wait runs again when the parent resumes."""
    parent, fid = created.result_parent, created.result_fid
    preempted = parent is not None and parent.cancel_event.is_set()
    if fid is None or parent is None or preempted or isinstance(
        error, (DBOSWorkflowCancelledError, DBOSDatabaseUnavailableError)
    ):
        if error is not None:
            raise error
        return result
    return record_step(rt, parent, fid, RESULT_STEP, result, error, started, child_workflow_id=created.workflow_id)


def execute(rt: Runtime, created: Created, call: Call, local: LocalExecution) -> Any:
    run = _begin_or_defer(rt, created, call, local)
    with _span(rt, created, call), context.using(Ctx(run=run, auth=run.auth)):
        try:
            auth_rules.refuse_recorded_caller(call.info, run)
            result = call.invoke()
        except BaseException as e:
            outcomes.finish(rt, run, local, None, e)
            _raise_as_awaited(run, e)
            raise
        outcomes.finish(rt, run, local, result, None)
    return local.outcome.result()  # the recorded outcome (an unserializable result raises, as on replay)


async def execute_async(
    rt: Runtime, created: Created, call: Call, local: LocalExecution, *, movable: bool = False
) -> Any:
    """Run an async workflow on the running loop. ``movable``: nobody awaits it here (it
    was started on the application's loop): if that loop shuts down under it (cancelling
    its tasks, as ``asyncio.run`` does on return), it goes on on the pool's own loop."""
    try:
        run = await rt.to_thread(_begin_or_defer, rt, created, call, local)
    except asyncio.CancelledError:
        if movable:
            _move_to_pool_loop(rt, created, call, local)
        raise
    with _span(rt, created, call), context.using(Ctx(run=run, auth=run.auth)):
        try:
            auth_rules.refuse_recorded_caller(call.info, run)
            result = await call.invoke()
        except BaseException as e:
            if movable and isinstance(e, asyncio.CancelledError) and _move_to_pool_loop(rt, created, call, local):
                raise
            await rt.to_thread(outcomes.finish, rt, run, local, None, e)
            _raise_as_awaited(run, e)
            raise
        await rt.to_thread(outcomes.finish, rt, run, local, result, None)
    return local.outcome.result()  # the recorded outcome (an unserializable result raises, as on replay)


def _move_to_pool_loop(rt: Runtime, created: Created, call: Call, local: LocalExecution) -> bool:
    """The loop an async workflow ran on (the application's) is shutting down: run it again
    on the pool's own loop, from its recorded steps, still registered here. False if this
    is no such shutdown (a CancelledError the workflow raised itself), if it was preempted,
    or if the pool is stopped (DBOS destroyed): it is then interrupted as before."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+: was this task cancelled?
    if (cancelling is not None and not cancelling()) or local.cancel_event.is_set():
        return False
    coro = _swallow_async(execute_async(rt, replace(created, fresh=False), call, local))
    try:
        rt.pool.submit_coro(coro)
    except RuntimeError:
        coro.close()
        return False
    rt.logger.info("workflow %s: its event loop stopped; it goes on on DBOS's own loop", created.workflow_id)
    return True


def _raise_as_awaited(run: WorkflowRun, error: BaseException) -> None:
    """A workflow preempted (cancelled, or past its deadline) inside a direct call: its
    caller sees what a handle's get_result() raises, DBOSAwaitedWorkflowCancelledError."""
    if isinstance(error, DBOSWorkflowCancelledError):
        raise DBOSAwaitedWorkflowCancelledError(run.workflow_id) from error


def claim_for_execution(rt: Runtime, created: Created) -> Optional[LocalExecution]:
    """Decide whether this process should execute the workflow now.

    Returns the new local execution, or None when it is finished, queued, or
    already executing here (callers then wait for its result instead).
    """
    row = created.existing
    if row is not None and row.status != "PENDING":
        if row.status in ("SUCCESS", "ERROR"):  # DBOS 2.x's debug line
            rt.logger.debug("Workflow %s is already completed with status %s", created.workflow_id, row.status)
        return None
    local, is_new = rt.claim_local(created.workflow_id)
    if not is_new:
        return None
    if row is not None:
        # Re-running an existing PENDING workflow counts as an attempt.
        attempts = rt.sys_db.run(
            lambda c: workflows.begin_attempt(c, created.workflow_id, rt.executor_id, now_ms())
        )
        if attempts is None:
            rt.release_local(created.workflow_id)
            return None
    return local


def start(rt: Runtime, created: Created, call: Call) -> None:
    """Run the workflow in the background (thread pool or the async loop)."""
    local = claim_for_execution(rt, created)
    if local is None:
        return
    submit(rt, created, call, local)


def submit(rt: Runtime, created: Created, call: Call, local: LocalExecution) -> None:
    if call.info.is_async:
        # On the application's event loop if known (it enqueued the workflow, or launched
        # DBOS), so loop-bound objects work in it; else on the pool's own loop.
        loop = rt.app_loop()
        coro = execute_async(rt, created, call, local, movable=loop is not None)
        rt.pool.submit_coro(_swallow_async(coro), loop)
    else:
        rt.pool.submit(lambda: _swallow(execute, rt, created, call, local))


def _swallow(fn: Callable[..., Any], *args: Any) -> None:
    # The outcome is in the database and the local outcome; nothing to raise here.
    try:
        fn(*args)
    except BaseException:
        pass


async def _swallow_async(coro: Any) -> None:
    try:
        await coro
    except BaseException:
        pass
