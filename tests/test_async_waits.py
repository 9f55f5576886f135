"""Async waits hold no thread (issue 18, item 3), on PostgreSQL and SQLite.

``recv_async``, ``get_event_async``, ``sleep_async``, awaiting a child's handle and
``DBOSClient.get_event_async`` wait on the event loop: 40 async children each waiting
2 s, awaited by an async parent, finish in about 2 s under ``max_executor_threads=32``
(a wait holding a thread each never finishes there: the parent's 40 awaits hold the
threads the children need to start).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Coroutine

import pytest
from conftest import Harness, eventually

from dbos import DBOS, DBOSClient, SetWorkflowID
from dbos._api.instance import runtime

N = 40
WAIT = 2.0


def _run_in_thread(main: Callable[[], Coroutine[Any, Any, Any]], timeout: float) -> Any:
    """``asyncio.run(main())`` in a thread, given ``timeout`` seconds: a run stuck in waits
    that hold threads fails the test instead of hanging it (its cancellation would hang too)."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = asyncio.run(main())
        except BaseException as e:  # noqa: BLE001 - reported below
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"not finished within {timeout} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


@pytest.mark.parametrize("kind", ["sleep", "recv", "get_event"])
def test_many_async_children_waiting_hold_no_thread(harness: Harness, kind: str) -> None:
    @DBOS.workflow()
    async def child(parent_id: str) -> float:
        t0 = time.monotonic()
        if kind == "sleep":
            await DBOS.sleep_async(WAIT)
        elif kind == "recv":
            assert await DBOS.recv_async(timeout_seconds=WAIT) is None
        else:
            assert await DBOS.get_event_async(parent_id, "never", timeout_seconds=WAIT) is None
        return time.monotonic() - t0

    @DBOS.workflow()
    async def parent() -> list[float]:
        me = DBOS.workflow_id
        assert me is not None
        handles = [await DBOS.start_workflow_async(child, me) for _ in range(N)]
        return list(await asyncio.gather(*(h.get_result() for h in handles)))

    harness.launch(max_executor_threads=32)

    async def main() -> tuple[list[float], float]:
        t0 = time.monotonic()
        with SetWorkflowID(f"parent-{kind}"):
            waited = await parent()
        return waited, time.monotonic() - t0

    waited, wall = _run_in_thread(main, timeout=30)
    assert len(waited) == N and min(waited) >= WAIT * 0.95
    # All 40 waited at once: none queued behind another's wait for a thread (that one
    # would have waited two rounds, ~4 s).
    assert max(waited) < WAIT * 1.6, f"the longest wait took {max(waited):.1f} s"
    assert wall < 8.0, f"{N} children waiting {WAIT} s took {wall:.1f} s"
    # Replayed, the parent returns what its children returned (the awaits were recorded).
    assert harness.backend.status(f"parent-{kind}") == "SUCCESS"
    steps = [name for _, name in harness.backend.steps(f"parent-{kind}")]
    assert steps.count("DBOS.getResult") == N


def test_many_async_waits_are_woken_at_once(harness: Harness) -> None:
    """Waiting on the loop keeps the in-process wake: 40 async receivers under a cap of
    32 threads, each sent a message, return well before the polling interval."""

    @DBOS.workflow()
    async def receiver() -> Any:
        return await DBOS.recv_async("t", timeout_seconds=30)

    @DBOS.workflow()
    async def parent() -> list[Any]:
        handles = [await DBOS.start_workflow_async(receiver) for _ in range(N)]
        await DBOS.sleep_async(0.3)  # every receiver is waiting
        for i, h in enumerate(handles):
            await DBOS.send_async(h.workflow_id, i, "t")
        return list(await asyncio.gather(*(h.get_result() for h in handles)))

    harness.launch(max_executor_threads=32, polling_interval_sec=30.0)

    async def main() -> tuple[list[Any], float]:
        t0 = time.monotonic()
        got = await parent()
        return got, time.monotonic() - t0

    got, wall = _run_in_thread(main, timeout=30)
    assert got == list(range(N))
    assert wall < 10.0, f"took {wall:.1f} s: woken by polling, not by the sends"


def test_client_get_event_async_holds_no_thread(harness: Harness) -> None:
    """A DBOSClient's blocking pool has 32 threads: 64 concurrent get_event_async waits
    of 2 s take one 2 s wave, not two."""

    @DBOS.workflow()
    def setter() -> None:
        DBOS.set_event("late", DBOS.recv("go", timeout_seconds=30))

    harness.launch()
    with SetWorkflowID("setter"):
        handle = DBOS.start_workflow(setter)
    client = DBOSClient(harness.backend.url)
    try:

        async def main() -> tuple[list[Any], float, Any]:
            t0 = time.monotonic()
            waits = [client.get_event_async("setter", "never", timeout_seconds=WAIT) for _ in range(64)]
            got = await asyncio.gather(*waits)
            wall = time.monotonic() - t0
            late = asyncio.ensure_future(client.get_event_async("setter", "late", timeout_seconds=20))
            await asyncio.sleep(0.2)
            await client.send_async("setter", "value", "go")
            return list(got), wall, await late

        got, wall, late = _run_in_thread(main, timeout=30)
        assert got == [None] * 64
        assert wall < 3.5, f"64 waits of {WAIT} s took {wall:.1f} s"
        assert late == "value"
        handle.get_result()
    finally:
        client.destroy()


def test_cancelled_async_wait_unsubscribes(harness: Harness) -> None:
    """An awaiting task cancelled mid-wait leaves no waiter behind."""

    @DBOS.workflow()
    def setter() -> None:
        DBOS.recv("go", timeout_seconds=30)

    harness.launch()
    with SetWorkflowID("quiet"):
        handle = DBOS.start_workflow(setter)

    async def main() -> None:
        task = asyncio.ensure_future(DBOS.get_event_async("quiet", "k", timeout_seconds=30))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _run_in_thread(main, timeout=10)
    rt = runtime()
    eventually(lambda: not rt.wakeups.local.has_waiters("event:quiet:k"))
    DBOS.send("quiet", 1, "go")
    handle.get_result()
