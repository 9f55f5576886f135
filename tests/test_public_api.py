"""Pin the public names: what the reference documents is importable from ``dbos`` and
``dbos.error``, with the signatures users rely on."""

from __future__ import annotations

import inspect

import pytest

import dbos
import dbos.error

REFERENCE_NAMES = [
    "DBOS",
    "DBOSConfig",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "SetEnqueueOptions",
    "DBOSContextEnsure",
    "DBOSContextSetAuth",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowStatus",
    "StepInfo",
    "StepStatus",
]

EXCEPTIONS = [
    "DBOSException",
    "DBOSInitializationError",
    "DBOSNonExistentWorkflowError",
    "DBOSMaxRecoveryAttemptsExceededError",
    "DBOSMaxStepRetriesExceeded",
    "DBOSNotAuthorizedError",
    "DBOSConflictingWorkflowError",
    "DBOSWorkflowConflictIDError",
    "DBOSWorkflowCancelledError",
    "DBOSAwaitedWorkflowCancelledError",
    "DBOSQueueDeduplicatedError",
    "DBOSUnexpectedStepError",
]

ERROR_MODULE_ONLY = ["DBOSConfigError", "DBOSSerializationError"]


@pytest.mark.parametrize("name", REFERENCE_NAMES + EXCEPTIONS)
def test_public_name_exported_from_dbos(name: str) -> None:
    assert name in dbos.__all__
    assert getattr(dbos, name) is not None


def test_all_names_resolve() -> None:
    for name in dbos.__all__:
        assert hasattr(dbos, name), name
    assert len(set(dbos.__all__)) == len(dbos.__all__)


def test_no_private_names_in_all() -> None:
    assert not [n for n in dbos.__all__ if n.startswith("_")]


@pytest.mark.parametrize("name", EXCEPTIONS + ERROR_MODULE_ONLY)
def test_error_module_exports_the_exceptions(name: str) -> None:
    assert name in dbos.error.__all__
    cls = getattr(dbos.error, name)
    if name == "DBOSWorkflowCancelledError":
        # As in DBOS 2.x: a BaseException, so `except Exception` cannot swallow a cancel.
        assert issubclass(cls, BaseException) and not issubclass(cls, Exception)
    else:
        assert issubclass(cls, dbos.error.DBOSException)
        assert issubclass(cls, Exception)
    if name in EXCEPTIONS:
        assert getattr(dbos, name) is cls  # one class, two import paths


def test_exception_hierarchy() -> None:
    from dbos.error import DBOSConfigError, DBOSException, DBOSInitializationError

    assert issubclass(DBOSConfigError, DBOSInitializationError)
    assert issubclass(DBOSInitializationError, DBOSException)
    codes = {
        getattr(dbos.error, n)("x").dbos_error_code
        for n in ("DBOSInitializationError", "DBOSConfigError", "DBOSSerializationError")
    }
    assert len(codes) == 3


def test_workflow_statuses() -> None:
    assert {s.value for s in dbos.WorkflowStatusString} == {
        "ENQUEUED", "PENDING", "SUCCESS", "ERROR", "CANCELLED", "RETRIES_EXCEEDED", "DELAYED",
    }


def test_workflow_status_fields() -> None:
    fields = set(inspect.signature(dbos.WorkflowStatus).parameters)
    assert {
        "workflow_id", "status", "name", "recovery_attempts", "class_name", "config_name",
        "authenticated_user", "assumed_role", "authenticated_roles", "input", "output", "error",
        "created_at", "updated_at", "queue_name", "executor_id", "app_version", "app_id",
    } <= fields


def test_step_status_and_step_info_fields() -> None:
    status = dbos.StepStatus(step_id=1, current_attempt=0, max_attempts=3)
    assert (status.step_id, status.current_attempt, status.max_attempts) == (1, 0, 3)
    assert set(dbos.StepInfo.__annotations__) == {
        "function_id", "function_name", "output", "error", "child_workflow_id", "started_at_epoch_ms",
        "completed_at_epoch_ms",
    }


