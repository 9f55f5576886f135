"""Redis faults (issue 3): a throwaway ``redis-server`` this test starts on its own port is
stopped while waiters wait and while messages are sent, then restarted.

- While Redis is down every message, event and completion is still delivered, by
  polling the database; the library logs the outage once, not once per poll.
- After Redis restarts on the same port the bridges reconnect by themselves and
  wakeups are back to Redis speed (well under a large polling interval).

A waiter in this process would be woken in-process, so every waiter here is in a
second process (tests/apps/messaging_app.py, scenario ``echo``).
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
from conftest import Backend, Harness, eventually
from handover_helpers import RedisServer
from test_messages import App, Child

from dbos import DBOS
from dbos._telemetry.logs import LOGGER_NAME

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
]


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def about_redis(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level and "redis" in r.getMessage().lower()]


@pytest.fixture
def dbos_logs() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def child_procs() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.cleanup()


def _start_echo(app: App, tmp_path: Path, children: list[Child], polling: float, **config: Any) -> Child:
    app.launch(polling_interval_sec=polling, **config)
    wid = f"echo-{uuid.uuid4().hex[:8]}"
    child = Child(app, tmp_path, "echo", wid, polling_interval_sec=polling)
    children.append(child)
    child.start("start")
    child.wait_ready()
    return child


def _ping(child: Child, seq: int, timeout: float = 30, **extra: Any) -> float:
    """Send ping ``seq`` once the child is waiting; return its one-way wake latency."""
    time.sleep(0.2)  # the child is back in recv, waiting: this measures a wake, not a find
    DBOS.send(child.workflow_id, {"seq": seq, "sent": time.time(), **extra}, "ping")
    eventually(lambda: any(m["seq"] == seq for m in child.marks_of("got")), timeout=timeout,
               what=f"(ping {seq} delivered)")
    return float(next(m["latency"] for m in child.marks_of("got") if m["seq"] == seq))


def test_redis_down_while_waiting_and_sending_nothing_is_lost(
    harness: Harness, backend: Backend, redis_server: RedisServer, tmp_path: Path,
    child_procs: list[Child], dbos_logs: Records,
) -> None:
    polling = 0.5
    app = App(harness, backend, redis_server.url)
    child = _start_echo(app, tmp_path, child_procs, polling)
    assert _ping(child, 0) < polling  # Redis is up

    # Redis dies while the child waits in recv; messages sent now are delivered by polling.
    redis_server.kill()
    latencies = [_ping(child, seq) for seq in range(1, 4)]
    assert max(latencies) < polling + 1.0, latencies

    # A burst sent with Redis down: all delivered, in order, once each.
    for seq in range(4, 24):
        DBOS.send(child.workflow_id, {"seq": seq, "sent": time.time()}, "ping")
    eventually(lambda: len(child.marks_of("got")) == 24, timeout=30, what="(the burst delivered)")
    assert [m["seq"] for m in child.marks_of("got")] == list(range(24))

    # This process's get_event and get_result waits are woken by polling too.
    DBOS.send(child.workflow_id, {"seq": 24, "sent": time.time(), "event": "ev", "delay": 0.3}, "ping")
    stamp = DBOS.get_event(child.workflow_id, "ev", timeout_seconds=30)
    assert stamp is not None and time.time() - stamp < polling + 1.0
    handle = DBOS.retrieve_workflow(child.workflow_id)
    DBOS.send(child.workflow_id, {"seq": 25, "sent": time.time(), "stop": True, "delay": 0.3}, "ping")
    finished = handle.get_result()
    assert time.time() - finished < polling + 1.0
    assert child.finish() == finished
    assert app.messages(child.workflow_id) == []

    # The outage was logged once per connection (publisher, subscriber), not once per poll or publish.
    warnings = dbos_logs.about_redis(logging.WARNING)
    assert 1 <= len(warnings) <= 2, warnings


def test_wakeups_return_to_redis_speed_after_redis_restarts(
    harness: Harness, backend: Backend, redis_server: RedisServer, tmp_path: Path,
    child_procs: list[Child], dbos_logs: Records,
) -> None:
    polling = 5.0  # a wake well under this can only be Redis
    app = App(harness, backend, redis_server.url)
    child = _start_echo(app, tmp_path, child_procs, polling, log_level="INFO")
    fast = 0.5
    assert _ping(child, 0) < fast

    redis_server.kill()
    # Down: still delivered, by polling (so within about one polling interval).
    assert _ping(child, 1) < polling + 2.0

    redis_server.start()  # the same port
    seq = iter(range(2, 1000))
    # The bridges reconnect with backoff (at most a few seconds); then wakes are fast again.
    eventually(lambda: _ping(child, next(seq)) < fast, timeout=60, interval=0,
               what="(a Redis-speed wake after the restart)")
    latencies = [_ping(child, next(seq)) for _ in range(3)]
    assert max(latencies) < fast, latencies
    # Each state change is logged once: down (publisher, subscriber), then restored (both).
    assert len(dbos_logs.about_redis(logging.WARNING)) == 2, dbos_logs.about_redis(logging.WARNING)
    # (This process's subscriber may still be backing off: the child's wakes do not need it.)
    eventually(lambda: any("subscri" in m for m in dbos_logs.about_redis(logging.INFO)), timeout=15,
               what="(this process's subscription restored)")
    restored = dbos_logs.about_redis(logging.INFO)
    assert len([m for m in restored if "publish" in m]) == 1, restored
    assert len([m for m in restored if "subscri" in m]) == 1, restored

    DBOS.send(child.workflow_id, {"seq": 999, "sent": time.time(), "stop": True}, "ping")
    child.finish()


def test_a_process_hears_waiter_hints_only_while_it_has_such_a_waiter(
    harness: Harness, backend: Backend, redis_server: RedisServer,
) -> None:
    """Executors hear every queue and cancel hint, but a completion, message, event or
    creation hint only while a waiter here wants that kind (and for a linger after),
    so a fleet does not pay for every completion in every process."""
    from dbos._api.instance import runtime

    app = App(harness, backend, redis_server.url)
    app.launch(polling_interval_sec=30)
    rt = runtime()
    bridge = rt.wakeups.bridge
    assert bridge is not None
    namespace = bridge.namespace
    raw = redis.Redis.from_url(redis_server.url)

    def heard_after(channel: str) -> bool:
        before = bridge.hints_received
        marker = f"{namespace}queue:marker-{uuid.uuid4().hex[:6]}"
        raw.publish(namespace + channel, b"")
        raw.publish(marker, b"")  # always heard: once it is, the first one was heard or not
        eventually(lambda: bridge.hints_received > before, timeout=10, what="(the marker hint)")
        time.sleep(0.05)
        return bridge.hints_received - before == 2

    assert heard_after("queue:q") and heard_after("cancel:w")
    for kind in ("done:", "msg:", "event:", "created:"):
        assert not heard_after(kind + "x"), f"{kind} heard with no waiter"

    # A waiter on a completion: "done:" hints are heard (the subscription is confirmed
    # before subscribe() returns, i.e. before the waiter reads the database) ...
    with rt.wakeups.subscribe("done:some-workflow") as waiter:
        assert heard_after("done:another-workflow")
        raw.publish(namespace + "done:some-workflow", b"S\x80\x05K\x07.")
        assert waiter.wait(10) and waiter.take("done:some-workflow") == b"S\x80\x05K\x07."
    assert not heard_after("msg:x")  # ... and only that kind
    raw.close()
    # The wakeups still reach a waiter in another process: see the tests above and
    # tests/test_messages.py::test_waits_across_two_processes (5 s polling, < 0.5 s wakes).
