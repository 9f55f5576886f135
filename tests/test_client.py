"""DBOSClient (issue 4): enqueue by name, retrieve, send, get_event, with the
enqueue options, on PostgreSQL and SQLite.

The executor is this test process (DBOS launched by the harness); the client is
a DBOSClient on the same system database, in this process, or in a separate
process that does not have the workflow code (tests/apps/queue_client.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from conftest import APP_VERSION, Backend, Harness
from fleet_helpers import REDIS_URL, Gates, require_redis

from dbos import (
    DBOS,
    DBOSClient,
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
    Queue,
    SetEnqueueOptions,
    WorkflowHandle,
    WorkflowHandleAsync,
)

CLIENT_APP = Path(__file__).parent / "apps" / "queue_client.py"

# Queue names are process-wide: every queue of this module starts with "tc_".
PLAIN_Q = Queue("tc_plain", polling_interval_sec=0.1)
SERIAL_Q = Queue("tc_serial", worker_concurrency=1, priority_enabled=True, polling_interval_sec=0.1)
PART_Q = Queue("tc_part", partition_queue=True, concurrency=1, polling_interval_sec=0.1)
SLOW_POLL_Q = Queue("tc_slow_poll", polling_interval_sec=30)

GATES = Gates()
ORDER: list[Any] = []
_lock = threading.Lock()


@DBOS.workflow()
def q4c_add(a: int, b: int = 0) -> int:
    return a + b


@DBOS.workflow()
def q4c_record(item: Any) -> Any:
    with _lock:
        ORDER.append(item)
    return item


@DBOS.workflow()
def q4c_gated(name: str) -> str:
    GATES.release(f"{name}-started")
    GATES.wait(name)
    return name


@DBOS.workflow()
def q4c_echo_event() -> str:
    message = DBOS.recv("inbox", timeout_seconds=30)
    DBOS.set_event("echo", f"echo:{message}")
    return f"got:{message}"


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    ORDER.clear()
    yield
    GATES.release_all()


@pytest.fixture
def client(dbos: Harness, backend: Backend) -> Iterator[DBOSClient]:
    with DBOSClient(backend.url) as c:
        yield c


def hold_slot(queue: Queue) -> tuple[str, WorkflowHandle[str]]:
    name = f"gate-{uuid.uuid4().hex[:8]}"
    handle = queue.enqueue(q4c_gated, name)
    assert GATES.get(f"{name}-started").wait(10), "the gated workflow did not start"
    return name, handle


def opts(queue: str, workflow: str, **extra: Any) -> Any:
    return {"queue_name": queue, "workflow_name": workflow, **extra}


def test_enqueue_by_name_and_retrieve(client: DBOSClient) -> None:
    handle = client.enqueue(opts("tc_plain", "q4c_add"), 2, b=5)
    assert isinstance(handle, WorkflowHandle)
    assert handle.get_result() == 7
    status = handle.get_status()
    assert (status.status, status.queue_name, status.name) == ("SUCCESS", "tc_plain", "q4c_add")
    assert status.executor_id == "local"
    assert status.app_version == APP_VERSION  # unpinned: recorded as the executor's version when it ran
    assert status.input == {"args": (2,), "kwargs": {"b": 5}}
    # The same workflow through retrieve_workflow, from the client and from DBOS.
    again = client.retrieve_workflow(handle.workflow_id)
    assert again.get_result() == 7
    assert DBOS.retrieve_workflow(handle.workflow_id).get_result() == 7
    got = client.get_workflow(handle.workflow_id)
    assert got is not None and got.status == "SUCCESS"
    with pytest.raises(DBOSNonExistentWorkflowError):
        client.retrieve_workflow(f"nope-{uuid.uuid4().hex}")


def test_enqueue_with_a_chosen_id_is_idempotent(client: DBOSClient) -> None:
    wid = f"tc-{uuid.uuid4().hex[:8]}"
    first = client.enqueue(opts("tc_plain", "q4c_add", workflow_id=wid), 1, 1)
    assert first.workflow_id == wid
    assert first.get_result() == 2
    second = client.enqueue(opts("tc_plain", "q4c_add", workflow_id=wid), 100, 100)
    assert second.get_result() == 2  # the recorded workflow, not a new one


def test_enqueue_async_and_async_retrieve(client: DBOSClient) -> None:
    async def main() -> tuple[int, int]:
        handle = await client.enqueue_async(opts("tc_plain", "q4c_add"), 20, 22)
        assert isinstance(handle, WorkflowHandleAsync)
        other = await client.retrieve_workflow_async(handle.workflow_id)
        return await handle.get_result(), await other.get_result()

    assert asyncio.run(main()) == (42, 42)


def test_enqueue_needs_workflow_and_queue_names(client: DBOSClient) -> None:
    with pytest.raises(DBOSException, match="workflow_name"):
        client.enqueue({"queue_name": "tc_plain"}, 1)
    with pytest.raises(DBOSException, match="queue_name"):
        client.enqueue({"workflow_name": "q4c_add"}, 1)


def test_send_and_get_event(client: DBOSClient) -> None:
    handle = client.enqueue(opts("tc_plain", "q4c_echo_event"))
    client.send(handle.workflow_id, "hello", "inbox")
    assert client.get_event(handle.workflow_id, "echo", timeout_seconds=10) == "echo:hello"
    assert handle.get_result() == "got:hello"
    # A key never set: None after the timeout.
    assert client.get_event(handle.workflow_id, "missing", timeout_seconds=0.2) is None

    async def via_async() -> Any:
        h = await client.enqueue_async(opts("tc_plain", "q4c_echo_event"))
        await client.send_async(h.workflow_id, "again", "inbox")
        return await client.get_event_async(h.workflow_id, "echo", timeout_seconds=10)

    assert asyncio.run(via_async()) == "echo:again"


def test_priorities_via_the_client(client: DBOSClient) -> None:
    gate, blocker = hold_slot(SERIAL_Q)
    plan: list[Optional[int]] = [4, None, 1, 4, 2, None, 1]
    handles = []
    for i, priority in enumerate(plan):
        extra = {} if priority is None else {"priority": priority}
        handles.append(client.enqueue(opts("tc_serial", "q4c_record", **extra), i))
    GATES.release(gate)
    blocker.get_result()
    for h in handles:
        h.get_result()
    assert ORDER == sorted(range(len(plan)), key=lambda i: (plan[i] or 0, i))
    assert [h.get_status().priority or 0 for h in handles] == [p or 0 for p in plan]


@pytest.mark.parametrize("priority", [0, -3, 2**31, 1.5])
def test_priority_out_of_range_via_the_client(client: DBOSClient, backend: Backend, priority: Any) -> None:
    before = backend.workflow_count()
    with pytest.raises(DBOSException, match="priority"):
        client.enqueue(opts("tc_serial", "q4c_add", priority=priority), 1)
    assert backend.workflow_count() == before


def test_deduplication_via_the_client(client: DBOSClient) -> None:
    gate, blocker = hold_slot(SERIAL_Q)
    first = client.enqueue(opts("tc_serial", "q4c_record", deduplication_id="cd-1"), "first")
    with pytest.raises(DBOSQueueDeduplicatedError):
        client.enqueue(opts("tc_serial", "q4c_record", deduplication_id="cd-1"), "second")
    # The in-process API sees the same deduplication ID.
    with pytest.raises(DBOSQueueDeduplicatedError):
        with SetEnqueueOptions(deduplication_id="cd-1"):
            SERIAL_Q.enqueue(q4c_record, "third")
    GATES.release(gate)
    blocker.get_result()
    assert first.get_result() == "first"
    after = client.enqueue(opts("tc_serial", "q4c_record", deduplication_id="cd-1"), "after")
    assert after.get_result() == "after"
    assert ORDER == ["first", "after"]


def test_partition_key_via_the_client(client: DBOSClient) -> None:
    handle = client.enqueue(opts("tc_part", "q4c_add", queue_partition_key="pk"), 3, 4)
    assert handle.get_result() == 7
    assert handle.get_status().queue_partition_key == "pk"


def test_app_version_via_the_client(client: DBOSClient, dbos: Harness) -> None:
    pinned = client.enqueue(opts("tc_plain", "q4c_record", app_version="elsewhere"), "pinned")
    mine = client.enqueue(opts("tc_plain", "q4c_record", app_version=APP_VERSION), "mine")
    assert mine.get_result() == "mine"
    time.sleep(0.5)
    assert pinned.get_status().status == "ENQUEUED"
    listed = client.list_queued_workflows(queue_name="tc_plain")
    assert [s.workflow_id for s in listed] == [pinned.workflow_id]
    dbos.restart(application_version="elsewhere")
    assert client.retrieve_workflow(pinned.workflow_id).get_result() == "pinned"


def test_a_workflow_no_executor_knows_fails_clearly(client: DBOSClient) -> None:
    handle = client.enqueue(opts("tc_plain", "q4c_no_such_workflow"), 1)
    with pytest.raises(Exception, match="q4c_no_such_workflow"):
        handle.get_result()
    assert handle.get_status().status == "ERROR"


def _run_client_process(backend: Backend, redis_url: Optional[str], tmp_path: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    spec = {"db": backend.url, "redis": redis_url, "queue": "tc_plain", "prefix": f"cp-{uuid.uuid4().hex[:8]}"}
    proc = subprocess.run(
        [sys.executable, str(CLIENT_APP), json.dumps(spec)],
        env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_client_in_another_process_without_the_code(dbos: Harness, backend: Backend, tmp_path: Path) -> None:
    out = _run_client_process(backend, None, tmp_path)
    assert out["add_result"] == 42
    assert out["add_executor"] == "local"  # run here, by this executor
    assert out["dedup"] == "raised"
    assert out["event"] == "echo:ping"
    assert out["echo_result"] == "got:ping"
    assert out["modules"] == [] and out["registered"] == []
    assert DBOS.retrieve_workflow(out["add_id"]).get_result() == 42


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_client_with_redis_wakes_the_executor_at_once(harness: Harness, backend: Backend, tmp_path: Path) -> None:
    require_redis()
    harness.launch(redis_url=REDIS_URL)
    from dbos._api.instance import runtime

    bridge = runtime().wakeups.bridge
    assert bridge is not None and bridge.connected.wait(10)
    time.sleep(0.2)  # past the poller's first look at tc_slow_poll (polled every 30 s)
    with DBOSClient(backend.url, redis_url=REDIS_URL) as client:
        assert client.runtime.wakeups.bridge is not None
        assert client.runtime.wakeups.bridge.connected.wait(10)
        started = time.monotonic()
        handle = client.enqueue(opts("tc_slow_poll", "q4c_add"), 1, 2)
        assert handle.get_result() == 3
        assert time.monotonic() - started < 5, "the executor waited for its poll, not the client's hint"
    out = _run_client_process(backend, REDIS_URL, tmp_path)
    assert out["add_result"] == 42 and out["event"] == "echo:ping"


def test_client_listings(client: DBOSClient) -> None:
    gate, blocker = hold_slot(SERIAL_Q)
    queued = client.enqueue(opts("tc_serial", "q4c_record"), "x")
    listed = client.list_queued_workflows(queue_name="tc_serial")
    assert [(s.workflow_id, s.status) for s in listed] == [
        (blocker.workflow_id, "PENDING"), (queued.workflow_id, "ENQUEUED"),
    ]
    assert [s.workflow_id for s in client.list_queued_workflows(status="ENQUEUED")] == [queued.workflow_id]
    GATES.release(gate)
    assert queued.get_result() == "x"
    assert client.list_queued_workflows(queue_name="tc_serial") == []
    assert {s.workflow_id for s in client.list_workflows(name="q4c_record")} == {queued.workflow_id}
