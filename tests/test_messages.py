"""Messages, events and durable sleep (issue 3), on PostgreSQL with Redis, PostgreSQL
without Redis, and SQLite.

In-process tests cover the reference's semantics (FIFO per topic, topics, timeouts,
errors outside workflows, events overwritten, idempotent sends on replay, a recv
raced by a second execution, the recorded wake-up time of a sleep, the async
variants) and in-process wakes (send, set_event, completion, cancellation) that
never wait for the polling interval. Tests with a real second process
(tests/apps/messaging_app.py) cover exactly-once delivery across SIGKILL, durable
sleep across a crash, and waits (and a cancellation) woken from another process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from conftest import Backend, Harness, eventually

from dbos import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSException,
    DBOSNonExistentWorkflowError,
    SetWorkflowID,
)

REDIS_URL = os.environ.get("DBOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
APP = Path(__file__).parent / "apps" / "messaging_app.py"

# (backend, use Redis): every test here runs in these three modes.
MODES = [("postgres", True), ("postgres", False), ("sqlite", False)]
pytestmark = pytest.mark.parametrize(
    "backend, use_redis", MODES, indirect=["backend"], ids=["pg-redis", "pg", "sqlite"]
)


def _require_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as e:
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({e}); start one or point DBOS_TEST_REDIS_URL at one.",
            pytrace=False,
        )


class App:
    """The harness plus this test's mode: launch DBOS with or without Redis."""

    def __init__(self, harness: Harness, backend: Backend, redis_url: Optional[str]) -> None:
        self.harness = harness
        self.backend = backend
        self.redis_url = redis_url

    @property
    def use_redis(self) -> bool:
        return self.redis_url is not None

    def config(self, **overrides: Any) -> dict[str, Any]:
        extra: dict[str, Any] = {"redis_url": self.redis_url}
        extra.update(overrides)
        return dict(self.harness.config(**extra))

    def launch(self, **overrides: Any) -> None:
        extra: dict[str, Any] = {"redis_url": self.redis_url}
        extra.update(overrides)
        self.harness.launch(**extra)
        if self.use_redis:
            bridge_connected()

    def messages(self, destination: Optional[str] = None) -> list[tuple[str, str]]:
        """(destination, topic) of the stored (unconsumed) messages, oldest first."""
        sql = f"SELECT destination_uuid, topic FROM {self.backend.table('notifications')}"
        if destination is not None:
            sql += " WHERE destination_uuid = :d"
        rows = self.backend.rows(sql + " ORDER BY seq", d=destination)
        return [(str(r[0]), str(r[1])) for r in rows]

    def steps(self, workflow_id: str) -> list[str]:
        return [name for _, name in self.backend.steps(workflow_id)]


def bridge_connected(timeout: float = 10.0) -> None:
    from dbos._api.instance import runtime

    bridge = runtime().wakeups.bridge
    assert bridge is not None, "redis_url is set but no Redis bridge was attached"
    assert bridge.connected.wait(timeout), "the Redis bridge did not connect"


@pytest.fixture
def app(harness: Harness, backend: Backend, use_redis: bool) -> Iterator[App]:
    if use_redis:
        _require_redis()
    yield App(harness, backend, REDIS_URL if use_redis else None)


@pytest.fixture
def launched(app: App) -> App:
    app.launch()
    return app


def _wid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _wait_for_steps(app: App, workflow_id: str, names: list[str], timeout: float = 10) -> None:
    eventually(lambda: app.steps(workflow_id) == names, timeout=timeout, what=f"(steps {names} of {workflow_id})")


# -- send / recv -------------------------------------------------------------------


def test_send_recv_fifo_per_topic_and_topics_are_separate(launched: App) -> None:
    @DBOS.workflow()
    def receiver() -> dict[str, list[Any]]:
        got: dict[str, list[Any]] = {"a": [], "b": [], "none": []}
        for _ in range(3):
            got["a"].append(DBOS.recv("a", timeout_seconds=10))
        for _ in range(2):
            got["b"].append(DBOS.recv("b", timeout_seconds=10))
        got["none"].append(DBOS.recv(timeout_seconds=10))
        # Only a topic-less message is visible without a topic: "a4" is waiting on "a".
        got["none"].append(DBOS.recv(timeout_seconds=0.2))
        return got

    wid = _wid("fifo")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(receiver)
    for message, topic in [("a1", "a"), ("b1", "b"), ("a2", "a"), ("n1", None), ("b2", "b"), ("a3", "a")]:
        DBOS.send(wid, message, topic)
    DBOS.send(wid, "a4", "a")
    assert handle.get_result() == {"a": ["a1", "a2", "a3"], "b": ["b1", "b2"], "none": ["n1", None]}
    assert launched.messages(wid) == [(wid, "a")]  # a4 was never consumed


