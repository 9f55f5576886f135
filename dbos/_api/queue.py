"""Queue: declared at import time like workflows; enqueue returns a handle."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Optional, ParamSpec, TypedDict, TypeVar

from dbos._api.decorators import info_of
from dbos._api.handles import WorkflowHandle, WorkflowHandleAsync
from dbos._api.instance import runtime
from dbos._execution import checks
from dbos._execution import queues as q
from dbos._execution import workflow as wf
from dbos._execution.registry import REGISTRY
from dbos.error import DBOSException

P = ParamSpec("P")
R = TypeVar("R")


class QueueRateLimit(TypedDict):
    limit: int
    period: float


_MAX_INT = 2_147_483_647  # what the database's integer comparisons take


def _positive_int(queue: str, name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_INT):
        raise DBOSException(
            f"Queue {queue!r}: {name} must be an integer in 1..{_MAX_INT} or None, got {checks.short(value)}"
        )


class QueueArgumentError(DBOSException, ValueError):
    """An invalid ``Queue(...)`` argument: a ValueError, as DBOS Transact 2.x raises."""


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


class Queue:
    """A named queue of workflows, shared by every executor of the fleet."""

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
    ) -> None:
        checks.identifier("Queue name", name)
        _positive_int(name, "concurrency", concurrency)
        _positive_int(name, "worker_concurrency", worker_concurrency)
        if concurrency is not None and worker_concurrency is not None and worker_concurrency > concurrency:
            raise DBOSException(
                f"Queue {name}: worker_concurrency ({worker_concurrency}) exceeds concurrency ({concurrency})"
            )
        limit = period = None
        if limiter is not None:
            if not isinstance(limiter, dict) or set(limiter) != {"limit", "period"}:
                raise DBOSException(f"Queue {name}: limiter must be {{'limit': int, 'period': seconds}}, got {limiter!r}")
            _positive_int(name, "limiter limit", limiter["limit"])
            period = limiter["period"]
            try:  # NaN, infinity and periods beyond ten years would break every claim of the queue
                checks.duration("limiter period", period, positive=True)
            except DBOSException as e:
                raise DBOSException(f"Queue {name}: {e}") from None
            if period < 0.001:
                raise DBOSException(f"Queue {name}: limiter period must be at least 0.001 seconds, got {period}")
            limit, period = int(limiter["limit"]), float(period)
        if isinstance(polling_interval_sec, bool) or not isinstance(polling_interval_sec, (int, float)) \
                or not 0.001 <= polling_interval_sec <= 3600:
            raise DBOSException(f"Queue {name}: polling_interval_sec must be 0.001..3600, got {polling_interval_sec!r}")
        self.name = name
        self.concurrency = concurrency
        self.worker_concurrency = worker_concurrency
        self.limiter = limiter
        self.priority_enabled = priority_enabled
        self.partition_queue = partition_queue
        self.polling_interval_sec = float(polling_interval_sec)
        self.spec = q.QueueSpec(
            name, concurrency, limit, period, worker_concurrency, bool(priority_enabled),
            bool(partition_queue), float(polling_interval_sec),
        )
        REGISTRY.add_queue(self.spec)

    def _call(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> wf.Call:
        info, instance = info_of(func, startable=True)
        return wf.Call.of(info, (instance, *args) if instance is not None else args, kwargs)

    def enqueue(self, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> WorkflowHandle[R]:
        rt = runtime()
        workflow_id = q.enqueue(rt, self.spec, self._call(func, args, kwargs))
        return WorkflowHandle(rt, workflow_id)

    async def enqueue_async(
        self, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]:
        rt = runtime()
        call = self._call(func, args, kwargs)
        workflow_id = await rt.to_thread(q.enqueue, rt, self.spec, call)
        return WorkflowHandleAsync(rt, workflow_id)

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    @property
    def global_concurrency(self) -> Optional[int]:
        """DBOS 2.x's name for ``concurrency``."""
        return self.concurrency

    if not TYPE_CHECKING:  # type checkers still report a misspelt attribute

        def __getattr__(self, name: str) -> Any:
            """A DBOS 2.x Queue method left out here: a clear DBOSNotImplementedError."""
            from dbos._api import missing

            missing.raise_missing("Queue", name, missing.QUEUE_METHODS)
