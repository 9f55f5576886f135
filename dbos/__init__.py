"""dbos-fleet: durable workflows for Python, run as a fleet (the DBOS Transact API).

Exactly the public names of the reference live here; everything else is private.
"""

from typing import TYPE_CHECKING, Any

from dbos import error
from dbos._api.calls import StepOptions
from dbos._api.classes import DBOSConfiguredInstance
from dbos._api.client import DBOSClient
from dbos._api.context_managers import (
    DBOSContextEnsure,
    DBOSContextSetAuth,
    PropagateOtelContext,
    SetEnqueueOptions,
    SetWorkflowAttributes,
    SetWorkflowID,
    SetWorkflowTimeout,
)
from dbos._api.dbos import DBOS
from dbos._api.enqueue import EnqueueOptions
from dbos._api.handles import WorkflowHandle, WorkflowHandleAsync
from dbos._api.migrate import run_dbos_database_migrations
from dbos._api.queue import Queue
from dbos._api.retention import SendMessage
from dbos._config.settings import DBOSConfig
from dbos._execution.context import DuplicationPolicy
from dbos._execution.schedules import ClientScheduleInput, ScheduleInput, WorkflowSchedule
from dbos._execution.serialization import WorkflowSerializationFormat
from dbos._execution.status import StepInfo, StepStatus, WorkflowStatus, WorkflowStatusString
from dbos._execution.versions import VersionInfo
from dbos.error import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSInitializationError,
    DBOSMaxRecoveryAttemptsExceededError,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    DBOSNotAuthorizedError,
    DBOSQueueDeduplicatedError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)

__all__ = [
    "DBOS",
    "DBOSClient",
    "DBOSConfig",
    "DBOSConfiguredInstance",
    "EnqueueOptions",
    "DBOSContextEnsure",
    "DBOSContextSetAuth",
    "DuplicationPolicy",
    "Queue",
    "PropagateOtelContext",
    "SetWorkflowAttributes",
    "VersionInfo",
    "ClientScheduleInput",
    "ScheduleInput",
    "SendMessage",
    "SetEnqueueOptions",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "StepOptions",
    "StepStatus",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowSchedule",
    "WorkflowSerializationFormat",
    "WorkflowStatus",
    "WorkflowStatusString",
    "error",
    "run_dbos_database_migrations",
    "DBOSException",
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSConflictingWorkflowError",
    "DBOSInitializationError",
    "DBOSMaxRecoveryAttemptsExceededError",
    "DBOSMaxStepRetriesExceeded",
    "DBOSNonExistentWorkflowError",
    "DBOSNotAuthorizedError",
    "DBOSQueueDeduplicatedError",
    "DBOSUnexpectedStepError",
    "DBOSWorkflowCancelledError",
    "DBOSWorkflowConflictIDError",
]


if not TYPE_CHECKING:  # type checkers still report ``from dbos import <misspelt>``

    def __getattr__(name: str) -> Any:
        """A DBOS 2.x name left out here: a clear DBOSNotImplementedError, not an AttributeError."""
        from dbos._api import missing

        missing.raise_missing("dbos", name, missing.MODULE_NAMES)