def test_messages_sent_before_recv_wait_in_order(launched: App) -> None:
    @DBOS.workflow()
    def collector(n: int) -> list[Any]:
        DBOS.recv("go", timeout_seconds=10)
        return [DBOS.recv("t", timeout_seconds=5) for _ in range(n)]

    wid = _wid("early")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(collector, 20)
    payloads = [{"i": i, "blob": "x" * i} for i in range(20)]
    for p in payloads:
        DBOS.send(wid, p, "t")
    DBOS.send(wid, None, "go")
    assert handle.get_result() == payloads
    assert launched.messages(wid) == []


def test_recv_timeout_returns_none_and_is_recorded(launched: App) -> None:
    @DBOS.workflow()
    def waiter() -> tuple[Any, float]:
        start = time.monotonic()
        value = DBOS.recv("nothing", timeout_seconds=0.3)
        return value, time.monotonic() - start

    wid = _wid("timeout")
    with SetWorkflowID(wid):
        value, elapsed = waiter()
    assert value is None
    assert 0.29 <= elapsed < 3
    # The recv and its deadline (a DBOS.sleep step) are both recorded.
    assert launched.steps(wid) == ["DBOS.recv", "DBOS.sleep"]


def test_recv_zero_timeout_returns_a_waiting_message(launched: App) -> None:
    @DBOS.workflow()
    def poll_once() -> Any:
        DBOS.recv("go", timeout_seconds=10)
        return DBOS.recv(timeout_seconds=0)

    wid = _wid("zero")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(poll_once)
    DBOS.send(wid, "ready")
    DBOS.send(wid, 1, "go")
    assert handle.get_result() == "ready"


def test_recv_and_set_event_outside_a_workflow_raise(launched: App) -> None:
    with pytest.raises(DBOSException, match="within a workflow"):
        DBOS.recv("t", timeout_seconds=0.1)
    with pytest.raises(DBOSException, match="within a workflow"):
        DBOS.set_event("k", 1)

    @DBOS.step()
    def in_step() -> str:
        try:
            DBOS.recv(timeout_seconds=0.1)
        except DBOSException:
            pass
        else:
            return "recv did not raise"
        DBOS.set_event("k", 1)  # DBOS 2.x: in a step, the enclosing workflow's event
        return "raised"

    @DBOS.workflow()
    def wf() -> str:
        return in_step()

    assert wf() == "raised"


def test_send_to_a_nonexistent_workflow_raises_and_stores_nothing(launched: App) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.send("no-such-workflow", "hello", "t")
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.send("no-such-workflow", "hello")

    @DBOS.workflow()
    def sender() -> str:
        try:
            DBOS.send("no-such-workflow-either", "hello", "t")
        except DBOSNonExistentWorkflowError:
            return "raised"
        return "sent"

    wid = _wid("sender")
    with SetWorkflowID(wid):
        assert sender() == "raised"
    assert launched.messages() == []
    assert "DBOS.send" not in launched.steps(wid)


def test_send_inside_a_workflow_is_idempotent_on_replay(launched: App, backend: Backend) -> None:
    @DBOS.workflow()
    def target() -> str:
        return "done"

    runs = {"sender": 0}

    @DBOS.workflow()
    def sender(dest: str) -> str:
        runs["sender"] += 1
        DBOS.send(dest, "hello", "t")
        DBOS.send(dest, "again", "t")
        return "sent"

    tid, sid = _wid("target"), _wid("sender")
    with SetWorkflowID(tid):
        target()
    with SetWorkflowID(sid):
        assert sender(tid) == "sent"
    assert launched.messages(tid) == [(tid, "t"), (tid, "t")]
    assert launched.steps(sid) == ["DBOS.send", "DBOS.send"]

    backend.force_pending(sid)
    with SetWorkflowID(sid):
        assert sender(tid) == "sent"
    assert runs["sender"] == 2  # the workflow body re-ran...
    assert launched.messages(tid) == [(tid, "t"), (tid, "t")]  # ...but no message was stored twice
    assert launched.steps(sid) == ["DBOS.send", "DBOS.send"]