def test_config_keys() -> None:
    keys = set(dbos.DBOSConfig.__annotations__)
    assert {
        "name", "system_database_url", "application_database_url", "sys_db_pool_size",
        "executor_id", "application_version", "dbos_system_schema", "log_level", "redis_url",
    } <= keys


def test_dbos_methods_and_signatures() -> None:
    D = dbos.DBOS
    for name in (
        "launch", "destroy", "workflow", "step", "transaction", "start_workflow", "start_workflow_async",
        "retrieve_workflow", "retrieve_workflow_async", "send", "recv", "set_event", "get_event", "sleep",
        "list_workflows", "list_workflow_steps", "cancel_workflow", "resume_workflow", "fork_workflow",
    ):
        assert callable(getattr(D, name)), name
    step = inspect.signature(D.step).parameters
    assert {"name", "retries_allowed", "interval_seconds", "max_attempts", "backoff_rate"} <= set(step)
    assert step["retries_allowed"].default is False
    assert step["max_attempts"].default == 3
    assert step["interval_seconds"].default == 1.0
    assert step["backoff_rate"].default == 2.0
    assert "max_recovery_attempts" in inspect.signature(D.workflow).parameters
    assert "isolation_level" in inspect.signature(D.transaction).parameters
    retrieve = inspect.signature(D.retrieve_workflow).parameters
    assert retrieve["existing_workflow"].default is True
    assert inspect.iscoroutinefunction(D.start_workflow_async)
    assert inspect.iscoroutinefunction(D.retrieve_workflow_async)


CLIENT_METHODS = (
    "enqueue", "retrieve_workflow", "send", "get_event", "list_workflows", "list_queued_workflows",
    "list_workflow_steps", "cancel_workflow", "resume_workflow", "fork_workflow", "get_workflow",
)


@pytest.mark.parametrize("name", CLIENT_METHODS)
def test_client_methods_have_async_variants_with_the_same_parameters(name: str) -> None:
    C = dbos.DBOSClient
    sync, variant = getattr(C, name), getattr(C, f"{name}_async")
    assert not inspect.iscoroutinefunction(sync)
    assert inspect.iscoroutinefunction(variant), name
    assert variant.__name__ == f"{name}_async"
    assert list(inspect.signature(variant).parameters) == list(inspect.signature(sync).parameters)


def test_client_list_options_match_dbos() -> None:
    for name in ("list_workflows", "list_queued_workflows"):
        of_dbos = inspect.signature(getattr(dbos.DBOS, name)).parameters
        of_client = inspect.signature(getattr(dbos.DBOSClient, name)).parameters
        assert list(of_client)[1:] == list(of_dbos), name  # the client's adds only `self`
        for option, param in of_dbos.items():
            assert of_client[option].default == param.default, (name, option)
    listing = inspect.signature(dbos.DBOSClient.list_workflows).parameters
    assert listing["load_input"].default is True and listing["load_output"].default is True


def test_handles_api() -> None:
    for cls in (dbos.WorkflowHandle, dbos.WorkflowHandleAsync):
        for name in ("workflow_id", "get_workflow_id", "get_result", "get_status"):
            assert hasattr(cls, name), (cls, name)
    assert inspect.iscoroutinefunction(dbos.WorkflowHandleAsync.get_result)
    assert inspect.iscoroutinefunction(dbos.WorkflowHandleAsync.get_status)


def test_context_managers_are_context_managers() -> None:
    for cm in (
        dbos.SetWorkflowID("x"),
        dbos.SetWorkflowTimeout(1.0),
        dbos.SetEnqueueOptions(priority=1),
        dbos.DBOSContextEnsure(),
        dbos.DBOSContextSetAuth("u", ["r"]),
    ):
        with cm:
            pass


def test_set_workflow_id_rejects_empty() -> None:
    with pytest.raises(dbos.DBOSException):
        dbos.SetWorkflowID("")
