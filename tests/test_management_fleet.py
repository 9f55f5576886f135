"""Workflow management across a fleet (issue 5): real executor processes
(tests/apps/mgmt_app.py, each with its own DBOS__VMID) on PostgreSQL with Redis,
operated from this process through DBOSClient, as an operator would.

- cancel a workflow running in another process while it is mid-step (it stops at
  its next step) and while it sleeps (it stops within a wakeup, not after the sleep);
- a timeout that cancels a tree of workflows spread over two processes;
- a fork onto application_version="v2" waits while only a v1 executor runs and
  runs once a v2 executor starts;
- resume after RETRIES_EXCEEDED (the executor was SIGKILLed too many times).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import Backend, eventually
from mgmt_helpers import REDIS_URL, Executor, marks_of, read_marks, require_redis, wait_status, wid

from dbos import DBOSAwaitedWorkflowCancelledError, DBOSClient, DBOSMaxRecoveryAttemptsExceededError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
]


class Fleet:
    def __init__(self, backend: Backend, tmp_path: Path) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self.executors: list[Executor] = []
        self.marks = tmp_path / "marks.jsonl"
        self.client = DBOSClient(backend.url, redis_url=REDIS_URL, polling_interval_sec=0.1)
        bridge = self.client.runtime.wakeups.bridge
        assert bridge is not None and bridge.connected.wait(10), "the client's Redis bridge did not connect"

    def executor(self, vmid: str, **kwargs: Any) -> Executor:
        e = Executor(self.backend, self.tmp_path, vmid, **kwargs)
        self.executors.append(e)
        return e

    def enqueue(self, workflow: str, *args: Any, queue: str = "mgmt_fleet_q", **options: Any) -> str:
        workflow_id = options.pop("workflow_id", None) or wid(workflow)
        opts: Any = {"workflow_name": workflow, "queue_name": queue, "workflow_id": workflow_id, **options}
        return self.client.enqueue(opts, *args).workflow_id

    def release(self, name: str) -> None:
        (self.tmp_path / f"release-{name}").touch()

    def marks_of(self, event: str, workflow_id: Any = None) -> list[dict[str, Any]]:
        for e in self.executors:
            if e.proc is not None:
                e.check_alive()
        return marks_of(self.marks, event, workflow_id)

    def close(self) -> None:
        for e in self.executors:
            e.stop()
        self.client.destroy()


@pytest.fixture
def fleet(backend: Backend, tmp_path: Path) -> Iterator[Fleet]:
    require_redis()
    f = Fleet(backend, tmp_path)
    try:
        yield f
    finally:
        f.close()


def test_cancel_a_workflow_mid_step_in_another_process(fleet: Fleet) -> None:
    a = fleet.executor("exec-a").start().wait_ready()
    workflow_id = fleet.enqueue("stepper", "mid")
    eventually(lambda: fleet.marks_of("long-start", workflow_id), timeout=15, what="(long step started)")
    fleet.client.cancel_workflow(workflow_id)
    assert fleet.backend.status(workflow_id) == "CANCELLED"
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        fleet.client.retrieve_workflow(workflow_id).get_result()
    time.sleep(0.5)
    assert fleet.marks_of("stopped", workflow_id) == []  # a step is never interrupted midway
    fleet.release("mid")  # the step in progress completes ...
    stopped = eventually(lambda: fleet.marks_of("stopped", workflow_id), timeout=10)
    assert stopped[0]["exc"] == "DBOSWorkflowCancelledError"  # ... and the next one never starts
    assert stopped[0]["vmid"] == "exec-a"
    assert fleet.marks_of("long-end", workflow_id) and not fleet.marks_of("three", workflow_id)
    steps = fleet.client.list_workflow_steps(workflow_id)
    assert [s["output"] for s in steps] == ["one", "long"]
    status = fleet.client.list_workflows(workflow_ids=[workflow_id])[0]
    assert status.status == "CANCELLED" and status.executor_id == "exec-a"
    a.check_alive()


@pytest.mark.parametrize("redis", [True, False], ids=["redis", "no-redis"])
def test_cancel_a_sleeping_workflow_in_another_process(fleet: Fleet, redis: bool) -> None:
    # With Redis the executor polls only every 2 s: a fast stop proves the cancel hint woke it.
    # Without Redis it must notice within one polling interval (0.2 s here).
    interval = 2.0 if redis else 0.2
    fleet.executor("exec-a", redis=redis, polling_interval_sec=interval).start().wait_ready()
    latencies = []
    for _ in range(3):
        workflow_id = fleet.enqueue("sleeper", 60.0)
        eventually(lambda w=workflow_id: fleet.marks_of("sleeping", w) and fleet.client.list_workflow_steps(w),
                   timeout=15, what="(sleeping)")
        start = time.time()
        fleet.client.cancel_workflow(workflow_id)
        stopped = eventually(lambda w=workflow_id: fleet.marks_of("stopped", w), timeout=10, interval=0.002)
        latencies.append(stopped[0]["t"] - start)
        assert stopped[0]["exc"] == "DBOSWorkflowCancelledError"
        assert fleet.marks_of("woke", workflow_id) == []
        assert fleet.backend.status(workflow_id) == "CANCELLED"
    print(f"cancel-to-stopped ({'redis' if redis else 'polling'}): {[round(x * 1000, 1) for x in latencies]} ms")
    bound = 0.5 if redis else interval + 1.0
    assert max(latencies) < bound, f"cancel-to-stopped latencies {latencies} (bound {bound}s, interval {interval}s)"


def test_timeout_cancels_a_tree_across_processes(fleet: Fleet) -> None:
    fleet.executor("exec-a").start()
    fleet.executor("exec-b").start()
    for e in fleet.executors:
        e.wait_ready()
    parent = fleet.enqueue("tree_parent", 2, queue="mgmt_parents_q", workflow_timeout=4.0)
    children = [f"{parent}-{i + 1}" for i in range(2)]  # enqueued by the parent: deterministic IDs
    grandchildren = [f"{c}-1" for c in children]
    tree = [parent, *children, *grandchildren]

    eventually(lambda: len(fleet.marks_of("grandchild-start")) == 2, timeout=15, what="(whole tree running)")
    rows = {s.workflow_id: s for s in fleet.client.list_workflows(workflow_ids=tree)}
    assert set(rows) == set(tree)
    deadline = rows[parent].workflow_deadline_epoch_ms
    assert deadline is not None
    assert all(rows[w].workflow_deadline_epoch_ms == deadline for w in tree)  # propagated
    assert rows[parent].workflow_timeout_ms == 4000
    # The two children run on different executors (worker_concurrency=1 per executor).
    assert {rows[c].executor_id for c in children} == {"exec-a", "exec-b"}
    assert all(rows[g].executor_id == rows[c].executor_id for c, g in zip(children, grandchildren))

    eventually(lambda: all(fleet.backend.status(w) == "CANCELLED" for w in tree), timeout=15,
               what="(tree cancelled)")
    stopped = eventually(lambda: (lambda m: m if {x["wf"] for x in m} >= set(tree) else None)(
        fleet.marks_of("stopped")), timeout=10, what="(every execution stopped)")
    by_wf = {m["wf"]: m for m in stopped}
    for w in tree:
        assert by_wf[w]["exc"] == "DBOSWorkflowCancelledError", by_wf[w]
        late = by_wf[w]["t"] - deadline / 1000
        assert -0.05 <= late < 2.0, f"{w} stopped {late:.2f}s after the deadline"
    assert fleet.marks_of("woke") == []
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        fleet.client.retrieve_workflow(parent).get_result()


def test_fork_onto_v2_waits_for_a_v2_executor(fleet: Fleet) -> None:
    v1 = fleet.executor("exec-v1", app_version="v1").start().wait_ready()
    source = fleet.enqueue("patchable", 10)
    assert fleet.client.retrieve_workflow(source).get_result() == "11@v1"
    assert [m["vmid"] for m in fleet.marks_of("p1", source)] == ["exec-v1"]

    fork = fleet.client.fork_workflow(source, 2, application_version="v2")
    time.sleep(2.5)  # several polls of the internal queue by the v1 executor
    status = fleet.client.list_workflows(workflow_ids=[fork.workflow_id])[0]
    assert status.status == "ENQUEUED"
    assert status.app_version == "v2"
    assert status.executor_id is None and status.recovery_attempts == 0  # never touched
    assert fleet.marks_of("p2", fork.workflow_id) == []
    queued = fleet.client.list_queued_workflows()
    assert [s.workflow_id for s in queued] == [fork.workflow_id]

    fleet.executor("exec-v2", app_version="v2").start().wait_ready()
    assert fork.get_result() == "11@v2"
    status = fleet.client.list_workflows(workflow_ids=[fork.workflow_id])[0]
    assert status.status == "SUCCESS" and status.executor_id == "exec-v2" and status.app_version == "v2"
    assert fleet.marks_of("p1", fork.workflow_id) == []  # step 1 was copied, not re-run
    assert [m["vmid"] for m in fleet.marks_of("p2", fork.workflow_id)] == ["exec-v2"]
    v1.check_alive()


def test_resume_after_retries_exceeded_across_restarts(fleet: Fleet) -> None:
    name = "fragile"
    workflow_id = fleet.enqueue("fragile", name)
    for attempt in (1, 2):  # max_recovery_attempts=1: the first run plus one recovery
        e = fleet.executor("exec-a").start()
        eventually(lambda n=attempt: len(fleet.marks_of("f2-start", workflow_id)) == n, timeout=20,
                   what=f"(attempt {attempt} reached step 2)")
        e.kill()  # SIGKILL mid-step
        fleet.executors.remove(e)
    e = fleet.executor("exec-a").start()  # the third attempt is past the limit
    wait_status(fleet.backend, workflow_id, "RETRIES_EXCEEDED")
    with pytest.raises(DBOSMaxRecoveryAttemptsExceededError):
        fleet.client.retrieve_workflow(workflow_id).get_result()
    assert len(fleet.marks_of("f2-start", workflow_id)) == 2
    assert len(fleet.marks_of("f1", workflow_id)) == 1

    fleet.release(name)
    handle = fleet.client.resume_workflow(workflow_id)
    assert handle.get_result() == "f1+f2"
    status = fleet.client.list_workflows(workflow_ids=[workflow_id])[0]
    assert status.status == "SUCCESS"
    assert status.recovery_attempts == 1  # reset by resume, then one execution
    assert len(fleet.marks_of("f1", workflow_id)) == 1  # the completed step was not re-run
    assert [m["event"] for m in read_marks(fleet.marks) if m.get("wf") == workflow_id][-1] == "f2-end"
    e.check_alive()
