"""Error messages of messaging calls keep DBOS Transact 2.31's phrases (issue 18), so code
(and tests) matching them still match: a send to an unknown workflow, and recv, sleep and
set_event called outside a workflow."""

from __future__ import annotations

import asyncio

import pytest
from conftest import Backend, Harness

from dbos import DBOS, DBOSClient, DBOSException, DBOSNonExistentWorkflowError, SendMessage


@DBOS.workflow(name="phrases_sender")
def sender(destination: str) -> None:
    DBOS.send(destination, "hi")


def test_unknown_send_destination_keeps_dbos_phrase(dbos: Harness, backend: Backend) -> None:
    phrase = "Non-existent `send` destination workflow ID: nobody-here"
    with pytest.raises(DBOSNonExistentWorkflowError, match=phrase) as e:
        sender("nobody-here")
    assert e.value.workflow_id == "nobody-here" and e.value.dbos_error_code == 5
    with pytest.raises(DBOSNonExistentWorkflowError, match=phrase):
        DBOS.send("nobody-here", "hi", idempotency_key="k")
    with pytest.raises(DBOSNonExistentWorkflowError, match=phrase):
        DBOS.send_bulk([SendMessage("nobody-here", "hi")])
    client = DBOSClient(backend.url)
    try:
        with pytest.raises(DBOSNonExistentWorkflowError, match=phrase):
            client.send("nobody-here", "hi")
    finally:
        client.destroy()


def test_calls_outside_a_workflow_keep_dbos_phrases(dbos: Harness) -> None:
    with pytest.raises(DBOSException, match=r"^recv\(\) must be called from within a workflow"):
        DBOS.recv("t", timeout_seconds=0)
    with pytest.raises(DBOSException, match=r"^sleep\(\) must be called from within a workflow"):
        DBOS.sleep(0)
    with pytest.raises(DBOSException, match=r"^set_event\(\) must be called from within a workflow or step"):
        asyncio.run(DBOS.set_event_async("k", "v"))