def test_recv_replays_the_recorded_message(launched: App, backend: Backend) -> None:
    @DBOS.workflow()
    def receiver() -> list[Any]:
        return [DBOS.recv("t", timeout_seconds=10), DBOS.recv("t", timeout_seconds=0.1)]

    wid = _wid("replay")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(receiver)
    DBOS.send(wid, "first", "t")
    assert handle.get_result() == ["first", None]

    # A message sent now must not be consumed by the replay: both recvs replay.
    DBOS.send(wid, "late", "t")
    backend.force_pending(wid)
    with SetWorkflowID(wid):
        assert receiver() == ["first", None]
    assert launched.messages(wid) == [(wid, "t")]


def test_recv_recorded_by_another_execution_leaves_the_message(launched: App, backend: Backend) -> None:
    """Two executions of one workflow (e.g. recovered elsewhere while still running here)
    race on the same recv: the one that records second must return the first one's
    message and leave the message it took in the queue (its transaction rolls back)."""
    from dbos._execution.serialization import serialize

    @DBOS.workflow()
    def receiver() -> Any:
        return DBOS.recv("t", timeout_seconds=20)

    wid = _wid("race")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(receiver)
    _wait_for_steps(launched, wid, ["DBOS.sleep"])  # waiting in recv (function_id 1)
    # The other execution consumed "theirs" and recorded recv #1 first.
    backend.execute(
        f"INSERT INTO {backend.table('operation_outputs')} (workflow_uuid, function_id, function_name, output)"
        " VALUES (:w, 1, 'DBOS.recv', :o)",
        w=wid, o=serialize("theirs", "a test message"),
    )
    DBOS.send(wid, "mine", "t")
    assert handle.get_result() == "theirs"
    assert launched.messages(wid) == [(wid, "t")]  # "mine" is still there for the next recv


# -- hand-off: a send to a waiting recv records the message as its step (PostgreSQL) ----


def _waiting_receiver(app: App, prefix: str, timeout: float = 20) -> tuple[str, Any]:
    """A workflow waiting in recv("t") (step 1; its deadline is step 2)."""

    @DBOS.workflow()
    def receiver() -> Any:
        return DBOS.recv("t", timeout_seconds=timeout)

    wid = _wid(prefix)
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(receiver)
    _wait_for_steps(app, wid, ["DBOS.sleep"])
    return wid, handle


