"""When a workflow's waits record their steps (issue 18, as in DBOS Transact 2.31.1):
``DBOS.sleep`` records its wake-up time as its completion, so its span is the sleep;
``DBOS.recv`` and ``DBOS.get_event`` start when called and complete when they return,
so their spans are the wait, while the deadline (``DBOS.sleep``) a recv or get_event
registers records an instant (it may be abandoned early)."""

from __future__ import annotations

from typing import Any

from conftest import Harness

from dbos import DBOS, SetWorkflowID


@DBOS.workflow(name="timing_sleeper")
def sleeper() -> None:
    DBOS.sleep(0.4)


@DBOS.workflow(name="timing_waiter")
def waiter() -> Any:
    return DBOS.recv("never", timeout_seconds=0.4), DBOS.get_event("timing-nobody", "k", timeout_seconds=0.4)


def _spans(workflow_id: str) -> list[tuple[str, int]]:
    return [(s["function_name"], s["completed_at_epoch_ms"] - s["started_at_epoch_ms"])
            for s in DBOS.list_workflow_steps(workflow_id)]


def test_a_sleep_step_spans_the_sleep(dbos: Harness) -> None:
    with SetWorkflowID("timing-sleep"):
        sleeper()
    [(name, span)] = _spans("timing-sleep")
    assert name == "DBOS.sleep" and span >= 400
    # A replay keeps the recorded times.
    with SetWorkflowID("timing-sleep"):
        sleeper()
    assert _spans("timing-sleep") == [(name, span)]


def test_recv_and_get_event_steps_span_their_wait(dbos: Harness) -> None:
    with SetWorkflowID("timing-wait"):
        assert waiter() == (None, None)
    spans = _spans("timing-wait")
    assert [name for name, _ in spans] == ["DBOS.recv", "DBOS.sleep", "DBOS.getEvent", "DBOS.sleep"]
    recv, recv_deadline, get_event, get_event_deadline = (span for _, span in spans)
    assert recv >= 350 and get_event >= 350
    assert recv_deadline < 350 and get_event_deadline < 350
