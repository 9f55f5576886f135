"""duplication_policy="return-existing" and serialization_type= (issue 18).

An enqueue whose deduplication ID is held on its queue returns the holder's handle
instead of raising DBOSQueueDeduplicatedError: through SetEnqueueOptions, the client's
EnqueueOptions and DBOS.enqueue_workflow_with_options, from a workflow too (recorded,
so a replay returns the same holder). serialization_type accepts NATIVE and None and
refuses PORTABLE, naming it. On PostgreSQL and SQLite."""

from __future__ import annotations

import threading
import uuid
from typing import Any, Iterator

import pytest
from conftest import Backend, Harness

from dbos import (
    DBOS,
    DBOSClient,
    DBOSException,
    DBOSQueueDeduplicatedError,
    DuplicationPolicy,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    WorkflowSerializationFormat,
)
from dbos._api.missing import DBOSNotImplementedError

DP_Q = Queue("dp_queue", polling_interval_sec=0.1)
RELEASE = threading.Event()
RETURN_EXISTING: DuplicationPolicy = "return-existing"


@DBOS.workflow(name="dp_held")
def dp_held(value: str) -> str:
    RELEASE.wait(20)
    return value


@DBOS.workflow(name="dp_parent")
def dp_parent(dedup: str) -> list[str]:
    ids = []
    for value in ("a", "b"):
        with SetEnqueueOptions(deduplication_id=dedup, duplication_policy="return-existing"):
            ids.append(DP_Q.enqueue(dp_held, value).workflow_id)
    return ids


@pytest.fixture(autouse=True)
def _release() -> Iterator[None]:
    RELEASE.clear()
    yield
    RELEASE.set()


def test_return_existing_returns_the_first_workflows_handle(dbos: Harness) -> None:
    dedup = f"dd-{uuid.uuid4().hex[:6]}"
    with SetEnqueueOptions(deduplication_id=dedup):
        first = DP_Q.enqueue(dp_held, "first")
    with SetEnqueueOptions(deduplication_id=dedup):
        with pytest.raises(DBOSQueueDeduplicatedError):
            DP_Q.enqueue(dp_held, "second")  # the default policy ("reject")
    with SetEnqueueOptions(deduplication_id=dedup, duplication_policy=RETURN_EXISTING):
        second = DP_Q.enqueue(dp_held, "second")
    assert second.workflow_id == first.workflow_id
    RELEASE.set()
    assert second.get_result() == "first"
    # Once the holder has left the queue the ID is free: a new workflow.
    with SetEnqueueOptions(deduplication_id=dedup, duplication_policy=RETURN_EXISTING):
        third = DP_Q.enqueue(dp_held, "third")
    assert third.workflow_id != first.workflow_id and third.get_result() == "third"


def test_return_existing_from_the_client_and_by_options(dbos: Harness, backend: Backend) -> None:
    dedup = f"dd-{uuid.uuid4().hex[:6]}"
    opts: Any = {"workflow_name": "dp_held", "queue_name": "dp_queue", "deduplication_id": dedup}
    with DBOSClient(backend.url) as client:
        first = client.enqueue(opts, "client")
        with pytest.raises(DBOSQueueDeduplicatedError):
            client.enqueue(opts, "again")
        again = client.enqueue({**opts, "duplication_policy": "return-existing"}, "again")
        by_options = DBOS.enqueue_workflow_with_options({**opts, "duplication_policy": "return-existing"}, "x")
        assert again.workflow_id == by_options.workflow_id == first.workflow_id
        RELEASE.set()
        assert again.get_result() == "client"


def test_return_existing_in_a_workflow_is_recorded(dbos: Harness, backend: Backend) -> None:
    dedup = f"dd-{uuid.uuid4().hex[:6]}"
    with SetWorkflowID(f"dp-parent-{uuid.uuid4().hex[:6]}"):
        parent = DBOS.start_workflow(dp_parent, dedup)
    ids = parent.get_result()
    assert ids[0] == ids[1]
    assert backend.steps(parent.workflow_id) == [(1, "dp_held"), (2, "dp_held")]
    RELEASE.set()
    assert DBOS.retrieve_workflow(ids[0]).get_result() == "a"  # the holder has left the queue
    # A replay returns the recorded holder (a fresh enqueue would now create a new one).
    replayed = DBOS.fork_workflow(parent.workflow_id, 3)  # steps 1-2 copied: replayed, not re-run
    assert replayed.get_result() == ids


def test_return_existing_needs_a_deduplication_id_and_a_queue(dbos: Harness) -> None:
    with SetEnqueueOptions(duplication_policy=RETURN_EXISTING):
        with pytest.raises(DBOSException, match="'return-existing' requires a deduplication_id"):
            DP_Q.enqueue(dp_held, "x")
        with pytest.raises(DBOSException, match="duplication_policy set on a workflow that is not being enqueued"):
            DBOS.start_workflow(dp_held, "x")
        with pytest.raises(DBOSException, match="duplication_policy 'return-existing' requires a queue"):
            DBOS.start_workflow(dp_held, "x")
    with pytest.raises(DBOSException, match="Invalid duplication_policy 'keep'"):
        SetEnqueueOptions(deduplication_id="d", duplication_policy="keep")  # type: ignore[arg-type]


def test_serialization_type_native_is_accepted_and_portable_refused(dbos: Harness) -> None:
    assert WorkflowSerializationFormat.NATIVE.value == "native"

    @DBOS.workflow(name="dp_native", serialization_type=WorkflowSerializationFormat.NATIVE)
    def dp_native() -> str:
        DBOS.set_event("e", 1, serialization_type=WorkflowSerializationFormat.NATIVE)
        with pytest.raises(DBOSNotImplementedError, match=r"DBOS.set_event\(serialization_type=.*PORTABLE"):
            DBOS.set_event("e", 2, serialization_type=WorkflowSerializationFormat.PORTABLE)
        return "ok"

    with pytest.raises(DBOSNotImplementedError, match="DBOS.workflow.*PORTABLE.*portable .JSON. serialization"):
        DBOS.workflow(serialization_type=WorkflowSerializationFormat.PORTABLE)
    handle = DBOS.start_workflow(dp_native)
    assert handle.get_result() == "ok"
    assert DBOS.get_event(handle.workflow_id, "e") == 1
    DBOS.send(handle.workflow_id, "m", serialization_type=None)
    DBOS.send(handle.workflow_id, "m", serialization_type=WorkflowSerializationFormat.DEFAULT)
    with pytest.raises(DBOSNotImplementedError, match="DBOS.send.*PORTABLE"):
        DBOS.send(handle.workflow_id, "m", serialization_type=WorkflowSerializationFormat.PORTABLE)
    with pytest.raises(DBOSException, match="must be a WorkflowSerializationFormat"):
        DBOS.send(handle.workflow_id, "m", serialization_type="json")  # type: ignore[arg-type]
    with pytest.raises(DBOSNotImplementedError, match="PORTABLE"):
        DBOS.send_bulk([{"destination_id": handle.workflow_id, "message": 1}],
                       serialization_type=WorkflowSerializationFormat.PORTABLE)
    with pytest.raises(DBOSNotImplementedError, match="PORTABLE"):
        DBOS.enqueue_workflow_with_options({"workflow_name": "dp_held", "queue_name": "dp_queue",
                                            "serialization_type": WorkflowSerializationFormat.PORTABLE}, "x")