def test_a_send_to_a_waiting_recv_hands_the_message_over(launched: App, backend: Backend) -> None:
    """From a workflow (PostgreSQL), the message becomes the waiting recv's step without
    ever being queued; from outside a workflow it is queued (its message ID keeps a
    retried statement from storing it twice). Large or small, the receiver gets it."""

    def queued_ever() -> int:  # PostgreSQL: messages ever stored in notifications (its seq)
        seq = backend.scalar("SELECT pg_get_serial_sequence(:t, 'seq')", t=backend.table("notifications"))
        return int(backend.scalar(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {seq}"))

    @DBOS.workflow()
    def sender(dest: str, message: Any) -> None:
        DBOS.send(dest, message, "t")

    for message in ["small", {"big": "x" * 100_000}]:  # the second is read back, not carried
        wid, handle = _waiting_receiver(launched, "handoff")
        before = None if backend.is_sqlite else queued_ever()
        sender(wid, message)
        assert handle.get_result() == message
        assert launched.steps(wid) == ["DBOS.recv", "DBOS.sleep"]
        assert launched.messages(wid) == []
        if before is not None:
            assert queued_ever() == before  # handed over, never queued (SQLite always queues)

    wid, handle = _waiting_receiver(launched, "from-outside")
    before = None if backend.is_sqlite else queued_ever()
    DBOS.send(wid, "outside", "t")
    assert handle.get_result() == "outside"
    if before is not None:
        assert queued_ever() == before + 1
        assert backend.scalar(f"SELECT count(*) FROM {backend.table('recv_waits')}") == 0


def test_a_queued_message_is_received_before_a_later_one_is_handed_over(launched: App, backend: Backend) -> None:
    """FIFO: while an older message waits in the queue (here planted while the recv
    waits, as a send racing the recv's own check would leave it), a new send queues
    behind it instead of jumping ahead into the waiting recv."""
    from dbos._execution.serialization import serialize

    wid, handle = _waiting_receiver(launched, "fifo-handoff")
    backend.execute(
        f"INSERT INTO {backend.table('notifications')} (message_id, destination_uuid, topic, message, created_at)"
        " VALUES (:m, :w, 't', :p, 0)",
        m=str(uuid.uuid4()), w=wid, p=serialize("older", "a test message"),
    )
    DBOS.send(wid, "newer", "t")
    assert handle.get_result() == "older"
    assert launched.messages(wid) == [(wid, "t")]  # "newer" waits for the next recv


def test_a_send_recorded_by_another_execution_delivers_nothing(launched: App, backend: Backend) -> None:
    """Two executions of a sending workflow race on its send step: the one that
    records it second must deliver nothing, neither handed over nor queued."""
    wid, handle = _waiting_receiver(launched, "dup-send", timeout=2)
    gate = threading.Event()

    @DBOS.step()
    def hold() -> None:
        assert gate.wait(20)

    @DBOS.workflow()
    def sender(dest: str) -> str:
        hold()
        DBOS.send(dest, "duplicate", "t")
        return "sent"

    sid = _wid("dup-sender")
    with SetWorkflowID(sid):
        sent = DBOS.start_workflow(sender, wid)
    _wait_for_steps(launched, sid, [])
    eventually(lambda: backend.status(sid) == "PENDING", timeout=10, what="(sender running)")
    # The other execution already recorded send (step 2) and delivered its message.
    backend.execute(
        f"INSERT INTO {backend.table('operation_outputs')} (workflow_uuid, function_id, function_name)"
        " VALUES (:w, 2, 'DBOS.send')",
        w=sid,
    )
    gate.set()
    assert sent.get_result() == "sent"
    assert handle.get_result() is None  # timed out: nothing arrived
    assert launched.messages(wid) == []


def test_many_concurrent_receivers_each_get_their_messages(launched: App) -> None:
    @DBOS.workflow()
    def receiver(n: int) -> list[Any]:
        return [DBOS.recv("t", timeout_seconds=20) for _ in range(n)]

    handles = []
    for i in range(8):
        with SetWorkflowID(f"{_wid('many')}-{i}"):
            handles.append(DBOS.start_workflow(receiver, 5))
    for j in range(5):
        for h in handles:
            DBOS.send(h.workflow_id, (h.workflow_id, j), "t")
    for h in handles:
        assert h.get_result() == [(h.workflow_id, j) for j in range(5)]


# -- events -------------------------------------------------------------------------


def test_events_are_overwritten_latest_wins(launched: App, backend: Backend) -> None:
    @DBOS.workflow()
    def publisher() -> None:
        DBOS.set_event("k", 1)
        DBOS.set_event("k", {"v": 2})
        DBOS.set_event("other", "x")

    wid = _wid("events")
    with SetWorkflowID(wid):
        publisher()
    assert DBOS.get_event(wid, "k", timeout_seconds=1) == {"v": 2}
    assert DBOS.get_event(wid, "other", timeout_seconds=1) == "x"
    count = backend.scalar(f"SELECT count(*) FROM {backend.table('workflow_events')} WHERE workflow_uuid = :w", w=wid)
    assert count == 2


def test_get_event_waits_for_a_key_set_later_and_times_out(launched: App) -> None:
    big = "x" * 100_000  # too large to ride along with the wakeup: read back

    @DBOS.workflow()
    def publisher() -> None:
        DBOS.recv("go", timeout_seconds=20)
        DBOS.set_event("late", "here")
        DBOS.set_event("big", big)

    wid = _wid("later")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(publisher)
    result: dict[str, Any] = {}

    def getter(key: str) -> None:
        start = time.monotonic()
        result[key] = DBOS.get_event(wid, key, timeout_seconds=20)
        result[key + "-elapsed"] = time.monotonic() - start

    threads = [threading.Thread(target=getter, args=(key,)) for key in ("late", "big")]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # the getters are now waiting
    assert all(thread.is_alive() for thread in threads)
    DBOS.send(wid, "go", "go")
    for thread in threads:
        thread.join(20)
    handle.get_result()
    assert result["late"] == "here" and result["big"] == big
    assert 0.3 <= result["late-elapsed"] < 10

    start = time.monotonic()
    assert DBOS.get_event(wid, "never", timeout_seconds=0.3) is None
    assert 0.29 <= time.monotonic() - start < 3
    start = time.monotonic()
    assert DBOS.get_event("no-such-workflow", "k", timeout_seconds=0.2) is None
    assert 0.19 <= time.monotonic() - start < 3


def test_get_event_inside_a_workflow_is_recorded(launched: App, backend: Backend) -> None:
    @DBOS.workflow()
    def publisher() -> None:
        DBOS.set_event("k", "v1")

    @DBOS.workflow()
    def reader(other: str) -> list[Any]:
        return [DBOS.get_event(other, "k", timeout_seconds=5), DBOS.get_event(other, "missing", timeout_seconds=0.1)]

    pid, rid = _wid("pub"), _wid("reader")
    with SetWorkflowID(pid):
        publisher()
    with SetWorkflowID(rid):
        assert reader(pid) == ["v1", None]
    assert launched.steps(rid) == ["DBOS.getEvent", "DBOS.sleep", "DBOS.getEvent", "DBOS.sleep"]
    # On replay the recorded value stands, even though the event changed since.
    backend.execute(f"DELETE FROM {backend.table('workflow_events')} WHERE workflow_uuid = :w", w=pid)
    backend.force_pending(rid)
    with SetWorkflowID(rid):
        assert reader(pid) == ["v1", None]


# -- durable sleep -------------------------------------------------------------------


def test_durable_sleep_records_its_wake_up_time(launched: App, backend: Backend) -> None:
    @DBOS.workflow()
    def sleeper() -> float:
        start = time.monotonic()
        DBOS.sleep(0.3)
        return time.monotonic() - start

    wid = _wid("sleep")
    before = time.time()
    with SetWorkflowID(wid):
        elapsed = sleeper()
    after = time.time()
    assert 0.29 <= elapsed < 3
    steps = DBOS.list_workflow_steps(wid)
    assert [s["function_name"] for s in steps] == ["DBOS.sleep"]
    wake = steps[0]["output"]
    assert before + 0.3 <= wake <= after + 0.01

    # Replayed after its wake-up time, it does not sleep again.
    backend.force_pending(wid)
    with SetWorkflowID(wid):
        assert sleeper() < 0.2


def test_sleep_outside_a_workflow_raises(launched: App) -> None:
    # As in DBOS Transact 2.x: only a workflow sleeps durably (tests/test_dbos_2x.py).
    with pytest.raises(DBOSException, match="within a workflow"):
        DBOS.sleep(0.1)


# -- async variants ------------------------------------------------------------------


def test_async_variants_inside_async_workflows(launched: App) -> None:
    @DBOS.workflow()
    async def async_receiver() -> dict[str, Any]:
        first = await DBOS.recv_async("t", timeout_seconds=10)
        await DBOS.set_event_async("got", first)
        start = time.monotonic()
        await DBOS.sleep_async(0.2)
        slept = time.monotonic() - start
        second = await DBOS.recv_async(timeout_seconds=10)
        timed_out = await DBOS.recv_async("t", timeout_seconds=0.1)
        return {"first": first, "second": second, "timed_out": timed_out, "slept": slept}

    @DBOS.workflow()
    async def async_sender(dest: str) -> Any:
        await DBOS.send_async(dest, "from-workflow")
        return await DBOS.get_event_async(dest, "got", timeout_seconds=10)

    async def main() -> tuple[dict[str, Any], Any, Any, Any]:
        wid = _wid("async-recv")
        with SetWorkflowID(wid):
            handle = await DBOS.start_workflow_async(async_receiver)
        await DBOS.send_async(wid, "from-outside", "t")
        with SetWorkflowID(_wid("async-send")):
            sender = await DBOS.start_workflow_async(async_sender, wid)
        seen = await sender.get_result()
        outside = await DBOS.get_event_async(wid, "got", timeout_seconds=10)
        missing = await DBOS.get_event_async(wid, "missing", timeout_seconds=0.1)
        return await handle.get_result(), seen, outside, missing

    result, seen, outside, missing = asyncio.run(main())
    assert result["first"] == "from-outside"
    assert result["second"] == "from-workflow"
    assert result["timed_out"] is None
    assert 0.19 <= result["slept"] < 3
    assert seen == outside == "from-outside"
    assert missing is None
    with pytest.raises(DBOSNonExistentWorkflowError):
        asyncio.run(DBOS.send_async("no-such-workflow", 1))
    with pytest.raises(DBOSException, match="within a workflow"):
        asyncio.run(DBOS.recv_async(timeout_seconds=0.1))
    with pytest.raises(DBOSException, match="within a workflow"):
        asyncio.run(DBOS.set_event_async("k", 1))


def test_many_async_waiters(launched: App) -> None:
    @DBOS.workflow()
    async def waiter(i: int) -> Any:
        return await DBOS.recv_async("t", timeout_seconds=30)

    async def main() -> list[Any]:
        handles = []
        for i in range(40):
            with SetWorkflowID(f"{_wid('aw')}-{i}"):
                handles.append(await DBOS.start_workflow_async(waiter, i))
        for i, h in enumerate(handles):
            await DBOS.send_async(h.workflow_id, i, "t")
        return list(await asyncio.gather(*(h.get_result() for h in handles)))

    assert asyncio.run(main()) == list(range(40))


# -- wakeups within one process --------------------------------------------------------


def test_in_process_waiters_are_woken_without_polling(app: App) -> None:
    """With a 5 s polling interval, only an in-process wake explains these latencies."""
    app.launch(polling_interval_sec=5.0)

    @DBOS.workflow()
    def echo() -> float:
        message = DBOS.recv("ping", timeout_seconds=30)
        woke = time.time() - message
        DBOS.recv("go", timeout_seconds=30)
        DBOS.set_event("ev", time.time())
        DBOS.recv("stop", timeout_seconds=30)
        return woke

    wid = _wid("local")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(echo)
    _wait_for_steps(app, wid, ["DBOS.sleep"])  # waiting in recv (only its deadline is recorded)
    DBOS.send(wid, time.time(), "ping")

    result: dict[str, float] = {}

    def getter() -> None:
        stamp = DBOS.get_event(wid, "ev", timeout_seconds=30)
        result["event"] = time.time() - stamp

    thread = threading.Thread(target=getter)
    thread.start()
    time.sleep(0.2)  # the getter waits
    DBOS.send(wid, None, "go")
    thread.join(30)
    _wait_for_steps(app, wid, ["DBOS.recv", "DBOS.sleep"] * 2 + ["DBOS.setEvent", "DBOS.sleep"])
    start = time.monotonic()
    DBOS.send(wid, None, "stop")
    woke = handle.get_result()
    assert woke < 0.5 and result["event"] < 0.5 and time.monotonic() - start < 0.5, (woke, result)


def test_cancel_wakes_a_waiting_recv(app: App) -> None:
    app.launch(polling_interval_sec=5.0)

    @DBOS.workflow()
    def waiter() -> Any:
        return DBOS.recv("t", timeout_seconds=60)

    wid = _wid("cancel")
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(waiter)
    _wait_for_steps(app, wid, ["DBOS.sleep"])
    start = time.monotonic()
    DBOS.cancel_workflow(wid)
    with pytest.raises(DBOSException):
        handle.get_result()
    assert time.monotonic() - start < 1.0
    assert app.backend.status(wid) == "CANCELLED"


# -- a second process ------------------------------------------------------------------


class Child:
    """tests/apps/messaging_app.py running one scenario in a real process."""

    def __init__(self, app: App, tmp_path: Path, scenario: str, workflow_id: str, **config: Any) -> None:
        self.app = app
        self.tmp_path = tmp_path
        self.scenario = scenario
        self.workflow_id = workflow_id
        self.marks = tmp_path / f"marks-{workflow_id}.jsonl"
        cfg = app.config(**config)
        cfg.pop("executor_id", None)  # the child's executor ID comes from DBOS__VMID
        self.config = cfg
        self.proc: Optional[subprocess.Popen[str]] = None

    def start(self, mode: str, vmid: str = "child-vm", **args: Any) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
        env["DBOS__VMID"] = vmid
        spec = {"config": self.config, "scenario": self.scenario, "workflow_id": self.workflow_id,
                "marks": str(self.marks), "dir": str(self.tmp_path), "mode": mode, "args": args}
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), json.dumps(spec)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def marks_of(self, kind: str, check_alive: bool = True) -> list[dict[str, Any]]:
        if check_alive:
            self.check_alive()
        if not self.marks.exists():
            return []
        lines = [json.loads(line) for line in self.marks.read_text().splitlines() if line.strip()]
        return [m for m in lines if m["kind"] == kind]

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None and self.proc.returncode != 0:
            out, err = self.proc.communicate()
            pytest.fail(f"child exited with {self.proc.returncode}\nstdout:\n{out}\nstderr:\n{err}")

    def wait_ready(self, count: int = 1) -> None:
        eventually(lambda: len(self.marks_of("ready")) >= count, timeout=60, what="(child ready)")

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL
        self.proc = None

    def finish(self, timeout: float = 60) -> Any:
        assert self.proc is not None
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"child did not finish in {timeout}s\nstdout:\n{out}\nstderr:\n{err}")
        assert self.proc.returncode == 0, f"child failed ({self.proc.returncode})\nstdout:\n{out}\nstderr:\n{err}"
        for line in out.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT "):])
        pytest.fail(f"no RESULT line\nstdout:\n{out}\nstderr:\n{err}")

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.cleanup()


