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
    List,
    Optional,
    ParamSpec,
    TypedDict,
    TypeVar,
    Union,
)

from dbos._api.context_managers import SetEnqueueOptions
from dbos._api.handles import WorkflowHandle, WorkflowHandleAsync
from dbos._api.retention import ClientRetentionMixin
from dbos._api.schedules import ClientSchedulesMixin
from dbos._config.settings import load_settings
from dbos._execution import checks, context, management, messaging, results, versions
from dbos._execution import workflow as wf
from dbos._execution.context import Auth, IdBox
from dbos._execution.queues import QueueSpec, enqueue_fields
from dbos._execution.registry import Registry, WorkflowInfo
from dbos._execution.runtime import Runtime
from dbos._execution.status import StepInfo, WorkflowStatus
from dbos._services.pool import WorkflowPool
from dbos._storage.database import Database
from dbos._storage.dialect import Dialect
from dbos._storage.migrations import migrate_system
from dbos._wakeups.hub import Hub
from dbos._wakeups.local import queue_ready
from dbos.error import DBOSException, DBOSQueueDeduplicatedError


class EnqueueOptions(TypedDict, total=False):
    workflow_name: str  # required
    queue_name: str  # required
    workflow_id: str
    app_version: str
    workflow_timeout: float
    deduplication_id: str
    priority: int
    queue_partition_key: str
    delay_seconds: float  # DELAYED (not claimable) for this long
    class_name: str  # DBOS 2.x: the @DBOS.dbos_class name of a method workflow
    instance_name: str  # DBOS 2.x: the config_name of its configured instance
    workflow_class_name: str  # this library's older names of the two above
    workflow_config_name: str
    authenticated_user: str  # the workflow runs as this user, with these roles
    authenticated_roles: List[str]
    max_recovery_attempts: int
    duplication_policy: str  # "reject" (the default); DBOS's "return-existing" is not implemented
    serialization_type: Any  # DBOS's default (pickle) only
    application_name: Optional[str]  # accepted; no effect (one application per system database here)
    otel_context: Any  # an OpenTelemetry Context the workflow's trace continues
    attributes: Any  # not implemented (workflow attributes)


# DBOS 2.x keys accepted only with the value that means "as before" here.
_ONLY_DEFAULT = {"duplication_policy": (None, "reject"), "attributes": (None,)}
_KEYS = frozenset(EnqueueOptions.__annotations__)


