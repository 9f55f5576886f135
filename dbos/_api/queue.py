"""Queue: declared in code like workflows, or stored in the database (``DBOS.register_queue``).

A queue declared in code (``Queue(...)``) has the settings its declaration gives,
in this process. A stored queue (returned by ``DBOS.register_queue`` /
``retrieve_queue`` / ``list_queues``, or ``Queue(name, database_backed_queue=True)``)
is a handle on a row of the ``queues`` table: reading a setting reads the row,
and its ``set_*`` methods change it for the whole fleet at run time.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Optional, ParamSpec, TypedDict, TypeVar

from dbos._api.decorators import info_of
from dbos._api.handles import WorkflowHandle, WorkflowHandleAsync
from dbos._api.instance import runtime
from dbos._execution import checks
from dbos._execution import queues as q
from dbos._execution import stored_queues as sq
from dbos._execution import workflow as wf
from dbos._execution.registry import REGISTRY
from dbos._execution.runtime import Runtime
from dbos._execution.step import reserve
from dbos._execution.stored_queues import QueueArgumentError
from dbos.error import DBOSException

P = ParamSpec("P")
R = TypeVar("R")


class QueueRateLimit(TypedDict):
    limit: int
    period: float


def _argument_errors(init: Callable[..., None]) -> Callable[..., None]:
    """``Queue.__init__`` raising a ValueError (still a DBOSException) for a bad argument."""

    @functools.wraps(init)
    def checked(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except DBOSException as e:
            if isinstance(e, ValueError):
                raise
            raise QueueArgumentError(str(e)) from None

    return checked


def queue_spec(
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
    stored: bool = False,
) -> q.QueueSpec:
    """The checked settings of ``Queue(...)`` and ``register_queue(...)``."""
    checks.identifier("Queue name", name)
    # Deprecated arguments with the ones replacing them: refused, as DBOS 2.31.1 does.
    if global_concurrency is not None and concurrency is not None:
        raise QueueArgumentError(
            f"Queue {name}: concurrency is deprecated in favor of global_concurrency; set only one of them"
        )
    if partition_queue and (partition_concurrency is not None or partition_worker_concurrency is not None
                            or partition_limiter is not None):
        raise QueueArgumentError(
            f"Queue {name}: partition_queue is deprecated in favor of the partition_* limits; set only one of them"
        )
    if partition_queue and global_concurrency is not None:
        raise QueueArgumentError(
            f"Queue {name}: partition_queue applies every limit per partition, so it cannot be combined with "
            "global_concurrency; use partition_concurrency instead"
        )
    if global_concurrency is not None:  # DBOS 2.x's name for concurrency
        concurrency = global_concurrency
    limit, period = sq.check_limiter(name, "limiter", limiter)
    partition_limit, partition_period = sq.check_limiter(name, "partition_limiter", partition_limiter)
    spec = q.QueueSpec(
        name, concurrency, limit, period, worker_concurrency, bool(priority_enabled), bool(partition_queue),
        sq.check_interval(name, polling_interval_sec),
        partition_concurrency=partition_concurrency, partition_worker_concurrency=partition_worker_concurrency,
        partition_limit=partition_limit, partition_period_sec=partition_period, stored=stored,
    )
    sq.check_spec(spec)
    return spec


def _limiter(limit: Optional[int], period: Optional[float]) -> Optional[QueueRateLimit]:
    return QueueRateLimit(limit=limit, period=period) if limit is not None and period is not None else None


def _reader(attr: str) -> Callable[[q.QueueSpec], Any]:
    if attr == "limiter":
        return lambda s: _limiter(s.limit, s.period_sec)
    if attr == "partition_limiter":
        return lambda s: _limiter(s.partition_limit, s.partition_period_sec)
    field = "concurrency" if attr == "global_concurrency" else attr
    return lambda s: getattr(s, field)


def _count(attr: str, zero: bool = False) -> Callable[[str, Any], dict[str, Any]]:
    column = "concurrency" if attr == "global_concurrency" else attr

    def changes(name: str, value: Any) -> dict[str, Any]:
        sq.check_count(name, attr, value, zero=zero)
        return {column: value}

    return changes


def _rate(prefix: str, attr: str) -> Callable[[str, Any], dict[str, Any]]:
    def changes(name: str, value: Any) -> dict[str, Any]:
        limit, period = sq.check_limiter(name, attr, value)
        return {f"{prefix}rate_limit_max": limit, f"{prefix}rate_limit_period_sec": period}

    return changes


def _flag(attr: str) -> Callable[[str, Any], dict[str, Any]]:
    def changes(name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, bool):
            raise QueueArgumentError(f"Queue {name}: {attr} must be True or False, got {checks.short(value)}")
        return {attr: value}

    return changes


# Every setting DBOS 2.x reads and changes at run time: name -> its changes to the stored row.
_SETTERS: dict[str, Callable[[str, Any], dict[str, Any]]] = {
    "concurrency": _count("concurrency"),
    "global_concurrency": _count("global_concurrency"),
    "worker_concurrency": _count("worker_concurrency", zero=True),
    "limiter": _rate("", "limiter"),
    "priority_enabled": _flag("priority_enabled"),
    "partition_queue": _flag("partition_queue"),
    "polling_interval_sec": lambda name, v: {"polling_interval_sec": sq.check_interval(name, v)},
    "partition_concurrency": _count("partition_concurrency"),
    "partition_worker_concurrency": _count("partition_worker_concurrency"),
    "partition_limiter": _rate("partition_", "partition_limiter"),
}


class Queue:
    """A named queue of workflows, shared by every executor of the fleet."""

    name: str
    database_backed_queue: bool

    @_argument_errors
    def __init__(
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
        database_backed_queue: bool = False,
    ) -> None:
        """``database_backed_queue=True``: a handle on the stored queue of this name (its
        settings are the stored ones; the other arguments are only checked)."""
        spec = queue_spec(
            name, concurrency, limiter, worker_concurrency=worker_concurrency, priority_enabled=priority_enabled,
            partition_queue=partition_queue, polling_interval_sec=polling_interval_sec,
            global_concurrency=global_concurrency, partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency, partition_limiter=partition_limiter,
            stored=bool(database_backed_queue),
        )
        self.name = name
        self.database_backed_queue = bool(database_backed_queue)
        self._declared = spec
        self._client_rt: Optional[Runtime] = None
        if not database_backed_queue:
            REGISTRY.add_queue(spec)

    @classmethod
    def _stored(cls, name: str, client_rt: Optional[Runtime] = None) -> "Queue":
        """A handle on a stored queue (``client_rt``: a DBOSClient's runtime)."""
        queue = cls.__new__(cls)
        queue.name, queue.database_backed_queue, queue._client_rt = name, True, client_rt
        queue._declared = q.QueueSpec(name, None, None, None, None, False, False, 1.0, stored=True)
        return queue

    def _rt(self) -> Runtime:
        return self._client_rt if self._client_rt is not None else runtime()

    @property
    def spec(self) -> q.QueueSpec:
        """The queue's settings now (a stored queue's are read from the database)."""
        if not self.database_backed_queue:
            return self._declared
        return sq.get_existing(self._rt(), self.name)

    def _set(self, attr: str, value: Any) -> None:
        if not self.database_backed_queue:
            raise DBOSException(
                f"Cannot configure queue {self.name}: its settings are fixed where it is declared in code; "
                "only a queue registered with DBOS.register_queue changes at run time"
            )
        sq.update(self._rt(), self.name, **_SETTERS[attr](self.name, value))

    # -- enqueue ------------------------------------------------------------------------
    def _call(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> wf.Call:
        info, instance = info_of(func, startable=True)
        return wf.Call.of(info, (instance, *args) if instance is not None else args, kwargs)

    def _enqueue_spec(self) -> q.QueueSpec:
        if self._client_rt is not None:
            raise DBOSException(
                f"Cannot enqueue on queue {self.name} from a Queue of a DBOSClient; use DBOSClient.enqueue"
            )
        if REGISTRY.cleared and not self.spec.stored:
            REGISTRY.ensure_queue(self.spec)  # a module-level Queue used after destroy(destroy_registry=True)
        return self.spec

    def enqueue(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> WorkflowHandle[R]:
        rt = runtime()
        rt.note_app_loop()  # called from async code: the workflow runs on its loop
        workflow_id = q.enqueue(rt, self._enqueue_spec(), self._call(func, args, kwargs))
        return WorkflowHandle(rt, workflow_id)

    async def enqueue_async(
        self, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]:
        rt = runtime()
        rt.note_app_loop()  # the workflow runs on this loop
        call = self._call(func, args, kwargs)
        reserved = reserve()  # its step ID in the calling workflow: taken before the first await
        workflow_id = await rt.to_thread(lambda: q.enqueue(rt, self._enqueue_spec(), call, reserved=reserved))
        return WorkflowHandleAsync(rt, workflow_id)

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    # -- settings: read (a stored queue's from the database), and changed at run time -------------
    def _get(self, attr: str) -> Any:
        return _reader(attr)(self.spec)

    async def _get_async(self, attr: str) -> Any:
        return await self._rt().to_thread(lambda: self._get(attr))

    async def _set_async(self, attr: str, value: Any) -> None:
        await self._rt().to_thread(lambda: self._set(attr, value))

    @property
    def concurrency(self) -> Optional[int]:
        """At most this many of the queue's workflows run at once, fleet-wide."""
        return self._get("concurrency")  # type: ignore[no-any-return]

    @property
    def global_concurrency(self) -> Optional[int]:
        """DBOS 2.x's name for ``concurrency``."""
        return self._get("global_concurrency")  # type: ignore[no-any-return]

    @property
    def worker_concurrency(self) -> Optional[int]:
        """At most this many run at once on each executor (0: none starts; paused)."""
        return self._get("worker_concurrency")  # type: ignore[no-any-return]

    @property
    def limiter(self) -> Optional[QueueRateLimit]:
        return self._get("limiter")  # type: ignore[no-any-return]

    @property
    def priority_enabled(self) -> bool:
        return self._get("priority_enabled")  # type: ignore[no-any-return]

    @property
    def partition_queue(self) -> bool:
        return self._get("partition_queue")  # type: ignore[no-any-return]

    @property
    def polling_interval_sec(self) -> float:
        return self._get("polling_interval_sec")  # type: ignore[no-any-return]

    @property
    def partition_concurrency(self) -> Optional[int]:
        return self._get("partition_concurrency")  # type: ignore[no-any-return]

    @property
    def partition_worker_concurrency(self) -> Optional[int]:
        return self._get("partition_worker_concurrency")  # type: ignore[no-any-return]

    @property
    def partition_limiter(self) -> Optional[QueueRateLimit]:
        return self._get("partition_limiter")  # type: ignore[no-any-return]

    def set_concurrency(self, value: Optional[int]) -> None:
        """Change the fleet-wide limit: every executor's next claim obeys it."""
        self._set("concurrency", value)

    def set_global_concurrency(self, value: Optional[int]) -> None:
        self._set("global_concurrency", value)

    def set_worker_concurrency(self, value: Optional[int]) -> None:
        self._set("worker_concurrency", value)

    def set_limiter(self, value: Optional[QueueRateLimit]) -> None:
        self._set("limiter", value)

    def set_priority_enabled(self, value: bool) -> None:
        self._set("priority_enabled", value)

    def set_partition_queue(self, value: bool) -> None:
        self._set("partition_queue", value)

    def set_polling_interval_sec(self, value: float) -> None:
        self._set("polling_interval_sec", value)

    def set_partition_concurrency(self, value: Optional[int]) -> None:
        self._set("partition_concurrency", value)

    def set_partition_worker_concurrency(self, value: Optional[int]) -> None:
        self._set("partition_worker_concurrency", value)

    def set_partition_limiter(self, value: Optional[QueueRateLimit]) -> None:
        self._set("partition_limiter", value)

    async def set_concurrency_async(self, value: Optional[int]) -> None:
        await self._set_async("concurrency", value)

    async def set_global_concurrency_async(self, value: Optional[int]) -> None:
        await self._set_async("global_concurrency", value)

    async def set_worker_concurrency_async(self, value: Optional[int]) -> None:
        await self._set_async("worker_concurrency", value)

    async def set_limiter_async(self, value: Optional[QueueRateLimit]) -> None:
        await self._set_async("limiter", value)

    async def set_priority_enabled_async(self, value: bool) -> None:
        await self._set_async("priority_enabled", value)

    async def set_partition_queue_async(self, value: bool) -> None:
        await self._set_async("partition_queue", value)

    async def set_polling_interval_sec_async(self, value: float) -> None:
        await self._set_async("polling_interval_sec", value)

    async def set_partition_concurrency_async(self, value: Optional[int]) -> None:
        await self._set_async("partition_concurrency", value)

    async def set_partition_worker_concurrency_async(self, value: Optional[int]) -> None:
        await self._set_async("partition_worker_concurrency", value)

    async def set_partition_limiter_async(self, value: Optional[QueueRateLimit]) -> None:
        await self._set_async("partition_limiter", value)

    async def get_concurrency_async(self) -> Optional[int]:
        return await self._get_async("concurrency")  # type: ignore[no-any-return]

    async def get_global_concurrency_async(self) -> Optional[int]:
        return await self._get_async("global_concurrency")  # type: ignore[no-any-return]

    async def get_worker_concurrency_async(self) -> Optional[int]:
        return await self._get_async("worker_concurrency")  # type: ignore[no-any-return]

    async def get_limiter_async(self) -> Optional[QueueRateLimit]:
        return await self._get_async("limiter")  # type: ignore[no-any-return]

    async def get_priority_enabled_async(self) -> bool:
        return await self._get_async("priority_enabled")  # type: ignore[no-any-return]

    async def get_partition_queue_async(self) -> bool:
        return await self._get_async("partition_queue")  # type: ignore[no-any-return]

    async def get_polling_interval_sec_async(self) -> float:
        return await self._get_async("polling_interval_sec")  # type: ignore[no-any-return]

    async def get_partition_concurrency_async(self) -> Optional[int]:
        return await self._get_async("partition_concurrency")  # type: ignore[no-any-return]

    async def get_partition_worker_concurrency_async(self) -> Optional[int]:
        return await self._get_async("partition_worker_concurrency")  # type: ignore[no-any-return]

    async def get_partition_limiter_async(self) -> Optional[QueueRateLimit]:
        return await self._get_async("partition_limiter")  # type: ignore[no-any-return]

    if not TYPE_CHECKING:  # type checkers still report a misspelt attribute

        def __getattr__(self, name: str) -> Any:
            """A DBOS 2.x Queue method left out here: a clear DBOSNotImplementedError."""
            from dbos._api import missing

            missing.raise_missing("Queue", name, missing.QUEUE_METHODS)