def _wait_status(app: App, workflow_id: str, status: str, timeout: float = 60) -> None:
    eventually(lambda: app.backend.status(workflow_id) == status, timeout=timeout,
               what=f"({workflow_id} {status})")


@pytest.mark.slow
def test_exactly_once_delivery_across_sigkill(
    launched: App, tmp_path: Path, children: list[Child]
) -> None:
    wid = _wid("consumer")
    n = 8
    child = Child(launched, tmp_path, "consumer", wid, polling_interval_sec=0.2)
    children.append(child)

    # Run 1: consume m0..m2; the step after recv #2 holds, and the process is killed there.
    child.start("start", n=n, holds=["2", "timeout"])
    child.wait_ready()
    for i in range(5):
        DBOS.send(wid, f"m{i}", "t")
    eventually(lambda: [m["i"] for m in child.marks_of("got")] == [0, 1, 2], timeout=60,
               what="(recv #2 returned, its step holding)")
    child.kill()
    assert launched.backend.status(wid) == "PENDING"
    assert len(launched.messages(wid)) == 2  # m3, m4 still stored: m0..m2 consumed, each once
    for i in range(5, n):
        DBOS.send(wid, f"m{i}", "t")  # sent while the consumer is down

    # Run 2 (same executor ID): recv #2 replays m2 (its step runs again), then m3..m7,
    # then a recv times out; the step after it holds and the process is killed there.
    (tmp_path / "release-2").touch()
    child.start("recover")
    eventually(lambda: len(child.marks_of("timeout")) == 1, timeout=60, what="(the timed-out recv recorded)")
    child.kill()
    DBOS.send(wid, "late", "t")  # if the timed-out recv ran again, it would take this

    # Run 3: everything replays; the timed-out recv replays as a timeout.
    (tmp_path / "release-timeout").touch()
    child.start("recover")
    result = child.finish()
    assert result == {"messages": [f"m{i}" for i in range(n)], "timeout": None}

    got = [(m["i"], m["message"]) for m in child.marks_of("got")]
    # Indices 0..2 from run 1, 2 again from run 2 (its step had not been recorded) with
    # the same message, then 3..7 once each.
    assert got == [(0, "m0"), (1, "m1"), (2, "m2"), (2, "m2")] + [(i, f"m{i}") for i in range(3, n)]
    assert [m["message"] for m in child.marks_of("timeout")] == [None, None]
    assert launched.messages(wid) == [(wid, "t")]  # only "late" is left
    assert launched.backend.status(wid) == "SUCCESS"


