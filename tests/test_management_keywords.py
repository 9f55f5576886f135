"""Management keywords of DBOS 2.31 (issue 18), on PostgreSQL and SQLite.

cancel_workflow(s)(cancel_children=) over a tree of children and grandchildren (a
running descendant stops, here and when another process cancels it);
fork_workflow(replacement_children=); list_workflows(was_forked_from=) and
WorkflowStatus.was_forked_from; list_queued_workflows(completed_after=, completed_before=);
their refusals of malformed input. On DBOS, DBOSClient and the _async forms.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import pytest
from conftest import Backend, Harness, eventually
from mgmt_helpers import Counter, now_ms, rfc3339

from dbos import DBOS, DBOSAwaitedWorkflowCancelledError, DBOSClient, DBOSException, Queue, SetWorkflowID
from dbos._api.instance import runtime

MK_SERIAL = Queue("mk_serial", concurrency=1, polling_interval_sec=0.05)
COUNTER = Counter()
CHILD_RESULT = {"value": "first"}


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    COUNTER.counts.clear()  # each backend's run of a test counts from zero


def _ids(statuses: list[Any]) -> list[str]:
    return sorted(s.workflow_id for s in statuses)


# -- a tree: node(tag, kids, wait) starts its kids, waits for a "go" message, then marks ----


@DBOS.step()
def mk_mark(tag: str) -> None:
    COUNTER.hit(tag)


@DBOS.workflow()
def mk_node(tag: str, kids: list[Any], wait: bool) -> str:
    for kid_tag, grandkids, kid_wait in kids:
        with SetWorkflowID(kid_tag):
            DBOS.start_workflow(mk_node, kid_tag, grandkids, kid_wait)
    if wait:
        DBOS.recv("go", timeout_seconds=60)
    mk_mark(tag)
    return tag


def _tree(prefix: str) -> dict[str, str]:
    """prefix: its children -c1 (waiting, with grandchild -g1) and -c2 (finishing at once,
    with grandchild -g2, waiting); every workflow started, the waiting ones waiting."""
    p, c1, c2, g1, g2 = (prefix, f"{prefix}-c1", f"{prefix}-c2", f"{prefix}-g1", f"{prefix}-g2")
    kids = [(c1, [(g1, [], True)], True), (c2, [(g2, [], True)], False)]
    with SetWorkflowID(p):
        DBOS.start_workflow(mk_node, p, kids, True)
    ids = {"p": p, "c1": c1, "c2": c2, "g1": g1, "g2": g2}
    waiting = [p, c1, g1, g2]
    eventually(lambda: all(runtime().local(w) is not None for w in waiting), what="(the tree runs)")
    eventually(lambda: COUNTER[c2] == 1, what="(c2 ran)")
    assert DBOS.retrieve_workflow(c2).get_result() == c2  # finished (SUCCESS recorded)
    return ids


def _statuses(backend: Backend, ids: dict[str, str]) -> dict[str, Optional[str]]:
    return {k: backend.status(w) for k, w in ids.items()}


def _ended_here(workflow_id: str) -> None:
    eventually(lambda: runtime().local(workflow_id) is None, what=f"({workflow_id} stops)")


def _stopped(ids: list[str]) -> None:
    """Each ended here without running the step after its wait (even once told to go)."""
    for w in ids:
        _ended_here(w)
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            DBOS.retrieve_workflow(w).get_result()
        DBOS.send(w, "go", "go")
    for w in ids:
        assert COUNTER[w] == 0, w


def test_cancel_without_cancel_children_leaves_the_descendants_running(dbos: Harness, backend: Backend) -> None:
    ids = _tree("nc")
    DBOS.cancel_workflow(ids["p"])
    assert _statuses(backend, ids) == {"p": "CANCELLED", "c1": "PENDING", "c2": "SUCCESS", "g1": "PENDING",
                                       "g2": "PENDING"}
    _stopped([ids["p"]])
    for key in ("c1", "g1", "g2"):  # still running: told to go, they finish
        DBOS.send(ids[key], "go", "go")
        assert DBOS.retrieve_workflow(ids[key]).get_result() == ids[key]
    # cancel_workflows(cancel_children=False): the same, on a second tree.
    ids2 = _tree("nc2")
    DBOS.cancel_workflows([ids2["p"], ids2["g1"]], cancel_children=False)
    assert _statuses(backend, ids2) == {"p": "CANCELLED", "c1": "PENDING", "c2": "SUCCESS", "g1": "CANCELLED",
                                        "g2": "PENDING"}
    for key in ("c1", "g2"):
        DBOS.send(ids2[key], "go", "go")
        assert DBOS.retrieve_workflow(ids2[key]).get_result() == ids2[key]


def test_cancel_children_cancels_every_live_descendant_and_stops_them(dbos: Harness, backend: Backend) -> None:
    ids = _tree("cc")
    DBOS.cancel_workflow(ids["p"], cancel_children=True)
    # Below the finished c2 as well (DBOS walks every child); c2 itself stays SUCCESS.
    assert _statuses(backend, ids) == {"p": "CANCELLED", "c1": "CANCELLED", "c2": "SUCCESS", "g1": "CANCELLED",
                                       "g2": "CANCELLED"}
    _stopped([ids["p"], ids["c1"], ids["g1"], ids["g2"]])
    assert DBOS.retrieve_workflow(ids["c2"]).get_result() == ids["c2"]

    # cancel_workflows(cancel_children=True), async, from a child: only its subtree.
    ids2 = _tree("cc2")
    asyncio.run(DBOS.cancel_workflows_async([ids2["c1"], "no-such-workflow"], cancel_children=True))
    assert _statuses(backend, ids2) == {"p": "PENDING", "c1": "CANCELLED", "c2": "SUCCESS", "g1": "CANCELLED",
                                        "g2": "PENDING"}
    _stopped([ids2["c1"], ids2["g1"]])
    asyncio.run(DBOS.cancel_workflow_async(ids2["p"], cancel_children=True))
    assert backend.status(ids2["g2"]) == "CANCELLED"
    _stopped([ids2["p"], ids2["g2"]])


def test_cancel_children_from_another_process_stops_the_descendants_here(dbos: Harness, backend: Backend) -> None:
    """A client has no execution to preempt: this executor finds the cancelled rows (its
    canceller), for a descendant exactly as for a workflow cancelled by name."""
    ids = _tree("cl")
    with DBOSClient(backend.url, polling_interval_sec=0.1) as client:
        client.cancel_workflow(ids["c1"], cancel_children=True)
        assert _statuses(backend, ids)["g1"] == "CANCELLED"
        _stopped([ids["c1"], ids["g1"]])
        client.cancel_workflows([ids["p"]], cancel_children=True)
        _stopped([ids["p"], ids["g2"]])
        ids2 = _tree("cl2")
        asyncio.run(client.cancel_workflow_async(ids2["p"], cancel_children=True))
        _stopped([ids2["p"], ids2["c1"], ids2["g1"], ids2["g2"]])
        ids3 = _tree("cl3")
        asyncio.run(client.cancel_workflows_async([ids3["p"]], cancel_children=True))
        _stopped([ids3["p"], ids3["c1"], ids3["g1"], ids3["g2"]])
    assert backend.status(ids3["c2"]) == "SUCCESS"


# -- fork_workflow(replacement_children=) -------------------------------------------------


@DBOS.workflow()
def mk_child(x: int) -> str:
    COUNTER.hit(f"child-{x}")
    return f"{CHILD_RESULT['value']}-{x}"


@DBOS.step()
def mk_after() -> str:
    return "after"


@DBOS.workflow()
def mk_started_parent(x: int) -> str:
    handle = DBOS.start_workflow(mk_child, x)
    return f"{handle.get_result()}|{mk_after()}"


@DBOS.workflow()
def mk_calling_parent(x: int) -> str:
    return f"{mk_child(x)}|{mk_after()}"


def _child_steps(workflow_id: str) -> list[tuple[int, str, Optional[str]]]:
    return [(s["function_id"], s["function_name"], s["child_workflow_id"]) for s in DBOS.list_workflow_steps(workflow_id)
            if s["child_workflow_id"] is not None]


@pytest.mark.parametrize("parent", ["started", "called"])
def test_fork_with_replacement_children_uses_the_replacement(dbos: Harness, backend: Backend, parent: str) -> None:
    CHILD_RESULT["value"] = "first"
    wf = mk_started_parent if parent == "started" else mk_calling_parent
    x = 1 if parent == "started" else 2
    with SetWorkflowID(f"rc-{parent}"):
        assert wf(x) == f"first-{x}|after"
    steps = _child_steps(f"rc-{parent}")
    (start_fid, _, child_id), (result_fid, result_name, _) = steps
    assert result_name == "DBOS.getResult" and result_fid == start_fid + 1
    CHILD_RESULT["value"] = "second"
    with SetWorkflowID(f"rc-{parent}-replacement"):
        assert mk_child(x) == f"second-{x}"  # the replacement: the same workflow, another outcome
    assert COUNTER[f"child-{x}"] == 2

    # From the step that awaited the child: the started step is copied, naming the replacement.
    fork = DBOS.fork_workflow(f"rc-{parent}", result_fid, replacement_children={child_id: f"rc-{parent}-replacement"})
    assert fork.get_result() == f"second-{x}|after"
    assert _child_steps(fork.workflow_id) == [
        (start_fid, steps[0][1], f"rc-{parent}-replacement"), (result_fid, "DBOS.getResult", f"rc-{parent}-replacement")
    ]
    assert COUNTER[f"child-{x}"] == 2  # neither child ran again
    assert backend.status(child_id) == "SUCCESS"
    # Without it, the fork awaits the original (its recorded outcome).
    assert DBOS.fork_workflow(f"rc-{parent}", result_fid).get_result() == f"first-{x}|after"
    # A fork copying both steps replays the recorded outcome (the getResult step's), as DBOS.
    copied = DBOS.fork_workflow(
        f"rc-{parent}", result_fid + 1, replacement_children={child_id: f"rc-{parent}-replacement"}
    )
    assert copied.get_result() == f"first-{x}|after"
    # The client and the async forms take it too; a mapping of an ID never recorded changes nothing.
    with DBOSClient(backend.url, polling_interval_sec=0.1) as client:
        mapping = {child_id: f"rc-{parent}-replacement", "never-a-child": "x"}
        assert client.fork_workflow(f"rc-{parent}", result_fid, replacement_children=mapping).get_result() == (
            f"second-{x}|after"
        )

        async def forks() -> list[Any]:
            a = await client.fork_workflow_async(f"rc-{parent}", result_fid, replacement_children=mapping)
            b = await DBOS.fork_workflow_async(f"rc-{parent}", result_fid, replacement_children=mapping)
            return [await a.get_result(), await b.get_result()]

        assert asyncio.run(forks()) == [f"second-{x}|after"] * 2
    assert COUNTER[f"child-{x}"] == 2
    assert _child_steps(f"rc-{parent}")[0][2] == child_id  # the source's steps are untouched


# -- list_workflows(was_forked_from=) ------------------------------------------------------


@DBOS.workflow()
def mk_plain(x: int) -> int:
    return x


def test_list_workflows_was_forked_from(dbos: Harness, backend: Backend) -> None:
    for w in ("wf-src", "wf-other"):
        with SetWorkflowID(w):
            mk_plain(1)
    with SetWorkflowID("wf-fork"):
        assert DBOS.fork_workflow("wf-src", 1).get_result() == 1
    # A fork of a fork: its source is marked, the first source stays marked.
    with SetWorkflowID("wf-fork-fork"):
        assert DBOS.fork_workflow("wf-fork", 2).get_result() == 1
    assert _ids(DBOS.list_workflows(was_forked_from=True)) == ["wf-fork", "wf-src"]
    assert _ids(DBOS.list_workflows(was_forked_from=False)) == ["wf-fork-fork", "wf-other"]
    assert _ids(DBOS.list_workflows(was_forked_from=None)) == ["wf-fork", "wf-fork-fork", "wf-other", "wf-src"]
    assert _ids(DBOS.list_workflows(was_forked_from=True, forked_from="wf-src")) == ["wf-fork"]
    assert DBOS.list_workflows(workflow_ids=["wf-src"])[0].was_forked_from is True
    assert DBOS.retrieve_workflow("wf-other").get_status().was_forked_from is False
    assert asyncio.run(DBOS.list_workflows_async(was_forked_from=True)) == DBOS.list_workflows(was_forked_from=True)
    with DBOSClient(backend.url, polling_interval_sec=0.1) as client:
        assert _ids(client.list_workflows(was_forked_from=True)) == ["wf-fork", "wf-src"]
        assert _ids(asyncio.run(client.list_workflows_async(was_forked_from=False))) == ["wf-fork-fork", "wf-other"]
    # A source stays marked after its fork is gone (DBOS records the fact on the source).
    DBOS.delete_workflow("wf-fork-fork")
    assert _ids(DBOS.list_workflows(was_forked_from=True)) == ["wf-fork", "wf-src"]


def test_the_migration_marks_the_sources_of_earlier_forks(dbos: Harness, backend: Backend) -> None:
    """Forks made before migration v12 (simulated: the flags cleared and v12 unrecorded)."""
    from dbos._storage.migrations import SYSTEM_MIGRATIONS
    from dbos._storage.schema import migrations

    with SetWorkflowID("mig-src"):
        mk_plain(1)
    DBOS.fork_workflow("mig-src", 1).get_result()
    backend.execute(f"UPDATE {backend.table('workflow_status')} SET was_forked_from = false")
    assert DBOS.list_workflows(was_forked_from=True) == []
    v12 = [m.__name__ for m in SYSTEM_MIGRATIONS].index("_v12_system") + 1
    assert backend.execute(f"DELETE FROM {backend.table(migrations.name)} WHERE version = :v", v=v12) == 1
    dbos.restart()
    assert _ids(DBOS.list_workflows(was_forked_from=True)) == ["mig-src"]


# -- list_queued_workflows(completed_after=, completed_before=) ----------------------------


@DBOS.workflow()
def mk_queued(tag: str, wait: bool) -> str:
    if wait:
        DBOS.recv("go", timeout_seconds=60)
    return tag


def test_list_queued_workflows_completed_bounds(dbos: Harness, backend: Backend) -> None:
    before = rfc3339(now_ms() - 60_000)
    assert MK_SERIAL.enqueue(mk_queued, "done", False).get_result() == "done"
    with SetWorkflowID("q-blocker"):
        blocker = MK_SERIAL.enqueue(mk_queued, "blocker", True)
    waiting = MK_SERIAL.enqueue(mk_queued, "waiting", False)
    eventually(lambda: backend.status("q-blocker") == "PENDING")
    after = rfc3339(now_ms() + 60_000)
    queued = ["q-blocker", waiting.workflow_id]
    assert _ids(DBOS.list_queued_workflows()) == sorted(queued)
    # A queued workflow has not completed: a completion bound leaves none of them; the
    # finished one (not queued any more) is what list_workflows finds for the same bounds.
    assert DBOS.list_queued_workflows(completed_after=before) == []
    assert DBOS.list_queued_workflows(completed_before=after) == []
    assert len(DBOS.list_workflows(queue_name="mk_serial", completed_after=before, completed_before=after)) == 1
    assert asyncio.run(DBOS.list_queued_workflows_async(completed_after=before, queue_name="mk_serial")) == []
    with DBOSClient(backend.url, polling_interval_sec=0.1) as client:
        assert client.list_queued_workflows(completed_before=after) == []
        assert asyncio.run(client.list_queued_workflows_async(completed_after=before)) == []
        assert _ids(client.list_queued_workflows(start_time=before)) == sorted(queued)
        with pytest.raises(DBOSException, match="completed_after"):
            client.list_queued_workflows(completed_after="yesterday")
    with pytest.raises(DBOSException, match="completed_before"):
        DBOS.list_queued_workflows(completed_before="not a time")
    DBOS.send("q-blocker", "go", "go")
    assert blocker.get_result() == "blocker" and waiting.get_result() == "waiting"


# -- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, fragment",
    [
        (lambda: DBOS.cancel_workflow("x", cancel_children="yes"), "cancel_children"),
        (lambda: DBOS.cancel_workflows("abc", cancel_children=True), "workflow_ids must be a list"),
        (lambda: DBOS.cancel_workflows(["ok", 3]), "workflow_id must be a string"),
        (lambda: DBOS.fork_workflow("fk-src", 1, replacement_children=[("a", "b")]), "replacement_children must be a dict"),
        (lambda: DBOS.fork_workflow("fk-src", 1, replacement_children={"a": 1}), "replacement_children maps"),
        (lambda: DBOS.fork_workflow("fk-src", 1, replacement_children={1: "b"}), "replacement_children maps"),
        (lambda: DBOS.fork_workflow("fk-src", 1, replacement_children={"a": ""}), "replacement ID"),
        (lambda: DBOS.list_workflows(was_forked_from="yes"), "was_forked_from"),
        (lambda: DBOS.list_queued_workflows(completed_after=5), "completed_after"),
    ],
)
def test_malformed_management_keywords_are_refused(dbos: Harness, backend: Backend, call: Any, fragment: str) -> None:
    with SetWorkflowID("fk-src"):
        mk_plain(1)
    with pytest.raises(DBOSException, match=fragment):
        call()
    assert backend.workflow_count() == 1  # nothing forked, nothing cancelled
    assert backend.status("fk-src") == "SUCCESS"
    with DBOSClient(backend.url) as client:
        with pytest.raises(DBOSException, match="replacement_children must be a dict"):
            client.fork_workflow("fk-src", 1, replacement_children="a=b")  # type: ignore[arg-type]
        with pytest.raises(DBOSException, match="cancel_children"):
            client.cancel_workflows(["fk-src"], cancel_children=1)  # type: ignore[arg-type]
