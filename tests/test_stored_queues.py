"""Queues stored in the database (issue 18): ``DBOS.register_queue`` / ``retrieve_queue`` /
``list_queues`` / ``delete_queue`` (and on DBOSClient), ``Queue(name,
database_backed_queue=True)``, and the ``set_*`` methods that change a queue's limits
for the whole fleet at run time. On PostgreSQL and SQLite (the ``backend`` fixture);
tests/test_stored_queues_fleet.py has the multi-process proof.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any, Iterator

import pytest
from conftest import Backend, Harness, eventually
from fleet_helpers import Gates

from dbos import DBOS, DBOSClient, Queue, SetEnqueueOptions
from dbos.error import DBOSException

GATES = Gates()
_lock = threading.Lock()
RUNNING: dict[str, int] = {}  # queue tag -> workflows running now
PEAK: dict[str, int] = {}  # queue tag -> most ever running at once


@DBOS.workflow()
def sq_add(a: int, b: int) -> int:
    return a + b


@DBOS.workflow()
def sq_hold(tag: str, gate: str) -> str:
    """Count itself running under ``tag`` until ``gate`` opens."""
    with _lock:
        RUNNING[tag] = RUNNING.get(tag, 0) + 1
        PEAK[tag] = max(PEAK.get(tag, 0), RUNNING[tag])
    try:
        GATES.wait(gate, timeout=30)
    finally:
        with _lock:
            RUNNING[tag] -= 1
    return gate


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    RUNNING.clear()
    PEAK.clear()
    yield
    GATES.release_all()


def _name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:6]}"


def _running(tag: str) -> int:
    with _lock:
        return RUNNING.get(tag, 0)


def test_register_retrieve_list_delete(dbos: Harness, backend: Backend) -> None:
    name = _name("sq_crud")
    queue = DBOS.register_queue(name, global_concurrency=4, worker_concurrency=2,
                                limiter={"limit": 10, "period": 2.0}, polling_interval_sec=0.05)
    assert queue.database_backed_queue and queue.name == name
    got = DBOS.retrieve_queue(name)
    assert got is not None
    assert (got.concurrency, got.global_concurrency, got.worker_concurrency, got.limiter, got.polling_interval_sec) \
        == (4, 4, 2, {"limit": 10, "period": 2.0}, 0.05)
    assert DBOS.retrieve_queue(_name("sq_none")) is None
    assert name in [q.name for q in DBOS.list_queues()]
    # Stored in the system database: one row.
    assert backend.scalar(f"SELECT concurrency FROM {backend.table('queues')} WHERE name = '{name}'") == 4

    # Registered again: never_update keeps the stored settings, always_update replaces them,
    # and update_if_latest_version (the default) replaces them from the latest version.
    DBOS.register_queue(name, concurrency=1, on_conflict="never_update")
    assert queue.concurrency == 4
    DBOS.register_queue(name, concurrency=3, on_conflict="always_update")
    assert queue.concurrency == 3 and queue.worker_concurrency is None and queue.limiter is None
    DBOS.register_queue(name, concurrency=5)
    assert queue.concurrency == 5
    with pytest.raises(ValueError):
        DBOS.register_queue(name, concurrency=5, on_conflict="sometimes")

    # Workflows run on it, enqueued from the returned handle or a new one.
    assert queue.enqueue(sq_add, 1, 2).get_result() == 3
    assert Queue(name, database_backed_queue=True).enqueue(sq_add, 2, 2).get_result() == 4

    # Deleted: gone from the table; what waits on it stays ENQUEUED until it exists again.
    DBOS.delete_queue(name)
    DBOS.delete_queue(name)  # nothing to delete: no error
    assert DBOS.retrieve_queue(name) is None and name not in [q.name for q in DBOS.list_queues()]
    with pytest.raises(DBOSException, match="not found"):
        queue.enqueue(sq_add, 1, 1)
    with pytest.raises(DBOSException, match="not found"):
        queue.set_concurrency(2)
    client = DBOSClient(backend.url)
    try:
        handle = client.enqueue({"queue_name": name, "workflow_name": "sq_add"}, 5, 5)
        with pytest.raises(AssertionError):
            eventually(lambda: DBOS.get_workflow_status(handle.workflow_id).status != "ENQUEUED",  # type: ignore[union-attr]
                       timeout=1.5)
        # The client has the same methods (and its handles change settings, not enqueue).
        again = client.register_queue(name, polling_interval_sec=0.05)
        assert handle.get_result() == 10
        assert [q.name for q in client.list_queues()] == [q.name for q in DBOS.list_queues()]
        again.set_concurrency(7)
        assert DBOS.retrieve_queue(name).concurrency == 7  # type: ignore[union-attr]
        assert client.retrieve_queue(name).global_concurrency == 7  # type: ignore[union-attr]
        with pytest.raises(DBOSException, match="DBOSClient.enqueue"):
            again.enqueue(sq_add, 1, 1)
        client.delete_queue(name)
        assert client.retrieve_queue(name) is None
    finally:
        client.destroy()


def test_a_queue_declared_in_code_is_not_stored_nor_changed(dbos: Harness) -> None:
    name = _name("sq_code")
    declared = Queue(name, concurrency=2)
    assert declared.concurrency == 2 and declared.global_concurrency == 2 and not declared.database_backed_queue
    with pytest.raises(DBOSException, match="register_queue"):
        declared.set_concurrency(3)
    with pytest.raises(DBOSException, match="declared in code"):
        DBOS.register_queue(name)
    assert DBOS.retrieve_queue(name) is None


def test_settings_are_checked_against_each_other(dbos: Harness) -> None:
    name = _name("sq_check")
    queue = DBOS.register_queue(name, concurrency=4, worker_concurrency=2)
    for bad in [lambda: queue.set_worker_concurrency(5), lambda: queue.set_concurrency(1),
                lambda: queue.set_concurrency(0), lambda: queue.set_limiter({"limit": 1}),
                lambda: queue.set_polling_interval_sec(0), lambda: queue.set_partition_concurrency(5),
                lambda: queue.set_priority_enabled("yes")]:  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            bad()
    assert (queue.concurrency, queue.worker_concurrency, queue.partition_concurrency) == (4, 2, None)
    with pytest.raises(ValueError):
        DBOS.register_queue(_name("sq_check"), concurrency=2, worker_concurrency=3)
    # DBOS 2.31.1's key phrases, which tests written for DBOS match on.
    for phrase, settings in [
        ("concurrency must be greater than or equal to worker_concurrency", {"concurrency": 2, "worker_concurrency": 3}),
        ("partition_concurrency must be greater than or equal to partition_worker_concurrency",
         {"partition_concurrency": 1, "partition_worker_concurrency": 2}),
        ("partition_concurrency must be at least 1", {"partition_concurrency": 0}),
        ("partition_limiter must specify both 'limit' and 'period'", {"partition_limiter": {"limit": 1}}),
        # A deprecated argument with the one replacing it (even with the same value).
        ("set only one of them", {"concurrency": 2, "global_concurrency": 2}),
        ("set only one of them", {"partition_queue": True, "partition_concurrency": 1}),
        ("cannot be combined with global_concurrency", {"partition_queue": True, "global_concurrency": 2}),
    ]:
        with pytest.raises(ValueError, match=phrase):
            DBOS.register_queue(_name("sq_check"), **settings)
    queue.set_concurrency(None)  # no fleet-wide limit any more
    queue.set_worker_concurrency(8)
    assert (queue.concurrency, queue.worker_concurrency) == (None, 8)


def test_set_concurrency_applies_to_the_next_claim(dbos: Harness) -> None:
    name = _name("sq_live")
    queue = DBOS.register_queue(name, concurrency=1, polling_interval_sec=0.05)
    handles = [queue.enqueue(sq_hold, name, f"{name}-{i}") for i in range(6)]
    eventually(lambda: _running(name) == 1)
    queue.set_concurrency(3)
    eventually(lambda: _running(name) == 3, timeout=2)
    # Lowered: nothing starts until fewer than the new limit run.
    queue.set_concurrency(1)
    for i in range(3):
        GATES.release(f"{name}-{i}")
    eventually(lambda: handles[2].get_status().status == "SUCCESS")
    eventually(lambda: _running(name) == 1)
    GATES.release(f"{name}-3")
    eventually(lambda: handles[3].get_status().status == "SUCCESS")
    eventually(lambda: _running(name) == 1)
    assert PEAK[name] == 3
    # worker_concurrency=0: this executor (every executor) starts none.
    queue.set_worker_concurrency(0)
    GATES.release(f"{name}-4")
    eventually(lambda: handles[4].get_status().status == "SUCCESS")
    with pytest.raises(AssertionError):
        eventually(lambda: _running(name) > 0, timeout=0.5)
    queue.set_worker_concurrency(None)
    GATES.release(f"{name}-5")
    assert handles[5].get_result() == f"{name}-5"


def test_worker_concurrency_zero_pauses_a_declared_queue(dbos: Harness) -> None:
    """DBOS's idiom to pause dequeueing on one executor (issue 18, item 17)."""
    paused = Queue(_name("sq_paused"), worker_concurrency=0, polling_interval_sec=0.05)
    assert paused.worker_concurrency == 0
    handle = paused.enqueue(sq_add, 1, 1)
    with pytest.raises(AssertionError):
        eventually(lambda: handle.get_status().status != "ENQUEUED", timeout=0.6)


