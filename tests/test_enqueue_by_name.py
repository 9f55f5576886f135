"""DBOS 2.x's enqueue methods on DBOS and its durable asyncio.wait (issue 18, "Names"):
``DBOS.enqueue_workflow(queue_name, func, ...)``, ``enqueue_workflow_with_options``
(the row DBOSClient.enqueue builds, from inside the app; from a workflow, a recorded
child), their ``_async`` forms, and ``DBOS.asyncio_wait``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import Backend, Harness, eventually

from dbos import (
    DBOS,
    DBOSException,
    DBOSQueueDeduplicatedError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowAttributes,
    SetWorkflowID,
)
from dbos._api.missing import DBOSNotImplementedError

QUEUE = Queue("byname_queue", priority_enabled=True)
RUNS: dict[str, int] = {}


@DBOS.workflow(name="byname_double")
def byname_double(x: int) -> int:
    RUNS["double"] = RUNS.get("double", 0) + 1
    return 2 * x


@DBOS.workflow(name="byname_double_async")
async def byname_double_async(x: int) -> int:
    return 2 * x


@DBOS.workflow(name="byname_parent")
def byname_parent(x: int) -> int:
    RUNS["parent"] = RUNS.get("parent", 0) + 1
    handle = DBOS.enqueue_workflow_with_options({"workflow_name": "byname_double", "queue_name": "byname_queue"}, x)
    return int(handle.get_result()) + 1


@DBOS.step()
def byname_step(x: int) -> int:
    RUNS["step"] = RUNS.get("step", 0) + 1
    return x + 1


@pytest.fixture(autouse=True)
def _runs() -> None:
    RUNS.clear()


def test_enqueue_workflow_by_queue_name(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("byname-1"):
        assert DBOS.enqueue_workflow("byname_queue", byname_double, 4).get_result() == 8
    with SetEnqueueOptions(priority=7), SetWorkflowID("byname-2"):
        handle = DBOS.enqueue_workflow("byname_queue", byname_double, 5)
    assert handle.get_result() == 10
    st = handle.get_status()
    assert (st.queue_name, st.priority) == ("byname_queue", 7)
    # A queue this process does not declare: enqueued for the executors that do.
    with SetWorkflowID("byname-elsewhere"):
        DBOS.enqueue_workflow("byname_not_here", byname_double, 1)
    assert backend.status("byname-elsewhere") == "ENQUEUED"
    # Also after an earlier destroy(destroy_registry=True) (which makes a Queue object used
    # later register itself again): a queue named only by enqueue_workflow is not served here.
    from dbos._execution.registry import REGISTRY

    was, REGISTRY.cleared = REGISTRY.cleared, True
    try:
        with SetWorkflowID("byname-elsewhere-2"):
            DBOS.enqueue_workflow("byname_not_here", byname_double, 1)
    finally:
        REGISTRY.cleared = was
    assert "byname_not_here" not in REGISTRY.queues
    assert backend.status("byname-elsewhere-2") == "ENQUEUED"
    assert DBOS.get_workflow_status("byname-elsewhere").queue_name == "byname_not_here"  # type: ignore[union-attr]
    with pytest.raises(DBOSException, match="queue_name must be a non-empty string"):
        DBOS.enqueue_workflow("", byname_double, 1)


def test_enqueue_workflow_takes_a_step(dbos: Harness) -> None:
    """As Queue.enqueue does (and DBOS 2.x): a step runs as its temporary workflow, once per ID."""
    for _ in range(2):
        with SetWorkflowID("byname-step"):
            assert DBOS.enqueue_workflow("byname_queue", byname_step, 1).get_result() == 2
    assert RUNS["step"] == 1

    async def main() -> Any:
        return await (await DBOS.enqueue_workflow_async("byname_queue", byname_step, 5)).get_result()

    assert asyncio.run(main()) == 6


def test_enqueue_workflow_async(dbos: Harness) -> None:
    async def main() -> Any:
        h = await DBOS.enqueue_workflow_async("byname_queue", byname_double_async, 6)
        h2 = await DBOS.enqueue_workflow_with_options_async(
            {"workflow_name": "byname_double", "queue_name": "byname_queue", "workflow_id": "byname-opt-async"}, 3)
        return await h.get_result(), await h2.get_result(), h2.workflow_id

    assert asyncio.run(main()) == (12, 6, "byname-opt-async")


def test_enqueue_workflow_with_options_builds_the_clients_row(dbos: Harness, backend: Backend) -> None:
    handle = DBOS.enqueue_workflow_with_options(
        {"workflow_name": "byname_double", "queue_name": "byname_queue", "workflow_id": "byname-opt-1",
         "priority": 3, "authenticated_user": "zoe", "deduplication_id": "dd-1"}, 21)
    assert handle.get_result() == 42
    st = handle.get_status()
    assert (st.workflow_id, st.priority, st.authenticated_user, st.deduplication_id) == (
        "byname-opt-1", 3, "zoe", "dd-1")
    with pytest.raises(DBOSException, match="EnqueueOptions has no key 'priorty' .did you mean 'priority'"):
        DBOS.enqueue_workflow_with_options(
            {"workflow_name": "byname_double", "queue_name": "byname_queue", "priorty": 1}, 1)  # type: ignore[typeddict-unknown-key]
    with pytest.raises(DBOSNotImplementedError, match="PORTABLE"):
        DBOS.enqueue_workflow_with_options(
            {"workflow_name": "byname_double", "queue_name": "byname_queue", "serialization_type": "portable"}, 1)


def test_enqueue_workflow_with_options_takes_what_it_leaves_unset_from_the_context(dbos: Harness) -> None:
    """DBOS 2.31.1: SetEnqueueOptions fills the options left unset (or None); explicit ones
    win; attributes merge over SetWorkflowAttributes'; the caller's dict is unchanged."""
    options: Any = {"workflow_name": "byname_double", "queue_name": "byname_queue", "deduplication_id": None}
    with SetEnqueueOptions(deduplication_id="amb-dd", priority=5, delay_seconds=3600, app_version="amb-v"):
        with SetWorkflowAttributes({"ambient": "a", "both": "ambient"}):
            held = DBOS.enqueue_workflow_with_options({**options, "attributes": {"both": "explicit"}}, 1)
        pinned = DBOS.enqueue_workflow_with_options(
            {**options, "app_version": "own-v", "priority": 2, "deduplication_id": "own-dd"}, 1)
    st = held.get_status()
    assert (st.status, st.deduplication_id, st.priority, st.app_version) == ("DELAYED", "amb-dd", 5, "amb-v")
    assert st.attributes == {"ambient": "a", "both": "explicit"}
    st = pinned.get_status()
    assert (st.status, st.app_version, st.priority, st.deduplication_id) == ("DELAYED", "own-v", 2, "own-dd")
    assert options["deduplication_id"] is None and "app_version" not in options
    with SetEnqueueOptions(deduplication_id="amb-dd"), pytest.raises(DBOSQueueDeduplicatedError):
        DBOS.enqueue_workflow_with_options(options, 1)

    async def main() -> Any:
        with SetEnqueueOptions(deduplication_id="amb-async", priority=9, delay_seconds=3600):
            h = await DBOS.enqueue_workflow_with_options_async(options, 1)
        return (await h.get_status()).priority

    assert asyncio.run(main()) == 9


def test_enqueue_with_options_from_a_workflow_is_a_recorded_child(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("byname-parent-1"):
        assert byname_parent(10) == 21
    steps = DBOS.list_workflow_steps("byname-parent-1")
    child = steps[0]["child_workflow_id"]
    assert child is not None and DBOS.get_workflow_status(child).name == "byname_double"  # type: ignore[union-attr]
    assert RUNS == {"parent": 1, "double": 1}
    # A replay finds the recorded child instead of enqueueing a second one.
    backend.force_pending("byname-parent-1")
    before = backend.workflow_count()
    dbos.restart()
    eventually(lambda: backend.status("byname-parent-1") == "SUCCESS")
    assert DBOS.retrieve_workflow("byname-parent-1").get_result() == 21
    assert backend.workflow_count() == before
    assert RUNS == {"parent": 2, "double": 1}


# -- asyncio_wait ------------------------------------------------------------------------

FAST_FIRST: dict[str, float] = {"fast": 0.01, "slow": 1.5}


@DBOS.step(name="byname_nap")
async def byname_nap(tag: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return tag


@DBOS.workflow(name="byname_race")
async def byname_race() -> list[str]:
    RUNS["race"] = RUNS.get("race", 0) + 1
    tasks = [byname_nap("slow", FAST_FIRST["slow"]), byname_nap("fast", FAST_FIRST["fast"])]
    done, pending = await DBOS.asyncio_wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for p in pending:
        await p  # let it finish (and be recorded) before returning
    return sorted(t.result() for t in done)


def test_asyncio_wait_records_which_were_done(dbos: Harness, backend: Backend) -> None:
    async def run() -> list[str]:
        with SetWorkflowID("byname-race-1"):
            return await byname_race()

    assert asyncio.run(run()) == ["fast"]
    names = [s["function_name"] for s in DBOS.list_workflow_steps("byname-race-1")]
    assert names[0] == "DBOS.asyncio_wait" and sorted(names[1:]) == ["byname_nap", "byname_nap"]
    # Replayed with the timings reversed: the recorded split wins, not the new race.
    FAST_FIRST.update(fast=0.5, slow=0.0)
    try:
        backend.force_pending("byname-race-1")
        dbos.restart()
        eventually(lambda: backend.status("byname-race-1") == "SUCCESS")
        assert DBOS.retrieve_workflow("byname-race-1").get_result() == ["fast"]
        assert RUNS["race"] == 2
    finally:
        FAST_FIRST.update(fast=0.01, slow=1.5)


@DBOS.workflow(name="byname_timed_out_wait")
async def byname_timed_out_wait() -> list[str]:
    RUNS["timed_out"] = RUNS.get("timed_out", 0) + 1
    first_done, pending = await DBOS.asyncio_wait(
        [byname_nap("a", 0.3), byname_nap("b", 0.3)], timeout=0.05
    )
    assert not first_done  # the timeout passed before either finished
    done, _ = await DBOS.asyncio_wait(list(pending))
    return sorted(t.result() for t in done)


def test_asyncio_wait_replays_a_wait_that_timed_out_with_nothing_done(dbos: Harness) -> None:
    """Replaying an asyncio_wait that recorded nothing done still lets its awaitables
    start (and take their step IDs) before the workflow goes on, as the first run did:
    the next asyncio_wait was handed their step IDs (DBOSUnexpectedStepError)."""

    async def run() -> tuple[list[str], list[str]]:
        with SetWorkflowID("byname-timed-out-1"):
            first = await byname_timed_out_wait()
        forked = await DBOS.fork_workflow_async("byname-timed-out-1", 100)  # replays every step
        return first, await forked.get_result()

    assert asyncio.run(run()) == (["a", "b"], ["a", "b"])
    names = [s["function_name"] for s in DBOS.list_workflow_steps("byname-timed-out-1")]
    assert names == ["DBOS.asyncio_wait", "byname_nap", "byname_nap", "DBOS.asyncio_wait"]
    assert RUNS["timed_out"] == 2


def test_asyncio_wait_outside_a_workflow_is_asyncio_wait(dbos: Harness) -> None:
    async def main() -> Any:
        done, pending = await DBOS.asyncio_wait([asyncio.sleep(0, "a"), asyncio.sleep(0, "b")])
        return sorted(t.result() for t in done), pending

    assert asyncio.run(main()) == (["a", "b"], set())

    async def bad() -> None:
        await DBOS.asyncio_wait([asyncio.sleep(0)], return_when="SOMETIMES")

    with pytest.raises(ValueError, match="return_when"):
        asyncio.run(bad())
