"""DBOS 2.x listing and management keywords (issue 18), on PostgreSQL and SQLite.

list_workflows(has_parent=, forked_from=, parent_workflow_id=, workflow_id_prefix=[...],
and a list for name / app_version / user / queue_name / executor_id), on DBOS, DBOSClient
and the _async forms; list_workflow_steps(limit=, offset=, load_output=) and the step
times; WorkflowStatus.completed_at / dequeued_at; fork_workflow(timeout_seconds=);
resume_workflow(queue_name=); WorkflowHandle.get_result(polling_interval_sec=).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from conftest import Backend, Harness, eventually
from mgmt_helpers import now_ms

from dbos import DBOS, DBOSClient, DBOSException, Queue, SetWorkflowID, WorkflowStatus
from dbos.error import DBOSAwaitedWorkflowCancelledError

# Queues are process-wide declarations (made before any test launches DBOS).
KW_QUEUE = Queue("kw_queue", polling_interval_sec=0.05)
KW_SERIAL = Queue("kw_serial", concurrency=1, polling_interval_sec=0.05)


def _ids(statuses: list[WorkflowStatus]) -> list[str]:
    return sorted(s.workflow_id for s in statuses)


@DBOS.workflow()
def kw_child(x: int) -> int:
    return x + 1


@DBOS.workflow()
def kw_parent(x: int) -> int:
    with SetWorkflowID(f"{DBOS.workflow_id}-child"):
        return kw_child(x)


@DBOS.workflow()
def kw_plain(x: int) -> int:
    return x


def _family() -> None:
    """p1 (child p1-child), p2 (child p2-child), solo; a fork of solo: solo-fork."""
    for wid in ("p1", "p2"):
        with SetWorkflowID(wid):
            kw_parent(1)
    with SetWorkflowID("solo"):
        kw_plain(7)
    with SetWorkflowID("solo-fork"):
        assert DBOS.fork_workflow("solo", 1).get_result() == 7


def test_list_workflows_parent_fork_and_prefix_lists(dbos: Harness, backend: Backend) -> None:
    _family()
    everything = ["p1", "p1-child", "p2", "p2-child", "solo", "solo-fork"]
    assert _ids(DBOS.list_workflows()) == everything
    assert _ids(DBOS.list_workflows(has_parent=True)) == ["p1-child", "p2-child"]
    assert _ids(DBOS.list_workflows(has_parent=False)) == ["p1", "p2", "solo", "solo-fork"]
    assert _ids(DBOS.list_workflows(parent_workflow_id="p1")) == ["p1-child"]
    assert _ids(DBOS.list_workflows(parent_workflow_id=["p1", "p2"])) == ["p1-child", "p2-child"]
    assert _ids(DBOS.list_workflows(forked_from="solo")) == ["solo-fork"]
    assert _ids(DBOS.list_workflows(forked_from=["solo", "p1"])) == ["solo-fork"]
    # A list of prefixes: any of them (today's single string still works).
    assert _ids(DBOS.list_workflows(workflow_id_prefix=["p1", "solo-"])) == ["p1", "p1-child", "solo-fork"]
    assert _ids(DBOS.list_workflows(workflow_id_prefix="p2")) == ["p2", "p2-child"]
    assert _ids(DBOS.list_workflows(workflow_id_prefix=["%", "_"])) == []  # LIKE wildcards are literal
    assert _ids(DBOS.list_workflows(workflow_id_prefix=[])) == []  # an empty list matches nothing
    # Other filters take a list too.
    assert _ids(DBOS.list_workflows(name=[kw_plain.__qualname__, kw_child.__qualname__])) == [
        "p1-child", "p2-child", "solo", "solo-fork"
    ]
    assert _ids(DBOS.list_workflows(executor_id=["local"], has_parent=True, workflow_id_prefix=["p2"])) == [
        "p2-child"
    ]
    assert _ids(DBOS.list_workflows(app_version=["nope", "also-nope"])) == []
    assert asyncio.run(DBOS.list_workflows_async(has_parent=True, parent_workflow_id=["p2"])) == [
        s for s in DBOS.list_workflows(parent_workflow_id="p2")
    ]

    client = DBOSClient(backend.url, polling_interval_sec=0.1)
    try:
        assert _ids(client.list_workflows(has_parent=True)) == ["p1-child", "p2-child"]
        assert _ids(client.list_workflows(workflow_id_prefix=["p1", "solo-"])) == ["p1", "p1-child", "solo-fork"]
        assert _ids(client.list_workflows(forked_from=["solo"])) == ["solo-fork"]
        assert _ids(asyncio.run(client.list_workflows_async(parent_workflow_id=["p1"]))) == ["p1-child"]
    finally:
        client.destroy()


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"workflow_id_prefix": ["ok", 3]}, "workflow_id_prefix"),
        ({"parent_workflow_id": 5}, "parent_workflow_id"),
        ({"forked_from": {"a": 1}}, "forked_from"),
        ({"has_parent": "yes"}, "has_parent"),
        ({"name": ["a\x00b"]}, "name"),
    ],
)
def test_list_workflows_rejects_malformed_list_filters(dbos: Harness, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(DBOSException, match=fragment):
        DBOS.list_workflows(**kwargs)


def test_list_workflow_steps_paging_load_output_and_times(dbos: Harness, backend: Backend) -> None:
    @DBOS.step()
    def kw_step(i: int) -> str:
        time.sleep(0.01)
        return f"out-{i}"

    @DBOS.step()
    def kw_bad() -> None:
        raise ValueError("kw-bad")

    @DBOS.workflow()
    def kw_steps() -> None:
        for i in range(4):
            kw_step(i)
        try:
            kw_bad()
        except ValueError:
            pass

    before = now_ms()
    with SetWorkflowID("kw-steps"):
        kw_steps()
    after = now_ms()

    steps = DBOS.list_workflow_steps("kw-steps")
    assert [s["function_id"] for s in steps] == [1, 2, 3, 4, 5]
    for s in steps:
        started, completed = s["started_at_epoch_ms"], s["completed_at_epoch_ms"]
        assert started is not None and completed is not None
        assert before <= started <= completed <= after
    assert steps[0]["completed_at_epoch_ms"] - steps[0]["started_at_epoch_ms"] >= 10  # type: ignore[operator]
    assert steps[0]["completed_at_epoch_ms"] <= steps[1]["started_at_epoch_ms"]  # type: ignore[operator]

    page = DBOS.list_workflow_steps("kw-steps", limit=2, offset=1)
    assert [(s["function_id"], s["output"]) for s in page] == [(2, "out-1"), (3, "out-2")]
    bare = DBOS.list_workflow_steps("kw-steps", load_output=False)
    assert [s["function_id"] for s in bare] == [1, 2, 3, 4, 5]
    assert all(s["output"] is None and s["error"] is None for s in bare)
    assert bare[0]["started_at_epoch_ms"] == steps[0]["started_at_epoch_ms"]
    assert isinstance(steps[4]["error"], ValueError)
    assert [s["function_id"] for s in DBOS.list_workflow_steps("kw-steps", limit=0)] == []
    assert [s["function_id"] for s in asyncio.run(DBOS.list_workflow_steps_async("kw-steps", offset=3))] == [4, 5]
    with pytest.raises(DBOSException, match="limit"):
        DBOS.list_workflow_steps("kw-steps", limit=-1)

    client = DBOSClient(backend.url, polling_interval_sec=0.1)
    try:
        assert [s["output"] for s in client.list_workflow_steps("kw-steps", limit=1)] == ["out-0"]
        assert client.list_workflow_steps("kw-steps", load_output=False)[0]["output"] is None
        got = asyncio.run(client.list_workflow_steps_async("kw-steps", limit=1, offset=4))
        assert [s["function_id"] for s in got] == [5]
    finally:
        client.destroy()


def test_workflow_status_completed_at_and_dequeued_at(dbos: Harness, backend: Backend) -> None:
    gate = threading.Event()

    @DBOS.workflow()
    def kw_gated() -> str:
        assert gate.wait(30)
        return "done"

    before = now_ms()
    with SetWorkflowID("kw-direct"):
        kw_plain(1)
    with SetWorkflowID("kw-queued"):
        handle = KW_QUEUE.enqueue(kw_gated)
    eventually(lambda: backend.status("kw-queued") == "PENDING")
    running = handle.get_status()
    assert running.completed_at is None
    assert running.dequeued_at is not None and before <= running.dequeued_at <= now_ms()
    gate.set()
    assert handle.get_result() == "done"
    after = now_ms()

    direct = DBOS.get_workflow_status("kw-direct")
    assert direct is not None
    assert direct.dequeued_at is None  # never on a queue
    assert direct.completed_at is not None and before <= direct.completed_at <= after
    queued = handle.get_status()
    assert queued.dequeued_at == running.dequeued_at
    assert queued.completed_at is not None and queued.dequeued_at <= queued.completed_at <= after

    # Cancelled before it was dequeued: completed (at the cancel), never dequeued.
    blocker_gate = threading.Event()
    serial = KW_SERIAL

    @DBOS.workflow()
    def kw_block() -> None:
        assert blocker_gate.wait(30)

    serial.enqueue(kw_block)
    with SetWorkflowID("kw-waiting"):
        serial.enqueue(kw_plain, 2)
    waiting = DBOS.get_workflow_status("kw-waiting")
    assert waiting is not None and waiting.completed_at is None and waiting.dequeued_at is None
    DBOS.cancel_workflow("kw-waiting")
    cancelled = DBOS.get_workflow_status("kw-waiting")
    assert cancelled is not None and cancelled.completed_at is not None and cancelled.dequeued_at is None
    blocker_gate.set()
    listed = {s.workflow_id: s for s in DBOS.list_workflows(load_input=False, load_output=False)}
    assert listed["kw-direct"].completed_at == direct.completed_at


def test_fork_workflow_timeout_seconds(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def kw_sleeper(seconds: float) -> str:
        DBOS.sleep(seconds)
        return "slept"

    with SetWorkflowID("kw-sleep-src"):
        assert kw_sleeper(0.01) == "slept"
    fork = DBOS.fork_workflow("kw-sleep-src", 1, timeout_seconds=0.3)
    status = fork.get_status()
    assert status.workflow_timeout_ms == 300
    # The source slept 0.01 s; the fork replays nothing (start_step 1) and sleeps the same:
    # fine within 0.3 s. A fork of a long sleep is cancelled by its own timeout.
    assert fork.get_result() == "slept"
    with SetWorkflowID("kw-long-src"):
        DBOS.start_workflow(kw_sleeper, 30)
    DBOS.cancel_workflow("kw-long-src")
    long_fork = DBOS.fork_workflow("kw-long-src", 1, timeout_seconds=0.5)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        long_fork.get_result()
    assert long_fork.get_status().status == "CANCELLED"
    plain = DBOS.fork_workflow("kw-sleep-src", 1)
    assert plain.get_status().workflow_timeout_ms is None  # the source had none
    for bad in (0, -1, float("nan"), "1"):
        with pytest.raises(DBOSException, match="timeout_seconds"):
            DBOS.fork_workflow("kw-sleep-src", 1, timeout_seconds=bad)  # type: ignore[arg-type]

    client = DBOSClient(backend.url, polling_interval_sec=0.1)
    try:
        via_client = client.fork_workflow("kw-sleep-src", 1, timeout_seconds=2.5)
        assert via_client.get_status().workflow_timeout_ms == 2500
        assert via_client.get_result() == "slept"
        via_async = asyncio.run(DBOS.fork_workflow_async("kw-sleep-src", 1, timeout_seconds=4))
        assert asyncio.run(via_async.get_status()).workflow_timeout_ms == 4000
    finally:
        client.destroy()


def _cancelled(backend: Backend, workflow_id: str) -> None:
    """A finished workflow marked CANCELLED, so it can be resumed (it re-runs its body)."""
    backend.execute(f"UPDATE {backend.table('workflow_status')} SET status = 'CANCELLED' WHERE workflow_uuid = :w",
                    w=workflow_id)


def test_resume_workflow_onto_a_queue(dbos: Harness, backend: Backend) -> None:
    gate = threading.Event()

    @DBOS.workflow()
    def kw_hold() -> None:
        assert gate.wait(30)

    with SetWorkflowID("kw-res"):
        kw_plain(5)
    _cancelled(backend, "kw-res")
    # Resumed onto a queue whose one slot is taken: it waits there, under its limit.
    KW_SERIAL.enqueue(kw_hold)
    eventually(lambda: len(DBOS.list_queued_workflows(queue_name="kw_serial", status="PENDING")) == 1)
    handle = DBOS.resume_workflow("kw-res", queue_name="kw_serial")
    status = handle.get_status()
    assert (status.queue_name, status.status) == ("kw_serial", "ENQUEUED")
    time.sleep(0.3)
    assert backend.status("kw-res") == "ENQUEUED"  # behind kw_hold
    gate.set()
    assert handle.get_result() == 5
    assert handle.get_status().queue_name == "kw_serial"

    with pytest.raises(DBOSException, match="queue_name"):
        DBOS.resume_workflow("kw-res", queue_name="")
    _cancelled(backend, "kw-res")
    h = asyncio.run(DBOS.resume_workflow_async("kw-res", queue_name="kw_queue"))
    assert asyncio.run(h.get_result()) == 5
    _cancelled(backend, "kw-res")
    [again] = DBOS.resume_workflows(["kw-res"], queue_name="kw_queue")
    assert again.get_result() == 5
    assert again.get_status().queue_name == "kw_queue"
    client = DBOSClient(backend.url, polling_interval_sec=0.1)
    try:
        _cancelled(backend, "kw-res")
        assert client.resume_workflow("kw-res", queue_name="kw_serial").get_result() == 5
        assert backend.scalar(f"SELECT queue_name FROM {backend.table('workflow_status')} "
                              "WHERE workflow_uuid = 'kw-res'") == "kw_serial"
        _cancelled(backend, "kw-res")
        [via_client] = client.resume_workflows(["kw-res"], queue_name="kw_queue")
        assert via_client.get_result() == 5
        # Without queue_name: the internal queue, as before.
        _cancelled(backend, "kw-res")
        assert client.resume_workflow("kw-res").get_result() == 5
        assert client.get_workflow("kw-res").queue_name == "_dbos_internal_queue"  # type: ignore[union-attr]
    finally:
        client.destroy()


def test_get_result_polling_interval_sec(dbos: Harness, backend: Backend) -> None:
    """A client without Redis learns of a finish by polling: its own interval is 30 s
    here, so only the handle's polling_interval_sec makes the wait short."""
    gate = threading.Event()

    @DBOS.workflow()
    def kw_slow() -> str:
        assert gate.wait(30)
        return "slow"

    with SetWorkflowID("kw-poll"):
        DBOS.start_workflow(kw_slow)
    client = DBOSClient(backend.url, polling_interval_sec=30)
    try:
        threading.Timer(0.3, gate.set).start()
        started = time.monotonic()
        assert client.retrieve_workflow("kw-poll").get_result(polling_interval_sec=0.05) == "slow"
        assert time.monotonic() - started < 5

        async def via_async() -> Any:
            handle = await client.retrieve_workflow_async("kw-poll")
            return await handle.get_result(polling_interval_sec=0.05)

        assert asyncio.run(via_async()) == "slow"
        with pytest.raises(DBOSException, match="polling_interval_sec"):
            client.retrieve_workflow("kw-poll").get_result(polling_interval_sec=0)
        with pytest.raises(DBOSException, match="polling_interval_sec"):
            client.retrieve_workflow("kw-poll").get_result(polling_interval_sec=float("nan"))
    finally:
        client.destroy()
    assert DBOS.retrieve_workflow("kw-poll").get_result(polling_interval_sec=1) == "slow"
    assert DBOS.retrieve_workflow("kw-poll", existing_workflow=False).get_result(polling_interval_sec=0.5) == "slow"


