"""Redis pub/sub carrying wakeup hints between processes.

One subscriber connection per process multiplexes every waiter: a hint
received is turned into a local notify. It is pattern-subscribed, per kind of
hint, to this database's namespace: always to the kinds every executor acts on
(``queue:``, ``cancel:``), and to the kinds only a waiter wants (``done:``,
``created:``, ``msg:``, ``event:``) only while this process has such a waiter,
plus a linger. An executor that waits for nothing then does not pay for every
completion in the fleet. A waiter's kind is subscribed, and confirmed, before
the waiter reads the database, so no hint it needs can slip past.

Publishes go through one publisher thread that pipelines whatever is pending,
so the workflow thread never waits on Redis. When Redis is down, hints are
dropped (waiters poll the database) and both sides reconnect with backoff,
logging the state change once. After every (re)connect all local waiters are
woken to re-check the database, since hints may have been lost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Optional, cast

import redis

from dbos._services.base import Service

_MAX_BACKOFF = 5.0
ALWAYS = ("queue:", "cancel:")  # kinds of hint every process hears
ON_DEMAND = ("done:", "created:", "msg:", "event:", "fleet:")  # kinds heard only while someone here waits
_LINGER_SEC = 30.0  # an on-demand kind stays subscribed this long after its last waiter
_CONFIRM_SEC = 1.0  # how long a waiter waits for its kind's subscription (then it polls)


def namespace_for(database_url: str, schema: str) -> str:
    """Redis channel prefix: one namespace per system database and schema."""
    database = database_url.rsplit("/", 1)[-1].split("?", 1)[0]
    return f"dbos:{database}:{schema}:"


class RedisBridge(Service):
    name = "redis-wakeups"

    def __init__(
        self,
        url: str,
        namespace: str,
        on_hint: Callable[[str, bytes], None],
        on_connect: Callable[[], None],
        logger: logging.Logger,
    ) -> None:
        super().__init__(0.1, logger, jitter=0.2)
        self.url = url
        self.namespace = namespace
        self._on_hint = on_hint
        self._on_connect = on_connect
        self._outbox: "queue.SimpleQueue[Optional[tuple[str, bytes]]]" = queue.SimpleQueue()
        self._publisher: Optional[threading.Thread] = None
        self._pub_down = False
        self.connected = threading.Event()
        # On-demand kinds: waiters per kind, when the last one left, and (for the
        # current connection) one event per kind subscribed or being subscribed.
        self._lock = threading.Lock()
        self._waiting: dict[str, int] = {}
        self._idle_since: dict[str, float] = {}
        self._subscribed: dict[str, threading.Event] = {}
        self._pubsub: Any = None
        self.hints_received = 0

    # -- publishing ---------------------------------------------------------
    def publish(self, key: str, data: bytes = b"") -> None:
        self._outbox.put((key, data))

    def start(self) -> None:
        super().start()
        self._publisher = threading.Thread(target=self._publish_loop, name="dbos-redis-publish", daemon=True)
        self._publisher.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._outbox.put(None)
        super().stop(timeout)
        if self._publisher is not None:
            self._publisher.join(timeout)
            self._publisher = None

    def _publish_loop(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)
        try:
            while True:
                hint = self._outbox.get()
                if hint is None:
                    return
                batch = [hint]
                while True:
                    try:
                        more = self._outbox.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._flush(client, batch)
                        return
                    batch.append(more)
                self._flush(client, batch)
        finally:
            client.close()

    def _flush(self, client: "redis.Redis", hints: list[tuple[str, bytes]]) -> None:
        try:
            if len(hints) == 1:
                key, data = hints[0]
                client.publish(self.namespace + key, data)
            else:
                pipe = client.pipeline(transaction=False)
                for key, data in dict.fromkeys(hints):  # the same bare hint once
                    pipe.publish(self.namespace + key, data)
                pipe.execute()
            if self._pub_down:
                self.logger.info("redis publishing restored")
                self._pub_down = False
        except redis.RedisError as e:
            if not self._pub_down:
                self.logger.warning("redis publish failed, falling back to polling: %s", e)
                self._pub_down = True

    # -- interest ---------------------------------------------------------------
    # Subscribing is done outside ``_lock``: a waiter must never wait on a
    # connection attempt to a Redis that is down.
    def want(self, kind: str) -> None:
        """A waiter for hints of ``kind`` (one of ON_DEMAND) starts: subscribe to the
        kind if it is not yet, and return once that is confirmed (or at once while
        Redis is down, or after _CONFIRM_SEC: the waiter polls either way)."""
        pubsub = None
        with self._lock:
            self._waiting[kind] = self._waiting.get(kind, 0) + 1
            confirmed = self._subscribed.get(kind)
            if confirmed is None:
                confirmed = self._subscribed[kind] = threading.Event()
                pubsub = self._pubsub  # None while (re)connecting: run_once subscribes it then
        if pubsub is not None:
            try:
                pubsub.psubscribe(self._pattern(kind))
            except redis.RedisError:
                pass  # the subscriber loop reconnects and subscribes it again
        if not confirmed.is_set() and self.connected.is_set():
            confirmed.wait(_CONFIRM_SEC)

    def release(self, kind: str) -> None:
        with self._lock:
            left = self._waiting.get(kind, 1) - 1
            self._waiting[kind] = left
            if left == 0:
                self._idle_since[kind] = time.monotonic()

    def _pattern(self, kind: str) -> str:
        return self.namespace + kind + "*"

    def _drop_idle_kinds(self) -> list[str]:
        """Forget the kinds no waiter has wanted for _LINGER_SEC (call with ``_lock``)."""
        now = time.monotonic()
        idle = [
            kind for kind in self._subscribed
            if self._waiting.get(kind, 0) == 0 and now - self._idle_since.get(kind, now) > _LINGER_SEC
        ]
        for kind in idle:
            del self._subscribed[kind]
        return idle

    # -- subscribing (the Service loop) --------------------------------------
    def run_once(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=None, socket_connect_timeout=2)
        # Any: redis-py's PubSub is typed differently across its 5.x..8.x releases.
        pubsub: Any = cast(Any, client).pubsub()
        prefix = len(self.namespace)
        try:
            pubsub.psubscribe(*[self._pattern(k) for k in ALWAYS])  # connects
            with self._lock:
                # The kinds wanted now (or lingering) are subscribed again on this connection.
                self._drop_idle_kinds()
                for confirmed in self._subscribed.values():
                    confirmed.clear()
                wanted = [self._pattern(k) for k in self._subscribed]
                self._pubsub = pubsub  # from here on, want() subscribes new kinds itself
            if wanted:
                pubsub.psubscribe(*wanted)
            # Wait for the subscriptions every process needs before telling waiters we are live.
            pending = {self._pattern(k) for k in ALWAYS}
            deadline = time.monotonic() + 2.0
            while pending:
                message = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
                if message is None:
                    raise redis.ConnectionError("no subscribe confirmation from redis")
                pending.discard(self._handle(message, prefix))
            self.interval_sec = 0.1
            if self._failing:  # run_once never returns while connected: log the recovery here
                self.logger.info("redis subscription restored")
                self._failing = False
            self.connected.set()
            self._on_connect()
            next_expiry = time.monotonic() + _LINGER_SEC / 6
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message is not None:
                    self._handle(message, prefix)
                if time.monotonic() >= next_expiry:
                    next_expiry = time.monotonic() + _LINGER_SEC / 6
                    with self._lock:  # held, so a want() of the kind now subscribes after this
                        idle = self._drop_idle_kinds()
                        if idle:
                            pubsub.punsubscribe(*[self._pattern(k) for k in idle])
        except redis.RedisError:
            self.connected.clear()
            self.interval_sec = min(max(self.interval_sec * 2, 0.2), _MAX_BACKOFF)
            raise
        finally:
            self.connected.clear()
            with self._lock:
                self._pubsub = None
            try:
                pubsub.close()
                client.close()
            except Exception:
                pass

    def _handle(self, message: dict[str, Any], prefix: int) -> Optional[str]:
        """Dispatch a hint, or note a confirmed subscription (returning its pattern)."""
        kind = message.get("type")
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else channel
        if kind == "pmessage":
            self.hints_received += 1
            data = message["data"]
            self._on_hint(channel[prefix:], data if isinstance(data, bytes) else data.encode())
        elif kind == "psubscribe":
            with self._lock:
                confirmed = self._subscribed.get(channel[prefix:-1])
            if confirmed is not None:
                confirmed.set()
            return str(channel)
        return None
