"""Public value types: WorkflowStatus, StepInfo, StepStatus, workflow statuses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional, TypedDict

from dbos._execution.serialization import deserialize, deserialize_error
from dbos._storage.schema import STATUSES, TERMINAL
from dbos._storage.workflows import WorkflowRow


class WorkflowStatusString(str, Enum):
    ENQUEUED = "ENQUEUED"
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    RETRIES_EXCEEDED = "RETRIES_EXCEEDED"
    DELAYED = "DELAYED"  # enqueued with SetEnqueueOptions(delay_seconds=...), not due yet


assert tuple(s.value for s in WorkflowStatusString) == STATUSES  # one list: the storage layer's


class WorkflowInputs(TypedDict):
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class WorkflowStatus:
    workflow_id: str
    status: str
    name: str
    recovery_attempts: int
    class_name: Optional[str]
    config_name: Optional[str]
    authenticated_user: Optional[str]
    assumed_role: Optional[str]
    authenticated_roles: Optional[list[str]]
    input: Optional[WorkflowInputs]
    output: Optional[Any]
    error: Optional[Exception]
    created_at: Optional[int]
    updated_at: Optional[int]
    queue_name: Optional[str]
    executor_id: Optional[str]
    app_version: Optional[str]
    app_id: Optional[str]
    # Beyond the reference: what the fleet and timeouts add.
    priority: Optional[int] = None
    deduplication_id: Optional[str] = None
    queue_partition_key: Optional[str] = None
    workflow_timeout_ms: Optional[int] = None
    workflow_deadline_epoch_ms: Optional[int] = None
    parent_workflow_id: Optional[str] = None
    forked_from: Optional[str] = None
    delay_until_epoch_ms: Optional[int] = None  # a DELAYED workflow is not claimed before then
    # DBOS 2.x: when the workflow was last dequeued (enqueued work only), and when it
    # finished (SUCCESS, ERROR, CANCELLED, RETRIES_EXCEEDED; None until then).
    dequeued_at: Optional[int] = None
    completed_at: Optional[int] = None
    attributes: Optional[dict[str, Any]] = None  # DBOS 2.x: SetWorkflowAttributes / update_workflow_attributes
    schedule_name: Optional[str] = None  # DBOS 2.x: the schedule that enqueued this workflow (a tick)
    was_forked_from: bool = False  # DBOS 2.x: some fork names this workflow as its source

    @classmethod
    def from_row(cls, row: WorkflowRow, *, load_input: bool = True, load_output: bool = True) -> "WorkflowStatus":
        """``load_input``/``load_output`` False leave ``input`` / ``output`` and ``error`` None
        (listing many workflows then deserializes nothing it was not asked for)."""
        inputs: Optional[WorkflowInputs] = None
        output: Any = None
        error: Optional[BaseException] = None
        if load_input:
            raw = deserialize(row.inputs, "workflow inputs")
            if raw is not None:
                args, kwargs = raw
                inputs = {"args": tuple(args), "kwargs": dict(kwargs)}
        if load_output:
            output = deserialize(row.output, "workflow output")
            error = deserialize_error(row.error)
        return cls(
            workflow_id=row.workflow_uuid,
            status=row.status,
            name=row.name,
            recovery_attempts=row.recovery_attempts,
            class_name=row.class_name,
            config_name=row.config_name,
            authenticated_user=row.authenticated_user,
            assumed_role=row.assumed_role,
            authenticated_roles=json.loads(row.authenticated_roles) if row.authenticated_roles else None,
            input=inputs,
            output=output,
            error=error if isinstance(error, Exception) or error is None else Exception(str(error)),
            created_at=row.created_at,
            updated_at=row.updated_at,
            queue_name=row.queue_name,
            executor_id=row.executor_id,
            app_version=row.application_version,
            app_id=row.application_id,
            priority=row.priority,
            deduplication_id=row.deduplication_id,
            queue_partition_key=row.queue_partition_key,
            workflow_timeout_ms=row.timeout_ms,
            workflow_deadline_epoch_ms=row.deadline_ms,
            parent_workflow_id=row.parent_workflow_id,
            forked_from=row.forked_from,
            delay_until_epoch_ms=row.delay_until_epoch_ms,
            attributes=json.loads(row.attributes) if row.attributes else None,
            schedule_name=row.schedule_name,
            was_forked_from=bool(row.was_forked_from),
            # A queued row's started_at is set by the claim (the dequeue); a finished
            # row's updated_at by the statement that finished it, and nothing writes
            # a finished row after that (docs/decisions.md, issue 18).
            dequeued_at=row.started_at if row.queue_name is not None else None,
            completed_at=row.updated_at if row.status in TERMINAL else None,
        )


class StepInfo(TypedDict):
    function_id: int
    function_name: str
    output: Optional[Any]
    error: Optional[Exception]
    child_workflow_id: Optional[str]
    started_at_epoch_ms: Optional[int]  # when the step's (first) attempt began
    completed_at_epoch_ms: Optional[int]  # when its outcome was recorded


@dataclass(frozen=True)
class StepStatus:
    step_id: int
    current_attempt: Optional[int]
    max_attempts: Optional[int]
