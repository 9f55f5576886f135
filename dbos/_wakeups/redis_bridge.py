"""Redis pub/sub carrying wakeup hints between processes.

One subscriber connection per process, pattern-subscribed to this database's
namespace, multiplexes every waiter: a hint received is turned into a local
notify. Publishes go through one publisher thread that pipelines whatever is
pending, so the workflow thread never waits on Redis. When Redis is down,
hints are dropped (waiters poll the database) and both sides reconnect with
backoff, logging the state change once. After every (re)connect all local
waiters are woken to re-check the database, since hints may have been lost.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

import redis

from dbos._services.base import Service

_MAX_BACKOFF = 5.0


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

    # -- subscribing (the Service loop) --------------------------------------
    def run_once(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=None, socket_connect_timeout=2)
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.psubscribe(self.namespace + "*")
            # Wait for the subscription to be confirmed before telling waiters we are live.
            confirmed = pubsub.get_message(timeout=2.0)
            if confirmed is None or confirmed.get("type") != "psubscribe":
                raise redis.ConnectionError("no subscribe confirmation from redis")
            self.interval_sec = 0.1
            if self._failing:  # run_once never returns while connected: log the recovery here
                self.logger.info("redis subscription restored")
                self._failing = False
            self.connected.set()
            self._on_connect()
            prefix = len(self.namespace)
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message is None or message.get("type") != "pmessage":
                    continue
                channel, data = message["channel"], message["data"]
                key = (channel.decode() if isinstance(channel, bytes) else channel)[prefix:]
                self._on_hint(key, data if isinstance(data, bytes) else data.encode())
        except redis.RedisError:
            self.connected.clear()
            self.interval_sec = min(max(self.interval_sec * 2, 0.2), _MAX_BACKOFF)
            raise
        finally:
            self.connected.clear()
            try:
                pubsub.close()
                client.close()
            except Exception:
                pass
