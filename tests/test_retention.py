"""Retention and bulk operations (issue 16), on PostgreSQL and SQLite, on real rows.

delete_workflow(s) (finished only, with steps, events, messages and transaction
records; delete_children), garbage_collect by age and by row count in batches
(nothing live deleted), the coordinator's Retention service (acts only as
leader), send_bulk, and the CLI: bulk cancel / resume / delete with the list
filters, --dry-run (changes nothing), the confirmation, ``workflow gc``.
"""

from __future__ import annotations

import io
import json
import os
import time
from contextlib import redirect_stderr, redirect_stdout
from typing import Any, Optional

import pytest
from conftest import Backend, Harness, eventually
from mgmt_helpers import wait_status

from dbos import DBOS, DBOSClient, DBOSException, SendMessage, SetWorkflowID
from dbos._api.instance import runtime
from dbos._execution import retention
from dbos._services.retention import Retention, RetentionConfig
from dbos.cli.main import main as cli_main

UNSERVED = "ret_unserved"  # a queue no process here serves: what is enqueued on it stays ENQUEUED
TABLES = ("workflow_status", "operation_outputs", "workflow_events", "notifications")


@DBOS.step()
def ret_step(x: int) -> int:
    return x + 1


@DBOS.transaction()
def ret_tx(x: int) -> int:
    return x * 2


@DBOS.workflow(name="ret_done")
def done(x: int) -> int:
    DBOS.set_event("k", x)
    return ret_step(x) + ret_tx(x)


@DBOS.workflow(name="ret_fails")
def fails() -> None:
    ret_step(0)
    raise ValueError("boom")


@DBOS.workflow(name="ret_parent")
def parent(n: int) -> int:
    return sum(done(i) for i in range(n))


@DBOS.workflow(name="ret_waits")
def waits() -> Any:
    return DBOS.recv("go", timeout_seconds=60)


@DBOS.workflow(name="ret_inbox")
def inbox(n: int) -> list[Any]:
    return [DBOS.recv(f"t{i}", timeout_seconds=30) for i in range(n)]


def _count(backend: Backend, table: str, column: str, workflow_id: str) -> int:
    return int(backend.scalar(f"SELECT COUNT(*) FROM {backend.table(table)} WHERE {column} = :w", w=workflow_id))


def _records(backend: Backend, wid: str) -> dict[str, int]:
    return {
        "status": _count(backend, "workflow_status", "workflow_uuid", wid),
        "steps": _count(backend, "operation_outputs", "workflow_uuid", wid),
        "events": _count(backend, "workflow_events", "workflow_uuid", wid),
        "messages": _count(backend, "notifications", "destination_uuid", wid),
        "tx": _count(backend, "transaction_outputs", "workflow_uuid", wid),
    }


def _finished(wid: str, x: int = 1) -> str:
    with SetWorkflowID(wid):
        done(x)
    return wid


def _live(backend: Backend) -> tuple[str, str]:
    """A PENDING workflow (waiting in recv) and an ENQUEUED one (on a queue nobody serves)."""
    with SetWorkflowID("live-pending"):
        DBOS.start_workflow(waits)
    wait_status(backend, "live-pending", "PENDING")
    client = DBOSClient(backend.url)
    try:
        client.enqueue({"workflow_name": "ret_done", "queue_name": UNSERVED, "workflow_id": "live-enqueued"}, 1)
    finally:
        client.destroy()
    return "live-pending", "live-enqueued"


def _age(backend: Backend, wid: str, days: float) -> None:
    backend.execute(f"UPDATE {backend.table('workflow_status')} SET created_at = :t WHERE workflow_uuid = :w",
                    t=int((time.time() - days * 86400) * 1000), w=wid)


# -- delete ---------------------------------------------------------------------------


def test_delete_workflow_takes_everything_it_recorded(dbos: Harness, backend: Backend) -> None:
    wid = _finished("del-1", 3)
    DBOS.send(wid, "late message")  # a message to a finished workflow is a row too
    before = _records(backend, wid)
    assert before == {"status": 1, "steps": 3, "events": 1, "messages": 1, "tx": 1}, before
    keep = _finished("del-keep")
    DBOS.delete_workflow(wid)
    assert _records(backend, wid) == dict.fromkeys(before, 0)
    assert _records(backend, keep)["status"] == 1 and _records(backend, keep)["steps"] == 3
    assert DBOS.get_workflow_status(wid) is None
    DBOS.delete_workflow("no-such-workflow")  # unknown: nothing to do


def test_delete_never_takes_live_workflows(dbos: Harness, backend: Backend) -> None:
    pending, enqueued = _live(backend)
    with SetWorkflowID("del-err"):
        with pytest.raises(ValueError):
            fails()
    DBOS.delete_workflows([pending, enqueued, "del-err"])
    assert _records(backend, pending)["status"] == 1
    assert _records(backend, enqueued)["status"] == 1
    assert _records(backend, "del-err")["status"] == 0
    DBOS.send(pending, "go", topic="go")
    assert DBOS.retrieve_workflow(pending).get_result() == "go"


