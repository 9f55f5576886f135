"""Context managers (issue 6): DBOSContextEnsure, and every context manager nesting and
combining as in the reference's last example (auth + timeout + ID + enqueue options
around one enqueue on a priority, partitioned queue); contexts are per thread and per
asyncio task (contextvars). PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Optional

import pytest
from auth_helpers import LogCapture, wid
from conftest import Harness

from dbos import (
    DBOS,
    DBOSContextEnsure,
    DBOSContextSetAuth,
    DBOSException,
    DBOSQueueDeduplicatedError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
)

cm_queue = Queue("cm_tests_tasks", priority_enabled=True, partition_queue=True)
cm_plain_queue = Queue("cm_tests_plain")
GATES: dict[str, threading.Event] = {}


@DBOS.workflow(name="cm_tests.complex_task")
def complex_task(task_id: str) -> str:
    gate = GATES.get(task_id)
    if gate is not None:
        assert gate.wait(timeout=30)
    return f"Completed {task_id} as {DBOS.authenticated_user}/{DBOS.assumed_role}"


@DBOS.workflow(name="cm_tests.ident")
def ident() -> dict[str, Any]:
    return {"id": DBOS.workflow_id, "user": DBOS.authenticated_user, "roles": DBOS.authenticated_roles}


@DBOS.workflow(name="cm_tests.ident_async")
async def ident_async(delay: float) -> dict[str, Any]:
    await asyncio.sleep(delay)
    return {"id": DBOS.workflow_id, "user": DBOS.authenticated_user, "roles": DBOS.authenticated_roles}


@DBOS.workflow(name="cm_tests.two_children")
def two_children() -> list[str]:
    return [ident()["id"], ident()["id"]]


def row(dbos: Harness, workflow_id: str) -> dict[str, Any]:
    """The recorded fields the context managers set, from WorkflowStatus."""
    found = DBOS.list_workflows(workflow_ids=[workflow_id], load_input=False, load_output=False)
    assert found, f"no workflow {workflow_id}"
    st = found[0]
    cols = ("authenticated_user", "authenticated_roles", "assumed_role", "queue_name", "priority",
            "queue_partition_key", "deduplication_id", "workflow_timeout_ms", "workflow_deadline_epoch_ms",
            "status")
    return {c: getattr(st, c) for c in cols}


# -- DBOSContextEnsure ---------------------------------------------------------------


def test_context_ensure(dbos: Harness) -> None:
    with DBOSContextEnsure() as ensured:
        assert ensured is not None
        with LogCapture() as logs:
            DBOS.logger.warning("ensure-check")
        assert logs.matching("ensure-check")
        assert DBOS.workflow_id is None
        assert DBOS.authenticated_user is None
        with DBOSContextEnsure():  # nests
            out = ident()
        assert out["user"] is None
    with DBOSContextSetAuth("u", ["r"]):
        with DBOSContextEnsure():  # keeps what is already in the context
            assert DBOS.authenticated_user == "u"
            workflow_id = wid("ensure")
            with SetWorkflowID(workflow_id):
                assert ident() == {"id": workflow_id, "user": "u", "roles": ["r"]}


def test_context_ensure_inside_a_workflow_keeps_it(dbos: Harness) -> None:
    @DBOS.workflow(name="cm_tests.ensure_inside")
    def ensure_inside() -> Optional[str]:
        with DBOSContextEnsure():
            return DBOS.workflow_id

    workflow_id = wid("ensure-in")
    with SetWorkflowID(workflow_id):
        assert ensure_inside() == workflow_id


# -- the reference's combined example -------------------------------------------------


def test_reference_combined_example(dbos: Harness) -> None:
    with DBOSContextSetAuth("[email protected]", ["admin"]):
        with SetWorkflowTimeout(300.0):  # 5 minute timeout
            with SetWorkflowID("unique-task-123"):
                with SetEnqueueOptions(priority=100, queue_partition_key="admin-tasks",
                                       deduplication_id="task-dedup-123"):
                    handle = cm_queue.enqueue(complex_task, "task-123")
                    result = handle.get_result()
    assert handle.workflow_id == "unique-task-123"
    assert result == "Completed task-123 as [email protected]/None"
    st = handle.get_status()
    assert st.status == "SUCCESS"
    assert (st.authenticated_user, st.authenticated_roles, st.assumed_role) == ("[email protected]", ["admin"], None)
    assert (st.queue_name, st.priority, st.queue_partition_key, st.deduplication_id) == (
        "cm_tests_tasks", 100, "admin-tasks", "task-dedup-123"
    )
    assert st.workflow_timeout_ms == 300_000
    assert st.workflow_deadline_epoch_ms is not None  # the clock started at dequeue
    assert st.workflow_deadline_epoch_ms - (st.created_at or 0) <= 300_000 + 60_000
    # Nothing leaked out of the blocks.
    assert DBOS.authenticated_user is None
    assert ident()["user"] is None


def test_combined_options_deduplicate_and_apply_to_one_workflow_only(dbos: Harness) -> None:
    GATES["held"] = threading.Event()
    try:
        first_id = wid("held")
        with DBOSContextSetAuth("ops", ["admin"]), SetWorkflowTimeout(60.0), SetWorkflowID(first_id), \
                SetEnqueueOptions(priority=5, queue_partition_key="p1", deduplication_id="dedup-A"):
            first = cm_queue.enqueue(complex_task, "held")
            # Same dedup ID while the first is active: refused.
            with pytest.raises(DBOSQueueDeduplicatedError):
                cm_queue.enqueue(complex_task, "held-again")
            # SetWorkflowID gave its ID to the first workflow only; the options and auth apply to each.
            with SetEnqueueOptions(priority=7, queue_partition_key="p2"):
                second = cm_queue.enqueue(complex_task, "free")
        assert second.workflow_id != first_id
        assert second.get_result() == "Completed free as ops/None"
        r2 = row(dbos, second.workflow_id)
        assert (r2["priority"], r2["queue_partition_key"], r2["deduplication_id"], r2["authenticated_user"]) == (
            7, "p2", None, "ops"
        )
        assert first.get_status().status in ("ENQUEUED", "PENDING")
    finally:
        GATES["held"].set()
    assert first.get_result() == "Completed held as ops/None"
    # Once the first finished, the dedup ID is free again.
    with SetEnqueueOptions(queue_partition_key="p1", deduplication_id="dedup-A"):
        assert cm_queue.enqueue(complex_task, "after").get_result() == "Completed after as None/None"


def test_nesting_restores_each_outer_value(dbos: Harness) -> None:
    outer_id, inner_id = wid("outer"), wid("inner")
    with SetWorkflowTimeout(30), DBOSContextSetAuth("a", ["x"]):
        with SetWorkflowID(outer_id):
            with SetWorkflowTimeout(None), DBOSContextSetAuth("b", ["y"]), SetWorkflowID(inner_id):
                inner = ident()
            outer = ident()  # the outer SetWorkflowID is still unused
            third = ident()  # ...now it is: a generated ID
    assert inner == {"id": inner_id, "user": "b", "roles": ["y"]}
    assert outer == {"id": outer_id, "user": "a", "roles": ["x"]}
    assert third["id"] not in (outer_id, inner_id) and third["user"] == "a"
    assert row(dbos, inner_id)["workflow_timeout_ms"] is None
    assert row(dbos, outer_id)["workflow_timeout_ms"] == 30_000
    assert row(dbos, third["id"])["workflow_timeout_ms"] == 30_000


def test_set_workflow_id_is_taken_by_the_parent_only(dbos: Harness) -> None:
    parent_id = wid("parent")
    with SetWorkflowID(parent_id):
        children = two_children()
    # Each direct child call takes two step IDs (its start and its DBOS.getResult), as in
    # DBOS 2.x, so the second child is step 3.
    assert children == [f"{parent_id}-1", f"{parent_id}-3"]


def test_context_restored_after_an_exception(dbos: Harness) -> None:
    with pytest.raises(ValueError):
        with SetWorkflowID("never-used"), DBOSContextSetAuth("z", ["z"]), SetWorkflowTimeout(5), \
                SetEnqueueOptions(priority=3):
            raise ValueError("boom")
    out = ident()
    assert out["id"] != "never-used" and out["user"] is None
    assert row(dbos, out["id"])["workflow_timeout_ms"] is None


def test_context_manager_arguments_are_validated() -> None:
    for bad in (lambda: SetWorkflowID(""), lambda: SetWorkflowTimeout(0), lambda: SetWorkflowTimeout(-1),
                lambda: SetEnqueueOptions(priority=0), lambda: SetEnqueueOptions(priority=2_147_483_648),
                lambda: SetEnqueueOptions(queue_partition_key="")):
        with pytest.raises(DBOSException):
            bad()


def test_enqueue_options_checked_against_the_queue(dbos: Harness) -> None:
    with pytest.raises(DBOSException):
        cm_queue.enqueue(ident)  # partitioned: needs a partition key
    assert dbos.backend.workflow_count() == 0
    with SetEnqueueOptions(priority=1):
        cm_plain_queue.enqueue(ident)  # a priority without priority_enabled: accepted, as in DBOS 2.x
    assert dbos.backend.workflow_count() == 1


# -- threads and asyncio tasks -------------------------------------------------------


def test_threads_see_only_their_own_context(dbos: Harness) -> None:
    barrier = threading.Barrier(3)
    results: dict[str, Any] = {}
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            workflow_id = f"{name}-{wid('thr')}"
            with SetWorkflowID(workflow_id), DBOSContextSetAuth(name, [f"role-{name}"]), SetWorkflowTimeout(42):
                barrier.wait(timeout=10)  # every block is open at the same time
                seen = (DBOS.authenticated_user, DBOS.authenticated_roles)
                barrier.wait(timeout=10)
                results[name] = (workflow_id, seen, ident())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def bystander() -> None:
        try:
            barrier.wait(timeout=10)
            seen = (DBOS.authenticated_user, DBOS.authenticated_roles)
            barrier.wait(timeout=10)
            results["bystander"] = (None, seen, ident())
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("t1", "t2")]
    threads.append(threading.Thread(target=bystander))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    for name in ("t1", "t2"):
        workflow_id, seen, out = results[name]
        assert seen == (name, [f"role-{name}"])
        assert out == {"id": workflow_id, "user": name, "roles": [f"role-{name}"]}
        assert row(dbos, workflow_id)["workflow_timeout_ms"] == 42_000
    _, seen, out = results["bystander"]
    assert seen == (None, None)
    assert out["user"] is None and not out["id"].startswith(("t1-", "t2-"))
    assert row(dbos, out["id"])["workflow_timeout_ms"] is None


def test_asyncio_tasks_see_only_their_own_context(dbos: Harness) -> None:
    async def task(name: str, delay: float) -> tuple[str, Any, Any]:
        workflow_id = f"{name}-{wid('task')}"
        with SetWorkflowID(workflow_id), DBOSContextSetAuth(name, [name.upper()]):
            await asyncio.sleep(0.01)  # let the other task enter its blocks
            seen = (DBOS.authenticated_user, DBOS.authenticated_roles)
            out = await ident_async(delay)
        return workflow_id, seen, out

    async def main() -> list[tuple[str, Any, Any]]:
        results = await asyncio.gather(task("alpha", 0.05), task("beta", 0.0), task("gamma", 0.02))
        assert DBOS.authenticated_user is None  # the tasks' blocks did not touch main's context
        return list(results)

    for (workflow_id, seen, out), name in zip(asyncio.run(main()), ("alpha", "beta", "gamma")):
        assert seen == (name, [name.upper()])
        assert out == {"id": workflow_id, "user": name, "roles": [name.upper()]}


def test_async_enqueue_under_combined_context(dbos: Harness) -> None:
    async def main() -> tuple[str, str]:
        with DBOSContextSetAuth("async-user", ["r"]), SetWorkflowID("async-enqueued-1"), \
                SetEnqueueOptions(priority=2, queue_partition_key="k"):
            handle = await cm_queue.enqueue_async(complex_task, "async-1")
        return handle.workflow_id, await handle.get_result()

    workflow_id, result = asyncio.run(main())
    assert (workflow_id, result) == ("async-enqueued-1", "Completed async-1 as async-user/None")
    r = row(dbos, workflow_id)
    assert (r["priority"], r["queue_partition_key"], r["authenticated_user"]) == (2, "k", "async-user")


def test_logger_is_a_standard_logger() -> None:
    assert isinstance(DBOS.logger, logging.Logger)
    assert DBOS.logger.name == "dbos"
