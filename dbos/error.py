"""The public exception hierarchy.

Every error the library raises on purpose is a ``DBOSException``; each carries a
stable ``dbos_error_code`` so scripts (and the CLI's ``--json``) can tell them
apart without parsing messages.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, Any, Optional


class DBOSErrorCode(IntEnum):
    ConflictingIDError = 1
    InitializationError = 3
    WorkflowFunctionNotFound = 4
    NonExistentWorkflowError = 5
    MaxRecoveryAttemptsExceeded = 6
    MaxStepRetriesExceeded = 7
    NotAuthorized = 8
    ConflictingWorkflowError = 9
    WorkflowCancelled = 10
    UnexpectedStep = 11
    QueueDeduplicated = 12
    AwaitedWorkflowCancelled = 13
    ConfigError = 14
    SerializationError = 15
    DatabaseUnavailable = 16
    AwaitedWorkflowMaxRecoveryAttemptsExceeded = 17
    StepTimeout = 18  # DBOS 2.x's number
    ConflictingRegistrationError = 25  # DBOS 2.x's number


class DBOSException(Exception):
    """Base class of every error this library raises on purpose."""

    def __init__(self, message: str, dbos_error_code: Optional[int] = None) -> None:
        self.message = message
        self.dbos_error_code = dbos_error_code
        super().__init__(message)

    def __reduce__(self) -> Any:
        # Errors are pickled into the database; keep them reconstructible.
        return (_rebuild, (type(self), self.__dict__.copy(), self.args))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type, state: dict[str, Any], args: tuple[Any, ...]) -> BaseException:
    err: BaseException = BaseException.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class DBOSInitializationError(DBOSException):
    """The library could not start: bad config, unreachable database, ..."""

    def __init__(self, message: str) -> None:
        super().__init__(message, DBOSErrorCode.InitializationError.value)


class DBOSConfigError(DBOSInitializationError):
    """A configuration key has a wrong type or value (the message names the key)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.dbos_error_code = DBOSErrorCode.ConfigError.value


class DBOSWorkflowConflictIDError(DBOSException):
    """Two executions wrote the same workflow step at once."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"Conflicting workflow ID {workflow_id}", DBOSErrorCode.ConflictingIDError.value
        )


class DBOSConflictingWorkflowError(DBOSException):
    """A workflow ID is already used by a workflow of another function."""

    def __init__(self, workflow_id: str, message: Optional[str] = None) -> None:
        super().__init__(
            f"Conflicting workflow invocation with the same ID ({workflow_id}): {message}",
            DBOSErrorCode.ConflictingWorkflowError.value,
        )


class DBOSNonExistentWorkflowError(DBOSException):
    """No workflow has this ID. ``destination``: what the ID was for (``"`send` destination"``),
    named in the message as DBOS 2.x does ("Non-existent `send` destination workflow ID: ...")."""

    def __init__(self, workflow_id: str, destination: Optional[str] = None) -> None:
        self.workflow_id = workflow_id
        message = (f"Workflow {workflow_id} does not exist" if destination is None
                   else f"Non-existent {destination} workflow ID: {workflow_id}")
        super().__init__(message, DBOSErrorCode.NonExistentWorkflowError.value)


class DBOSWorkflowFunctionNotFoundError(DBOSException):
    """The function a workflow was started with is not registered in this process."""

    def __init__(self, workflow_id: str, message: Optional[str] = None) -> None:
        super().__init__(
            f"Workflow function not found for workflow {workflow_id}: {message}",
            DBOSErrorCode.WorkflowFunctionNotFound.value,
        )


class DBOSMaxRecoveryAttemptsExceededError(DBOSException):
    """A workflow was recovered more often than its max_recovery_attempts allows."""

    def __init__(self, workflow_id: str, max_attempts: int) -> None:
        super().__init__(
            f"Workflow {workflow_id} has exceeded its maximum of {max_attempts} execution or recovery "
            "attempts and is now RETRIES_EXCEEDED; further attempts to execute or recover it will fail "
            "(DBOS.resume_workflow restarts it)",
            DBOSErrorCode.MaxRecoveryAttemptsExceeded.value,
        )


# DBOS 2.x's name for the same error.
MaxRecoveryAttemptsExceededError = DBOSMaxRecoveryAttemptsExceededError


class DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(DBOSMaxRecoveryAttemptsExceededError):
    """The workflow whose result is awaited went past its recovery attempts (RETRIES_EXCEEDED).
    Also a ``DBOSMaxRecoveryAttemptsExceededError``, which awaiting it raised before."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        DBOSException.__init__(
            self,
            f"Awaited workflow {workflow_id} exceeded its maximum recovery attempts (it is RETRIES_EXCEEDED; "
            "DBOS.resume_workflow restarts it)",
            DBOSErrorCode.AwaitedWorkflowMaxRecoveryAttemptsExceeded.value,
        )


class DBOSConflictingRegistrationError(DBOSException):
    """Two registrations claim one name, or two DBOS decorators one function."""

    def __init__(self, name: str, detail: str) -> None:
        self.name = name
        super().__init__(
            f"Operation (Name: {name}) is already registered with a conflicting function type or "
            f"definition: {detail}",
            DBOSErrorCode.ConflictingRegistrationError.value,
        )