@pytest.mark.slow
def test_durable_sleep_after_a_crash_sleeps_only_what_is_left(
    launched: App, tmp_path: Path, children: list[Child]
) -> None:
    wid = _wid("sleeper")
    child = Child(launched, tmp_path, "sleeper", wid, polling_interval_sec=0.2)
    children.append(child)
    child.start("start", seconds=6.0)
    eventually(lambda: "DBOS.sleep" in launched.steps(wid), timeout=60, what="(sleep started)")
    wake = DBOS.list_workflow_steps(wid)[-1]["output"]
    eventually(lambda: time.time() >= wake - 4.0, timeout=10, interval=0.05)  # ~2 s into the sleep
    child.kill()

    child.start("recover")
    result = child.finish()
    recovered = child.marks_of("ready")[-1]["t"]  # launched, the workflow recovered
    assert result["woke"] >= wake - 0.01
    # It woke around the original wake-up time (or at once, if the restart took longer
    # than what was left), never a full 6 s after the restart.
    assert result["woke"] - max(wake, recovered) < 1.5, (result["woke"] - wake, result["woke"] - recovered)
    assert len(child.marks_of("before")) == 1  # recorded before the crash: not run again


@pytest.mark.slow
def test_waits_across_two_processes(launched: App, tmp_path: Path, children: list[Child]) -> None:
    """A waiter in another process is woken by this one: recv by send, this process's
    get_event by the child's set_event, get_result by the child's completion. With Redis
    and a 5 s polling interval, only Redis can explain a wake under 0.5 s."""
    use_redis = launched.use_redis
    polling = 5.0 if use_redis else 0.2
    bound = 0.5 if use_redis else polling + 1.0
    if use_redis:
        launched.launch(polling_interval_sec=polling)
    wid = _wid("echo")
    child = Child(launched, tmp_path, "echo", wid, polling_interval_sec=polling)
    children.append(child)
    child.start("start")
    child.wait_ready()
    _wait_status(launched, wid, "PENDING")

    recv_latencies = []
    for i in range(3):
        time.sleep(0.3)  # let the child's recv start waiting: this is a wake, not a find
        DBOS.send(wid, {"seq": i, "sent": time.time()}, "ping")
        eventually(lambda n=i + 1: len(child.marks_of("got")) == n, timeout=30, what=f"(ping {i})")
        recv_latencies.append(child.marks_of("got")[-1]["latency"])
    assert max(recv_latencies) < bound, recv_latencies

    # get_event here, woken by set_event there (the child delays 0.5 s so this is waiting).
    DBOS.send(wid, {"seq": 3, "sent": time.time(), "event": "ev", "delay": 0.5}, "ping")
    stamp = DBOS.get_event(wid, "ev", timeout_seconds=30)
    event_latency = time.time() - stamp
    assert event_latency < bound, event_latency

    # get_result here, woken by the workflow finishing there.
    handle = DBOS.retrieve_workflow(wid)
    DBOS.send(wid, {"seq": 4, "sent": time.time(), "stop": True, "delay": 0.5}, "ping")
    finished = handle.get_result()
    result_latency = time.time() - finished
    assert result_latency < bound, result_latency
    assert child.finish() == finished


