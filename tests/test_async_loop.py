"""Queued async workflows run on the application's event loop (issue 18, item 4), on
PostgreSQL and SQLite.

An async workflow enqueued from async code (``Queue.enqueue_async``, a plain
``enqueue`` while a loop runs, ``DBOS.enqueue_workflow_async``) runs on the loop
that enqueued it, as ``start_workflow_async`` and direct awaits do, so objects bound
to that loop (an ``asyncio.Event``) work inside it. ``DBOS.launch()`` called from
async code makes its loop the application's too. With no loop known, async
workflows run on the pool's own loop thread.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Optional

import pytest
from conftest import Harness, eventually

from dbos import DBOS, Queue

queue = Queue("loop-queue")

# The test's application loop and an event bound to it, seen by the workflows below.
APP: dict[str, Any] = {}


@DBOS.workflow()
async def on_app_loop() -> tuple[bool, str]:
    same = asyncio.get_running_loop() is APP.get("loop")
    event: Optional[asyncio.Event] = APP.get("event")
    if event is not None:
        await asyncio.wait_for(event.wait(), 10)  # set from the app loop: works only on it
    return same, threading.current_thread().name


async def _enqueue(how: str) -> Any:
    if how == "enqueue_async":
        return await queue.enqueue_async(on_app_loop)
    if how == "enqueue":
        return queue.enqueue(on_app_loop)  # a plain enqueue, from code running on the loop
    return await DBOS.enqueue_workflow_async(queue.name, on_app_loop)


@pytest.mark.parametrize("how", ["enqueue_async", "enqueue", "enqueue_workflow_async"])
def test_enqueued_async_workflow_runs_on_the_app_loop(harness: Harness, how: str) -> None:
    harness.launch()  # from sync code: the app's loop is the one that enqueues

    async def main() -> Any:
        APP["loop"] = asyncio.get_running_loop()
        APP["event"] = event = asyncio.Event()
        handle = await _enqueue(how)
        asyncio.get_running_loop().call_later(0.3, event.set)
        if how == "enqueue":
            return await asyncio.to_thread(handle.get_result)  # not on the loop: the workflow runs there
        return await handle.get_result()

    try:
        same, _ = asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        APP.clear()
    assert same, "the queued workflow ran on another event loop"


def test_launch_from_async_code_makes_its_loop_the_apps(harness: Harness) -> None:
    """Launched inside a running loop, a workflow enqueued from a thread without a loop
    (here, a plain thread) still runs on the launching loop."""

    async def main() -> Any:
        APP["loop"] = asyncio.get_running_loop()
        APP["event"] = event = asyncio.Event()
        harness.launch()
        handle = await asyncio.to_thread(queue.enqueue, on_app_loop)
        asyncio.get_running_loop().call_later(0.3, event.set)
        return await asyncio.to_thread(handle.get_result)

    try:
        same, _ = asyncio.run(asyncio.wait_for(main(), 30))
    finally:
        APP.clear()
    assert same


def test_without_an_app_loop_async_workflows_run_on_the_pools_loop(harness: Harness) -> None:
    """Launched and enqueued from sync code, with no loop ever seen: the pool's own loop."""
    harness.launch()
    same, thread = queue.enqueue(on_app_loop).get_result()
    assert not same and thread == "dbos-async-workflows"


def test_a_queued_workflow_outlives_the_app_loop(harness: Harness) -> None:
    """``asyncio.run(main())`` returning cancels the tasks left on its loop: a queued
    workflow running there goes on on the pool's own loop, from its recorded steps,
    instead of being left PENDING."""
    started = threading.Event()
    calls: list[int] = []

    @DBOS.step()
    def before() -> int:
        calls.append(1)
        return len(calls)

    @DBOS.workflow()
    async def outlives() -> tuple[int, bool]:
        n = before()
        started.set()
        await DBOS.sleep_async(1.0)
        return n, asyncio.get_running_loop() is APP.get("loop")

    harness.launch()

    async def main() -> str:
        APP["loop"] = asyncio.get_running_loop()
        handle = await queue.enqueue_async(outlives)
        assert await asyncio.to_thread(started.wait, 10)
        return handle.workflow_id  # returns while the workflow sleeps on this loop

    try:
        workflow_id = asyncio.run(main())
        eventually(lambda: harness.backend.status(workflow_id) == "SUCCESS", timeout=15)
        result = DBOS.retrieve_workflow(workflow_id).get_result()
    finally:
        APP.clear()
    assert result == (1, False)  # finished elsewhere, its step not run again
    assert calls == [1]


@DBOS.workflow()
async def child_of_pool_workflow() -> bool:
    return asyncio.get_running_loop() is APP.get("loop")


def test_a_workflow_on_the_pools_loop_does_not_become_the_app_loop(harness: Harness) -> None:
    """A workflow running on the pool's own loop that enqueues does not make that loop the
    application's: its child runs on the app loop known meanwhile."""
    started, go = threading.Event(), threading.Event()

    @DBOS.workflow()
    async def on_pool_loop() -> tuple[str, bool]:
        started.set()
        assert await asyncio.to_thread(go.wait, 10)
        child = await (await queue.enqueue_async(child_of_pool_workflow)).get_result()
        return threading.current_thread().name, child

    harness.launch()
    parent = queue.enqueue(on_pool_loop)  # from sync code, no loop known: the pool's loop
    assert started.wait(10)

    async def main() -> Any:
        APP["loop"] = asyncio.get_running_loop()
        APP["event"] = None
        first = await queue.enqueue_async(on_app_loop)  # this loop is the app's now
        assert (await first.get_result())[0]
        go.set()
        return await asyncio.to_thread(parent.get_result)

    try:
        assert asyncio.run(asyncio.wait_for(main(), 30)) == ("dbos-async-workflows", True)
    finally:
        APP.clear()