def test_completed_and_dequeued_bounds_queues_only_and_queued_keywords(dbos: Harness, backend: Backend) -> None:
    from mgmt_helpers import rfc3339

    gate = threading.Event()

    @DBOS.workflow()
    def kw_wait() -> None:
        assert gate.wait(30)

    t0 = now_ms()
    with SetWorkflowID("b-direct"):
        kw_plain(1)
    with SetWorkflowID("b-queued"):
        assert KW_QUEUE.enqueue(kw_plain, 2).get_result() == 2
    time.sleep(0.05)
    t1 = now_ms()
    with SetWorkflowID("b-later"):
        assert KW_QUEUE.enqueue(kw_plain, 3).get_result() == 3
    with SetWorkflowID("b-running"):
        KW_SERIAL.enqueue(kw_wait)
    eventually(lambda: backend.status("b-running") == "PENDING")
    with SetWorkflowID("b-waiting-child"):
        KW_SERIAL.enqueue(kw_plain, 4)
    try:
        assert _ids(DBOS.list_workflows(completed_after=rfc3339(t0))) == ["b-direct", "b-later", "b-queued"]
        assert _ids(DBOS.list_workflows(completed_after=rfc3339(t1))) == ["b-later"]
        assert _ids(DBOS.list_workflows(completed_before=rfc3339(t1))) == ["b-direct", "b-queued"]
        # dequeued: only what went through a queue (and was claimed).
        assert _ids(DBOS.list_workflows(dequeued_after=rfc3339(t0))) == ["b-later", "b-queued", "b-running"]
        assert _ids(DBOS.list_workflows(dequeued_after=rfc3339(t1))) == ["b-later", "b-running"]
        assert _ids(DBOS.list_workflows(dequeued_before=rfc3339(t1))) == ["b-queued"]
        with pytest.raises(DBOSException, match="completed_after"):
            DBOS.list_workflows(completed_after="soon")
        # queues_only: on a queue and not finished, as list_queued_workflows.
        assert _ids(DBOS.list_workflows(queues_only=True)) == ["b-running", "b-waiting-child"]
        assert _ids(DBOS.list_queued_workflows(workflow_id_prefix=["b-w"], has_parent=False)) == ["b-waiting-child"]
        assert _ids(DBOS.list_queued_workflows(workflow_ids=["b-running", "b-direct"])) == ["b-running"]
        assert _ids(DBOS.list_queued_workflows(dequeued_after=rfc3339(t1), executor_id="local")) == ["b-running"]
        assert _ids(DBOS.list_queued_workflows(queue_name=["kw_serial", "kw_queue"], app_version=["nope"])) == []
        client = DBOSClient(backend.url, polling_interval_sec=0.1)
        try:
            assert _ids(client.list_workflows(completed_after=rfc3339(t1))) == ["b-later"]
            assert _ids(client.list_queued_workflows(workflow_id_prefix="b-r", load_output=False)) == ["b-running"]
            assert _ids(client.list_workflows(queues_only=True, name=kw_plain.__qualname__)) == ["b-waiting-child"]
        finally:
            client.destroy()
    finally:
        gate.set()


