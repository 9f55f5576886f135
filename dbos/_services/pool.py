"""The threads that run workflows: a thread pool, and one event loop for async workflows."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, Callable, Coroutine, Optional


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

    def submit(self, fn: Callable[[], Any]) -> "concurrent.futures.Future[Any]":
        return self._executor.submit(fn)

    def submit_coro(self, coro: Coroutine[Any, Any, Any]) -> "concurrent.futures.Future[Any]":
        return asyncio.run_coroutine_threadsafe(coro, self._event_loop())

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
        self._executor.shutdown(wait=wait, cancel_futures=True)
        self.blocking.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            loop, thread = self._loop, self._loop_thread
            self._loop = self._loop_thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()
