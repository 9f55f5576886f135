"""The Runtime: what an executing workflow needs from the process it runs in.

Built by ``DBOS.launch()`` and handed to every execution; it holds the frozen
Settings, the databases, the wakeups and the table of workflows running in
this process. It starts no threads itself: the pool that runs workflows is
given to it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, Iterator, Optional, Protocol, TypeVar

from dbos._config.settings import Settings
from dbos._execution.registry import Registry
from dbos._storage import workflows
from dbos._storage.database import Database
from dbos._telemetry.metrics import Stats
from dbos._wakeups.hub import Hub
from dbos._wakeups.local import cancelled

T = TypeVar("T")


class Pool(Protocol):
    @property
    def blocking(self) -> concurrent.futures.Executor: ...

    def submit(self, fn: Callable[[], Any]) -> "concurrent.futures.Future[Any]": ...

    def submit_coro(
        self, coro: Coroutine[Any, Any, Any], loop: Optional[asyncio.AbstractEventLoop] = None
    ) -> "concurrent.futures.Future[Any]": ...

    def is_own_loop(self, loop: asyncio.AbstractEventLoop) -> bool: ...


class CancelFlag:
    """The part of ``threading.Event`` an execution's cancel flag needs, with the
    Event itself built only when someone waits on the flag (a step's retry
    delay): one is created per workflow call, and most are never waited on."""

    __slots__ = ("_set", "_event")
    _lazy = threading.Lock()

    def __init__(self) -> None:
        self._set = False
        self._event: Optional[threading.Event] = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with self._lazy:
            self._set = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Like ``Event.wait``: True once set, False if the timeout passed first."""
        if self._set:
            return True
        with self._lazy:
            if self._event is None:
                self._event = threading.Event()
                if self._set:
                    self._event.set()
            event = self._event
        return event.wait(timeout)


class Outcome:
    """An execution's result or error, set once it is recorded.

    Nobody blocks on it: waiters wait on the wakeup hub and then look here
    (``results.wait_result``), so it needs none of the condition variable a
    ``concurrent.futures.Future`` builds and notifies on every call. The value
    is stored before the flag, so a reader that sees ``done()`` sees it.
    """

    __slots__ = ("_done", "_value", "_error")

    def __init__(self) -> None:
        self._done = False
        self._value: Any = None
        self._error: Optional[BaseException] = None

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        self._value = value
        self._done = True

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._done = True

    def result(self) -> Any:
        """The value (or raise the error); only once ``done()``."""
        if not self._done:
            raise RuntimeError("the execution has no outcome yet")
        if self._error is not None:
            raise self._error
        return self._value


class LocalExecution:
    """A workflow executing in this process: its outcome, cancel flag and deadline."""

    __slots__ = ("outcome", "cancel_event", "deadline_ms", "queue_name", "began", "name", "claimed_again")

    def __init__(self, queue_name: Optional[str] = None) -> None:
        self.began = 0.0  # time.monotonic() when it started running here
        self.name = ""
        self.outcome = Outcome()
        self.cancel_event = CancelFlag()
        self.deadline_ms: Optional[int] = None
        self.queue_name = queue_name
        # Claimed from a queue again while this execution, preempted, was still ending
        # (cancelled, then resumed and claimed at once): run again when it ends.
        self.claimed_again = False


@dataclass(frozen=True, eq=False)
class Deferred:
    """A write a workflow of this process owes the database, deferred while it was unreachable.

    ``attempt()`` does it (raising while the database is still unreachable);
    ``abandon(reason)`` gives up (at ``DBOS.destroy()``): local waiters get
    ``reason`` and the workflow stays PENDING for recovery at the next launch.
    """

    workflow_id: str
    what: str  # for logs: "outcome" or "resume"
    attempt: Callable[[], None]
    abandon: Callable[[str], None]


def now_ms() -> int:
    return int(time.time() * 1000)


_creation_lock = threading.Lock()
_last_creation_ms = 0


def creation_ms() -> int:
    """``now_ms()``, but strictly increasing within this process: the ``created_at`` of
    new workflows. Queues claim in (priority, created_at) order, so two workflows one
    process enqueues in the same millisecond keep their order, also after a hand-over
    rewrote one of them (two processes have no order between them to keep)."""
    global _last_creation_ms
    with _creation_lock:
        now = max(now_ms(), _last_creation_ms + 1)
        _last_creation_ms = now
        return now