def test_fork_onto_a_queue_and_wait_first_polling_interval(dbos: Harness, backend: Backend) -> None:
    gate = threading.Event()

    @DBOS.workflow()
    def kw_gate() -> None:
        assert gate.wait(30)

    with SetWorkflowID("fq-src"):
        kw_plain(8)
    with SetWorkflowID("fq-block"):
        KW_SERIAL.enqueue(kw_gate)
    eventually(lambda: backend.status("fq-block") == "PENDING")
    fork = DBOS.fork_workflow("fq-src", 1, queue_name="kw_serial")
    status = fork.get_status()
    assert (status.queue_name, status.status) == ("kw_serial", "ENQUEUED")  # behind fq-block
    time.sleep(0.3)
    assert backend.status(fork.workflow_id) == "ENQUEUED"
    gate.set()
    assert fork.get_result() == 8
    with pytest.raises(DBOSException, match="queue_name"):
        DBOS.fork_workflow("fq-src", 1, queue_name="")

    client = DBOSClient(backend.url, polling_interval_sec=30)
    try:
        via_client = client.fork_workflow("fq-src", 1, queue_name="kw_queue", queue_partition_key=None)
        started = time.monotonic()
        first = client.wait_first([client.retrieve_workflow("fq-src", existing_workflow=False), via_client],
                                  polling_interval_sec=0.05)
        assert first.workflow_id == "fq-src"
        assert client.wait_first([via_client], polling_interval_sec=0.05) is via_client
        assert time.monotonic() - started < 5  # the client's own interval is 30 s
        assert via_client.get_status().queue_name == "kw_queue"
        with pytest.raises(DBOSException, match="polling_interval_sec"):
            client.wait_first([via_client], polling_interval_sec=-1)
    finally:
        client.destroy()
    assert DBOS.wait_first([DBOS.retrieve_workflow("fq-src")], polling_interval_sec=0.5).workflow_id == "fq-src"
