"""Waits written once, run by a thread or on an event loop.

A wait (recv, get_event, sleep, waiting for a workflow's result) is a generator:
its short database calls run between its ``yield``s, and each ``yield (waiter,
seconds)`` asks to wait until that waiter is woken or ``seconds`` pass. Two
drivers run one:

- ``run_sync`` runs it in the calling thread, waiting on the waiter's
  ``threading.Event`` (the sync API: the caller's thread waits anyway);
- ``run_async`` runs each stretch between two ``yield``s in the runtime's
  blocking pool and waits on the event loop: a wake (``Waiter.on_wake``, in the
  notifying thread) or a loop timer starts the next stretch. A waiting async
  workflow holds no thread, however many wait at once.

A wait subscribes to its wakeups before it reads the database and polls as the
fallback, whichever driver runs it (``dbos/_wakeups``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from typing import TYPE_CHECKING, Any, Callable, Generator, Optional, TypeVar

from dbos._wakeups.local import Waiter

if TYPE_CHECKING:
    from dbos._execution.runtime import Runtime

T = TypeVar("T")

# What a wait yields: wait on this waiter for at most this many seconds.
Pause = tuple[Waiter, float]
Wait = Generator[Pause, None, T]


def run_sync(wait: "Wait[T]") -> T:
    """Run a wait in this thread."""
    try:
        pause = next(wait)
        while True:
            waiter, seconds = pause
            waiter.wait(seconds)
            pause = wait.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        wait.close()


def no_wait(fn: Callable[[], T]) -> "Wait[T]":
    """A wait that only calls ``fn`` (for code taking a wait where there is nothing to wait for)."""
    return fn()
    yield  # a generator function  # noqa: B901


class _Stepper:
    """One wait driven from an event loop: each step (to the next ``yield``) runs in a
    pool thread, in the context of the awaiting task. The lock orders a close after a
    step still running (the awaiting task was cancelled meanwhile)."""

    __slots__ = ("_wait", "_lock", "_started", "_ctx")

    def __init__(self, wait: "Wait[Any]") -> None:
        self._wait = wait
        self._lock = threading.Lock()
        self._started = False
        self._ctx = contextvars.copy_context()

    def step(self) -> tuple[bool, Any]:
        """(False, pause) or (True, the wait's result); raises what the wait raises."""
        with self._lock:
            return self._ctx.run(self._advance)

    def _advance(self) -> tuple[bool, Any]:
        try:
            if not self._started:
                self._started = True
                return False, next(self._wait)
            return False, self._wait.send(None)
        except StopIteration as done:
            return True, done.value

    def close(self) -> None:
        with self._lock:
            self._wait.close()


def _deliver(source: "concurrent.futures.Future[Any]", future: "asyncio.Future[Any]") -> None:
    if future.done():
        return
    error = source.exception()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(source.result())


class _Resume:
    """The next step of a paused wait, started once: by a wake (in the waking thread,
    so the step starts without a detour through the event loop), by the timer, or
    not at all if the awaiting task is cancelled first."""

    __slots__ = ("_pool", "_stepper", "_loop", "future", "_lock", "_state", "stepped")

    def __init__(self, pool: "concurrent.futures.Executor", stepper: _Stepper,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._stepper = stepper
        self._loop = loop
        self.future: "asyncio.Future[tuple[bool, Any]]" = loop.create_future()
        self._lock = threading.Lock()
        self._state = "paused"  # -> "stepping" (fired) or "dropped" (cancelled first)
        self.stepped = False  # the step it started has ended

    def fire(self) -> None:
        with self._lock:
            if self._state != "paused":
                return
            self._state = "stepping"
        try:
            step = self._pool.submit(self._stepper.step)
        except RuntimeError as e:  # the pool is shut down (DBOS destroyed)
            step = concurrent.futures.Future()
            step.set_exception(e)
        step.add_done_callback(self._done)

    def _done(self, step: "concurrent.futures.Future[Any]") -> None:
        self.stepped = True
        try:
            self._loop.call_soon_threadsafe(_deliver, step, self.future)
        except RuntimeError:  # the loop is closed: nobody awaits the step any more
            pass

    def drop(self) -> bool:
        """Cancel before it fires; False if its step already started."""
        with self._lock:
            if self._state == "paused":
                self._state = "dropped"
                return True
            return False


async def run_async(rt: "Runtime", wait: "Wait[T]") -> T:
    """Run a wait from the running event loop: its database calls in ``rt``'s blocking
    pool, its waits on the loop. A wake starts the next step in the pool at once."""
    loop = asyncio.get_running_loop()
    stepper = _Stepper(wait)
    resume = _Resume(rt.pool.blocking, stepper, loop)
    resume.fire()  # the first step
    waiter: Optional[Waiter] = None
    timer: Optional[asyncio.TimerHandle] = None
    closes_later = False
    try:
        while True:
            try:
                finished, value = await resume.future
            finally:
                if timer is not None:
                    timer.cancel()
                if waiter is not None:
                    waiter.on_wake(None)
            if finished:
                return value  # type: ignore[no-any-return]
            waiter, seconds = value
            resume = _Resume(rt.pool.blocking, stepper, loop)
            waiter.on_wake(resume.fire)
            timer = loop.call_later(max(0.0, seconds), resume.fire)
            if waiter.is_set():  # woken before on_wake
                resume.fire()
    except BaseException:
        if not resume.drop() and not resume.stepped:
            # Cancelled while a step may still run in its thread: close the wait after it.
            try:
                rt.pool.blocking.submit(stepper.close)
                closes_later = True
            except RuntimeError:  # the pool is shut down (DBOS destroyed)
                pass
        raise
    finally:
        if not closes_later:
            stepper.close()
