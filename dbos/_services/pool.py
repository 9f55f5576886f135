"""The threads that run workflows: a thread pool, and one event loop for async workflows
started when the application's loop is not known (``Runtime.app_loop``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import threading
import time
import weakref
from typing import Any, Callable, Coroutine, Optional

# Every pool not yet stopped, for the interpreter-exit hook below.
_LIVE: "weakref.WeakSet[WorkflowPool]" = weakref.WeakSet()
_hook_lock = threading.Lock()
_hook_registered = False


def _at_interpreter_exit() -> None:
    """Runs in the main thread when it is done (returned, or ended by Ctrl-C or
    ``sys.exit()``) while background workflows still run, before Python joins
    their threads: say what it waits for, and let a second Ctrl-C exit at once.
    What is still running stays PENDING in the database and is recovered like
    after a crash (docs/decisions.md, "Interrupts")."""
    running = sorted({wid for pool in list(_LIVE) for wid in pool.running()})
    if not running:
        return
    shown = ", ".join(running[:5]) + (f" and {len(running) - 5} more" if len(running) > 5 else "")
    try:  # from here on, a second Ctrl-C exits at once
        sys.stderr.write(
            f"dbos: waiting for {len(running)} workflow(s) still running in this process to finish"
            f" ({shown}); press Ctrl-C again to exit now (they stay PENDING and are recovered)\n"
        )
        sys.stderr.flush()
        while any(pool.running() for pool in list(_LIVE)):
            time.sleep(0.05)  # interruptible: a second Ctrl-C lands here
    except KeyboardInterrupt:
        left = sorted({wid for pool in list(_LIVE) for wid in pool.running()})
        sys.stderr.write(f"dbos: exiting now; {len(left)} workflow(s) stay PENDING and are recovered\n")
        sys.stderr.flush()
        os._exit(130)


def _register_exit_hook() -> None:
    # threading's exit hooks run in reverse order of registration, so this one runs
    # before concurrent.futures joins its worker threads (registered at its import).
    global _hook_registered
    with _hook_lock:
        if not _hook_registered:
            threading._register_atexit(_at_interpreter_exit)  # type: ignore[attr-defined]
            _hook_registered = True


class WorkflowPool:
    def __init__(self, max_threads: int) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_threads, thread_name_prefix="dbos-workflow"
        )
        # Blocking work of async workflows (database calls, waits) runs here, not on
        # asyncio's small default executor, so many waiting workflows never starve it.
        self.blocking = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_threads, thread_name_prefix="dbos-blocking"
        )
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._loop_thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self._stopped = False
        # The IDs of the workflows running here (the runtime sets it), for the exit hook.
        self.running: Callable[[], list[str]] = lambda: []
        _register_exit_hook()
        _LIVE.add(self)

    def submit(self, fn: Callable[[], Any]) -> "concurrent.futures.Future[Any]":
        return self._executor.submit(fn)

    def submit_coro(
        self, coro: Coroutine[Any, Any, Any], loop: Optional[asyncio.AbstractEventLoop] = None
    ) -> "concurrent.futures.Future[Any]":
        """Run ``coro`` on ``loop`` (the application's), or on this pool's own loop (a
        thread started on first use) if none is given or it is closed."""
        if loop is not None:
            try:
                return asyncio.run_coroutine_threadsafe(coro, loop)
            except RuntimeError:  # closed meanwhile
                pass
        if self._stopped:
            raise RuntimeError("the workflow pool is stopped")
        return asyncio.run_coroutine_threadsafe(coro, self._event_loop())

    def is_own_loop(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Is ``loop`` this pool's own loop (not the application's)?"""
        return loop is self._loop

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="dbos-async-workflows", daemon=True
                )
                thread.start()
                self._loop, self._loop_thread = loop, thread
            return self._loop

    def stop(self, wait: bool = False) -> None:
        self._stopped = True
        _LIVE.discard(self)
        self._executor.shutdown(wait=wait, cancel_futures=True)
        self.blocking.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            loop, thread = self._loop, self._loop_thread
            self._loop = self._loop_thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()