def _check_enqueue_keys(options: Any) -> None:
    """Unknown keys are an error, not silently dropped (a misspelt class key, or auth, would
    vanish); DBOS 2.x keys that need a feature left out say so."""
    import difflib

    from dbos._api.missing import DBOSNotImplementedError

    if not isinstance(options, dict):
        raise DBOSException(f"DBOSClient.enqueue takes an EnqueueOptions dict, got {options!r}")
    for key in options:
        if key not in _KEYS:
            close = difflib.get_close_matches(str(key), sorted(_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DBOSException(f"EnqueueOptions has no key {key!r}{hint}; known keys: {', '.join(sorted(_KEYS))}")
    for key, allowed in _ONLY_DEFAULT.items():
        if options.get(key) not in allowed:
            raise DBOSNotImplementedError(
                f"EnqueueOptions[{key!r}] = {options[key]!r} is part of DBOS Transact 2.x but not of dbos-fleet "
                "(docs/decisions.md, 'Names, keywords and config keys')"
            )
    ser = options.get("serialization_type")
    if ser is not None and str(getattr(ser, "value", ser)).lower() not in ("default", "pickle", "py_pickle"):
        raise DBOSNotImplementedError(f"EnqueueOptions['serialization_type'] = {ser!r}: every value is pickled here")


# DBOSClient keywords of DBOS 2.x that change nothing here: one serializer (pickle), waits
# that poll at most once per interval each, connection retries as every call makes them.
_CLIENT_NO_EFFECT = frozenset({"serializer", "system_database_polling_concurrency", "retry_connection_errors"})


def _noop() -> None:
    return None


def _attach_otel(ctx: Any) -> Any:
    from opentelemetry import context as otel_context

    return otel_context.attach(ctx)


def _detach_otel(token: Any) -> None:
    from opentelemetry import context as otel_context

    otel_context.detach(token)


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


class DBOSClient(ClientSchedulesMixin, ClientRetentionMixin):
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
        _check_enqueue_keys(options)
        workflow_name = options.get("workflow_name")
        queue_name = options.get("queue_name")
        if not isinstance(workflow_name, str) or not workflow_name.strip():
            raise DBOSException("DBOSClient.enqueue needs options['workflow_name']")
        if not isinstance(queue_name, str) or not queue_name.strip():
            raise DBOSException("DBOSClient.enqueue needs options['queue_name']")
        checks.identifier("options['queue_name']", queue_name)
        if "workflow_id" in options:
            checks.workflow_id("options['workflow_id']", options["workflow_id"])
        if options.get("workflow_timeout") is not None:
            checks.duration("options['workflow_timeout']", options["workflow_timeout"], positive=True)
        # Validates priority range and key types the same way SetEnqueueOptions does.
        opts = SetEnqueueOptions(
            deduplication_id=options.get("deduplication_id"),
            priority=options.get("priority"),
            app_version=options.get("app_version"),
            queue_partition_key=options.get("queue_partition_key"),
            delay_seconds=options.get("delay_seconds"),
        ).options
        spec = QueueSpec(queue_name, None, None, None, None, True, opts.queue_partition_key is not None, 1.0)
        # Work that names no version goes to the latest registered one (DBOS 2.x); with
        # none registered yet it is unpinned (any version may run it).
        fields = enqueue_fields(spec, opts, self._latest_version.get())
        class_name = options.get("class_name", options.get("workflow_class_name"))
        fields["class_name"] = class_name
        fields["config_name"] = options.get("instance_name", options.get("workflow_config_name"))
        attempts = options.get("max_recovery_attempts")
        if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0):
            raise DBOSException(f"options['max_recovery_attempts'] must be a non-negative integer, got {attempts!r}")
        info = WorkflowInfo(workflow_name, _noop, False, 100 if attempts is None else attempts, False, class_name)
        call = wf.Call(info, None, tuple(args), dict(kwargs))
        changes: dict[str, Any] = {"run": None, "in_step": False}
        if options.get("workflow_id"):
            changes["id_box"] = IdBox(str(options["workflow_id"]))
        if "workflow_timeout" in options:
            changes["timeout"] = options["workflow_timeout"]
        user, roles = options.get("authenticated_user"), options.get("authenticated_roles")
        if user is not None or roles is not None:
            if user is not None and not isinstance(user, str):
                raise DBOSException(f"options['authenticated_user'] must be a string, got {user!r}")
            if roles is not None and (isinstance(roles, str) or not all(isinstance(r, str) for r in roles)):
                raise DBOSException(f"options['authenticated_roles'] must be a list of role names, got {roles!r}")
            changes["auth"] = Auth(user, tuple(roles) if roles is not None else None, None)
        otel = options.get("otel_context")
        token = _attach_otel(otel) if otel is not None else None
        try:
            created = self._create(call, queue_name, fields, changes)
        finally:
            if token is not None:
                _detach_otel(token)
        self._rt.wakeups.notify(queue_ready(queue_name))
        return WorkflowHandle(self._rt, created.workflow_id)

    def _create(self, call: wf.Call, queue_name: str, fields: dict[str, Any], changes: dict[str, Any]) -> wf.Created:
        with context.updated(**changes):
            try:
                return wf.create(self._rt, call, queue_name=queue_name, enqueue_fields=fields)
            except Exception as e:
                if fields["deduplication_id"] is not None and Dialect.is_unique_violation(e):
                    raise DBOSQueueDeduplicatedError("(not created)", queue_name, fields["deduplication_id"]) from None
                raise

    async def enqueue_async(self, options: EnqueueOptions, *args: Any, **kwargs: Any) -> WorkflowHandleAsync[Any]:
        handle = await self._rt.to_thread(lambda: self.enqueue(options, *args, **kwargs))
        return WorkflowHandleAsync(self._rt, handle.workflow_id)

    # -- handles, messages, events ------------------------------------------------
    def retrieve_workflow(self, workflow_id: str, existing_workflow: bool = True) -> WorkflowHandle[Any]:
        """As ``DBOS.retrieve_workflow``: ``existing_workflow=False`` returns at once."""
        from dbos._api.dbos import _check_exists

        if existing_workflow:
            _check_exists(self._rt, workflow_id)
        return WorkflowHandle(self._rt, workflow_id, await_creation=not existing_workflow)

    async def retrieve_workflow_async(self, workflow_id: str, existing_workflow: bool = True) -> WorkflowHandleAsync[Any]:
        await self._rt.to_thread(self.retrieve_workflow, workflow_id, existing_workflow)
        return WorkflowHandleAsync(self._rt, workflow_id, await_creation=not existing_workflow)

    def wait_first(self, handles: List[WorkflowHandle[Any]]) -> WorkflowHandle[Any]:
        """Wait until one of these workflows has finished; return its handle."""
        from dbos._api.calls import _distinct_ids

        ids = _distinct_ids(handles)
        with context.updated(run=None):
            return handles[ids.index(results.wait_first(self._rt, ids))]

    async def wait_first_async(self, handles: List[WorkflowHandleAsync[Any]]) -> WorkflowHandleAsync[Any]:
        from dbos._api.calls import _distinct_ids

        ids = _distinct_ids(handles)
        first = await self._rt.to_thread(results.wait_first, self._rt, ids)
        return handles[ids.index(first)]

    def send(self, destination_id: str, message: Any, topic: Optional[str] = None) -> None:
        with context.updated(run=None):
            messaging.send(self._rt, destination_id, message, topic)

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        with context.updated(run=None):
            return messaging.get_event(self._rt, workflow_id, key, timeout_seconds)

    send_async = _in_thread(send)
    get_event_async = _in_thread(get_event)

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
        has_parent: Optional[bool] = None,
    ) -> List[WorkflowStatus]:
        """Workflows matching every filter given; a list filter matches any of its values."""
        f = management.workflow_filter(
            workflow_ids=workflow_ids, status=status, start_time=start_time, end_time=end_time, name=name,
            app_version=app_version, user=user, limit=limit, offset=offset, sort_desc=sort_desc,
            workflow_id_prefix=workflow_id_prefix, queue_name=queue_name, executor_id=executor_id,
            forked_from=forked_from, parent_workflow_id=parent_workflow_id, has_parent=has_parent,
        )
        return management.list_workflows(self._rt, f, load_input=load_input, load_output=load_output)

    def list_queued_workflows(
        self,
        *,
        queue_name: Optional[str] = None,
        status: Optional[Union[str, List[str]]] = None,
        start_time: Optional[str] = None,
        end_time: Optional[str] = None,
        name: Optional[str] = None,
        limit: Optional[int] = None,
        offset: Optional[int] = None,
        sort_desc: bool = False,
        load_input: bool = True,
    ) -> List[WorkflowStatus]:
        f = management.workflow_filter(
            queue_name=queue_name, status=status, start_time=start_time, end_time=end_time, name=name,
            limit=limit, offset=offset, sort_desc=sort_desc, queued_only=True,
        )
        return management.list_workflows(self._rt, f, load_input=load_input)

    def list_workflow_steps(
        self, workflow_id: str, *, load_output: bool = True, limit: Optional[int] = None, offset: Optional[int] = None
    ) -> List[StepInfo]:
        return management.list_steps(self._rt, workflow_id, load_output=load_output, limit=limit, offset=offset)

    def cancel_workflow(self, workflow_id: str) -> None:
        management.cancel(self._rt, workflow_id)  # an unknown ID: nothing to do

    def cancel_workflows(self, workflow_ids: List[str]) -> None:
        for workflow_id in workflow_ids:
            management.cancel(self._rt, workflow_id)

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
        timeout_seconds: Optional[float] = None,
    ) -> WorkflowHandle[Any]:
        new_id = management.fork(self._rt, workflow_id, start_step, application_version, timeout_seconds)
        return WorkflowHandle(self._rt, new_id)

    async def fork_workflow_async(
        self, workflow_id: str, start_step: int, *, application_version: Optional[str] = None,
        timeout_seconds: Optional[float] = None,
    ) -> WorkflowHandleAsync[Any]:
        new_id = await self._rt.to_thread(
            management.fork, self._rt, workflow_id, start_step, application_version, timeout_seconds
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
