"""Registration mistakes DBOS 2.x rejects, and its error names (issue 18, items 16 and
the error bullet): a second class or configured instance under a taken name, two DBOS
decorators on one function, an async transaction, enqueue options around a call that
does not enqueue; ``MaxRecoveryAttemptsExceededError``,
``DBOSConflictingRegistrationError`` and ``DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from conftest import Backend, Harness

import dbos.error as dbos_error
from dbos import DBOS, DBOSConfiguredInstance, DBOSException, Queue, SetEnqueueOptions, SetWorkflowID
from dbos.error import (
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSConflictingRegistrationError,
    DBOSMaxRecoveryAttemptsExceededError,
    DBOSQueueDeduplicatedError,
)

QUEUE = Queue("reg_queue")


def _make_class(tag: str) -> type:
    """One class statement; run twice it makes two class objects of one definition."""

    @DBOS.dbos_class(f"reg_same_{tag}")
    class Same:
        @classmethod
        @DBOS.workflow(name=f"reg_same_{tag}.run")
        def run(cls) -> str:
            return "ok"

    return Same


def test_a_second_class_under_a_taken_name_is_rejected() -> None:
    @DBOS.dbos_class("reg_taken")
    class First:
        pass

    with pytest.raises(DBOSConflictingRegistrationError, match="Duplicate type registration for class 'reg_taken'"):

        @DBOS.dbos_class("reg_taken")
        class Second:
            def other(self) -> None:
                pass

    # The same class statement run again (a test, a reloaded module) replaces the first.
    a, b = _make_class("x"), _make_class("x")
    assert a is not b
    assert isinstance(DBOSConflictingRegistrationError("n", "d"), DBOSException)


def test_a_second_configured_instance_under_a_taken_config_name_is_rejected() -> None:
    @DBOS.dbos_class("reg_instances")
    class Account(DBOSConfiguredInstance):
        def __init__(self, config_name: str) -> None:
            super().__init__(config_name)

        @DBOS.workflow(name="reg_instances.run")
        def run(self) -> str:
            return self.config_name

    Account("east")
    with pytest.raises(DBOSConflictingRegistrationError, match="Duplicate instance registration.*'east'"):
        Account("east")
    Account("west")  # another config name is fine


def test_two_dbos_decorators_on_one_function_are_rejected() -> None:
    def body() -> int:
        return 1

    txn = DBOS.transaction(name="reg_txn_body")(body)
    with pytest.raises(DBOSConflictingRegistrationError, match="already a DBOS transaction; it cannot also be a step"):
        DBOS.step()(txn)
    step = DBOS.step(name="reg_step_body")(body)
    with pytest.raises(DBOSConflictingRegistrationError, match="already a DBOS step; it cannot also be a transaction"):
        DBOS.transaction()(step)
    workflow = DBOS.workflow(name="reg_wf_body")(body)
    with pytest.raises(DBOSConflictingRegistrationError, match="already a DBOS workflow"):
        DBOS.step()(workflow)


@pytest.mark.parametrize("kind", ["step", "transaction"])
def test_a_step_name_taken_by_another_function_is_warned_about(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    # As DBOS 2.x: not an error (the last definition runs its temporary workflow), but a
    # warning in DBOS's words. One definition run again (a re-import) is no duplicate.
    caplog.set_level(logging.WARNING, "dbos")
    decorate: Any = DBOS.step if kind == "step" else DBOS.transaction
    for _ in range(2):

        @decorate(name=f"reg_dup_{kind}")
        def first() -> str:
            return "first"

    assert "Duplicate registration" not in caplog.text

    @decorate(name=f"reg_dup_{kind}")
    def second() -> str:
        return "second"

    assert f"Duplicate registration of function 'reg_dup_{kind}'" in caplog.text


def test_enqueue_options_around_start_workflow_are_rejected(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow(name="reg_started")
    def started(x: int) -> int:
        return x

    with SetEnqueueOptions(deduplication_id="d1", priority=3):
        with pytest.raises(DBOSException, match="deduplication_id, priority set on a workflow that is not being enqueued"):
            with SetWorkflowID("reg-start-1"):
                DBOS.start_workflow(started, 1)
        with SetWorkflowID("reg-enq-1"):
            assert QUEUE.enqueue(started, 2).get_result() == 2  # enqueueing takes them
    assert backend.status("reg-start-1") is None  # nothing recorded
    with SetEnqueueOptions(app_version=None):
        assert DBOS.start_workflow(started, 3).get_result() == 3  # no enqueue-only option set


def test_app_version_around_start_workflow_pins_its_version(dbos: Harness) -> None:
    """DBOS 2.31.1: app_version is not enqueue-only; it decides which executors may recover
    the started workflow (which still runs here, now)."""
    import asyncio

    @DBOS.workflow(name="reg_pinned")
    async def pinned(x: int) -> int:
        return x

    with SetEnqueueOptions(app_version="other-version"):
        with SetWorkflowID("reg-pin-1"):
            assert DBOS.start_workflow(pinned, 1).get_result() == 1

        async def main() -> int:
            with SetWorkflowID("reg-pin-2"):
                return await (await DBOS.start_workflow_async(pinned, 2)).get_result()

        assert asyncio.run(main()) == 2
    for workflow_id in ("reg-pin-1", "reg-pin-2"):
        assert DBOS.get_workflow_status(workflow_id).app_version == "other-version"  # type: ignore[union-attr]


def test_enqueue_options_around_start_workflow_async_are_rejected(dbos: Harness) -> None:
    import asyncio

    @DBOS.workflow(name="reg_started_async")
    async def started(x: int) -> int:
        return x

    async def main() -> None:
        with SetEnqueueOptions(delay_seconds=5):
            with pytest.raises(DBOSException, match="delay_seconds set on a workflow that is not being enqueued"):
                await DBOS.start_workflow_async(started, 1)

    asyncio.run(main())


def test_dbos_2x_error_names() -> None:
    assert dbos_error.MaxRecoveryAttemptsExceededError is DBOSMaxRecoveryAttemptsExceededError
    err = DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded("w1")
    assert isinstance(err, DBOSMaxRecoveryAttemptsExceededError) and err.workflow_id == "w1"
    assert "Awaited workflow w1 exceeded its maximum recovery attempts" in str(err)
    # DBOS's key phrases, which tests written for DBOS match on.
    assert "has exceeded its maximum of 3 execution or recovery attempts" in str(
        DBOSMaxRecoveryAttemptsExceededError("w", 3))
    assert "was deduplicated due to an existing workflow in queue q with deduplication ID d" in str(
        DBOSQueueDeduplicatedError("w", "q", "d"))
    assert "Check that your workflow is deterministic" in str(dbos_error.DBOSUnexpectedStepError("w", 1, "a", "b"))


def test_awaiting_a_workflow_past_its_recovery_attempts(dbos: Harness, backend: Backend) -> None:
    """The handle of a RETRIES_EXCEEDED workflow raises the awaited-workflow error, which
    code catching DBOSMaxRecoveryAttemptsExceededError still catches."""

    @DBOS.workflow(name="reg_exceeded", max_recovery_attempts=1)
    def exceeded() -> Any:
        return "done"

    with SetWorkflowID("reg-exceeded-1"):
        exceeded()
    backend.force_pending("reg-exceeded-1")  # as if it crashed mid-way, after many recoveries
    backend.execute(f"UPDATE {backend.table('workflow_status')} SET recovery_attempts = 5 "
                    "WHERE workflow_uuid = 'reg-exceeded-1'")
    dbos.restart()
    handle = DBOS.retrieve_workflow("reg-exceeded-1")
    with pytest.raises(DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded):
        handle.get_result()
    assert handle.get_status().status == "RETRIES_EXCEEDED"


def test_dbos_2x_error_classes_that_are_never_raised_here_still_import() -> None:
    from dbos.error import (
        DBOSBaseException,
        DBOSPatchNondeterminismError,
        DBOSRecoveryError,
        DBOSWorkflowCancelledError,
    )

    assert issubclass(DBOSWorkflowCancelledError, DBOSBaseException)
    assert not issubclass(DBOSBaseException, Exception)
    assert "Cannot deterministically apply patch p" in str(DBOSPatchNondeterminismError("w", "p", "d"))
    assert isinstance(DBOSRecoveryError("w", "m"), DBOSException)
