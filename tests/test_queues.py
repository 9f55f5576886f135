"""Queues in one process (issue 4), on PostgreSQL and SQLite.

Queue declaration rules, enqueue handles, SetEnqueueOptions (priority, partition
key, deduplication, app_version pinning), wakeups on enqueue and on freed
capacity, and DBOS.list_queued_workflows with every filter. The fleet-wide
limits with real processes are in test_queues_fleet.py; DBOSClient in
test_client.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any, Iterator, Optional

import pytest
from conftest import APP_VERSION, Backend, Harness
from fleet_helpers import Gates, now_ms, rfc3339

from dbos import (
    DBOS,
    DBOSException,
    DBOSQueueDeduplicatedError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    WorkflowHandle,
    WorkflowHandleAsync,
)

# Queue names are process-wide: every queue of this module starts with "tq_".
SERIAL_Q = Queue("tq_serial", worker_concurrency=1, priority_enabled=True, polling_interval_sec=0.1)
PLAIN_Q = Queue("tq_plain", polling_interval_sec=0.1)
PART_Q = Queue("tq_part", partition_queue=True, concurrency=1, polling_interval_sec=0.1)
# Polled every 30 s: only a wakeup (enqueue, freed capacity) starts its work in time.
SLOW_POLL_Q = Queue("tq_slow_poll", worker_concurrency=1, polling_interval_sec=30)
GLOBAL_Q = Queue("tq_global", concurrency=2, polling_interval_sec=30)

GATES = Gates()
ORDER: list[Any] = []
_order_lock = threading.Lock()


@DBOS.workflow()
def q4_add(a: int, b: int) -> int:
    return a + b


@DBOS.workflow()
def q4_record(item: Any) -> Any:
    with _order_lock:
        ORDER.append(item)
    return item


@DBOS.workflow()
def q4_gated(name: str) -> str:
    GATES.release(f"{name}-started")
    GATES.wait(name)
    return name


@DBOS.workflow()
async def q4_async_mul(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a * b


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    ORDER.clear()
    yield
    GATES.release_all()


def hold_slot(queue: Queue) -> tuple[str, WorkflowHandle[str]]:
    """Start a gated workflow on ``queue`` and wait until it runs (holding a slot)."""
    name = f"gate-{uuid.uuid4().hex[:8]}"
    handle = queue.enqueue(q4_gated, name)
    assert GATES.get(f"{name}-started").wait(10), "the gated workflow did not start"
    return name, handle


# -- Queue(...) arguments -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0},
        {"concurrency": -1},
        {"concurrency": 1.5},
        {"concurrency": "2"},
        {"concurrency": True},
        {"worker_concurrency": 2.0},
        {"concurrency": 2, "worker_concurrency": 3},
        {"limiter": {"limit": 0, "period": 1}},
        {"limiter": {"limit": 5}},
        {"limiter": {"period": 1.0}},
        {"limiter": {"limit": 5, "period": 0}},
        {"limiter": {"limit": 5, "period": -1.0}},
        {"limiter": {"limit": "5", "period": 1}},
        {"limiter": {"limit": 5, "period": "1"}},
        {"limiter": {"limit": 5, "period": 1, "burst": 2}},
        {"limiter": "5/s"},
        {"polling_interval_sec": 0},
    ],
)
def test_queue_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    name = f"tq_bad_{uuid.uuid4().hex[:8]}"
    with pytest.raises(DBOSException):
        Queue(name, **kwargs)
    # Nothing was registered: the name is still free.
    Queue(name)


def test_queue_accepts_good_arguments_and_rejects_a_duplicate_name() -> None:
    name = f"tq_ok_{uuid.uuid4().hex[:8]}"
    q = Queue(
        name, 4, {"limit": 10, "period": 0.5}, worker_concurrency=4, priority_enabled=True,
        partition_queue=True, polling_interval_sec=0.25,
    )
    assert (q.name, q.concurrency, q.worker_concurrency) == (name, 4, 4)
    assert q.limiter == {"limit": 10, "period": 0.5}
    assert q.priority_enabled and q.partition_queue
    with pytest.raises(DBOSException, match="already declared"):
        Queue(name)
    with pytest.raises(DBOSException, match="already declared"):
        Queue(name, concurrency=1)  # other settings do not make it another queue
    with pytest.raises(DBOSException, match="already declared"):
        Queue("tq_plain")
    with pytest.raises(DBOSException):
        Queue("")


# -- enqueue ---------------------------------------------------------------------------


def test_enqueue_returns_a_handle(dbos: Harness) -> None:
    handle = PLAIN_Q.enqueue(q4_add, 2, b=3)
    assert isinstance(handle, WorkflowHandle)
    assert handle.get_result() == 5
    status = handle.get_status()
    assert status.status == "SUCCESS"
    assert status.queue_name == "tq_plain"
    assert status.name == "q4_add"
    assert status.executor_id == "local"
    assert status.app_version == APP_VERSION
    with SetWorkflowID("tq-chosen-id"):
        chosen = PLAIN_Q.enqueue(q4_add, 1, 1)
    assert chosen.workflow_id == "tq-chosen-id"
    assert chosen.get_result() == 2
    # Enqueueing the same ID again finds the recorded workflow.
    with SetWorkflowID("tq-chosen-id"):
        again = PLAIN_Q.enqueue(q4_add, 7, 7)
    assert again.get_result() == 2


def test_enqueue_async_returns_an_async_handle(dbos: Harness) -> None:
    async def main() -> tuple[int, Any, Optional[str]]:
        handle = await PLAIN_Q.enqueue_async(q4_async_mul, 6, 7)
        assert isinstance(handle, WorkflowHandleAsync)
        sync_handle: Any = await PLAIN_Q.enqueue_async(q4_add, 1, 2)  # type: ignore[arg-type]
        status = await handle.get_status()
        return await handle.get_result(), await sync_handle.get_result(), status.queue_name

    assert asyncio.run(main()) == (42, 3, "tq_plain")


def test_an_enqueue_wakes_the_poller_and_freed_capacity_starts_the_next(dbos: Harness) -> None:
    # The queue polls every 30 s; the poller's first look was at launch.
    time.sleep(0.2)
    started = time.monotonic()
    handles = [SLOW_POLL_Q.enqueue(q4_record, i) for i in range(4)]  # worker_concurrency=1
    assert [h.get_result() for h in handles] == [0, 1, 2, 3]
    assert time.monotonic() - started < 5, "waited for a poll instead of a wakeup"


def test_a_finish_on_a_globally_limited_queue_hands_its_slot_to_the_next(dbos: Harness, backend: Backend) -> None:
    """On PostgreSQL a workflow of a queue with a global concurrency records its
    outcome and claims the queue's next row in the same statement: the successor's
    started_at is its predecessor's updated_at, on the same executor. The limit
    holds throughout, and every workflow runs once, in order."""
    time.sleep(0.2)  # the poller's first look (at launch) is over: the queue polls every 30 s
    intervals: list[tuple[float, float]] = []
    lock = threading.Lock()

    @DBOS.workflow()
    def timed(i: int) -> int:
        start = time.monotonic()
        time.sleep(0.02)
        with lock:
            intervals.append((start, time.monotonic()))
        return i

    started = time.monotonic()
    handles = [GLOBAL_Q.enqueue(timed, i) for i in range(12)]
    assert [h.get_result() for h in handles] == list(range(12))
    assert time.monotonic() - started < 10, "waited for a poll"
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak <= 2, "more than concurrency=2 ran at once"

    sql = f"SELECT started_at, updated_at, executor_id FROM {backend.table('workflow_status')} WHERE workflow_uuid = :w"
    rows = [backend.rows(sql, w=h.workflow_id)[0] for h in handles]
    finished_at = {(int(r[1]), r[2]) for r in rows}
    handed = sum(1 for r in rows if (int(r[0]), r[2]) in finished_at)
    if backend.is_sqlite:
        return  # claims there are the poller's, one transaction each
    # The first two start from the enqueue's wakeup; each of the other ten starts in its
    # predecessor's finishing statement (the same millisecond, the same executor).
    assert handed == 10, f"{handed} of 10 successors were handed their slot"

    # A row pinned to another app version is next: a finish does not take it (nor
    # skip it for a later row); the slot goes back to the queue, where only an
    # executor of that version will claim it.
    gate, held = hold_slot(GLOBAL_Q)
    with SetEnqueueOptions(app_version="other"):
        pinned = GLOBAL_Q.enqueue(q4_record, "pinned")
    mine = [GLOBAL_Q.enqueue(q4_record, f"mine-{i}") for i in range(3)]
    GATES.release(gate)
    assert held.get_result() == gate
    assert [h.get_result() for h in mine] == ["mine-0", "mine-1", "mine-2"]
    assert pinned.get_status().status == "ENQUEUED" and "pinned" not in ORDER


# -- priorities and FIFO ------------------------------------------------------------


def test_priority_lower_first_none_before_any_then_fifo(dbos: Harness) -> None:
    gate, blocker = hold_slot(SERIAL_Q)
    plan: list[Optional[int]] = [5, None, 1, 2_147_483_647, 3, None, 1, 5, 3, None, 1]
    handles = []
    for i, priority in enumerate(plan):
        if priority is None:
            handles.append(SERIAL_Q.enqueue(q4_record, i))
        else:
            with SetEnqueueOptions(priority=priority):
                handles.append(SERIAL_Q.enqueue(q4_record, i))
    assert [h.get_status().priority or 0 for h in handles] == [p or 0 for p in plan]
    GATES.release(gate)
    blocker.get_result()
    for h in handles:
        h.get_result()
    expected = sorted(range(len(plan)), key=lambda i: (plan[i] or 0, i))
    assert ORDER == expected


def test_fifo_within_equal_priority_for_rapid_enqueues(dbos: Harness) -> None:
    gate, blocker = hold_slot(SERIAL_Q)
    handles = [SERIAL_Q.enqueue(q4_record, i) for i in range(40)]  # no pause between them
    with SetEnqueueOptions(priority=7):
        handles += [SERIAL_Q.enqueue(q4_record, 100 + i) for i in range(20)]
    GATES.release(gate)
    for h in handles:
        h.get_result()
    assert ORDER == list(range(40)) + [100 + i for i in range(20)]


@pytest.mark.parametrize("priority", [0, -1, 2**31, 2**40, 1.5, "1", True])
def test_priority_out_of_range_raises(dbos: Harness, backend: Backend, priority: Any) -> None:
    before = backend.workflow_count()
    with pytest.raises(DBOSException, match="Invalid priority"):  # DBOS 2.31.1's phrase
        with SetEnqueueOptions(priority=priority):
            SERIAL_Q.enqueue(q4_add, 1, 2)
    assert backend.workflow_count() == before


def test_priority_bounds_are_accepted(dbos: Harness) -> None:
    for priority in (1, 2**31 - 1):
        with SetEnqueueOptions(priority=priority):
            handle = SERIAL_Q.enqueue(q4_add, priority, 0)
        assert handle.get_result() == priority
        assert handle.get_status().priority == priority


def test_priority_works_on_a_queue_without_priority_enabled(dbos: Harness, backend: Backend) -> None:
    """DBOS 2.x deprecated the opt-in: a priority is accepted and kept on any queue."""
    with SetEnqueueOptions(priority=3):
        handle = PLAIN_Q.enqueue(q4_add, 1, 2)
    assert handle.get_result() == 3
    assert handle.get_status().priority == 3


# -- partition keys --------------------------------------------------------------------


def test_partition_key_rules(dbos: Harness, backend: Backend) -> None:
    before = backend.workflow_count()
    with pytest.raises(DBOSException, match="partition"):
        with SetEnqueueOptions(queue_partition_key="k1"):
            PLAIN_Q.enqueue(q4_add, 1, 2)
    with pytest.raises(DBOSException, match="partition"):
        PART_Q.enqueue(q4_add, 1, 2)
    assert backend.workflow_count() == before
    with SetEnqueueOptions(queue_partition_key="k1"):
        handle = PART_Q.enqueue(q4_add, 1, 2)
    assert handle.get_result() == 3
    assert handle.get_status().queue_partition_key == "k1"


def test_partitions_run_one_at_a_time_per_key_and_keys_in_parallel(dbos: Harness) -> None:
    gate = f"a1-{uuid.uuid4().hex[:6]}"
    with SetEnqueueOptions(queue_partition_key="a"):
        a1 = PART_Q.enqueue(q4_gated, gate)
        a2 = PART_Q.enqueue(q4_record, "a2")
    with SetEnqueueOptions(queue_partition_key="b"):
        b1 = PART_Q.enqueue(q4_record, "b1")
    # Key "b" runs while key "a" is busy; a2 waits for a1 (concurrency=1 per key).
    assert GATES.get(f"{gate}-started").wait(10)
    assert b1.get_result() == "b1"
    assert a2.get_status().status == "ENQUEUED"
    GATES.release(gate)
    assert a2.get_result() == "a2"
    assert a1.get_status().status == "SUCCESS"


# -- deduplication ---------------------------------------------------------------------


def test_deduplication_while_enqueued_or_pending_then_allowed_again(dbos: Harness, backend: Backend) -> None:
    gate, blocker = hold_slot(SERIAL_Q)
    with SetEnqueueOptions(deduplication_id="dup-1"):
        first = SERIAL_Q.enqueue(q4_record, "first")
    assert first.get_status().status == "ENQUEUED"
    assert first.get_status().deduplication_id == "dup-1"
    count = backend.workflow_count()
    with pytest.raises(DBOSQueueDeduplicatedError) as refused:
        with SetEnqueueOptions(deduplication_id="dup-1"), SetWorkflowID("dup-refused"):
            SERIAL_Q.enqueue(q4_record, "second")
    assert backend.workflow_count() == count
    # It names the workflow refused, as DBOS 2.31.1's does (with its exact key phrase).
    assert refused.value.workflow_id == "dup-refused"
    assert (f"Workflow dup-refused was deduplicated due to an existing workflow in queue {SERIAL_Q.name} "
            "with deduplication ID dup-1.") in str(refused.value)
    # Another deduplication ID, or the same one on another queue, is fine.
    with SetEnqueueOptions(deduplication_id="dup-2"):
        other = SERIAL_Q.enqueue(q4_record, "other")
    with SetEnqueueOptions(deduplication_id="dup-1"):
        elsewhere = PLAIN_Q.enqueue(q4_record, "elsewhere")
    assert elsewhere.get_result() == "elsewhere"
    GATES.release(gate)
    blocker.get_result()
    assert first.get_result() == "first" and other.get_result() == "other"

    # PENDING (running) also blocks a duplicate.
    name = f"pending-{uuid.uuid4().hex[:6]}"
    with SetEnqueueOptions(deduplication_id="dup-3"):
        running = PLAIN_Q.enqueue(q4_gated, name)
    assert GATES.get(f"{name}-started").wait(10)
    assert running.get_status().status == "PENDING"
    with pytest.raises(DBOSQueueDeduplicatedError):
        with SetEnqueueOptions(deduplication_id="dup-3"):
            PLAIN_Q.enqueue(q4_record, "duplicate")
    GATES.release(name)
    assert running.get_result() == name
    # Finished: the same deduplication ID may be used again.
    with SetEnqueueOptions(deduplication_id="dup-3"):
        again = PLAIN_Q.enqueue(q4_record, "again")
    assert again.get_result() == "again"
    with SetEnqueueOptions(deduplication_id="dup-1"):
        assert SERIAL_Q.enqueue(q4_record, "after").get_result() == "after"


# -- app_version pinning ---------------------------------------------------------------


def test_a_row_pinned_to_another_app_version_is_not_run_here(dbos: Harness, backend: Backend) -> None:
    with SetEnqueueOptions(app_version="other"):
        pinned = PLAIN_Q.enqueue(q4_record, "pinned")
    with SetEnqueueOptions(app_version=APP_VERSION):
        mine = PLAIN_Q.enqueue(q4_record, "mine")
    unpinned = PLAIN_Q.enqueue(q4_record, "unpinned")
    assert mine.get_result() == "mine"
    assert unpinned.get_result() == "unpinned"
    time.sleep(0.5)  # several polls of tq_plain (0.1 s)
    status = pinned.get_status()
    assert (status.status, status.app_version, status.executor_id) == ("ENQUEUED", "other", None)
    assert "pinned" not in ORDER
    # An executor of that version runs it.
    dbos.restart(application_version="other")
    assert DBOS.retrieve_workflow(pinned.workflow_id).get_result() == "pinned"


# -- list_queued_workflows ------------------------------------------------------------


def _ids(statuses: list[Any]) -> list[str]:
    return [s.workflow_id for s in statuses]


def test_list_queued_workflows_filters(dbos: Harness) -> None:
    done = PLAIN_Q.enqueue(q4_add, 1, 1)
    done.get_result()  # finished: never listed
    t0 = now_ms()
    time.sleep(0.01)
    gate, blocker = hold_slot(SERIAL_Q)  # PENDING
    time.sleep(0.01)
    a = SERIAL_Q.enqueue(q4_record, "a")
    time.sleep(0.01)
    t1 = now_ms()
    time.sleep(0.01)
    b = SERIAL_Q.enqueue(q4_add, 1, 2)
    time.sleep(0.01)
    c = SERIAL_Q.enqueue(q4_record, "c")
    time.sleep(0.01)
    t2 = now_ms()
    time.sleep(0.01)
    with SetEnqueueOptions(app_version="elsewhere"):
        d = PLAIN_Q.enqueue(q4_record, "d")  # stays ENQUEUED
    every = [blocker.workflow_id, a.workflow_id, b.workflow_id, c.workflow_id, d.workflow_id]

    assert _ids(DBOS.list_queued_workflows()) == every
    assert _ids(DBOS.list_queued_workflows(queue_name="tq_serial")) == every[:4]
    assert _ids(DBOS.list_queued_workflows(queue_name="tq_plain")) == [d.workflow_id]
    assert DBOS.list_queued_workflows(queue_name="tq_nope") == []
    assert _ids(DBOS.list_queued_workflows(status="PENDING")) == [blocker.workflow_id]
    assert _ids(DBOS.list_queued_workflows(status="ENQUEUED")) == every[1:]
    assert _ids(DBOS.list_queued_workflows(status=["ENQUEUED", "PENDING"])) == every
    assert _ids(DBOS.list_queued_workflows(start_time=rfc3339(t1))) == every[2:]
    assert _ids(DBOS.list_queued_workflows(end_time=rfc3339(t1))) == every[:2]
    assert _ids(DBOS.list_queued_workflows(start_time=rfc3339(t1), end_time=rfc3339(t2))) == every[2:4]
    assert DBOS.list_queued_workflows(end_time=rfc3339(t0)) == []
    # Other spellings of RFC 3339: an offset, and a lower-case separator.
    offset = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t2 // 1000 + 3600)) + f".{t2 % 1000:03d}+01:00"
    assert _ids(DBOS.list_queued_workflows(start_time=offset)) == [d.workflow_id]
    assert _ids(DBOS.list_queued_workflows(name="q4_record")) == [a.workflow_id, c.workflow_id, d.workflow_id]
    assert _ids(DBOS.list_queued_workflows(name="q4_add")) == [b.workflow_id]
    assert _ids(DBOS.list_queued_workflows(name="q4_gated", queue_name="tq_serial")) == [blocker.workflow_id]
    assert _ids(DBOS.list_queued_workflows(limit=2)) == every[:2]
    assert _ids(DBOS.list_queued_workflows(limit=2, offset=1)) == every[1:3]
    assert _ids(DBOS.list_queued_workflows(offset=3)) == every[3:]
    assert _ids(DBOS.list_queued_workflows(sort_desc=True)) == every[::-1]
    assert _ids(DBOS.list_queued_workflows(sort_desc=True, limit=1)) == [d.workflow_id]
    assert _ids(DBOS.list_queued_workflows(queue_name="tq_serial", status="ENQUEUED", sort_desc=True, limit=2)) == [
        c.workflow_id, b.workflow_id,
    ]
    # Each result is a full WorkflowStatus.
    listed = {s.workflow_id: s for s in DBOS.list_queued_workflows()}
    assert dict(listed[b.workflow_id].input or {}) == {"args": (1, 2), "kwargs": {}}
    assert (listed[b.workflow_id].queue_name, listed[b.workflow_id].status) == ("tq_serial", "ENQUEUED")
    assert (listed[blocker.workflow_id].status, listed[blocker.workflow_id].executor_id) == ("PENDING", "local")
    assert listed[d.workflow_id].app_version == "elsewhere"
    assert DBOS.list_queued_workflows(load_input=False)[1].input is None
    # The async variant.
    assert _ids(asyncio.run(DBOS.list_queued_workflows_async(queue_name="tq_plain"))) == [d.workflow_id]
    GATES.release(gate)
    for h in (blocker, a, b, c):
        h.get_result()
    assert _ids(DBOS.list_queued_workflows()) == [d.workflow_id]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start_time": "yesterday"},
        {"end_time": "2024-13-45T00:00:00Z"},
        {"start_time": "2024-01-01 25:00"},
        {"end_time": ""},
        {"start_time": 1700000000},
        {"status": "SUCCESS"},
        {"status": "RUNNING"},
        {"limit": -1},
        {"offset": -5},
    ],
)
def test_list_queued_workflows_rejects_bad_filters(dbos: Harness, kwargs: dict[str, Any]) -> None:
    with pytest.raises(DBOSException):
        DBOS.list_queued_workflows(**kwargs)


def test_a_queued_workflow_waits_for_its_queue_not_for_the_caller(dbos: Harness) -> None:
    """Enqueue from inside a workflow: the child runs on the queue; the parent gets its handle."""

    @DBOS.workflow()
    def q4_parent() -> list[int]:
        handles = [PLAIN_Q.enqueue(q4_add, i, i) for i in range(3)]
        return [h.get_result() for h in handles]

    assert q4_parent() == [0, 2, 4]
    children = [s for s in DBOS.list_workflows(name="q4_add")]
    assert len(children) == 3 and all(s.queue_name == "tq_plain" for s in children)
    assert all(s.parent_workflow_id is not None for s in children)


# -- the poller ------------------------------------------------------------------------


def test_a_wakeup_that_arrives_during_a_claim_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """A workflow that finishes (or an enqueue) while the poller is claiming must make it
    claim again at once, not at the next polling interval (here 30 s)."""
    import logging
    import types

    from dbos._execution.queues import QueueSpec
    from dbos._services import queue_poller
    from dbos._storage.queues import ClaimResult

    spec = QueueSpec("tq_unit_poller", None, None, None, 2, False, False, 30.0)
    claims: list[float] = []
    poller: Optional[queue_poller.QueuePoller] = None

    def claim(rt: Any, limits: Any) -> ClaimResult:
        claims.append(time.monotonic())
        if len(claims) == 1:
            assert poller is not None
            poller.wake_queue(spec.name)  # capacity freed while this claim runs
        return ClaimResult([])

    monkeypatch.setattr(queue_poller, "claim_and_start", claim)
    monkeypatch.setattr(queue_poller, "promote_delayed", lambda rt: [])
    monkeypatch.setattr(queue_poller.stored_queues, "list_all", lambda rt: [])
    # The claim (and the promotion of delayed work, and the list of stored queues) is replaced: no database.
    rt = types.SimpleNamespace(take_orphan_sweep=lambda: False, settings=types.SimpleNamespace(polling_interval_sec=1.0),
                               stored_queues={}, registry=types.SimpleNamespace(queues={spec.name: spec}))
    poller = queue_poller.QueuePoller(rt, lambda: [spec], 16, logging.getLogger("test"))  # type: ignore[arg-type]
    poller.run_once()
    assert poller.next_delay() == 0.0, "the wakeup during the claim was dropped"
    poller.run_once()
    assert len(claims) == 2
    poller.run_once()
    assert len(claims) == 2 and poller.next_delay() > 20  # no wakeup: back to the interval
