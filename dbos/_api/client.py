"""DBOSClient: enqueue, inspect and message workflows from any Python process.

The client needs no workflow code: it enqueues by workflow and queue name,
and waits through the same database + wakeup machinery as an executor
(without Redis it polls). Queue declarations live in the executors, so the
client cannot check priority/partition settings against them; it validates
what it can (ranges and types) and the executors run what it enqueued.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Concatenate,
    Coroutine,
    Dict,
    List,
    Optional,
    ParamSpec,
    TypeVar,
    Union,
)

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dbos._api.attributes import ClientAttributesMixin
from dbos._api.enqueue import EnqueueOptions, enqueue_with_options
from dbos._api.handles import WorkflowHandle, WorkflowHandleAsync, _poll_interval
from dbos._api.missing import check_serialization_type
from dbos._api.retention import ClientRetentionMixin, Messages, check_messages
from dbos._api.schedules import ClientSchedulesMixin
from dbos._api.stored_queues import ClientQueuesMixin
from dbos._config.settings import load_settings
from dbos._execution import context, management, messaging, outbox, results, versions
from dbos._execution.registry import Registry
from dbos._execution.runtime import Runtime
from dbos._execution.serialization import WorkflowSerializationFormat
from dbos._execution.status import StepInfo, WorkflowStatus
from dbos._execution.waits import run_async
from dbos._services.pool import WorkflowPool
from dbos._storage import caller_tx
from dbos._storage.database import Database
from dbos._storage.migrations import migrate_system
from dbos._wakeups.hub import Hub
from dbos.error import DBOSException

# DBOSClient keywords of DBOS 2.x that change nothing here: one serializer (pickle), waits
# that poll at most once per interval each, connection retries as every call makes them.
_CLIENT_NO_EFFECT = frozenset({"serializer", "system_database_polling_concurrency", "retry_connection_errors"})


P = ParamSpec("P")
R = TypeVar("R")


def _in_thread(
    sync: Callable[Concatenate["DBOSClient", P], R],
) -> Callable[Concatenate["DBOSClient", P], Coroutine[Any, Any, R]]:
    """The ``_async`` variant of a client method: the sync body, run by ``Runtime.to_thread``
    (the blocking pool, with the caller's context), under the same typed parameters."""

    async def variant(self: "DBOSClient", /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._rt.to_thread(functools.partial(sync, self, *args, **kwargs))

    variant.__name__ = f"{sync.__name__}_async"
    variant.__qualname__ = f"{sync.__qualname__}_async"
    variant.__doc__ = f"Coroutine version of DBOSClient.{sync.__name__}."
    setattr(variant, "__signature__", inspect.signature(sync))  # as `async def` would show it
    return variant


class DBOSClient(ClientSchedulesMixin, ClientRetentionMixin, ClientQueuesMixin, ClientAttributesMixin):
    def __init__(
        self,
        system_database_url: Optional[str] = None,
        *,
        redis_url: Optional[str] = None,
        system_database_schema: Optional[str] = None,
        polling_interval_sec: float = 1.0,
        # DBOS 2.x keywords (docs/decisions.md, "Names, keywords and config keys"):
        dbos_system_schema: Optional[str] = None,
        application_database_url: Optional[str] = None,
        database_url: Optional[str] = None,
        system_database_engine: Any = None,
        system_database_pool_size: Optional[int] = None,
        lazy: bool = False,
        use_listen_notify: bool = False,
        application_name: Optional[str] = None,
        **dbos_only: Any,
    ) -> None:
        from dbos._api.dbos import wakeup_namespace  # the namespace executors publish on

        unknown = sorted(set(dbos_only) - _CLIENT_NO_EFFECT)
        if unknown:
            raise TypeError(f"DBOSClient() got an unexpected keyword argument {unknown[0]!r}")
        if lazy and use_listen_notify:
            raise DBOSException("A DBOSClient cannot be both lazy and use_listen_notify (DBOS 2.x refuses it too)")
        if system_database_schema is not None and dbos_system_schema is not None \
                and system_database_schema != dbos_system_schema:
            raise DBOSException("give DBOSClient one of system_database_schema and dbos_system_schema, not both")
        pool = system_database_pool_size
        if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or not 1 <= pool <= 1000):
            raise DBOSException(f"system_database_pool_size must be an integer in 1..1000, got {pool!r}")
        config: dict[str, Any] = {
            "name": "dbos-client",
            "system_database_url": system_database_url,
            "application_database_url": application_database_url or database_url,
            "system_database_engine": system_database_engine,
            "redis_url": redis_url,
            "dbos_system_schema": system_database_schema or dbos_system_schema,
            "polling_interval_sec": polling_interval_sec,
            "executor_id": "dbos-client",
        }
        if not any(config[k] for k in ("system_database_url", "application_database_url", "system_database_engine")):
            raise DBOSException("DBOSClient needs system_database_url (the executors' system database)")
        settings = load_settings(config, env={})
        logger = logging.getLogger("dbos.client")
        self._db = Database(settings.system_database_url, settings.schema, pool or 4, settings.db_engine_kwargs,
                            settings.use_prepared_statements)
        if not lazy:
            # At once, with the driver's error (a sqlalchemy OperationalError) if the database
            # cannot be reached: no retries before the first connection ever succeeded.
            try:
                self._db.check_connection()
                migrate_system(self._db)
            except BaseException:
                self._db.dispose()
                raise
        self._pool = WorkflowPool(32)
        hub = Hub()
        self._bridge = hub.attach_redis(redis_url, wakeup_namespace(settings), logger) if redis_url else None
        if self._bridge is not None:
            self._bridge.start()
        self._rt = Runtime(settings, self._db, self._db, Registry(), "", self._pool, hub, logger)
        self._latest_version = versions.LatestCache(self._db)

    def check_connection(self) -> None:
        """Raise (the driver's error) if the system database cannot be reached now."""
        self._db.check_connection()

    async def check_connection_async(self) -> None:
        await self._rt.to_thread(self._db.check_connection)

    def destroy(self) -> None:
        if self._bridge is not None:
            self._bridge.stop()
        self._pool.stop()
        self._db.dispose()

    def __enter__(self) -> "DBOSClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.destroy()

    # -- enqueue ------------------------------------------------------------------
    def enqueue(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        workflow_id = enqueue_with_options(self._rt, options, args, kwargs, self._latest_version.get(), "DBOSClient.enqueue")
        return WorkflowHandle(self._rt, workflow_id)

    async def enqueue_async(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> WorkflowHandleAsync[Any]:
        handle = await self._rt.to_thread(lambda: self.enqueue(options, *args, **kwargs))
        return WorkflowHandleAsync(self._rt, handle.workflow_id)

    # -- in the caller's transaction (a transactional outbox) ----------------------------
    # ``conn_or_session``: a synchronous SQLAlchemy Connection or ORM Session on this system
    # database, whose transaction the caller commits or rolls back (nothing is written until
    # it commits). No wakeup follows the commit: executors and receivers find the rows when
    # they next poll (docs/decisions.md). From async code: ``await conn.run_sync(...)``.
    def enqueue_in_transaction(
        self, conn_or_session: Union[sa.Connection, Session], options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """As ``enqueue``, in the caller's transaction; the handle is valid once it commits."""
        with caller_tx.bound(self._db, conn_or_session) as conn:
            workflow_id = enqueue_with_options(self._rt, options, args, kwargs, self._latest_version.get(),
                                               "DBOSClient.enqueue_in_transaction", conn=conn)
        return WorkflowHandle(self._rt, workflow_id)

    def send_in_transaction(
        self, conn_or_session: Union[sa.Connection, Session], destination_id: str, message: Any,
        topic: Optional[str] = None, idempotency_key: Optional[str] = None, *,
        serialization_type: Optional[WorkflowSerializationFormat] = WorkflowSerializationFormat.DEFAULT,
        send_to_forks: bool = False,
    ) -> None:
        """As ``send``, in the caller's transaction."""
        check_serialization_type(serialization_type, "DBOSClient.send_in_transaction")
        with caller_tx.bound(self._db, conn_or_session) as conn:
            outbox.send(self._rt, conn, destination_id, message, topic, idempotency_key, bool(send_to_forks))

    def send_bulk_in_transaction(
        self, conn_or_session: Union[sa.Connection, Session], messages: Messages, *,
        serialization_type: Optional[WorkflowSerializationFormat] = WorkflowSerializationFormat.DEFAULT,
        send_to_forks: bool = False,
    ) -> None:
        """As ``send_bulk``, in the caller's transaction (all checked before any is written)."""
        check_serialization_type(serialization_type, "DBOSClient.send_bulk_in_transaction")
        checked = check_messages(messages)
        with caller_tx.bound(self._db, conn_or_session) as conn:
            for m in checked:
                outbox.send(self._rt, conn, m.destination_id, m.message, m.topic,
                            m.idempotency_key, bool(send_to_forks))

    # -- handles, messages, events ------------------------------------------------
    def retrieve_workflow(self, workflow_id: str, existing_workflow: bool = True) -> WorkflowHandle[Any]:
        """As ``DBOS.retrieve_workflow``: ``existing_workflow=False`` returns at once."""
        from dbos._api.management import _check_exists

        if existing_workflow:
            _check_exists(self._rt, workflow_id)
        return WorkflowHandle(self._rt, workflow_id, await_creation=not existing_workflow)

    async def retrieve_workflow_async(self, workflow_id: str, existing_workflow: bool = True) -> WorkflowHandleAsync[Any]:
        await self._rt.to_thread(self.retrieve_workflow, workflow_id, existing_workflow)
        return WorkflowHandleAsync(self._rt, workflow_id, await_creation=not existing_workflow)

    def wait_first(
        self, handles: List[WorkflowHandle[Any]], *, polling_interval_sec: Optional[float] = None
    ) -> WorkflowHandle[Any]:
        """Wait until one of these workflows has finished; return its handle."""
        from dbos._api.calls import _distinct_ids

        ids = _distinct_ids(handles)
        poll = _poll_interval(polling_interval_sec)
        with context.updated(run=None):
            return handles[ids.index(results.wait_first(self._rt, ids, None, poll))]

    async def wait_first_async(
        self, handles: List[WorkflowHandleAsync[Any]], *, polling_interval_sec: Optional[float] = None
    ) -> WorkflowHandleAsync[Any]:
        from dbos._api.calls import _distinct_ids

        ids = _distinct_ids(handles)
        poll = _poll_interval(polling_interval_sec)
        with context.updated(run=None):
            first = await run_async(self._rt, results.first_wait(self._rt, ids, None, poll))
        return handles[ids.index(first)]

    def send(self, /, destination_id: str, message: Any, topic: Optional[str] = None,
             idempotency_key: Optional[str] = None, *,
             serialization_type: Optional[WorkflowSerializationFormat] = WorkflowSerializationFormat.DEFAULT,
             send_to_forks: bool = False) -> None:
        """``send_to_forks``: also to every workflow forked (transitively) from the destination."""
        check_serialization_type(serialization_type, "DBOSClient.send")
        with context.updated(run=None):
            messaging.send(self._rt, destination_id, message, topic, idempotency_key, to_forks=bool(send_to_forks))

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        with context.updated(run=None):
            return messaging.get_event(self._rt, workflow_id, key, timeout_seconds)

    async def get_event_async(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """``get_event``, waiting on the event loop (no thread waits)."""
        with context.updated(run=None):
            return await run_async(self._rt, messaging.get_event_wait(self._rt, workflow_id, key, timeout_seconds))

    send_async = _in_thread(send)

    # -- management ------------------------------------------------------------------
    # The same options and rules as DBOS.list_workflows etc.; each ``_async`` variant
    # runs its sync method on the blocking pool (``_in_thread``).
    def list_workflows(
        self,
        *,
        workflow_ids: Optional[List[str]] = None,
        status: Optional[Union[str, List[str]]] = None,
        start_time: Optional[str] = None,
        end_time: Optional[str] = None,
        completed_after: Optional[str] = None,
        completed_before: Optional[str] = None,
        dequeued_after: Optional[str] = None,
        dequeued_before: Optional[str] = None,
        name: Optional[Union[str, List[str]]] = None,
        app_version: Optional[Union[str, List[str]]] = None,
        forked_from: Optional[Union[str, List[str]]] = None,
        parent_workflow_id: Optional[Union[str, List[str]]] = None,
        user: Optional[Union[str, List[str]]] = None,
        queue_name: Optional[Union[str, List[str]]] = None,
        limit: Optional[int] = None,
        offset: Optional[int] = None,
        sort_desc: bool = False,
        workflow_id_prefix: Optional[Union[str, List[str]]] = None,
        load_input: bool = True,
        load_output: bool = True,
        executor_id: Optional[Union[str, List[str]]] = None,
        queues_only: bool = False,
        was_forked_from: Optional[bool] = None,
        has_parent: Optional[bool] = None,
        attributes: Optional[Dict[str, Any]] = None,
        schedule_name: Optional[Union[str, List[str]]] = None,
    ) -> List[WorkflowStatus]:
        """Workflows matching every filter given; a list filter matches any of its values.
        ``queues_only``: as ``list_queued_workflows``; ``was_forked_from``: as on DBOS."""
        f = management.workflow_filter(
            workflow_ids=workflow_ids, status=status, start_time=start_time, end_time=end_time, name=name,
            app_version=app_version, user=user, limit=limit, offset=offset, sort_desc=sort_desc,
            workflow_id_prefix=workflow_id_prefix, queue_name=queue_name, executor_id=executor_id,
            forked_from=forked_from, parent_workflow_id=parent_workflow_id, has_parent=has_parent, attributes=attributes,
            completed_after=completed_after, completed_before=completed_before, dequeued_after=dequeued_after,
            dequeued_before=dequeued_before, queued_only=bool(queues_only), schedule_name=schedule_name,
            was_forked_from=was_forked_from,
        )
        return management.list_workflows(self._rt, f, load_input=load_input, load_output=load_output)

    def list_queued_workflows(
        self,
        *,
        workflow_ids: Optional[List[str]] = None,
        queue_name: Optional[Union[str, List[str]]] = None,
        status: Optional[Union[str, List[str]]] = None,
        start_time: Optional[str] = None,
        end_time: Optional[str] = None,
        completed_after: Optional[str] = None,
        completed_before: Optional[str] = None,
        dequeued_after: Optional[str] = None,
        dequeued_before: Optional[str] = None,
        name: Optional[Union[str, List[str]]] = None,
        app_version: Optional[Union[str, List[str]]] = None,
        forked_from: Optional[Union[str, List[str]]] = None,
        parent_workflow_id: Optional[Union[str, List[str]]] = None,
        user: Optional[Union[str, List[str]]] = None,
        limit: Optional[int] = None,
        offset: Optional[int] = None,
        sort_desc: bool = False,
        workflow_id_prefix: Optional[Union[str, List[str]]] = None,
        load_input: bool = True,
        load_output: bool = True,
        executor_id: Optional[Union[str, List[str]]] = None,
        has_parent: Optional[bool] = None,
        attributes: Optional[Dict[str, Any]] = None,
        schedule_name: Optional[Union[str, List[str]]] = None,
    ) -> List[WorkflowStatus]:
        """Workflows on a queue and not finished (DELAYED, ENQUEUED, PENDING), with the
        filters of ``list_workflows``."""
        f = management.workflow_filter(
            workflow_ids=workflow_ids, queue_name=queue_name, status=status, start_time=start_time,
            end_time=end_time, name=name, app_version=app_version, user=user, limit=limit, offset=offset,
            sort_desc=sort_desc, workflow_id_prefix=workflow_id_prefix, executor_id=executor_id,
            forked_from=forked_from, parent_workflow_id=parent_workflow_id, has_parent=has_parent, attributes=attributes,
            completed_after=completed_after, completed_before=completed_before, dequeued_after=dequeued_after,
            dequeued_before=dequeued_before, queued_only=True, schedule_name=schedule_name,
        )
        return management.list_workflows(self._rt, f, load_input=load_input, load_output=load_output)

    def list_workflow_steps(
        self, workflow_id: str, *, load_output: bool = True, limit: Optional[int] = None, offset: Optional[int] = None
    ) -> List[StepInfo]:
        return management.list_steps(self._rt, workflow_id, load_output=load_output, limit=limit, offset=offset)

    def cancel_workflow(self, workflow_id: str, *, cancel_children: bool = False) -> None:
        management.cancel(self._rt, workflow_id, cancel_children=cancel_children)  # an unknown ID: nothing to do

    def cancel_workflows(self, workflow_ids: List[str], *, cancel_children: bool = False) -> None:
        management.cancel_workflows(self._rt, workflow_ids, cancel_children=cancel_children)

    def resume_workflows(
        self, workflow_ids: List[str], *, queue_name: Optional[str] = None
    ) -> List[WorkflowHandle[Any]]:
        return [WorkflowHandle(self._rt, management.resume(self._rt, w, queue_name)) for w in workflow_ids]

    async def resume_workflows_async(
        self, workflow_ids: List[str], *, queue_name: Optional[str] = None
    ) -> List[WorkflowHandleAsync[Any]]:
        ids = await self._rt.to_thread(lambda: [management.resume(self._rt, w, queue_name) for w in workflow_ids])
        return [WorkflowHandleAsync(self._rt, w) for w in ids]

    def set_workflow_delay(
        self, workflow_id: str, *, delay_seconds: Optional[float] = None, delay_until_epoch_ms: Optional[int] = None
    ) -> None:
        """As ``DBOS.set_workflow_delay``: when a DELAYED workflow becomes claimable."""
        from dbos._execution.queues import set_delay

        set_delay(self._rt, workflow_id, delay_seconds, delay_until_epoch_ms)

    def resume_workflow(self, workflow_id: str, *, queue_name: Optional[str] = None) -> WorkflowHandle[Any]:
        return WorkflowHandle(self._rt, management.resume(self._rt, workflow_id, queue_name))

    async def resume_workflow_async(
        self, workflow_id: str, *, queue_name: Optional[str] = None
    ) -> WorkflowHandleAsync[Any]:
        new_id = await self._rt.to_thread(management.resume, self._rt, workflow_id, queue_name)
        return WorkflowHandleAsync(self._rt, new_id)

    def fork_workflow(
        self, workflow_id: str, start_step: int, *, application_version: Optional[str] = None,
        queue_name: Optional[str] = None, queue_partition_key: Optional[str] = None,
        replacement_children: Optional[Dict[str, str]] = None, timeout_seconds: Optional[float] = None,
    ) -> WorkflowHandle[Any]:
        new_id = management.fork(self._rt, workflow_id, start_step, application_version, timeout_seconds,
                                 queue_name, queue_partition_key, replacement_children)
        return WorkflowHandle(self._rt, new_id)

    async def fork_workflow_async(
        self, workflow_id: str, start_step: int, *, application_version: Optional[str] = None,
        queue_name: Optional[str] = None, queue_partition_key: Optional[str] = None,
        replacement_children: Optional[Dict[str, str]] = None, timeout_seconds: Optional[float] = None,
    ) -> WorkflowHandleAsync[Any]:
        new_id = await self._rt.to_thread(
            management.fork, self._rt, workflow_id, start_step, application_version, timeout_seconds, queue_name,
            queue_partition_key, replacement_children,
        )
        return WorkflowHandleAsync(self._rt, new_id)

    def get_workflow(self, workflow_id: str) -> Optional[WorkflowStatus]:
        from dbos._api.handles import get_status

        return get_status(self._rt, workflow_id)

    list_workflows_async = _in_thread(list_workflows)
    list_queued_workflows_async = _in_thread(list_queued_workflows)
    list_workflow_steps_async = _in_thread(list_workflow_steps)
    cancel_workflow_async = _in_thread(cancel_workflow)
    cancel_workflows_async = _in_thread(cancel_workflows)
    set_workflow_delay_async = _in_thread(set_workflow_delay)
    get_workflow_async = _in_thread(get_workflow)

    def list_application_versions(self) -> List[versions.VersionInfo]:
        return versions.list_versions(self._rt.sys_db)

    def get_latest_application_version(self) -> Optional[versions.VersionInfo]:
        return versions.latest(self._rt.sys_db)

    def set_latest_application_version(self, version_name: str) -> None:
        versions.set_latest(self._rt.sys_db, version_name)
        self._latest_version = versions.LatestCache(self._rt.sys_db)

    list_application_versions_async = _in_thread(list_application_versions)
    get_latest_application_version_async = _in_thread(get_latest_application_version)
    set_latest_application_version_async = _in_thread(set_latest_application_version)

    @property
    def runtime(self) -> Runtime:
        return self._rt

    if not TYPE_CHECKING:  # type checkers still report a misspelt method

        def __getattr__(self, name: str) -> Any:
            """A DBOS 2.x client method left out here: a clear DBOSNotImplementedError."""
            from dbos._api import missing

            missing.raise_missing("DBOSClient", name, missing.CLIENT_METHODS)