def test_delete_children(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("del-parent"):
        parent(3)
    children = [s.workflow_id for s in DBOS.list_workflows(name="ret_done")]
    assert len(children) == 3
    DBOS.delete_workflow("del-parent")  # children stay
    assert len(DBOS.list_workflows(name="ret_done")) == 3
    with SetWorkflowID("second-parent"):
        parent(2)
    DBOS.delete_workflow("second-parent", delete_children=True)
    assert DBOS.get_workflow_status("second-parent") is None
    assert len(DBOS.list_workflows(name="ret_done")) == 3  # only the first parent's remain


# -- garbage collection ----------------------------------------------------------------


def test_garbage_collect_by_age_in_batches(dbos: Harness, backend: Backend) -> None:
    old = [_finished(f"gc-old-{i}") for i in range(7)]
    new = [_finished(f"gc-new-{i}") for i in range(3)]
    pending, enqueued = _live(backend)
    for wid in (*old, pending, enqueued):
        _age(backend, wid, 10)
    result = retention.garbage_collect(runtime(), cutoff_epoch_timestamp_ms=int((time.time() - 7 * 86400) * 1000),
                                       batch_size=3)
    assert result.deleted == 7 and result.batches == 3
    assert all(_records(backend, w) == dict.fromkeys(_records(backend, w), 0) for w in old)
    assert all(_records(backend, w)["status"] == 1 for w in (*new, pending, enqueued))
    assert backend.status(pending) == "PENDING" and backend.status(enqueued) == "ENQUEUED"


def test_garbage_collect_by_rows(dbos: Harness, backend: Backend) -> None:
    ids = []
    for i in range(8):
        ids.append(_finished(f"gc-rows-{i}"))
        time.sleep(0.003)  # distinct created_at
    pending, _ = _live(backend)
    _age(backend, pending, 1)  # the oldest row, but live
    DBOS.garbage_collect(rows_threshold=4)
    left = {s.workflow_id for s in DBOS.list_workflows()}
    assert pending in left
    assert set(ids[-3:]) <= left and not set(ids[:4]) & left  # the newest rows stay
    assert len(left) <= 5


def test_retention_service_acts_only_as_leader(dbos: Harness, backend: Backend) -> None:
    wid = _finished("svc-old")
    _age(backend, wid, 3)
    leader = [False]
    rt = runtime()
    service = Retention(rt.sys_db, RetentionConfig(retention_days=2), lambda: leader[0], rt.logger)
    service.run_once()
    assert backend.status(wid) == "SUCCESS"
    leader[0] = True
    service.run_once()
    assert backend.status(wid) is None and service.deleted_total == 1
    assert _count(backend, "transaction_outputs", "workflow_uuid", wid) == 0


# -- send_bulk ---------------------------------------------------------------------------


def test_send_bulk(dbos: Harness) -> None:
    handle = DBOS.start_workflow(inbox, 3)
    DBOS.send_bulk([{"destination_id": handle.workflow_id, "message": i, "topic": f"t{i}"} for i in range(3)])
    assert handle.get_result() == [0, 1, 2]
    with pytest.raises(DBOSException, match="destination_id"):
        DBOS.send_bulk([{"message": 1}])


def test_send_bulk_takes_send_message_dataclasses(dbos: Harness, backend: Backend) -> None:
    """SendMessage is a dataclass, as in DBOS 2.x: built positionally (destination_id,
    message, topic, idempotency_key), its fields read as attributes; dicts still work."""
    msg = SendMessage("x", 1)
    assert (msg.destination_id, msg.message, msg.topic, msg.idempotency_key) == ("x", 1, None, None)
    handle = DBOS.start_workflow(inbox, 3)
    DBOS.send_bulk([SendMessage(handle.workflow_id, "a", "t0"), {"destination_id": handle.workflow_id,
                    "message": "b", "topic": "t1"}])
    client = DBOSClient(backend.url)
    try:
        client.send_bulk([SendMessage(handle.workflow_id, "c", "t2", "k1")])
    finally:
        client.destroy()
    assert handle.get_result() == ["a", "b", "c"]
    with pytest.raises(DBOSException, match="duplicate idempotency keys: k"):
        DBOS.send_bulk([SendMessage("x", 1, None, "k"), {"destination_id": "x", "message": 2, "idempotency_key": "k"}])
    with pytest.raises(DBOSException, match="SendMessage has no key 'body'"):
        DBOS.send_bulk([{"destination_id": "x", "message": 1, "body": 2}])


# -- the CLI -------------------------------------------------------------------------------


def cli(backend: Backend, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main([*args, "--db-url", backend.url])
    return code, out.getvalue(), err.getvalue()


def _statuses(prefix: str) -> dict[str, Optional[str]]:
    return {s.workflow_id: s.status for s in DBOS.list_workflows(workflow_id_prefix=prefix)}


def _enqueue_many(backend: Backend, prefix: str, n: int) -> list[str]:
    client = DBOSClient(backend.url)
    try:
        return [client.enqueue({"workflow_name": "ret_done", "queue_name": UNSERVED,
                                "workflow_id": f"{prefix}{i}"}, i).workflow_id for i in range(n)]
    finally:
        client.destroy()


def test_cli_bulk_cancel_resume_delete(dbos: Harness, backend: Backend) -> None:
    ids = _enqueue_many(backend, "bulk-", 8)
    _finished("other-done")
    before = _statuses("")
    code, out, err = cli(backend, "workflow", "cancel", "--status", "ENQUEUED", "--queue", UNSERVED,
                         "--name", "ret_done", "--dry-run")
    assert code == 0, err
    assert "would cancel 8" in err and all(w in out for w in ids)
    assert _statuses("") == before  # --dry-run changed nothing

    code, _, err = cli(backend, "workflow", "cancel", "--status", "ENQUEUED", "--queue", UNSERVED)
    assert code == 1 and "--yes" in err  # more than a handful, no terminal: refused
    assert _statuses("") == before

    code, out, err = cli(backend, "workflow", "cancel", "--status", "ENQUEUED", "--queue", UNSERVED, "--yes")
    assert code == 0, err
    assert set(_statuses("bulk-").values()) == {"CANCELLED"}
    assert _statuses("other-") == {"other-done": "SUCCESS"}

    code, _, err = cli(backend, "workflow", "resume", "--prefix", "bulk-", "--limit", "3", "--yes")
    assert code == 0, err
    assert list(_statuses("bulk-").values()).count("ENQUEUED") == 3  # back on the internal queue
    eventually(lambda: list(_statuses("bulk-").values()).count("SUCCESS") == 3, timeout=20)

    code, out, err = cli(backend, "workflow", "delete", "--prefix", "bulk-", "--dry-run", "--json")
    assert code == 0 and len(json.loads(out)) == 8
    assert len(_statuses("bulk-")) == 8
    code, _, err = cli(backend, "workflow", "delete", "--prefix", "bulk-", "--status", "CANCELLED", "--yes")
    assert code == 0, err
    assert set(_statuses("bulk-").values()) == {"SUCCESS"}

    # One ID works as before; a filter-less bulk call is an error.
    code, _, err = cli(backend, "workflow", "delete", "other-done")
    assert code == 0, err
    assert _statuses("other-") == {}
    code, _, err = cli(backend, "workflow", "cancel")
    assert code == 1 and "filter" in err


def test_cli_gc(dbos: Harness, backend: Backend) -> None:
    old = [_finished(f"cligc-{i}") for i in range(3)]
    pending, enqueued = _live(backend)
    for wid in (*old, pending, enqueued):
        _age(backend, wid, 9)
    code, out, err = cli(backend, "workflow", "gc", "--older-than", "7d", "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["would_delete"] == 3
    assert all(backend.status(w) == "SUCCESS" for w in old)
    code, out, err = cli(backend, "workflow", "gc", "--older-than", "7d", "--json")
    assert code == 0, err
    assert json.loads(out)["deleted"] == 3
    assert all(backend.status(w) is None for w in old)
    assert backend.status(pending) == "PENDING" and backend.status(enqueued) == "ENQUEUED"
    with pytest.raises(SystemExit) as e:
        cli(backend, "workflow", "gc", "--older-than", "soon")
    assert e.value.code == 2


def test_coordinator_leader_collects_with_retention_flags(dbos: Harness, backend: Backend, tmp_path: Any) -> None:
    """A real ``dbos-coordinator --retention-days 1``: the leader deletes old finished
    workflows, and leaves the live ones and the recent ones."""
    if backend.is_sqlite:
        pytest.skip("the coordinator runs on PostgreSQL here (the Retention service is tested on both above)")
    from handover_helpers import BIN, Proc

    old = _finished("coord-old")
    recent = _finished("coord-recent")
    pending, enqueued = _live(backend)
    for wid in (old, pending, enqueued):
        _age(backend, wid, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    proc = Proc("coordinator", [str(BIN / "dbos-coordinator"), "--db-url", backend.url, "--retention-days", "1",
                                "--retention-interval", "0.5"], env, tmp_path / "coordinator.log")
    try:
        eventually(lambda: backend.status(old) is None, timeout=30, what="(the leader collected)")
        assert backend.status(recent) == "SUCCESS"
        assert backend.status(pending) == "PENDING" and backend.status(enqueued) == "ENQUEUED"
        assert _count(backend, "operation_outputs", "workflow_uuid", old) == 0
    finally:
        proc.terminate()
