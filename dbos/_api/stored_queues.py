"""Stored queues on DBOS and DBOSClient: ``register_queue``, ``retrieve_queue``,
``list_queues``, ``delete_queue`` (DBOS 2.x), each with an ``_async`` variant.

Thin shells over ``_execution/stored_queues.py``; ``_QueuesMixin`` is a base of
``DBOS`` (class methods on this process's runtime), ``ClientQueuesMixin`` of
``DBOSClient`` (the same on the client's runtime; its Queue handles change
settings but do not enqueue: ``DBOSClient.enqueue`` does).
"""

from __future__ import annotations

from typing import Any, List, Optional

from dbos._api.calls import check_not_async
from dbos._api.instance import runtime
from dbos._api.queue import Queue, QueueRateLimit, queue_spec
from dbos._execution import stored_queues as rules
from dbos._execution.runtime import Runtime


def _register(
    rt: Runtime, client: bool, name: str, concurrency: Optional[int], limiter: Optional[QueueRateLimit],
    on_conflict: str, settings: dict[str, Any],
) -> Queue:
    spec = queue_spec(name, concurrency, limiter, **settings, stored=True)
    rules.register(rt, spec, on_conflict)
    return Queue._stored(name, rt if client else None)


def _retrieve(rt: Runtime, client: bool, name: str) -> Optional[Queue]:
    return Queue._stored(name, rt if client else None) if rules.get(rt, name) is not None else None


def _list(rt: Runtime, client: bool) -> List[Queue]:
    return [Queue._stored(spec.name, rt if client else None) for spec in rules.list_all(rt)]


class _QueuesMixin:
    @classmethod
    def register_queue(
        cls,
        name: str,
        concurrency: Optional[int] = None,
        limiter: Optional[QueueRateLimit] = None,
        *,
        worker_concurrency: Optional[int] = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
        global_concurrency: Optional[int] = None,
        partition_concurrency: Optional[int] = None,
        partition_worker_concurrency: Optional[int] = None,
        partition_limiter: Optional[QueueRateLimit] = None,
        on_conflict: str = rules.ON_CONFLICT_DEFAULT,
    ) -> Queue:
        """Store a queue in the system database (every executor claims from it) and return
        it; ``on_conflict`` says what an existing one of this name becomes:
        ``update_if_latest_version`` (overwritten by an executor of the latest version),
        ``always_update`` or ``never_update``."""
        settings = dict(
            worker_concurrency=worker_concurrency, priority_enabled=priority_enabled,
            partition_queue=partition_queue, polling_interval_sec=polling_interval_sec,
            global_concurrency=global_concurrency, partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency, partition_limiter=partition_limiter,
        )
        check_not_async("register_queue")
        return _register(runtime(), False, name, concurrency, limiter, on_conflict, settings)

    @classmethod
    async def register_queue_async(cls, name: str, *args: Any, **kwargs: Any) -> Queue:
        return await runtime().to_thread(lambda: cls.register_queue(name, *args, **kwargs))

    @classmethod
    def retrieve_queue(cls, name: str) -> Optional[Queue]:
        """The stored queue of this name, or None."""
        check_not_async("retrieve_queue")
        return _retrieve(runtime(), False, name)

    @classmethod
    async def retrieve_queue_async(cls, name: str) -> Optional[Queue]:
        return await runtime().to_thread(lambda: cls.retrieve_queue(name))

    @classmethod
    def list_queues(cls) -> List[Queue]:
        """Every stored queue, by name (queues declared in code are not stored)."""
        check_not_async("list_queues")
        return _list(runtime(), False)

    @classmethod
    async def list_queues_async(cls) -> List[Queue]:
        return await runtime().to_thread(cls.list_queues)

    @classmethod
    def delete_queue(cls, name: str) -> None:
        """Delete the stored queue (nothing if there is none). Its workflows are kept: the
        running ones finish; the waiting ones wait until a queue of this name exists again."""
        check_not_async("delete_queue")
        rules.delete(runtime(), name)

    @classmethod
    async def delete_queue_async(cls, name: str) -> None:
        await runtime().to_thread(lambda: cls.delete_queue(name))


class ClientQueuesMixin:
    """The same methods on a DBOSClient (``update_if_latest_version`` updates: a client
    runs no version)."""

    _rt: Runtime

    def register_queue(
        self,
        name: str,
        concurrency: Optional[int] = None,
        limiter: Optional[QueueRateLimit] = None,
        *,
        worker_concurrency: Optional[int] = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
        global_concurrency: Optional[int] = None,
        partition_concurrency: Optional[int] = None,
        partition_worker_concurrency: Optional[int] = None,
        partition_limiter: Optional[QueueRateLimit] = None,
        on_conflict: str = rules.ON_CONFLICT_DEFAULT,
    ) -> Queue:
        settings = dict(
            worker_concurrency=worker_concurrency, priority_enabled=priority_enabled,
            partition_queue=partition_queue, polling_interval_sec=polling_interval_sec,
            global_concurrency=global_concurrency, partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency, partition_limiter=partition_limiter,
        )
        return _register(self._rt, True, name, concurrency, limiter, on_conflict, settings)

    async def register_queue_async(self, name: str, *args: Any, **kwargs: Any) -> Queue:
        return await self._rt.to_thread(lambda: self.register_queue(name, *args, **kwargs))

    def retrieve_queue(self, name: str) -> Optional[Queue]:
        return _retrieve(self._rt, True, name)

    async def retrieve_queue_async(self, name: str) -> Optional[Queue]:
        return await self._rt.to_thread(lambda: self.retrieve_queue(name))

    def list_queues(self) -> List[Queue]:
        return _list(self._rt, True)

    async def list_queues_async(self) -> List[Queue]:
        return await self._rt.to_thread(self.list_queues)

    def delete_queue(self, name: str) -> None:
        rules.delete(self._rt, name)

    async def delete_queue_async(self, name: str) -> None:
        await self._rt.to_thread(lambda: self.delete_queue(name))