def test_partition_limits(dbos: Harness) -> None:
    """partition_concurrency per partition, global_concurrency across them."""
    name = _name("sq_part")
    queue = DBOS.register_queue(name, global_concurrency=2, partition_concurrency=1, polling_interval_sec=0.05)
    with pytest.raises(DBOSException, match="partition"):
        queue.enqueue(sq_add, 1, 1)
    for key in ("a", "b", "c"):
        for i in range(2):
            with SetEnqueueOptions(queue_partition_key=key):
                queue.enqueue(sq_hold, f"{name}-{key}", f"{name}-{key}{i}")
    eventually(lambda: sum(_running(f"{name}-{k}") for k in "abc") == 2)
    with pytest.raises(AssertionError):
        eventually(lambda: sum(_running(f"{name}-{k}") for k in "abc") > 2, timeout=0.5)
    assert all(_running(f"{name}-{k}") <= 1 for k in "abc")
    queue.set_global_concurrency(None)  # now only one per partition: three at once
    eventually(lambda: all(_running(f"{name}-{k}") == 1 for k in "abc"), timeout=2)
    assert max(PEAK.values()) == 1


def test_small_partitions_are_not_starved_by_busy_ones(dbos: Harness) -> None:
    """Room for 2 at a time, 2 busy partitions that sort first and 4 small ones: each
    claim visits the partitions in a random order, so the small ones are served while
    most of the busy backlog still waits (a sorted order would drain the busy ones first)."""
    name = _name("sq_fair")
    busy, small = ["aaa-1", "aaa-2"], [f"zzz-{i}" for i in range(4)]
    for key in busy + small:
        with SetEnqueueOptions(queue_partition_key=key):
            for _ in range(40 if key in busy else 1):
                DBOS.enqueue_workflow(name, sq_add, 1, 1)
    DBOS.register_queue(name, partition_concurrency=1, worker_concurrency=2, polling_interval_sec=0.05)

    def left(keys: list[str]) -> int:
        return sum(1 for w in DBOS.list_queued_workflows(queue_name=name) if w.queue_partition_key in keys)

    eventually(lambda: left(small) == 0, timeout=30)
    assert left(busy) > 40