def _echo_child(app: App, tmp_path: Path, children: list[Child], prefix: str) -> tuple[Child, float]:
    """A child process running the echo workflow, and the polling interval both use:
    5 s with Redis (so only a Redis wakeup explains a fast wake), 0.2 s without."""
    polling = 5.0 if app.use_redis else 0.2
    if app.use_redis:
        app.launch(polling_interval_sec=polling)
    child = Child(app, tmp_path, "echo", _wid(prefix), polling_interval_sec=polling)
    children.append(child)
    child.start("start")
    child.wait_ready()
    return child, polling


def test_a_workflow_failing_in_another_process_wakes_get_result_with_its_error(
    launched: App, tmp_path: Path, children: list[Child]
) -> None:
    """The recorded error reaches a waiter in another process (with Redis it rides
    along with the wakeup: under 0.5 s with a 5 s polling interval)."""
    child, polling = _echo_child(launched, tmp_path, children, "failing")
    wid = child.workflow_id
    _wait_status(launched, wid, "PENDING")
    handle = DBOS.retrieve_workflow(wid)
    DBOS.send(wid, {"seq": 0, "sent": time.time(), "delay": 0.5, "fail": "boom"}, "ping")
    with pytest.raises(ValueError, match="boom"):
        handle.get_result()
    failed_at = time.time()
    assert launched.backend.status(wid) == "ERROR"
    ended = eventually(lambda: child.marks_of("ended"), timeout=30, what="(child saw the error)")
    assert ended[0]["error"] == "ValueError"
    assert failed_at - ended[0]["t"] < (0.5 if launched.use_redis else polling + 1.0)


@pytest.mark.slow
def test_cancel_from_another_process_wakes_a_waiting_recv(
    launched: App, tmp_path: Path, children: list[Child]
) -> None:
    use_redis = launched.use_redis
    child, polling = _echo_child(launched, tmp_path, children, "echo-cancel")
    wid = child.workflow_id
    _wait_for_steps(launched, wid, ["DBOS.sleep"])  # waiting in recv
    time.sleep(0.2)
    cancelled_at = time.time()
    DBOS.cancel_workflow(wid)
    ended = eventually(lambda: child.marks_of("ended", check_alive=False), timeout=30, what="(child preempted)")
    assert ended[0]["error"] is not None
    assert ended[0]["t"] - cancelled_at < (0.5 if use_redis else polling + 1.0)
    assert launched.backend.status(wid) == "CANCELLED"
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        DBOS.retrieve_workflow(wid).get_result()
