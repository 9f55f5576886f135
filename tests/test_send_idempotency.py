"""``send(..., idempotency_key=)`` (issue 18, "Names"): outside a workflow a keyed send is
the one-step workflow ``<temp>.DBOS.send`` under an ID made of key and destination, so
repeating it (a client retrying after a timeout, even after the message was consumed)
delivers once; on DBOS, DBOSClient and send_bulk."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import Backend, Harness

from dbos import DBOS, DBOSClient, DBOSException, SendMessage, SetWorkflowID, WorkflowSerializationFormat
from dbos._api.missing import DBOSNotImplementedError


@DBOS.workflow(name="idem_inbox")
def idem_inbox(n: int, timeout: float) -> list[Any]:
    return [DBOS.recv("t", timeout_seconds=timeout) for _ in range(n)]


@DBOS.workflow(name="idem_sender")
def idem_sender(dest: str) -> None:
    DBOS.send(dest, "from-wf", "t", idempotency_key="wf-key")


def test_a_keyed_send_is_delivered_once(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("idem-inbox-1"):
        inbox = DBOS.start_workflow(idem_inbox, 3, 1.0)
    DBOS.send("idem-inbox-1", "a", "t", idempotency_key="k1")
    DBOS.send("idem-inbox-1", "a-again", "t", idempotency_key="k1")  # a retry: not delivered
    DBOS.send("idem-inbox-1", "b", "t", idempotency_key="k2")
    assert inbox.get_result() == ["a", "b", None]
    # After the message was consumed, the key still holds.
    with SetWorkflowID("idem-inbox-2"):
        second = DBOS.start_workflow(idem_inbox, 2, 1.0)
    DBOS.send("idem-inbox-2", "c", "t", idempotency_key="k1")  # k1 for another destination: delivered
    DBOS.send("idem-inbox-1", "late", "t", idempotency_key="k1")  # k1 for the first one: done already
    assert second.get_result() == ["c", None]
    sends = [w for w in DBOS.list_workflows(name="<temp>.DBOS.send")]
    assert len(sends) == 3 and {w.status for w in sends} == {"SUCCESS"}


def test_keyed_sends_from_the_client_and_send_bulk(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("idem-inbox-3"):
        inbox = DBOS.start_workflow(idem_inbox, 4, 1.0)
    with DBOSClient(backend.url) as client:
        client.send("idem-inbox-3", "x", "t", idempotency_key="c1")
        client.send("idem-inbox-3", "x", "t", idempotency_key="c1")
        client.send_bulk([SendMessage(destination_id="idem-inbox-3", message="y", topic="t", idempotency_key="c2"),
                          SendMessage(destination_id="idem-inbox-3", message="z", topic="t")])
        client.send_bulk([SendMessage(destination_id="idem-inbox-3", message="y2", topic="t", idempotency_key="c2")])
    assert inbox.get_result() == ["x", "y", "z", None]
    with pytest.raises(DBOSException, match="duplicate idempotency keys: d"):
        DBOS.send_bulk([SendMessage(destination_id="idem-inbox-3", message=1, idempotency_key="d"),
                        SendMessage(destination_id="idem-inbox-3", message=2, idempotency_key="d")])


def test_a_keyed_send_in_a_workflow_is_its_step(dbos: Harness) -> None:
    with SetWorkflowID("idem-inbox-4"):
        inbox = DBOS.start_workflow(idem_inbox, 2, 1.0)
    with SetWorkflowID("idem-sender-1"):
        idem_sender("idem-inbox-4")
    with SetWorkflowID("idem-sender-1"):
        idem_sender("idem-inbox-4")  # the same workflow again: its recorded send is not repeated
    assert inbox.get_result() == ["from-wf", None]
    assert [s["function_name"] for s in DBOS.list_workflow_steps("idem-sender-1")] == ["DBOS.send"]


def test_keyed_send_async_and_bad_keywords(dbos: Harness) -> None:
    with SetWorkflowID("idem-inbox-5"):
        inbox = DBOS.start_workflow(idem_inbox, 2, 1.0)

    async def main() -> None:
        await DBOS.send_async("idem-inbox-5", "q", "t", idempotency_key="a1")
        await DBOS.send_async("idem-inbox-5", "q", "t", idempotency_key="a1")

    asyncio.run(main())
    assert inbox.get_result() == ["q", None]
    with pytest.raises(DBOSException, match="idempotency_key must be a non-empty string"):
        DBOS.send("idem-inbox-5", "m", idempotency_key="")
    with pytest.raises(DBOSNotImplementedError, match="PORTABLE"):
        DBOS.send("idem-inbox-5", "m", serialization_type=WorkflowSerializationFormat.PORTABLE)
    with pytest.raises(TypeError, match="unexpected keyword argument 'idempotencykey'"):
        DBOS.send("idem-inbox-5", "m", idempotencykey="x")


def test_a_keyed_send_to_a_workflow_not_created_yet_can_be_retried(dbos: Harness) -> None:
    from dbos.error import DBOSNonExistentWorkflowError

    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.send("idem-later", "m", "t", idempotency_key="early")
    with SetWorkflowID("idem-later"):
        inbox = DBOS.start_workflow(idem_inbox, 1, 5.0)
    DBOS.send("idem-later", "m", "t", idempotency_key="early")  # now it exists: delivered
    assert inbox.get_result() == ["m"]


def test_a_keyed_send_interrupted_before_its_step_is_recovered_once(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("idem-inbox-6"):
        DBOS.start_workflow(idem_inbox, 2, 3.0)
    DBOS.send("idem-inbox-6", "once", "t", idempotency_key="r1")
    (send,) = DBOS.list_workflows(name="<temp>.DBOS.send")
    backend.force_pending(send.workflow_id)  # as if its process died after the send's step
    dbos.restart()  # recovery finds <temp>.DBOS.send (the library's own) and replays the step
    assert DBOS.retrieve_workflow(send.workflow_id).get_result() is None
    assert DBOS.retrieve_workflow("idem-inbox-6").get_result() == ["once", None]