def test_async_variants(dbos: Harness, backend: Backend) -> None:
    name = _name("sq_async")

    async def main() -> tuple[Any, ...]:
        queue = await DBOS.register_queue_async(name, concurrency=2, polling_interval_sec=0.05)
        await queue.set_concurrency_async(5)
        await queue.set_partition_limiter_async(None)
        got = await DBOS.retrieve_queue_async(name)
        assert got is not None
        listed = [q.name for q in await DBOS.list_queues_async()]
        result = await (await queue.enqueue_async(sq_add_async, 2, 3)).get_result()
        values = (await got.get_concurrency_async(), await got.get_global_concurrency_async(),
                  await got.get_worker_concurrency_async(), await got.get_limiter_async(),
                  await got.get_polling_interval_sec_async(), await got.get_partition_limiter_async())
        # The blocking forms refuse to block the loop, as DBOS 2.31.1's do.
        for call in (lambda: DBOS.register_queue(name), lambda: DBOS.retrieve_queue(name),
                     DBOS.list_queues, lambda: DBOS.delete_queue(name)):
            with pytest.raises(RuntimeError, match="_async"):
                call()
        await DBOS.delete_queue_async(name)
        return listed, result, values, await DBOS.retrieve_queue_async(name)

    listed, result, values, after = asyncio.run(main())
    assert name in listed and result == 5 and values == (5, 5, None, None, 0.05, None) and after is None


