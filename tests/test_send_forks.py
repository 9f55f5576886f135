"""send(..., send_to_forks=True) (issue 18): the message also reaches every workflow
forked from the destination, forks of forks included, from DBOS.send (outside and inside
a workflow), send_async, send_bulk and the client; without it only the destination.
On PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Iterator

import pytest
from conftest import Backend, Harness

from dbos import DBOS, DBOSClient, SetWorkflowID, WorkflowHandle


@DBOS.workflow(name="sf_inbox")
def sf_inbox(timeout: float) -> Any:
    return DBOS.recv("t", timeout_seconds=timeout)


@DBOS.workflow(name="sf_sender")
def sf_sender(destination: str, message: str) -> str:
    DBOS.send(destination, message, "t", send_to_forks=True)
    return "sent"


@pytest.fixture
def client(dbos: Harness, backend: Backend) -> Iterator[DBOSClient]:
    with DBOSClient(backend.url) as c:
        yield c


def _family(timeout: float = 5.0) -> list[WorkflowHandle[Any]]:
    """A waiting inbox, its fork, and a fork of that fork (each waiting in its recv)."""
    with SetWorkflowID(f"sf-{uuid.uuid4().hex[:8]}"):
        root = DBOS.start_workflow(sf_inbox, timeout)
    fork = DBOS.fork_workflow(root.workflow_id, 1)
    grandchild = DBOS.fork_workflow(fork.workflow_id, 1)
    for h in (fork, grandchild):
        assert h.get_status().forked_from in (root.workflow_id, fork.workflow_id)
    return [root, fork, grandchild]


def _results(family: list[WorkflowHandle[Any]]) -> list[Any]:
    return [h.get_result() for h in family]


def test_send_to_forks_reaches_a_fork_and_a_fork_of_a_fork(dbos: Harness) -> None:
    family = _family()
    DBOS.send(family[0].workflow_id, "to all", "t", send_to_forks=True)
    assert _results(family) == ["to all"] * 3


def test_without_send_to_forks_only_the_destination_receives(dbos: Harness) -> None:
    family = _family(timeout=1.0)
    DBOS.send(family[0].workflow_id, "to one", "t")
    assert _results(family) == ["to one", None, None]


def test_send_to_forks_from_the_middle_skips_the_ancestor(dbos: Harness) -> None:
    family = _family(timeout=1.0)
    DBOS.send(family[1].workflow_id, "down", "t", send_to_forks=True)
    assert _results(family) == [None, "down", "down"]


def test_send_to_forks_from_a_workflow_is_one_step(dbos: Harness, backend: Backend) -> None:
    family = _family()
    sender = DBOS.start_workflow(sf_sender, family[0].workflow_id, "from a workflow")
    assert sender.get_result() == "sent"
    assert _results(family) == ["from a workflow"] * 3
    assert backend.steps(sender.workflow_id) == [(1, "DBOS.send")]


def test_send_to_forks_async_bulk_and_keyed(dbos: Harness) -> None:
    family = _family()
    asyncio.run(DBOS.send_async(family[0].workflow_id, "async", "t", send_to_forks=True))
    assert _results(family) == ["async"] * 3
    family = _family(timeout=1.5)
    root = family[0].workflow_id
    DBOS.send_bulk([{"destination_id": root, "message": "bulk", "topic": "t", "idempotency_key": "k"}],
                   send_to_forks=True)
    DBOS.send(root, "bulk", "t", idempotency_key="k", send_to_forks=True)  # the same key: sent already
    assert _results(family) == ["bulk"] * 3


def test_client_send_to_forks(client: DBOSClient, backend: Backend) -> None:
    family = _family()
    client.send(family[0].workflow_id, "client", "t", send_to_forks=True)
    assert _results(family) == ["client"] * 3
    family = _family()
    client.send_bulk([{"destination_id": family[0].workflow_id, "message": "bulk", "topic": "t"}], send_to_forks=True)
    assert _results(family) == ["bulk"] * 3
    family = _family()
    with backend.engine.begin() as conn:
        client.send_in_transaction(conn, family[0].workflow_id, "in tx", "t", send_to_forks=True)
    assert _results(family) == ["in tx"] * 3
