"""Workflow management rules: listing (filters validated here), steps."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any, List, Mapping, Optional, Sequence, Union

from dbos._execution import checks, context
from dbos._execution.ids import new_id
from dbos._execution.queues import INTERNAL_QUEUE
from dbos._execution.runtime import Runtime, now_ms
from dbos._execution.serialization import deserialize, deserialize_error
from dbos._execution.status import StepInfo, WorkflowStatus
from dbos._storage import listing, operations, workflows
from dbos._storage.schema import STATUSES
from dbos._wakeups import local as keys
from dbos.error import DBOSException, DBOSNonExistentWorkflowError


def parse_time(value: Optional[str], what: str) -> Optional[int]:
    """An RFC 3339 timestamp to epoch milliseconds; a clear error on a malformed one."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise DBOSException(f"{what} must be an RFC 3339 timestamp string, got {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise DBOSException(f"{what} is not an RFC 3339 timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return int(parsed.timestamp() * 1000)


def _statuses(status: Union[str, Sequence[str], None], allowed: Sequence[str]) -> Optional[List[str]]:
    if status is None:
        return None
    values = [status] if isinstance(status, str) else list(status)
    for v in values:
        if v not in allowed:
            raise DBOSException(f"status must be one of {', '.join(allowed)}; got {v!r}")
    return values


def _count(value: Optional[int], what: str) -> Optional[int]:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise DBOSException(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _values(field: str, value: Union[str, Sequence[str], None]) -> Optional[tuple[str, ...]]:
    """A filter given as one string or a list of strings (DBOS 2.x takes either)."""
    if value is None:
        return None
    values = (value,) if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
        raise DBOSException(f"{field} must be a string or a list of strings, got {value!r}")
    for v in values:  # a NUL would reach the driver as a raw error (PostgreSQL)
        checks.identifier(field, v, allow_empty=True)
    return tuple(values)


def workflow_filter(
    *,
    workflow_ids: Optional[Sequence[str]] = None,
    status: Union[str, Sequence[str], None] = None,
    start_time: Optional[str] = None,
    end_time: Optional[str] = None,
    name: Union[str, Sequence[str], None] = None,
    app_version: Union[str, Sequence[str], None] = None,
    user: Union[str, Sequence[str], None] = None,
    limit: Optional[int] = None,
    offset: Optional[int] = None,
    sort_desc: bool = False,
    workflow_id_prefix: Union[str, Sequence[str], None] = None,
    queue_name: Union[str, Sequence[str], None] = None,
    queued_only: bool = False,
    executor_id: Union[str, Sequence[str], None] = None,
    forked_from: Union[str, Sequence[str], None] = None,
    parent_workflow_id: Union[str, Sequence[str], None] = None,
    has_parent: Optional[bool] = None,
    was_forked_from: Optional[bool] = None,
    completed_after: Optional[str] = None,
    completed_before: Optional[str] = None,
    dequeued_after: Optional[str] = None,
    dequeued_before: Optional[str] = None,
    attributes: Optional[dict[str, Any]] = None,
    schedule_name: Union[str, Sequence[str], None] = None,
) -> listing.WorkflowFilter:
    if workflow_ids is not None and (isinstance(workflow_ids, str) or not all(isinstance(w, str) for w in workflow_ids)):
        raise DBOSException(f"workflow_ids must be a list of strings, got {workflow_ids!r}")
    for wid in workflow_ids or ():
        checks.identifier("workflow_ids", wid)
    if has_parent is not None and not isinstance(has_parent, bool):
        raise DBOSException(f"has_parent must be True, False or None, got {has_parent!r}")
    if was_forked_from is not None and not isinstance(was_forked_from, bool):
        raise DBOSException(f"was_forked_from must be True, False or None, got {was_forked_from!r}")
    return listing.WorkflowFilter(
        workflow_ids=list(workflow_ids) if workflow_ids is not None else None,
        statuses=_statuses(status, ("DELAYED", "ENQUEUED", "PENDING") if queued_only else STATUSES),
        start_time_ms=parse_time(start_time, "start_time"),
        end_time_ms=parse_time(end_time, "end_time"),
        name=_values("name", name),
        app_version=_values("app_version", app_version),
        user=_values("user", user),
        limit=_count(limit, "limit"),
        offset=_count(offset, "offset"),
        sort_desc=bool(sort_desc),
        workflow_id_prefix=_values("workflow_id_prefix", workflow_id_prefix),
        queue_name=_values("queue_name", queue_name),
        queued_only=queued_only,
        executor_id=_values("executor_id", executor_id),
        forked_from=_values("forked_from", forked_from),
        parent_workflow_id=_values("parent_workflow_id", parent_workflow_id),
        has_parent=has_parent,
        was_forked_from=was_forked_from,
        completed_after_ms=parse_time(completed_after, "completed_after"),
        completed_before_ms=parse_time(completed_before, "completed_before"),
        dequeued_after_ms=parse_time(dequeued_after, "dequeued_after"),
        dequeued_before_ms=parse_time(dequeued_before, "dequeued_before"),
        attributes=_attributes_filter(attributes),
        schedule_name=_values("schedule_name", schedule_name),
    )


def _attributes_filter(attributes: Any) -> Optional[dict[str, Any]]:
    """``attributes=``: workflows whose attributes hold every one of these pairs."""
    if attributes is None:
        return None
    checks.workflow_attributes(attributes)  # the same rules as what is stored
    return dict(attributes)


def list_workflows(
    rt: Runtime, f: listing.WorkflowFilter, *, load_input: bool = True, load_output: bool = True
) -> List[WorkflowStatus]:
    rows = rt.sys_db.query(lambda c: listing.list_rows(c, f, inputs=load_input, outputs=load_output))
    return [WorkflowStatus.from_row(r, load_input=load_input, load_output=load_output) for r in rows]


def list_steps(
    rt: Runtime, workflow_id: str, *, load_output: bool = True, limit: Optional[int] = None,
    offset: Optional[int] = None,
) -> List[StepInfo]:
    """The workflow's recorded steps in step order (``limit``/``offset`` page through them);
    ``load_output=False`` leaves ``output`` and ``error`` None."""
    checks.identifier("workflow_id", workflow_id)
    limit, offset = _count(limit, "limit"), _count(offset, "offset")
    steps = rt.sys_db.query(
        lambda c: operations.list_for(c, workflow_id, limit=limit, offset=offset, outputs=bool(load_output))
    )
    result: List[StepInfo] = []
    for s in steps:
        error: Any = deserialize_error(s.error) if load_output else None
        result.append(
            StepInfo(
                function_id=s.function_id,
                function_name=s.function_name,
                output=deserialize(s.output, f"the output of step {s.function_id}") if load_output else None,
                error=error,
                child_workflow_id=s.child_workflow_id,
                started_at_epoch_ms=s.started_at,
                completed_at_epoch_ms=s.completed_at,
            )
        )
    return result


def set_attributes(rt: Runtime, workflow_id: str, attributes: Any) -> None:
    """Replace a workflow's attributes (None clears them)."""
    checks.identifier("workflow_id", workflow_id)
    text = checks.workflow_attributes(attributes)
    if not rt.sys_db.run(lambda c: workflows.set_attributes(c, workflow_id, text, now_ms())):
        raise DBOSNonExistentWorkflowError(workflow_id)


# -- cancel, resume, fork --------------------------------------------------------


def cancel(rt: Runtime, workflow_id: str, *, cancel_children: bool = False) -> bool:
    """CANCELLED (unless finished), off its queue, and preempted wherever it runs; False
    if unknown or finished already (nothing changes), as in DBOS Transact 2.x."""
    return bool(cancel_workflows(rt, [workflow_id], cancel_children=cancel_children))


def cancel_workflows(rt: Runtime, workflow_ids: Sequence[str], *, cancel_children: bool = False) -> list[str]:
    """``cancel`` of each, in one transaction; ``cancel_children``: their descendants too
    (through ``parent_workflow_id``, at any depth, below finished ones as well), each
    cancelled and preempted exactly as if named here. Returns the IDs now CANCELLED."""
    if isinstance(workflow_ids, str) or not isinstance(workflow_ids, (list, tuple)):
        raise DBOSException(f"workflow_ids must be a list of strings, got {workflow_ids!r}")
    ids = [checks.identifier("workflow_id", w) for w in workflow_ids]
    if not isinstance(cancel_children, bool):
        raise DBOSException(f"cancel_children must be True or False, got {cancel_children!r}")
    dialect = rt.sys_db.dialect

    def in_tx(conn: Any) -> list[str]:
        targets = ids + workflows.descendants(conn, dialect, ids) if cancel_children else ids
        return workflows.cancel(conn, dialect, targets, now_ms())

    cancelled = rt.sys_db.run(in_tx, tx=True) if ids else []
    for workflow_id in cancelled:
        rt.preempt_local(workflow_id)
        rt.wakeups.notify(keys.cancelled(workflow_id))  # other processes
        rt.wakeups.notify(keys.workflow_done(workflow_id))  # awaiting handles re-check
    return cancelled


def resume(rt: Runtime, workflow_id: str, queue_name: Optional[str] = None) -> str:
    """Restart a workflow from its last recorded step on an executor of its version: at
    once (the internal queue), or under the limits of ``queue_name`` (DBOS 2.x)."""
    checks.identifier("workflow_id", workflow_id)
    queue = INTERNAL_QUEUE.name if queue_name is None else checks.identifier("queue_name", queue_name)
    previous = rt.sys_db.run(
        lambda c: workflows.requeue(c, workflow_id, queue, now_ms(), reset_attempts=True), tx=True
    )
    if previous is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    rt.wakeups.notify(keys.queue_ready(queue))
    return workflow_id


def fork(
    rt: Runtime, workflow_id: str, start_step: int, application_version: Optional[str],
    timeout_seconds: Optional[float] = None, queue_name: Optional[str] = None,
    queue_partition_key: Optional[str] = None, replacement_children: Optional[Mapping[str, str]] = None,
) -> str:
    """A new workflow with the same inputs whose steps before ``start_step`` are copied.

    As in DBOS 2.x, ``start_step`` <= 1 (or <= 0) re-runs every step, and one past the
    last recorded step copies them all (the fork replays to the same result).
    ``timeout_seconds``: the fork's timeout, counted from its start (else the source's).
    ``queue_name`` (and ``queue_partition_key``): the fork waits its turn on that queue
    rather than starting at once (the internal queue).
    ``replacement_children`` {original child ID: replacement ID}: the copied steps that
    started (or awaited) an original child name its replacement, so the fork's replay
    waits for the replacement's outcome and never touches the original (DBOS 2.x)."""
    if isinstance(start_step, bool) or not isinstance(start_step, int):
        raise DBOSException(f"start_step must be an integer, got {start_step!r}")
    start_step = max(1, start_step)
    checks.identifier("workflow_id", workflow_id)
    checks.optional_identifier("application_version", application_version)
    queue = INTERNAL_QUEUE.name if queue_name is None else checks.identifier("queue_name", queue_name)
    checks.optional_identifier("queue_partition_key", queue_partition_key)
    replacements = _replacements(replacement_children)
    timeout_ms: Optional[int] = None
    if timeout_seconds is not None:
        timeout_ms = max(1, int(checks.duration("timeout_seconds", timeout_seconds, positive=True) * 1000))
    ctx = context.current()
    fork_id = (ctx.id_box.take() if ctx.id_box is not None else None) or new_id()

    def in_tx(conn: Any) -> None:
        source = workflows.get(conn, workflow_id)
        if source is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        now = now_ms()
        row = replace(
            source,
            workflow_uuid=fork_id,
            status="ENQUEUED",
            output=None,
            error=None,
            executor_id=None,
            application_version=application_version or source.application_version,
            created_at=now,
            updated_at=now,
            started_at=None,
            recovery_attempts=0,
            queue_name=queue,
            priority=0,
            deduplication_id=None,
            queue_partition_key=queue_partition_key,
            timeout_ms=source.timeout_ms if timeout_ms is None else timeout_ms,
            deadline_ms=None,
            parent_workflow_id=None,
            forked_from=workflow_id,
            schedule_name=None,  # a fork is not a tick of the source's schedule (as in DBOS)
            was_forked_from=False,
        )
        if not workflows.insert(conn, rt.sys_db.dialect, row):
            raise DBOSException(f"cannot fork into workflow ID {fork_id}: a workflow with that ID exists")
        workflows.mark_forked(conn, workflow_id)
        operations.copy_prefix(conn, workflow_id, fork_id, start_step, replacements)

    rt.sys_db.run(in_tx, tx=True)
    rt.wakeups.notify(keys.queue_ready(queue))
    return fork_id


def _replacements(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DBOSException(
            f"replacement_children must be a dict of original child workflow ID to replacement workflow ID, "
            f"got {checks.short(value)}"
        )
    for old, new in value.items():
        if not isinstance(old, str) or not isinstance(new, str):
            raise DBOSException(
                f"replacement_children maps workflow IDs (strings) to workflow IDs (strings), "
                f"got {checks.short(old)}: {checks.short(new)}"
            )
        checks.identifier("replacement_children (an original child ID)", old)
        checks.identifier("replacement_children (a replacement ID)", new)
    return dict(value)
