"""Concurrent step-recording ``_async`` calls in one async workflow number their steps
in call order (each takes its step IDs on the calling task, before its first await),
so a replay matches every recorded step to the call that made it (issue 18)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine

from conftest import Backend, Harness

from dbos import DBOS, Queue, SetWorkflowID

ROUNDS = 4  # each round makes every kind of call once: 72 concurrent calls in all
PER_ROUND = 18
queue = Queue("order-q")


def test_concurrent_async_calls_replay_in_call_order(harness: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def source(i: int) -> str:
        DBOS.set_event("k", f"event-{i}")
        return f"result-{i}"

    @DBOS.workflow()
    async def child(i: int) -> str:
        return f"child-{i}"

    @DBOS.step()
    async def astep(i: int) -> str:
        return f"astep-{i}"

    def plain(i: int) -> str:
        return f"plain-{i}"

    # Each call: (its coroutine, the step names it records, what its value shows).
    Call = tuple[Coroutine[Any, Any, Any], list[str], Callable[[Any], Any]]

    def calls(r: int) -> list[Call]:
        a, b = f"src-{2 * r}", f"src-{2 * r + 1}"
        return [
            (DBOS.get_event_async(a, "k", 5), ["DBOS.getEvent", "DBOS.sleep"], str),
            (DBOS.send_async("sink", f"m{r}", f"t{r}"), ["DBOS.send"], repr),
            (DBOS.get_event_async(b, "k", 5), ["DBOS.getEvent", "DBOS.sleep"], str),
            (DBOS.set_event_async(f"e{r}", r), ["DBOS.setEvent"], repr),
            (DBOS.start_workflow_async(child, 10 * r), [child.__qualname__], lambda h: h.workflow_id),
            (DBOS.get_workflow_status_async(b), ["DBOS.getStatus"], lambda s: s.workflow_id),
            (DBOS.start_workflow_async(child, 10 * r + 1), [child.__qualname__], lambda h: h.workflow_id),
            (DBOS.get_result_async(a), ["DBOS.getResult"], str),
            (DBOS.get_all_events_async(b), ["DBOS.get_events"], repr),
            (DBOS.recv_async(f"none{r}", 0), ["DBOS.recv", "DBOS.sleep"], repr),
            (DBOS.sleep_async(0), ["DBOS.sleep"], repr),
            (queue.enqueue_async(child, 10 * r + 2), [child.__qualname__], lambda h: h.workflow_id),
            (DBOS.enqueue_workflow_async("order-q", child, 10 * r + 3), [child.__qualname__],
             lambda h: h.workflow_id),
            (DBOS.update_workflow_attributes_async(a, {"r": r}), ["DBOS.updateWorkflowAttributes"], repr),
            (DBOS.run_step_async(None, plain, r), [plain.__qualname__], str),
            (astep(r), [astep.__qualname__], str),
            (DBOS.enqueue_workflow_with_options_async(
                {"workflow_name": child.__qualname__, "queue_name": "order-q"}, 10 * r + 4),
             [child.__qualname__], lambda h: h.workflow_id),
            (DBOS.send_bulk_async([{"destination_id": "sink", "message": j} for j in range(2)]),
             ["DBOS.send", "DBOS.send"], repr),
        ]

    @DBOS.workflow()
    async def parent() -> dict[str, Any]:
        made = [c for r in range(ROUNDS) for c in calls(r)]
        values = await asyncio.gather(*(coro for coro, _, _ in made))
        shown = [show(v) for (_, _, show), v in zip(made, values)]
        started = [v for v in values if hasattr(v, "get_result")]
        # Their handles' steps race too.
        results = await asyncio.gather(*(h.get_result() for h in started))
        found = await asyncio.gather(*(h.get_status() for h in started),
                                     *(DBOS.wait_first_async([h]) for h in started))
        count = len(started)
        return {"shown": shown, "results": list(results), "found": [f.workflow_id for f in found],
                "names": [n for _, names, _ in made for n in names]
                + ["DBOS.getResult"] * count + ["DBOS.getStatus"] * count + ["DBOS.waitFirst"] * count}

    harness.launch()
    for i in range(2 * ROUNDS):
        with SetWorkflowID(f"src-{i}"):
            assert source(i) == f"result-{i}"
    with SetWorkflowID("sink"):
        source(-1)

    async def first_run() -> Any:
        with SetWorkflowID("order-parent"):
            return await parent()

    first = asyncio.run(first_run())
    # The values are right, call by call (each call's own database work).
    for r in range(ROUNDS):
        row = first["shown"][PER_ROUND * r:PER_ROUND * (r + 1)]
        assert row[0] == f"event-{2 * r}" and row[2] == f"event-{2 * r + 1}"
        assert row[5] == f"src-{2 * r + 1}" and row[7] == f"result-{2 * r}"
        assert row[14] == f"plain-{r}" and row[15] == f"astep-{r}"
    assert sorted(first["results"]) == sorted(f"child-{10 * r + j}" for r in range(ROUNDS) for j in range(5))
    assert first["found"] == 2 * [v for i, v in enumerate(first["shown"]) if i % PER_ROUND in (4, 6, 11, 12, 16)]

    def numbering() -> list[str]:
        steps = DBOS.list_workflow_steps("order-parent")
        assert [s["function_id"] for s in steps] == list(range(1, len(steps) + 1))
        return [s["function_name"] for s in steps]

    # The steps are numbered in call order: the n-th step recorded is the n-th one called.
    assert numbering() == first["names"]

    # A replay (the process died before the outcome was recorded) gives every call what
    # it got the first time.
    backend.force_pending("order-parent")
    harness.restart()
    second = DBOS.retrieve_workflow("order-parent").get_result()
    assert second == first
    assert numbering() == first["names"]