@DBOS.workflow()
async def sq_add_async(a: int, b: int) -> int:
    return a + b


def test_partition_rate_and_worker_limits(dbos: Harness) -> None:
    """partition_limiter and partition_worker_concurrency bind each partition on its own."""
    name = _name("sq_prate")
    queue = DBOS.register_queue(name, partition_limiter={"limit": 1, "period": 30.0}, polling_interval_sec=0.05)
    for key in ("a", "b"):
        for i in range(3):
            with SetEnqueueOptions(queue_partition_key=key):
                queue.enqueue(sq_hold, f"{name}-{key}", f"{name}-{key}{i}")
    eventually(lambda: _running(f"{name}-a") == 1 and _running(f"{name}-b") == 1)
    GATES.release(f"{name}-a0")
    GATES.release(f"{name}-b0")
    eventually(lambda: _running(f"{name}-a") == 0 and _running(f"{name}-b") == 0)
    with pytest.raises(AssertionError):  # one start per partition per 30 s
        eventually(lambda: _running(f"{name}-a") + _running(f"{name}-b") > 0, timeout=0.5)
    # The rate limit off, one per partition and executor at a time: the second of each starts.
    queue.set_partition_worker_concurrency(1)
    queue.set_partition_limiter(None)
    eventually(lambda: _running(f"{name}-a") == 1 and _running(f"{name}-b") == 1, timeout=2)
    with pytest.raises(AssertionError):
        eventually(lambda: _running(f"{name}-a") + _running(f"{name}-b") > 2, timeout=0.5)
    assert queue.partition_worker_concurrency == 1 and queue.partition_limiter is None
    assert max(PEAK.values()) == 1


def test_console_and_autoscaling_see_a_stored_queue(dbos: Harness) -> None:
    """No executor publishes a stored queue's limits: the console's queue view and the
    autoscaling signal read them from the table."""
    from conftest import APP_VERSION

    from dbos._api.instance import runtime
    from dbos._execution import fleet, overview

    name = _name("sq_view")
    queue = DBOS.register_queue(name, concurrency=3, worker_concurrency=1, polling_interval_sec=0.05)
    queue.set_worker_concurrency(0)  # paused: all of it waits
    for _ in range(10):
        queue.enqueue(sq_hold, name, f"{name}-gate")  # released at teardown
    rt = runtime()
    view = {e["queue_name"]: e for e in overview.queues_view(rt.sys_db, 60)}
    assert view[name]["concurrency"] == 3 and view[name]["worker_concurrency"] == 0
    assert view[name]["enqueued"] == 10 and view[name]["live_executors"] == 1
    queue.set_worker_concurrency(1)
    eventually(lambda: _running(name) == 1)
    # Ten waiting or running, one per executor, at most three at once fleet-wide: three executors.
    assert fleet.desired_executors(rt.sys_db)[APP_VERSION] == 3


def test_an_executor_with_work_waiting_on_a_stored_queue_is_not_idle(dbos: Harness) -> None:
    """The worker's idle check, its queue-depth metric and the admin server's queue list
    cover the stored queues it claims from."""
    from dbos._api import admin
    from dbos._api import fleet as executor

    name = _name("sq_idle")
    queue = DBOS.register_queue(name, worker_concurrency=0, polling_interval_sec=0.05)  # paused
    eventually(lambda: name in executor.served_queues())
    assert executor.idle()
    queue.enqueue(sq_add, 1, 1)
    assert executor.queue_depths()[name] == 1 and not executor.idle()
    assert {"name": name, "workerConcurrency": 0, "priorityEnabled": False, "partitionQueue": False} \
        in admin._queues_metadata()
