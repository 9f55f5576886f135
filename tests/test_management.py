"""Workflow management (issue 5), in one process, on PostgreSQL and SQLite.

list_workflows (every filter, every field of WorkflowStatus), list_queued_workflows,
list_workflow_steps, cancel_workflow (enqueued, running, waiting in sleep / recv /
get_event), resume_workflow (CANCELLED, ENQUEUED behind a blocked queue,
RETRIES_EXCEEDED), fork_workflow, the async variants and the DBOSClient methods.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Optional

import pytest
from conftest import APP_VERSION, Backend, Harness, eventually
from mgmt_helpers import Counter, now_ms, rfc3339, wait_status

from dbos import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSClient,
    DBOSConfiguredInstance,
    DBOSContextSetAuth,
    DBOSException,
    DBOSMaxRecoveryAttemptsExceededError,
    DBOSNonExistentWorkflowError,
    DBOSWorkflowCancelledError,
    Queue,
    SetWorkflowID,
    SetWorkflowTimeout,
    StepInfo,
    WorkflowHandleAsync,
    WorkflowStatus,
)

# Queues are process-wide declarations; each test runs on its own database.
SERIAL = Queue("mgmt_serial", concurrency=1, polling_interval_sec=0.1)
OTHER_Q = Queue("mgmt_other", polling_interval_sec=0.1)
INTERNAL = "_dbos_internal_queue"


@DBOS.dbos_class()
class Mgmt(DBOSConfiguredInstance):
    def __init__(self, config_name: str, factor: int) -> None:
        super().__init__(config_name)
        self.factor = factor

    @DBOS.workflow()
    def scaled(self, x: int) -> int:
        return x * self.factor


MGMT_INSTANCE = Mgmt("mgmt-by-three", 3)


def _gate() -> tuple[threading.Event, threading.Event]:
    return threading.Event(), threading.Event()


# -- list_workflows: fields -----------------------------------------------------------


def test_list_workflows_returns_every_field(dbos: Harness, backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS__APPID", "app-42")
    dbos.restart()

    @DBOS.step()
    def double(x: int) -> int:
        return 2 * x

    @DBOS.required_roles(["admin"])
    @DBOS.workflow()
    def ok(x: int, *, label: str) -> dict[str, Any]:
        return {"label": label, "value": double(x)}

    @DBOS.workflow()
    def fails(reason: str) -> None:
        raise ValueError(f"bad: {reason}")

    before = now_ms()
    with DBOSContextSetAuth("alice", ["reader", "admin"]):
        with SetWorkflowID("fields-ok"):
            assert ok(5, label="five") == {"label": "five", "value": 10}
    with SetWorkflowID("fields-err"):
        with pytest.raises(ValueError, match="bad: boom"):
            fails("boom")
    with SetWorkflowID("fields-class"):
        assert MGMT_INSTANCE.scaled(4) == 12
    after = now_ms()

    statuses = {s.workflow_id: s for s in DBOS.list_workflows()}
    assert set(statuses) == {"fields-ok", "fields-err", "fields-class"}
    s = statuses["fields-ok"]
    assert isinstance(s, WorkflowStatus)
    assert s.status == "SUCCESS"
    assert s.name == "test_list_workflows_returns_every_field.<locals>.ok"
    assert s.recovery_attempts == 1
    assert s.class_name is None and s.config_name is None
    assert s.authenticated_user == "alice"
    assert s.authenticated_roles == ["reader", "admin"]
    assert s.assumed_role == "admin"
    assert s.input is not None
    assert tuple(s.input["args"]) == (5,) and s.input["kwargs"] == {"label": "five"}
    assert s.output == {"label": "five", "value": 10}
    assert s.error is None
    assert s.created_at is not None and s.updated_at is not None
    assert before <= s.created_at <= s.updated_at <= after  # epoch milliseconds
    assert s.queue_name is None
    assert s.executor_id == "local"
    assert s.app_version == APP_VERSION
    assert s.app_id == "app-42"
    assert s.workflow_deadline_epoch_ms is None

    e = statuses["fields-err"]
    assert e.status == "ERROR"
    assert e.output is None
    assert isinstance(e.error, ValueError) and str(e.error) == "bad: boom"
    assert e.input is not None and tuple(e.input["args"]) == ("boom",)
    assert e.authenticated_user is None and e.authenticated_roles is None and e.assumed_role is None

    c = statuses["fields-class"]
    assert c.class_name == "Mgmt" and c.config_name == "mgmt-by-three"
    assert c.name == "Mgmt.scaled"
    assert c.output == 12

    # Enqueued workflows carry their queue; load_input/load_output=False skip the values.
    handle = OTHER_Q.enqueue(double_wf, 3)
    assert handle.get_result() == 6
    q = DBOS.list_workflows(workflow_ids=[handle.workflow_id])[0]
    assert q.queue_name == "mgmt_other" and q.status == "SUCCESS" and q.output == 6
    bare = DBOS.list_workflows(workflow_ids=[handle.workflow_id], load_input=False, load_output=False)[0]
    assert bare.input is None and bare.output is None and bare.status == "SUCCESS"


@DBOS.workflow()
def double_wf(x: int) -> int:
    return 2 * x


# -- list_workflows: filters ----------------------------------------------------------


def _populate(dbos: Harness) -> dict[str, Any]:
    """Seven finished workflows with distinct names, users, versions, statuses and times."""

    @DBOS.workflow(name="mgmt-alpha")
    def alpha(i: int) -> int:
        return i

    @DBOS.workflow(name="mgmt-beta")
    def beta(i: int) -> int:
        if i < 0:
            raise RuntimeError("negative")
        return i

    created: dict[str, int] = {}

    def run(workflow_id: str, fn: Any, arg: int, user: Optional[str] = None) -> None:
        with DBOSContextSetAuth(user, ["r"] if user else None):
            with SetWorkflowID(workflow_id):
                try:
                    fn(arg)
                except RuntimeError:
                    pass
        created[workflow_id] = DBOS.list_workflows(workflow_ids=[workflow_id])[0].created_at or 0
        time.sleep(0.01)  # distinct created_at milliseconds

    run("f-a1", alpha, 1, "alice")
    run("f-a2", alpha, 2, "bob")
    run("f-b1", beta, 1, "alice")
    run("f-b2", beta, -1)
    dbos.restart(application_version="v-other")
    run("f-a3", alpha, 3, "carol")
    run("x_%pct", alpha, 4)  # LIKE wildcards in the ID
    run("xy-plain", alpha, 5)
    return created


def _ids(statuses: list[WorkflowStatus]) -> list[str]:
    return [s.workflow_id for s in statuses]


def test_list_workflows_each_filter(dbos: Harness, backend: Backend) -> None:
    created = _populate(dbos)
    order = ["f-a1", "f-a2", "f-b1", "f-b2", "f-a3", "x_%pct", "xy-plain"]
    assert _ids(DBOS.list_workflows()) == order  # ascending by creation time by default
    assert _ids(DBOS.list_workflows(sort_desc=True)) == order[::-1]

    # workflow_ids
    assert _ids(DBOS.list_workflows(workflow_ids=["f-b1", "f-a1", "nope"])) == ["f-a1", "f-b1"]
    assert DBOS.list_workflows(workflow_ids=[]) == []
    # status (one, or several)
    assert _ids(DBOS.list_workflows(status="ERROR")) == ["f-b2"]
    assert _ids(DBOS.list_workflows(status=["ERROR", "SUCCESS"])) == order
    assert DBOS.list_workflows(status="CANCELLED") == []
    # start_time / end_time (RFC 3339; inclusive bounds on created_at)
    start = rfc3339(created["f-b1"])
    end = rfc3339(created["f-a3"])
    assert _ids(DBOS.list_workflows(start_time=start)) == order[2:]
    assert _ids(DBOS.list_workflows(end_time=end)) == order[:5]
    assert _ids(DBOS.list_workflows(start_time=start, end_time=end)) == ["f-b1", "f-b2", "f-a3"]
    # the same instants with a numeric offset instead of Z
    offset_start = start.replace("Z", "+00:00")
    assert _ids(DBOS.list_workflows(start_time=offset_start)) == order[2:]
    assert DBOS.list_workflows(start_time="2999-01-01T00:00:00Z") == []
    # name
    assert _ids(DBOS.list_workflows(name="mgmt-beta")) == ["f-b1", "f-b2"]
    assert DBOS.list_workflows(name="mgmt-gamma") == []
    # app_version
    assert _ids(DBOS.list_workflows(app_version=APP_VERSION)) == order[:4]
    assert _ids(DBOS.list_workflows(app_version="v-other")) == order[4:]
    # user (set with DBOSContextSetAuth)
    assert _ids(DBOS.list_workflows(user="alice")) == ["f-a1", "f-b1"]
    assert _ids(DBOS.list_workflows(user="carol")) == ["f-a3"]
    assert DBOS.list_workflows(user="nobody") == []
    # limit / offset / sort_desc
    assert _ids(DBOS.list_workflows(limit=2)) == order[:2]
    assert _ids(DBOS.list_workflows(limit=2, offset=2)) == order[2:4]
    assert _ids(DBOS.list_workflows(limit=3, sort_desc=True)) == order[::-1][:3]
    assert _ids(DBOS.list_workflows(offset=5)) == order[5:]
    assert DBOS.list_workflows(limit=0) == []
    # workflow_id_prefix (LIKE wildcards in the prefix are literal)
    assert _ids(DBOS.list_workflows(workflow_id_prefix="f-a")) == ["f-a1", "f-a2", "f-a3"]
    assert _ids(DBOS.list_workflows(workflow_id_prefix="x_")) == ["x_%pct"]
    assert _ids(DBOS.list_workflows(workflow_id_prefix="x_%")) == ["x_%pct"]
    assert _ids(DBOS.list_workflows(workflow_id_prefix="x")) == ["x_%pct", "xy-plain"]
    assert DBOS.list_workflows(workflow_id_prefix="%") == []
    # filters combine
    assert _ids(DBOS.list_workflows(name="mgmt-alpha", user="alice", app_version=APP_VERSION)) == ["f-a1"]
    assert _ids(
        DBOS.list_workflows(name="mgmt-alpha", start_time=start, sort_desc=True, limit=2)
    ) == ["xy-plain", "x_%pct"]


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"start_time": "yesterday"}, "start_time"),
        ({"end_time": "2024-13-45T99:00:00Z"}, "end_time"),
        ({"start_time": "2024-01-01T00:00:00Zjunk"}, "start_time"),
        ({"end_time": 1700000000}, "end_time"),
        ({"status": "DONE"}, "status"),
        ({"limit": -1}, "limit"),
        ({"offset": "3"}, "offset"),
        ({"workflow_ids": "just-one-id"}, "workflow_ids"),
    ],
)
def test_list_workflows_rejects_malformed_filters(dbos: Harness, kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(DBOSException) as info:
        DBOS.list_workflows(**kwargs)
    message = str(info.value)
    assert fragment in message
    if "time" in fragment:
        assert "RFC 3339" in message


def test_rfc3339_accepts_the_usual_spellings(dbos: Harness) -> None:
    for value in ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.123Z", "2024-05-01T12:00:00+02:00",
                  "2024-05-01T10:00:00.123456+00:00", "2024-05-01t10:00:00z"):
        assert DBOS.list_workflows(start_time=value, end_time=value) == []


# -- list_queued_workflows ---------------------------------------------------------------


def test_list_queued_workflows(dbos: Harness, backend: Backend) -> None:
    entered, release = _gate()

    @DBOS.workflow()
    def blocker() -> str:
        entered.set()
        assert release.wait(120)
        return "done"

    @DBOS.workflow(name="mgmt-queued-item")
    def item(i: int) -> int:
        return i

    try:
        with SetWorkflowID("q-blocker"):
            SERIAL.enqueue(blocker)
        assert entered.wait(10)
        ids = []
        for i in range(4):
            with SetWorkflowID(f"q-item-{i}"):
                ids.append(SERIAL.enqueue(item, i).workflow_id)
                time.sleep(0.005)
        with SetWorkflowID("q-other"):
            OTHER_Q.enqueue(blocker)
        eventually(lambda: backend.status("q-other") == "PENDING")
        with SetWorkflowID("not-queued"):
            double_wf(1)

        queued = DBOS.list_queued_workflows()
        assert _ids(queued) == ["q-blocker", *ids, "q-other"]
        by_id = {s.workflow_id: s for s in queued}
        assert by_id["q-blocker"].status == "PENDING" and by_id["q-blocker"].executor_id == "local"
        assert by_id["q-item-0"].status == "ENQUEUED" and by_id["q-item-0"].queue_name == "mgmt_serial"
        assert by_id["q-item-2"].input is not None and tuple(by_id["q-item-2"].input["args"]) == (2,)
        assert _ids(DBOS.list_queued_workflows(queue_name="mgmt_serial")) == ["q-blocker", *ids]
        assert _ids(DBOS.list_queued_workflows(queue_name="mgmt_other")) == ["q-other"]
        assert _ids(DBOS.list_queued_workflows(status="PENDING")) == ["q-blocker", "q-other"]
        assert _ids(DBOS.list_queued_workflows(status="ENQUEUED")) == ids
        assert _ids(DBOS.list_queued_workflows(name="mgmt-queued-item")) == ids
        assert _ids(DBOS.list_queued_workflows(queue_name="mgmt_serial", limit=2, offset=1)) == ids[:2]
        assert _ids(DBOS.list_queued_workflows(queue_name="mgmt_serial", sort_desc=True)) == [*ids[::-1], "q-blocker"]
        start = rfc3339(by_id["q-item-2"].created_at or 0)
        assert _ids(DBOS.list_queued_workflows(start_time=start)) == [*ids[2:], "q-other"]
        assert _ids(DBOS.list_queued_workflows(end_time=start, queue_name="mgmt_serial")) == ["q-blocker", *ids[:3]]
        with pytest.raises(DBOSException, match="status"):
            DBOS.list_queued_workflows(status="SUCCESS")
        with pytest.raises(DBOSException, match="RFC 3339"):
            DBOS.list_queued_workflows(start_time="not a time")
    finally:
        release.set()
    for i in range(4):
        assert DBOS.retrieve_workflow(f"q-item-{i}").get_result() == i
    eventually(lambda: DBOS.list_queued_workflows() == [], what="(queue drained)")
    assert backend.status("q-other") == "SUCCESS"


# -- list_workflow_steps -----------------------------------------------------------------


def test_list_workflow_steps(dbos: Harness) -> None:
    @DBOS.step()
    def plus_one(x: int) -> int:
        return x + 1

    @DBOS.step()
    def broken() -> None:
        raise KeyError("missing")

    @DBOS.workflow()
    def child(x: int) -> str:
        return f"child-{x}"

    @DBOS.workflow()
    def parent(x: int) -> list[Any]:
        out: list[Any] = [plus_one(x)]
        try:
            broken()
        except KeyError:
            out.append("caught")
        out.append(child(x))  # a direct call: a step holding the child's ID, then its getResult
        handle = DBOS.start_workflow(child, x + 1)  # start_workflow: one step
        out.append(handle.get_result())  # getResult: one step naming the child
        DBOS.sleep(0.01)
        return out

    with SetWorkflowID("steps-parent"):
        assert parent(1) == [2, "caught", "child-1", "child-2"]
    steps = DBOS.list_workflow_steps("steps-parent")
    assert all(isinstance(s, dict) for s in steps)
    assert [s["function_id"] for s in steps] == [1, 2, 3, 4, 5, 6, 7]  # DBOS 2.x's numbers
    names = [s["function_name"] for s in steps]
    prefix = "test_list_workflow_steps.<locals>."
    assert names == [prefix + "plus_one", prefix + "broken", prefix + "child", "DBOS.getResult", prefix + "child",
                     "DBOS.getResult", "DBOS.sleep"]
    first: StepInfo = steps[0]
    assert first["output"] == 2 and first["error"] is None and first["child_workflow_id"] is None
    assert steps[1]["output"] is None and isinstance(steps[1]["error"], KeyError)
    assert steps[2]["child_workflow_id"] == "steps-parent-3"
    assert steps[3]["child_workflow_id"] == "steps-parent-3" and steps[3]["output"] == "child-1"
    assert steps[4]["child_workflow_id"] == "steps-parent-5"
    assert steps[5]["child_workflow_id"] == "steps-parent-5" and steps[5]["output"] == "child-2"
    assert steps[6]["child_workflow_id"] is None
    assert DBOS.list_workflow_steps("steps-parent-3") == []
    assert DBOS.list_workflow_steps("no-such-workflow") == []


# -- cancel_workflow -------------------------------------------------------------------


def test_cancel_an_enqueued_workflow_removes_it_from_its_queue(dbos: Harness, backend: Backend) -> None:
    entered, release = _gate()
    counter = Counter()

    @DBOS.workflow()
    def blocker() -> None:
        entered.set()
        assert release.wait(120)

    @DBOS.workflow()
    def victim(tag: str) -> str:
        counter.hit(tag)
        return tag

    try:
        SERIAL.enqueue(blocker)
        assert entered.wait(10)
        with SetWorkflowID("enq-victim"):
            h = SERIAL.enqueue(victim, "victim")
        after = SERIAL.enqueue(victim, "after")
        DBOS.cancel_workflow("enq-victim")
        assert backend.status("enq-victim") == "CANCELLED"
        assert "enq-victim" not in _ids(DBOS.list_queued_workflows())
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            h.get_result()
    finally:
        release.set()
    assert after.get_result() == "after"  # the queue moved on past the cancelled one
    assert counter["victim"] == 0
    assert backend.status("enq-victim") == "CANCELLED"
    assert h.get_status().status == "CANCELLED"


def test_cancel_a_running_workflow_preempts_it_at_its_next_step(dbos: Harness, backend: Backend) -> None:
    entered, release = _gate()
    counter = Counter()

    @DBOS.step()
    def first() -> None:
        counter.hit("first")

    @DBOS.step()
    def slow() -> str:
        counter.hit("slow")
        entered.set()
        assert release.wait(120)
        return "slow-done"

    @DBOS.step()
    def third() -> None:
        counter.hit("third")

    @DBOS.workflow()
    def wf() -> None:
        first()
        slow()
        third()

    with SetWorkflowID("run-victim"):
        handle = DBOS.start_workflow(wf)
    assert entered.wait(10)
    DBOS.cancel_workflow("run-victim")
    assert backend.status("run-victim") == "CANCELLED"
    release.set()  # the step in progress finishes; the next one never starts
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    eventually(lambda: len(DBOS.list_workflow_steps("run-victim")) == 2)
    time.sleep(0.3)
    assert counter["third"] == 0 and counter["slow"] == 1
    assert [s["output"] for s in DBOS.list_workflow_steps("run-victim")] == [None, "slow-done"]
    assert backend.status("run-victim") == "CANCELLED"


@pytest.mark.parametrize("wait_kind", ["sleep", "recv", "get_event", "sleep_async", "recv_async", "get_event_async"])
def test_cancel_wakes_a_waiting_workflow_at_once(dbos: Harness, backend: Backend, wait_kind: str) -> None:
    counter = Counter()

    @DBOS.step()
    def after_wait() -> None:
        counter.hit("after")

    @DBOS.workflow()
    def waiter() -> Any:
        counter.hit("started")
        if wait_kind == "sleep":
            DBOS.sleep(60)
        elif wait_kind == "recv":
            DBOS.recv("topic", timeout_seconds=60)
        else:
            DBOS.get_event("nobody-sets-this", "key", timeout_seconds=60)
        after_wait()

    @DBOS.step()
    async def after_wait_async() -> None:
        counter.hit("after")

    @DBOS.workflow()
    async def waiter_async() -> Any:
        if wait_kind == "sleep_async":
            await DBOS.sleep_async(60)
        elif wait_kind == "recv_async":
            await DBOS.recv_async("topic", timeout_seconds=60)
        else:
            await DBOS.get_event_async("nobody-sets-this", "key", timeout_seconds=60)
        await after_wait_async()

    with SetWorkflowID(f"wait-{wait_kind}"):
        if wait_kind.endswith("_async"):
            handle: Any = DBOS.start_workflow(waiter_async)
        else:
            handle = DBOS.start_workflow(waiter)
    eventually(lambda: len(DBOS.list_workflow_steps(handle.workflow_id)) == 1)  # the wait's deadline
    start = time.monotonic()
    DBOS.cancel_workflow(handle.workflow_id)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    # The execution itself has stopped (not just the status): its thread left the wait.
    from dbos._api.instance import runtime

    eventually(lambda: runtime().local(handle.workflow_id) is None, timeout=5, interval=0.005)
    elapsed = time.monotonic() - start
    assert elapsed < 2.0, f"the {wait_kind} was not woken by the cancellation ({elapsed:.2f}s)"
    assert counter["after"] == 0
    assert backend.status(handle.workflow_id) == "CANCELLED"


@pytest.mark.parametrize("trigger", ["cancel", "timeout"])
@pytest.mark.parametrize("how", ["handle", "retrieve", "async"])
def test_a_workflow_awaiting_another_stops_when_it_is_cancelled(
    dbos: Harness, backend: Backend, trigger: str, how: str
) -> None:
    """A parent blocked in get_result on a long child stops at once when the parent is
    cancelled or reaches its own timeout: the child keeps running, nothing is recorded
    for the interrupted wait, and a resumed parent waits again and gets the result."""
    from dbos._api.instance import runtime
    from dbos._wakeups.local import workflow_done

    seen: dict[str, BaseException] = {}
    stopped = threading.Event()

    @DBOS.workflow()
    def child() -> str:
        return f"child:{DBOS.recv('go', timeout_seconds=30)}"

    @DBOS.workflow()
    async def child_async() -> str:
        return f"child:{await DBOS.recv_async('go', timeout_seconds=30)}"

    @DBOS.workflow()
    def parent(child_id: str) -> str:
        try:
            with SetWorkflowID(child_id), SetWorkflowTimeout(None):  # the child outlives the parent
                handle = DBOS.start_workflow(child)
            if how == "retrieve":
                return DBOS.retrieve_workflow(child_id).get_result()
            return handle.get_result()
        except BaseException as e:
            seen["error"] = e
            raise
        finally:
            stopped.set()

    @DBOS.workflow()
    async def parent_async(child_id: str) -> str:
        try:
            with SetWorkflowID(child_id), SetWorkflowTimeout(None):
                handle = await DBOS.start_workflow_async(child_async)
            return await handle.get_result()
        except BaseException as e:
            seen["error"] = e
            raise
        finally:
            stopped.set()

    parent_id, child_id = f"await-{trigger}-{how}", f"await-{trigger}-{how}-child"
    start = time.monotonic()
    with SetWorkflowID(parent_id), SetWorkflowTimeout(1 if trigger == "timeout" else None):
        handle: Any = DBOS.start_workflow(parent_async if how == "async" else parent, child_id)
    # The parent is in get_result (waiting for the child's "done" wakeup), the child in recv.
    eventually(lambda: runtime().wakeups.local.has_waiters(workflow_done(child_id)), interval=0.005)
    eventually(lambda: len(DBOS.list_workflow_steps(child_id)) == 1)
    if trigger == "cancel":
        start = time.monotonic()
        DBOS.cancel_workflow(parent_id)
    assert stopped.wait(5), "the parent's get_result was not woken"
    elapsed = time.monotonic() - start
    limit = 2.0 if trigger == "cancel" else 3.0  # the timeout case counts its 1 s deadline
    assert elapsed < limit, f"the parent stopped {elapsed:.2f}s after its {trigger}"
    assert isinstance(seen["error"], DBOSWorkflowCancelledError), repr(seen["error"])
    eventually(lambda: runtime().local(parent_id) is None, timeout=2, interval=0.005)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert backend.status(parent_id) == "CANCELLED"
    assert backend.status(child_id) == "PENDING"  # only the awaiting workflow was cancelled
    assert "DBOS.getResult" not in [name for _, name in backend.steps(parent_id)]

    if trigger == "cancel":
        stopped.clear()
        resumed = DBOS.resume_workflow(parent_id)
        eventually(lambda: runtime().wakeups.local.has_waiters(workflow_done(child_id)), interval=0.005)
        DBOS.send(child_id, "go", "go")
        assert resumed.get_result() == "child:go"
        assert "DBOS.getResult" in [name for _, name in backend.steps(parent_id)]
    else:
        DBOS.send(child_id, "go", "go")
        assert DBOS.retrieve_workflow(child_id).get_result() == "child:go"


def test_cancel_unknown_or_finished_workflow(dbos: Harness, backend: Backend) -> None:
    DBOS.cancel_workflow("no-such-workflow")  # as in DBOS Transact 2.x: nothing to do, no error
    with SetWorkflowID("already-done"):
        assert double_wf(2) == 4
    DBOS.cancel_workflow("already-done")  # a finished workflow keeps its outcome
    assert backend.status("already-done") == "SUCCESS"
    assert DBOS.retrieve_workflow("already-done").get_result() == 4


# -- resume_workflow -----------------------------------------------------------------


def test_resume_a_cancelled_workflow_from_its_last_completed_step(dbos: Harness, backend: Backend) -> None:
    entered, release = _gate()
    counter = Counter()

    @DBOS.step()
    def one() -> int:
        counter.hit("one")
        return 1

    @DBOS.step()
    def two() -> int:
        counter.hit("two")
        if counter["two"] == 1:
            entered.set()
            assert release.wait(120)
        return 2

    @DBOS.step()
    def three() -> int:
        counter.hit("three")
        return 3

    @DBOS.workflow()
    def wf(base: int) -> int:
        return base + one() + two() + three()

    with SetWorkflowID("resume-me"):
        handle = DBOS.start_workflow(wf, 100)
    assert entered.wait(10)
    DBOS.cancel_workflow("resume-me")
    release.set()
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    eventually(lambda: len(DBOS.list_workflow_steps("resume-me")) == 2)
    assert backend.status("resume-me") == "CANCELLED"

    resumed = DBOS.resume_workflow("resume-me")
    assert resumed.workflow_id == "resume-me"
    assert resumed.get_result() == 106
    assert (counter["one"], counter["two"], counter["three"]) == (1, 1, 1)
    status = resumed.get_status()
    assert status.status == "SUCCESS"
    assert status.recovery_attempts == 1  # reset by the resume, then one execution
    assert [s["function_id"] for s in DBOS.list_workflow_steps("resume-me")] == [1, 2, 3]
    # Resuming a finished workflow changes nothing and returns its outcome.
    assert DBOS.resume_workflow("resume-me").get_result() == 106
    assert counter["three"] == 1


def test_resume_an_enqueued_workflow_bypasses_its_blocked_queue(dbos: Harness, backend: Backend) -> None:
    entered, release = _gate()
    counter = Counter()

    @DBOS.workflow()
    def long_blocker() -> None:
        entered.set()
        assert release.wait(120)

    @DBOS.workflow()
    def urgent(x: int) -> int:
        counter.hit("urgent")
        return x * 10

    try:
        blocker_handle = SERIAL.enqueue(long_blocker)
        assert entered.wait(10)
        with SetWorkflowID("urgent-1"):
            handle = SERIAL.enqueue(urgent, 7)
        time.sleep(0.3)
        assert backend.status("urgent-1") == "ENQUEUED"
        start = time.monotonic()
        resumed = DBOS.resume_workflow("urgent-1")
        assert resumed.get_result() == 70  # while the blocker still holds the queue
        assert time.monotonic() - start < 5
        assert backend.status(blocker_handle.workflow_id) == "PENDING"
        assert handle.get_result() == 70
        assert counter["urgent"] == 1
    finally:
        release.set()
    blocker_handle.get_result()
    time.sleep(0.3)
    assert counter["urgent"] == 1  # not run a second time by its original queue


def test_resume_after_retries_exceeded(dbos: Harness, backend: Backend) -> None:
    counter = Counter()

    @DBOS.step()
    def once() -> str:
        counter.hit("once")
        return "first"

    @DBOS.step()
    def then() -> str:
        counter.hit("then")
        return "second"

    @DBOS.workflow(max_recovery_attempts=2)
    def fragile() -> str:
        return once() + "+" + then()

    with SetWorkflowID("fragile-1"):
        assert fragile() == "first+second"
    # Make it look like an execution that crashed after step 1 more times than allowed.
    backend.force_pending("fragile-1")
    backend.delete_steps_from("fragile-1", 2)
    backend.execute(f"UPDATE {backend.table('workflow_status')} SET recovery_attempts = 3 "
                    "WHERE workflow_uuid = 'fragile-1'")
    dbos.restart()  # recovery counts one more attempt: past the limit
    wait_status(backend, "fragile-1", "RETRIES_EXCEEDED")
    with pytest.raises(DBOSMaxRecoveryAttemptsExceededError):
        DBOS.retrieve_workflow("fragile-1").get_result()
    assert counter["then"] == 1

    handle = DBOS.resume_workflow("fragile-1")
    assert handle.get_result() == "first+second"
    assert counter["once"] == 1 and counter["then"] == 2
    status = handle.get_status()
    assert status.status == "SUCCESS" and status.recovery_attempts == 1


def test_resume_unknown_workflow_raises(dbos: Harness) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.resume_workflow("no-such-workflow")


# -- fork_workflow ----------------------------------------------------------------------


def _three_step_workflow(counter: Counter) -> Any:
    @DBOS.step()
    def s1(x: int) -> int:
        counter.hit("s1")
        return x + 1

    @DBOS.step()
    def s2(x: int) -> int:
        counter.hit("s2")
        return x * 2

    @DBOS.step()
    def s3(x: int) -> int:
        counter.hit("s3")
        return x - 3

    @DBOS.workflow()
    def forkable(x: int, *, tag: str = "") -> str:
        counter.hit("body")
        return f"{tag}{s3(s2(s1(x)))}"

    return forkable


def test_fork_copies_steps_before_start_step(dbos: Harness, backend: Backend) -> None:
    counter = Counter()
    forkable = _three_step_workflow(counter)
    with SetWorkflowID("fork-src"):
        assert forkable(5, tag="r=") == "r=9"
    assert (counter["s1"], counter["s2"], counter["s3"]) == (1, 1, 1)

    handle = DBOS.fork_workflow("fork-src", 3)
    assert handle.workflow_id != "fork-src"
    assert handle.get_result() == "r=9"  # same inputs
    assert (counter["s1"], counter["s2"], counter["s3"]) == (1, 1, 2)
    status = handle.get_status()
    assert status.status == "SUCCESS"
    assert status.input is not None and tuple(status.input["args"]) == (5,)
    assert status.input["kwargs"] == {"tag": "r="}
    assert status.app_version == APP_VERSION
    assert status.forked_from == "fork-src"
    assert [s["function_id"] for s in DBOS.list_workflow_steps(handle.workflow_id)] == [1, 2, 3]

    with SetWorkflowID("fork-chosen-id"):
        chosen = DBOS.fork_workflow("fork-src", 1)
    assert chosen.workflow_id == "fork-chosen-id"
    assert chosen.get_result() == "r=9"
    assert (counter["s1"], counter["s2"], counter["s3"]) == (2, 2, 3)

    # start_step = last recorded + 1: every step copied, nothing re-runs.
    tail = DBOS.fork_workflow("fork-src", 4)
    assert tail.get_result() == "r=9"
    assert (counter["s1"], counter["s2"], counter["s3"]) == (2, 2, 3)
    # The source is untouched.
    assert backend.status("fork-src") == "SUCCESS"
    assert len(DBOS.list_workflow_steps("fork-src")) == 3


def test_fork_errors(dbos: Harness, backend: Backend) -> None:
    counter = Counter()
    forkable = _three_step_workflow(counter)
    with SetWorkflowID("fork-err-src"):
        forkable(1)
    with pytest.raises(DBOSException, match="start_step"):
        DBOS.fork_workflow("fork-err-src", "2")  # type: ignore[arg-type]
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.fork_workflow("no-such-workflow", 1)
    with SetWorkflowID("fork-err-src"):  # an ID that exists
        with pytest.raises(DBOSException, match="exists"):
            DBOS.fork_workflow("fork-err-src", 1)
    assert backend.workflow_count() == 1  # no half-made fork left behind


def test_fork_past_the_last_step_or_at_zero_is_accepted(dbos: Harness, backend: Backend) -> None:
    """As in DBOS 2.x: past the last recorded step, the fork replays everything to the
    same result (no step runs again); at 0 or below, it re-runs from the first step."""
    counter = Counter()
    forkable = _three_step_workflow(counter)
    with SetWorkflowID("fork-edge-src"):
        first = forkable(1)
    before = (counter["s1"], counter["s2"], counter["s3"])
    assert DBOS.fork_workflow("fork-edge-src", 9).get_result() == first
    assert (counter["s1"], counter["s2"], counter["s3"]) == before
    assert DBOS.fork_workflow("fork-edge-src", 0).get_result() == first
    assert (counter["s1"], counter["s2"], counter["s3"]) == tuple(n + 1 for n in before)


def test_fork_of_a_workflow_with_a_child_reuses_the_child(dbos: Harness) -> None:
    counter = Counter()

    @DBOS.workflow()
    def kid(x: int) -> int:
        counter.hit("kid")
        return x + 100

    @DBOS.step()
    def tail(x: int) -> int:
        counter.hit("tail")
        return x

    @DBOS.workflow()
    def mom(x: int) -> int:
        return tail(kid(x))

    with SetWorkflowID("mom"):
        assert mom(1) == 101
    fork = DBOS.fork_workflow("mom", 2)
    assert fork.get_result() == 101
    assert counter["kid"] == 1 and counter["tail"] == 2
    assert DBOS.list_workflow_steps(fork.workflow_id)[0]["child_workflow_id"] == "mom-1"


def test_fork_to_another_app_version_waits_for_an_executor_of_it(dbos: Harness, backend: Backend) -> None:
    counter = Counter()
    forkable = _three_step_workflow(counter)
    with SetWorkflowID("fork-v-src"):
        forkable(2)
    handle = DBOS.fork_workflow("fork-v-src", 2, application_version="v-next")
    time.sleep(1.0)
    status = handle.get_status()
    assert status.status == "ENQUEUED" and status.app_version == "v-next" and status.executor_id is None
    assert counter["s2"] == 1
    dbos.restart(application_version="v-next")
    assert handle.get_result() == "3"
    assert counter["s1"] == 1 and counter["s2"] == 2


# -- async variants --------------------------------------------------------------------


def test_async_management_variants(dbos: Harness, backend: Backend) -> None:
    entered, release = _gate()
    counter = Counter()

    @DBOS.step()
    def step_a() -> str:
        counter.hit("a")
        return "a"

    @DBOS.step()
    def step_b() -> str:
        counter.hit("b")
        if counter["b"] == 1:
            entered.set()
            assert release.wait(120)
        return "b"

    @DBOS.workflow()
    async def flow(x: int) -> str:
        return f"{x}:{await asyncio.to_thread(step_a)}"

    @DBOS.workflow()
    def blocking() -> str:
        return step_a() + step_b()

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {}
        with SetWorkflowID("async-1"):
            out["direct"] = await flow(1)
        out["listed"] = _ids(await DBOS.list_workflows_async(workflow_id_prefix="async-"))
        out["steps"] = await DBOS.list_workflow_steps_async("async-1")
        fork = await DBOS.fork_workflow_async("async-1", 1)
        out["fork"] = await fork.get_result()
        with SetWorkflowID("async-block"):
            h = await DBOS.start_workflow_async(blocking)
        await asyncio.to_thread(entered.wait, 10)
        out["queued"] = _ids(await DBOS.list_queued_workflows_async())
        await DBOS.cancel_workflow_async("async-block")
        release.set()
        try:
            await h.get_result()
        except DBOSAwaitedWorkflowCancelledError:
            out["cancelled"] = True
        resumed = await DBOS.resume_workflow_async("async-block")
        out["resumed"] = await resumed.get_result()
        # retrieve_workflow_async(existing_workflow=False) returns at once; the handle's
        # get_result waits for the workflow to exist, then for its result (issue 11).
        later = await DBOS.retrieve_workflow_async("async-later", existing_workflow=False)
        waiter = asyncio.ensure_future(later.get_result())
        await asyncio.sleep(0.3)
        out["waiting"] = not waiter.done()
        with SetWorkflowID("async-later"):
            await flow(9)
        out["later"] = await waiter
        return out

    out = asyncio.run(main())
    assert out["direct"] == "1:a"
    assert out["listed"] == ["async-1"]
    assert [s["output"] for s in out["steps"]] == ["a"]
    assert out["fork"] == "1:a"
    assert out["queued"] == []  # started directly, not queued
    assert out["cancelled"] is True
    assert out["resumed"] == "ab"
    assert out["waiting"] is True and out["later"] == "9:a"
    assert counter["b"] == 1  # the in-progress step finished before the cancel; not re-run


# -- DBOSClient ---------------------------------------------------------------------------


def test_client_management_methods(dbos: Harness, backend: Backend) -> None:
    entered, release = _gate()
    counter = Counter()
    forkable = _three_step_workflow(counter)

    @DBOS.workflow()
    def blocker() -> None:
        entered.set()
        assert release.wait(120)

    with SetWorkflowID("cl-src"):
        forkable(1)
    client = DBOSClient(backend.url, polling_interval_sec=0.1)
    try:
        assert _ids(client.list_workflows(workflow_id_prefix="cl-")) == ["cl-src"]
        assert client.list_workflows(workflow_ids=["cl-src"])[0].output == "1"
        assert [s["function_id"] for s in client.list_workflow_steps("cl-src")] == [1, 2, 3]
        with SetWorkflowID("cl-fork"):
            fork = client.fork_workflow("cl-src", 2)
        assert fork.workflow_id == "cl-fork"
        assert fork.get_result() == "1"
        assert counter["s1"] == 1 and counter["s2"] == 2

        SERIAL.enqueue(blocker)
        assert entered.wait(10)
        with SetWorkflowID("cl-queued"):
            SERIAL.enqueue(double_wf, 21)
        assert "cl-queued" in _ids(client.list_queued_workflows(queue_name="mgmt_serial"))
        client.cancel_workflow("cl-queued")
        assert backend.status("cl-queued") == "CANCELLED"
        assert "cl-queued" not in _ids(client.list_queued_workflows())
        assert client.resume_workflow("cl-queued").get_result() == 42
        client.cancel_workflow("nope")  # an unknown ID: nothing to do, no error
        with pytest.raises(DBOSException, match="RFC 3339"):
            client.list_workflows(start_time="nope")
    finally:
        release.set()
        client.destroy()


def test_client_async_management_methods(dbos: Harness, backend: Backend) -> None:
    entered, release = _gate()
    counter = Counter()
    forkable = _three_step_workflow(counter)

    @DBOS.workflow()
    def blocker() -> None:
        entered.set()
        assert release.wait(120)

    with SetWorkflowID("ca-src"):
        forkable(1)
    SERIAL.enqueue(blocker)
    assert entered.wait(10)
    with SetWorkflowID("ca-queued"):
        SERIAL.enqueue(double_wf, 21)

    async def main(client: DBOSClient) -> dict[str, Any]:
        out: dict[str, Any] = {}
        out["listed"] = _ids(await client.list_workflows_async(workflow_id_prefix="ca-", sort_desc=True))
        bare = (await client.list_workflows_async(workflow_ids=["ca-src"], load_input=False))[0]
        out["bare"] = (bare.input, bare.output)
        queued = await client.list_queued_workflows_async(queue_name="mgmt_serial", status="ENQUEUED")
        out["queued"] = [(s.workflow_id, s.input) for s in queued]
        queued = await client.list_queued_workflows_async(queue_name="mgmt_serial", load_input=False)
        out["queued_bare"] = [(s.status, s.input) for s in queued]
        out["steps"] = [s["function_id"] for s in await client.list_workflow_steps_async("ca-src")]
        status = await client.get_workflow_async("ca-src")
        out["status"] = status.status if status is not None else None
        out["missing"] = await client.get_workflow_async("ca-nope")
        with SetWorkflowID("ca-fork"):
            fork = await client.fork_workflow_async("ca-src", 2)
        out["fork"] = (type(fork), fork.workflow_id, await fork.get_result())
        await client.cancel_workflow_async("ca-queued")
        out["after_cancel"] = backend.status("ca-queued")
        resumed = await client.resume_workflow_async("ca-queued")
        out["resumed"] = (type(resumed), await resumed.get_result())  # while the blocker holds the queue
        await client.cancel_workflow_async("ca-nope")  # an unknown ID: nothing to do, no error (DBOS 2.x)
        with pytest.raises(DBOSException, match="RFC 3339"):
            await client.list_workflows_async(start_time="nope")
        return out

    client = DBOSClient(backend.url, polling_interval_sec=0.1)
    try:
        out = asyncio.run(main(client))
    finally:
        release.set()
        client.destroy()
    assert out["listed"] == ["ca-queued", "ca-src"]
    assert out["bare"] == (None, "1")
    assert out["queued"] == [("ca-queued", {"args": (21,), "kwargs": {}})]
    assert out["queued_bare"] == [("PENDING", None), ("ENQUEUED", None)]
    assert out["steps"] == [1, 2, 3]
    assert out["status"] == "SUCCESS" and out["missing"] is None
    assert out["fork"] == (WorkflowHandleAsync, "ca-fork", "1")
    assert counter["s1"] == 1 and counter["s2"] == 2  # the fork re-ran from step 2
    assert out["after_cancel"] == "CANCELLED"
    assert out["resumed"] == (WorkflowHandleAsync, 42)


def test_load_input_and_load_output_are_independent(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def fails(x: int) -> None:
        raise ValueError(f"no {x}")

    with SetWorkflowID("load-ok"):
        double_wf(4)
    with SetWorkflowID("load-err"), pytest.raises(ValueError):
        fails(5)
    ids = ["load-ok", "load-err"]
    client = DBOSClient(backend.url, polling_interval_sec=0.1)
    try:
        for lister in (DBOS.list_workflows, client.list_workflows):
            full = {s.workflow_id: s for s in lister(workflow_ids=ids)}
            assert full["load-ok"].input == {"args": (4,), "kwargs": {}} and full["load-ok"].output == 8
            assert isinstance(full["load-err"].error, ValueError)
            no_input = {s.workflow_id: s for s in lister(workflow_ids=ids, load_input=False)}
            assert no_input["load-ok"].input is None and no_input["load-ok"].output == 8
            assert isinstance(no_input["load-err"].error, ValueError)
            no_output = {s.workflow_id: s for s in lister(workflow_ids=ids, load_output=False)}
            assert no_output["load-ok"].input == {"args": (4,), "kwargs": {}} and no_output["load-ok"].output is None
            assert no_output["load-err"].error is None and no_output["load-err"].input is not None
            assert {s.status for s in no_output.values()} == {"SUCCESS", "ERROR"}
    finally:
        client.destroy()