class DBOSMaxStepRetriesExceeded(DBOSException):
    """A step with retries failed on every attempt."""

    def __init__(self, step_name: str, max_attempts: int, errors: Optional[list[Exception]] = None):
        self.step_name = step_name
        self.max_attempts = max_attempts
        self.max_retries = max_attempts  # DBOS 2.x's name for it
        self.errors = list(errors or [])
        last = f"; last error: {self.errors[-1]!r}" if self.errors else ""
        super().__init__(  # DBOS 2.x's phrase ("... maximum of 3 retries"), then the last error
            f"Step {step_name} has exceeded its maximum of {max_attempts} retries{last}",
            DBOSErrorCode.MaxStepRetriesExceeded.value,
        )


class DBOSStepTimeoutError(DBOSException):
    """One attempt of an async step ran past the step's ``timeout_seconds``: it was
    cancelled. An ``Exception``, so a step with retries retries it like any failure."""

    def __init__(self, step_name: str, timeout_seconds: float) -> None:
        self.step_name = step_name
        self.timeout_seconds = timeout_seconds
        super().__init__(
            f"Step {step_name} was cancelled after exceeding its timeout of {timeout_seconds} seconds",
            DBOSErrorCode.StepTimeout.value,
        )


class DBOSNotAuthorizedError(DBOSException):
    """The authenticated user has none of the roles a function requires."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, DBOSErrorCode.NotAuthorized.value)


class DBOSBaseException(BaseException):
    """DBOS 2.x's base of the errors user code must not swallow with ``except Exception``
    (here: the cancellation of a workflow)."""


class DBOSRecoveryError(DBOSException):
    """DBOS 2.x's error of a failed recovery. Recovery here logs what it cannot recover
    and never raises this; the name exists so code catching it imports."""

    def __init__(self, workflow_id: str, message: Optional[str] = None) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"Recovery error for workflow ID {workflow_id}: {message}")


class DBOSPatchNondeterminismError(DBOSException):
    """DBOS 2.x's error of a patch applied differently on replay. Workflow patching is not
    implemented here (``DBOS.patch`` raises DBOSNotImplementedError), so this is never
    raised; the name exists so code catching it imports."""

    def __init__(self, workflow_id: str, patch_name: str, details: str = "") -> None:
        self.workflow_id, self.patch_name = workflow_id, patch_name
        super().__init__(
            f"Cannot deterministically apply patch {patch_name} in workflow {workflow_id}: {details}. "
            "Check that your workflow is deterministic."
        )


class DBOSWorkflowCancelledError(DBOSBaseException):
    """Raised inside a workflow that was cancelled (or timed out, or handed to another
    executor), at the start of its next step. A ``BaseException``, as in DBOS 2.x, so a
    workflow that wraps its steps in ``try/except Exception`` still stops."""

    def __init__(self, msg: str) -> None:
        self.message = msg
        self.dbos_error_code = DBOSErrorCode.WorkflowCancelled.value
        super().__init__(msg)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.__dict__.copy(), self.args))


class DBOSAwaitedWorkflowCancelledError(DBOSException):
    """The workflow whose result is awaited was cancelled."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(
            f"Awaited workflow {workflow_id} was cancelled",
            DBOSErrorCode.AwaitedWorkflowCancelled.value,
        )


class DBOSQueueDeduplicatedError(DBOSException):
    """A workflow with the same deduplication ID is already enqueued or running."""

    def __init__(self, workflow_id: str, queue_name: str, deduplication_id: str) -> None:
        self.workflow_id = workflow_id
        self.queue_name = queue_name
        self.deduplication_id = deduplication_id
        super().__init__(
            f"Workflow {workflow_id} was deduplicated due to an existing workflow in queue {queue_name} "
            f"with deduplication ID {deduplication_id}. That workflow is enqueued or running; this one was not created",
            DBOSErrorCode.QueueDeduplicated.value,
        )


class DBOSUnexpectedStepError(DBOSException):
    """Replay found a different step at a recorded position: the code changed."""

    def __init__(self, workflow_id: str, step_id: int, expected: str, recorded: str) -> None:
        super().__init__(
            f"During execution of workflow {workflow_id} step {step_id}, function {recorded} was "
            f"recorded when {expected} was expected. Check that your workflow is deterministic "
            "(its code may have changed since it started)",
            DBOSErrorCode.UnexpectedStep.value,
        )


class DBOSSerializationError(DBOSException):
    """A value could not be serialized (or deserialized)."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, DBOSErrorCode.SerializationError.value)


class DBOSDatabaseUnavailableError(DBOSException):
    """The system database could not be reached."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, DBOSErrorCode.DatabaseUnavailable.value)


if not TYPE_CHECKING:  # type checkers still report a misspelt error class

    def __getattr__(name: str) -> Any:
        """A DBOS 2.x error class left out here: a clear DBOSNotImplementedError on import."""
        from dbos._api import missing

        missing.raise_missing("dbos.error", name, missing.ERROR_NAMES)


__all__ = [
    "DBOSErrorCode",
    "DBOSException",
    "DBOSInitializationError",
    "DBOSConfigError",
    "DBOSWorkflowConflictIDError",
    "DBOSConflictingWorkflowError",
    "DBOSNonExistentWorkflowError",
    "DBOSWorkflowFunctionNotFoundError",
    "DBOSMaxRecoveryAttemptsExceededError",
    "MaxRecoveryAttemptsExceededError",
    "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded",
    "DBOSConflictingRegistrationError",
    "DBOSBaseException",
    "DBOSRecoveryError",
    "DBOSPatchNondeterminismError",
    "DBOSMaxStepRetriesExceeded",
    "DBOSStepTimeoutError",
    "DBOSNotAuthorizedError",
    "DBOSWorkflowCancelledError",
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSQueueDeduplicatedError",
    "DBOSUnexpectedStepError",
    "DBOSSerializationError",
    "DBOSDatabaseUnavailableError",
]
