"""Workflow attributes, as in DBOS 2.x (issue 18, "Names"): ``SetWorkflowAttributes``
records them with the workflows started or enqueued in the block (not their
children), ``update_workflow_attributes`` replaces them (a recorded step in a
workflow), ``WorkflowStatus.attributes`` and ``list_workflows(attributes=)`` read
them; on DBOS, DBOSClient and in EnqueueOptions; PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Optional

import pytest
from conftest import Backend, Harness

from dbos import DBOS, DBOSClient, DBOSException, Queue, SetWorkflowAttributes, SetWorkflowID
from dbos.error import DBOSNonExistentWorkflowError

QUEUE = Queue("attr_queue")


@DBOS.workflow(name="attr_child")
def attr_child() -> Optional[str]:
    return DBOS.workflow_id


@DBOS.workflow(name="attr_parent")
def attr_parent() -> Any:
    child = DBOS.start_workflow(attr_child)
    child.get_result()
    DBOS.update_workflow_attributes(DBOS.workflow_id or "", {"stage": "done"})
    return child.workflow_id


def _attrs(workflow_id: str) -> Any:
    st = DBOS.get_workflow_status(workflow_id)
    assert st is not None
    return st.attributes


def test_set_workflow_attributes_records_them_at_creation(dbos: Harness) -> None:
    acme = {"customer": "acme", "region": "us-east-1", "tier": 2}
    with SetWorkflowAttributes(acme):
        with SetWorkflowID("attr-direct"):
            attr_child()
        with SetWorkflowID("attr-started"):
            DBOS.start_workflow(attr_child).get_result()
        with SetWorkflowID("attr-queued"):
            QUEUE.enqueue(attr_child).get_result()
    with SetWorkflowID("attr-plain"):
        attr_child()
    for wid in ("attr-direct", "attr-started", "attr-queued"):
        assert _attrs(wid) == acme
    assert _attrs("attr-plain") is None
    # Not inherited by the children of a workflow started in the block.
    with SetWorkflowAttributes({"customer": "globex"}), SetWorkflowID("attr-parent"):
        child_id = attr_parent()
    assert _attrs(child_id) is None
    assert _attrs("attr-parent") == {"stage": "done"}  # replaced from inside the workflow
    assert [s["function_name"] for s in DBOS.list_workflow_steps("attr-parent")][-1] == "DBOS.updateWorkflowAttributes"


def test_update_and_filter(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowAttributes({"customer": "acme", "vip": True, "meta": {"b": [1, 2], "a": None}}), \
            SetWorkflowID("attr-f1"):
        attr_child()
    with SetWorkflowAttributes({"customer": "acme", "vip": False, "n": 3}), SetWorkflowID("attr-f2"):
        attr_child()
    with SetWorkflowAttributes({"customer": "initech", "n": 3.5, "none": None}), SetWorkflowID("attr-f3"):
        attr_child()

    def ids(**attrs: Any) -> list[str]:
        return sorted(w.workflow_id for w in DBOS.list_workflows(attributes=attrs))

    assert ids(customer="acme") == ["attr-f1", "attr-f2"]
    assert ids(customer="acme", vip=True) == ["attr-f1"]
    assert ids(vip=False) == ["attr-f2"]
    assert ids(n=3) == ["attr-f2"]
    assert ids(n=3.5) == ["attr-f3"]
    assert ids(meta={"a": None, "b": [1, 2]}) == ["attr-f1"]
    assert ids(none=None) == ["attr-f3"]
    assert ids(customer="nobody") == []
    assert [w.workflow_id for w in DBOS.list_queued_workflows(attributes={"customer": "acme"})] == []
    DBOS.update_workflow_attributes("attr-f2", {"customer": "initech"})
    assert ids(customer="initech") == ["attr-f2", "attr-f3"]
    DBOS.update_workflow_attributes("attr-f2", None)
    assert _attrs("attr-f2") is None
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.update_workflow_attributes("attr-nope", {"a": 1})


def test_client_and_enqueue_options(dbos: Harness, backend: Backend) -> None:
    with DBOSClient(backend.url) as client:
        h = client.enqueue({"workflow_name": "attr_child", "queue_name": "attr_queue", "workflow_id": "attr-c1",
                            "attributes": {"source": "client"}})
        h.get_result()
        assert h.get_status().attributes == {"source": "client"}
        client.update_workflow_attributes("attr-c1", {"source": "client", "seen": 1})
        assert [w.workflow_id for w in client.list_workflows(attributes={"seen": 1})] == ["attr-c1"]

    async def main() -> Any:
        await DBOS.update_workflow_attributes_async("attr-c1", {"async": True})
        return (await DBOS.list_workflows_async(attributes={"async": True}))[0].workflow_id

    assert asyncio.run(main()) == "attr-c1"


def test_bad_attributes_are_refused(dbos: Harness) -> None:
    for bad in (["a"], {"k": threading.Lock()}, {1: "int key"}, {"nan": float("nan")}):
        with pytest.raises(DBOSException, match="Invalid workflow attributes"):
            SetWorkflowAttributes(bad)  # type: ignore[arg-type]
    with pytest.raises(DBOSException, match="Invalid workflow attributes"):
        DBOS.list_workflows(attributes="customer")  # type: ignore[arg-type]
