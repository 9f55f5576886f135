"""The wakeup hub: local waiters, plus Redis between processes when configured.

``subscribe(*keys)`` before reading the database, ``notify(key)`` after a
commit. Listeners registered by prefix (e.g. ``cancel:``) let services act on
hints from other processes.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator, Optional

from dbos._wakeups.local import LocalWakeups, Waiter
from dbos._wakeups.redis_bridge import ON_DEMAND, RedisBridge

_ON_DEMAND = frozenset(ON_DEMAND)

# The most data a hint carries. Every process with a waiter of a kind receives
# every hint of that kind in the fleet, so a hint's size is paid once per such
# process: larger values are read from the database by the waiter instead.
HINT_DATA_MAX = 1024


def hint_data(*parts: bytes) -> bytes:
    """The data a hint carries: ``parts`` joined, or nothing if that would exceed
    HINT_DATA_MAX (the waiter then reads the value from the database)."""
    if sum(map(len, parts)) > HINT_DATA_MAX:
        return b""
    return b"".join(parts)


class Hub:
    def __init__(self) -> None:
        self.local = LocalWakeups()
        self.bridge: Optional[RedisBridge] = None
        self._listeners: list[tuple[str, Callable[[str], None]]] = []

    def attach_redis(self, url: str, namespace: str, logger: logging.Logger) -> RedisBridge:
        self.bridge = RedisBridge(url, namespace, self._on_remote, self.local.notify_all, logger)
        return self.bridge

    def add_listener(self, prefix: str, fn: Callable[[str], None]) -> None:
        self._listeners.append((prefix, fn))

    @contextlib.contextmanager
    def subscribe(self, *keys: str) -> Iterator[Waiter]:
        """A waiter for ``keys``. Subscribe before reading the database: hints of
        the keys' kinds from other processes are heard from here on."""
        bridge = self.bridge
        kinds = {k[: k.find(":") + 1] for k in keys} & _ON_DEMAND if bridge is not None else set()
        for kind in kinds:
            bridge.want(kind)  # type: ignore[union-attr]
        try:
            with self.local.subscribe(*keys) as waiter:
                yield waiter
        finally:
            for kind in kinds:
                bridge.release(kind)  # type: ignore[union-attr]

    def notify(self, key: str, *, remote: bool = True, data: bytes = b"") -> None:
        """A change committed: wake local waiters now and (unless ``remote`` is
        False: nobody elsewhere can act on it) other processes via Redis.
        ``data`` rides along to the waiters of ``key`` (see ``Waiter.take``)."""
        self._dispatch(key, data)
        if remote and self.bridge is not None:
            self.bridge.publish(key, data)

    def _on_remote(self, key: str, data: bytes) -> None:
        self._dispatch(key, data)

    def _dispatch(self, key: str, data: bytes = b"") -> None:
        self.local.notify(key, data)
        for prefix, fn in self._listeners:
            if key.startswith(prefix):
                fn(key)

    def notify_all(self) -> None:
        self.local.notify_all()
