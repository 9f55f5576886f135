"""In-process wakeups: a waiter in this process is woken without any round trip."""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, Optional


class Waiter:
    """Woken by a notify of one of its keys, from any thread. A thread waits on it
    with ``wait``; an event loop through a callback (``on_wake``), holding no thread
    (``dbos/_execution/waits.py``)."""

    __slots__ = ("_event", "_data", "_on_wake")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._data: dict[str, bytes] = {}
        self._on_wake: Optional[Callable[[], None]] = None

    def wait(self, timeout: float) -> bool:
        """Block until woken or ``timeout`` seconds pass; True if woken."""
        return self._event.wait(timeout)

    def is_set(self) -> bool:
        return self._event.is_set()

    def on_wake(self, callback: Optional[Callable[[], None]]) -> None:
        """Call ``callback`` (in the waking thread) at each wake from now on, until replaced
        or cleared (None). A wake that came before it is set is not replayed: check
        ``is_set()`` after setting it."""
        self._on_wake = callback

    def wake(self, key: Optional[str] = None, data: bytes = b"") -> None:
        if key is not None and data:
            self._data[key] = data  # the latest wins; it is a hint, the database decides
        self._event.set()
        callback = self._on_wake
        if callback is not None:
            callback()

    def take(self, key: str) -> Optional[bytes]:
        """The data the last notify of ``key`` carried, once (None if none)."""
        return self._data.pop(key, None)

    def clear(self) -> None:
        self._event.clear()


class LocalWakeups:
    """Keyed wakeups inside one process.

    Subscribe *before* checking the database, then wait: a notify that lands
    between the check and the wait still wakes the waiter.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}

    @contextlib.contextmanager
    def subscribe(self, *keys: str) -> Iterator[Waiter]:
        """One waiter woken by a notify of any of ``keys``."""
        waiter = Waiter()
        with self._lock:
            for key in keys:
                self._waiters.setdefault(key, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                for key in keys:
                    group = self._waiters.get(key)
                    if group is not None:
                        group.discard(waiter)
                        if not group:
                            del self._waiters[key]

    def notify(self, key: str, data: bytes = b"") -> None:
        if key not in self._waiters:
            # Nobody waits (the usual case, on every workflow's start and end). A
            # waiter subscribing meanwhile reads the database after subscribing,
            # and so sees the commit this notify announces.
            return
        with self._lock:
            group = list(self._waiters.get(key, ()))
        for waiter in group:
            waiter.wake(key, data)

    def notify_all(self) -> None:
        """Wake every waiter (e.g. after hints may have been lost): each re-checks the database."""
        with self._lock:
            groups = [w for group in self._waiters.values() for w in group]
        for waiter in groups:
            waiter.wake()

    def has_waiters(self, key: str) -> bool:
        with self._lock:
            return key in self._waiters


def workflow_done(workflow_id: str) -> str:
    return f"done:{workflow_id}"


def workflow_created(workflow_id: str) -> str:
    return f"created:{workflow_id}"


def cancelled(workflow_id: str) -> str:
    return f"cancel:{workflow_id}"


def message(workflow_id: str, topic: str) -> str:
    return f"msg:{workflow_id}:{topic}"


def event(workflow_id: str, key: str) -> str:
    return f"event:{workflow_id}:{key}"


def queue_ready(queue_name: str) -> str:
    """A queue may have work to claim (an enqueue, or capacity freed)."""
    return f"queue:{queue_name}"