class ClaimGate:
    """Claims made off the poller's thread (a finishing workflow handing its queue
    slot on) against the poller's sweep of orphaned claims: a sweep must not see a
    row claimed here before it is registered, or it would put it back on its queue
    while it starts here. Handovers share the gate; a sweep holds it alone."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._sharing = 0
        self._sweeping = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._sweeping:
                self._cond.wait()
            self._sharing += 1
        try:
            yield
        finally:
            with self._cond:
                self._sharing -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._sweeping:
                self._cond.wait()
            self._sweeping = True  # no new handover starts from here on
            while self._sharing:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._sweeping = False
                self._cond.notify_all()


def _no_fence() -> None:
    pass


class Runtime:
    def __init__(
        self,
        settings: Settings,
        sys_db: Database,
        app_db: Database,
        registry: Registry,
        app_version: str,
        pool: Pool,
        wakeups: Hub,
        logger: logging.Logger,
    ) -> None:
        self.settings = settings
        self.sys_db = sys_db
        self.app_db = app_db
        self.registry = registry
        self.app_version = app_version
        self.executor_id = settings.executor_id
        self.stats = Stats()
        self.incarnation = 0  # this process's incarnation of its executor ID (the heartbeat registers it)
        # Called at the start of every step: makes sure this executor was not declared
        # dead meanwhile (a zombie must not start a step of work handed to another).
        self.confirm_alive: Callable[[], None] = _no_fence
        self.pool = pool
        self.wakeups = wakeups
        self.logger = logger
        self._running: dict[str, LocalExecution] = {}
        self._deferred: list[Deferred] = []
        self._lock = threading.Lock()
        # Queue claims: the poller opens them while it runs (a finishing workflow
        # hands its slot on only then), and a handover whose outcome is unknown
        # asks the poller to sweep for orphaned claims.
        self.claims_open = False
        self.claim_gate = ClaimGate()
        self._sweep_requested = False
        # Queues stored in the database, as this process last read them (name -> QueueSpec;
        # the poller keeps it current). The claim itself reads their limits afresh.
        self.stored_queues: dict[str, Any] = {}
        # The application's event loop, where async workflows started here from a queue,
        # recovery or sync code run (``note_app_loop``); None until one is seen.
        self._app_loop: Optional[asyncio.AbstractEventLoop] = None

    def queue_spec(self, name: str) -> Any:
        """The QueueSpec of a queue declared in code here, else of a stored queue; or None."""
        spec = self.registry.queues.get(name)
        return spec if spec is not None else self.stored_queues.get(name)

    # -- the application's event loop ------------------------------------------
    def note_app_loop(self) -> None:
        """The event loop running in this thread, if any, is the application's from now on:
        called by ``launch()`` and by every call that starts or enqueues a workflow."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if not self.pool.is_own_loop(loop):  # a workflow on the pool's loop is not the application
            self._app_loop = loop

    def app_loop(self) -> Optional[asyncio.AbstractEventLoop]:
        """The application's event loop, while it runs (else None: the pool's own loop)."""
        loop = self._app_loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return None
        return loop

    def request_orphan_sweep(self) -> None:
        self._sweep_requested = True

    def take_orphan_sweep(self) -> bool:
        requested, self._sweep_requested = self._sweep_requested, False
        return requested

    # -- workflows running in this process ---------------------------------
    def claim_local(
        self, workflow_id: str, queue_name: Optional[str] = None, *, claimed: bool = False
    ) -> tuple[LocalExecution, bool]:
        """Register an execution; (existing, False) if one already runs here. ``claimed``:
        the row was just claimed from a queue; if the execution here is a preempted one
        still ending, it is marked to run again when it ends (``release_local``)."""
        with self._lock:
            existing = self._running.get(workflow_id)
            if existing is not None:
                if claimed and existing.cancel_event.is_set():
                    existing.claimed_again = True
                return existing, False
            local = LocalExecution(queue_name=queue_name)
            self._running[workflow_id] = local
            return local, True

    def local_count(self, queue_name: str) -> int:
        """How many workflows of this queue run in this process now."""
        with self._lock:
            return sum(1 for e in self._running.values() if e.queue_name == queue_name)

    def release_local(self, workflow_id: str) -> Optional[LocalExecution]:
        """Unregister the execution. If it was claimed again meanwhile (``claim_local``),
        register and return its successor, which the caller starts (``recovery.release``)."""
        with self._lock:
            ended = self._running.pop(workflow_id, None)
            if ended is None or not ended.claimed_again:
                return None
            successor = LocalExecution(queue_name=ended.queue_name)
            self._running[workflow_id] = successor
            return successor

    def local(self, workflow_id: str) -> Optional[LocalExecution]:
        return self._running.get(workflow_id)

    def nearest_local_deadline_ms(self) -> Optional[int]:
        with self._lock:
            deadlines = [e.deadline_ms for e in self._running.values() if e.deadline_ms is not None]
        return min(deadlines) if deadlines else None

    def running_ids(self) -> list[str]:
        with self._lock:
            return list(self._running)

    # -- writes owed to the database after an outage ---------------------------
    def defer(self, work: Deferred) -> None:
        """Owe a write until the database is reachable (the outcome retrier does it)."""
        with self._lock:
            self._deferred.append(work)

    def deferred(self) -> list[Deferred]:
        """What is owed, oldest first."""
        with self._lock:
            return list(self._deferred)

    def drop_deferred(self, work: Deferred) -> None:
        with self._lock:
            if work in self._deferred:
                self._deferred.remove(work)

    # -- cancellation -------------------------------------------------------
    def preempt_local(self, workflow_id: str) -> None:
        """Flag a local execution as cancelled and wake any wait it is in."""
        local = self._running.get(workflow_id)
        if local is not None:
            local.cancel_event.set()
        self.wakeups.local.notify(cancelled(workflow_id))

    async def to_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (database, waits) for an async workflow, keeping its context."""
        ctx = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool.blocking, functools.partial(ctx.run, fn, *args))

    def on_deadline(self, workflow_id: str) -> None:
        """A workflow's deadline passed: cancel it durably."""
        self.sys_db.run(
            lambda c: workflows.set_status(c, workflow_id, "CANCELLED", now_ms())
        )
        self.preempt_local(workflow_id)
