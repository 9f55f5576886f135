"""``DBOS.set_event`` inside a step sets the event on the enclosing workflow, as in
DBOS 2.x (issue 18, item 9); the step's checkpoint covers it, so a replay does not
set it again."""

from __future__ import annotations

from conftest import Harness

from dbos import DBOS, SetWorkflowID

calls: list[str] = []


@DBOS.step()
def eis_step(value: int) -> int:
    calls.append("step")
    DBOS.set_event("progress", value)
    return value


@DBOS.workflow()
def eis_workflow(value: int) -> int:
    out = eis_step(value)
    DBOS.set_event("done", True)
    return out


def test_set_event_in_a_step_sets_it_on_the_workflow(harness: Harness) -> None:
    harness.launch()
    calls.clear()
    with SetWorkflowID("eis-1"):
        assert eis_workflow(7) == 7
    assert DBOS.get_event("eis-1", "progress", timeout_seconds=1) == 7
    assert DBOS.get_event("eis-1", "done", timeout_seconds=1) is True
    steps = [s["function_name"] for s in DBOS.list_workflow_steps("eis-1")]
    assert steps.count("DBOS.setEvent") == 1  # the workflow's own; the step's is covered by the step
    with SetWorkflowID("eis-1"):
        assert eis_workflow(7) == 7  # replayed: the step does not run again
    assert calls == ["step"]
