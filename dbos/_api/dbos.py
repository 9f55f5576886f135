"""The DBOS facade: construction, launch, destroy, and the reference's methods.

Every method here is a few lines that delegate to ``_execution`` (rules) or
``_storage`` (queries); the process-wide singleton is the reference's API.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    ClassVar,
    Coroutine,
    List,
    Optional,
    ParamSpec,
    TypeVar,
)

import sqlalchemy as sa

from dbos._api import classes, decorators, missing, web
from dbos._api.attributes import _AttributesMixin
from dbos._api.calls import _CallsMixin, check_not_async
from dbos._api.context_managers import start_fields
from dbos._api.enqueue import _EnqueueMixin
from dbos._api.handles import WorkflowHandle, WorkflowHandleAsync
from dbos._api.instance import HOLDER, maybe_runtime, runtime
from dbos._api.management import _ManagementMixin
from dbos._api.messages import _MessagesMixin
from dbos._api.missing import check_serialization_type
from dbos._api.retention import _RetentionMixin
from dbos._api.schedules import _SchedulesMixin
from dbos._api.stored_queues import _QueuesMixin
from dbos._config.settings import DBOSConfig, Settings, load_settings
from dbos._execution import context, fleet, recovery, schedules, versions
from dbos._execution import workflow as wf
from dbos._execution.queues import INTERNAL_QUEUE
from dbos._execution.registry import REGISTRY
from dbos._execution.runtime import Runtime, now_ms
from dbos._execution.serialization import WorkflowSerializationFormat
from dbos._execution.status import StepStatus
from dbos._execution.step import reserve
from dbos._services.base import Service
from dbos._services.canceller import Canceller
from dbos._services.heartbeat import Heartbeat
from dbos._services.outcome_retrier import OutcomeRetrier
from dbos._services.pool import WorkflowPool
from dbos._services.queue_poller import QueuePoller
from dbos._services.scheduler import Scheduler
from dbos._storage import queues, workflows
from dbos._storage.database import Database, ensure_database
from dbos._storage.migrations import migrate_application, migrate_system, require_system_tables
from dbos._telemetry import otlp
from dbos._telemetry.logs import LOGGER_NAME, configure
from dbos._wakeups.hub import Hub
from dbos._wakeups.local import queue_ready
from dbos._wakeups.redis_bridge import namespace_for
from dbos.error import DBOSException, DBOSInitializationError

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


class _DBOSMeta(type):
    """Class-level properties: ``DBOS.workflow_id`` etc. read the current context."""

    @property
    def logger(cls) -> logging.Logger:
        return logging.getLogger(LOGGER_NAME)

    @property
    def workflow_id(cls) -> Optional[str]:
        run = context.current().run
        return run.workflow_id if run is not None else None

    @property
    def step_id(cls) -> Optional[int]:
        status = context.current().step_status
        return status.step_id if status is not None else None

    @property
    def step_status(cls) -> Optional[StepStatus]:
        return context.current().step_status

    @property
    def sql_session(cls) -> Any:
        session = context.current().sql_session
        if session is None:
            raise DBOSException("DBOS.sql_session is only available inside a @DBOS.transaction function")
        return session

    @property
    def authenticated_user(cls) -> Optional[str]:
        return _auth().user

    @property
    def authenticated_roles(cls) -> Optional[list[str]]:
        roles = _auth().roles
        return list(roles) if roles is not None else None

    @property
    def assumed_role(cls) -> Optional[str]:
        return _auth().assumed_role

    if not TYPE_CHECKING:  # type checkers still report a misspelt DBOS.<name>

        def __getattr__(cls, name: str) -> Any:
            """A DBOS 2.x name left out here: a clear DBOSNotImplementedError, not an AttributeError."""
            missing.raise_missing("DBOS", name, missing.DBOS_METHODS)

    @property
    def span(cls) -> Any:
        from opentelemetry import trace

        return trace.get_current_span()

    @property
    def executor_id(cls) -> str:
        return runtime().executor_id

    @property
    def application_version(cls) -> str:
        rt = maybe_runtime()
        return rt.app_version if rt is not None else ""  # as DBOS 2.x, before launch and after destroy


def _auth() -> context.Auth:
    ctx = context.current()
    own = context.auth_of(ctx)
    if ctx.run is not None and own.user is None:
        return ctx.run.auth
    return own


class DBOS(_CallsMixin, _MessagesMixin, _ManagementMixin, _EnqueueMixin, _AttributesMixin, _SchedulesMixin,
           _RetentionMixin, _QueuesMixin, metaclass=_DBOSMeta):
    """The durable-execution runtime of this process (one per process)."""

    _instance: ClassVar[Optional["DBOS"]] = None

    def __new__(cls, *, config: DBOSConfig, fastapi: Any = None, flask: Any = None) -> "DBOS":
        with HOLDER.lock:
            existing = cls._instance
            if existing is not None and existing._launched:
                raise DBOSInitializationError(
                    "DBOS is already launched in this process; call DBOS.destroy() before creating another"
                )
            obj = super().__new__(cls)
            cls._instance = obj
            return obj

    def __init__(self, *, config: DBOSConfig, fastapi: Any = None, flask: Any = None) -> None:
        """``fastapi=app`` / ``flask=app``: handle the app's requests under DBOS (web.py)."""
        self._launched = False
        try:
            self.settings: Settings = load_settings(config)
        except BaseException:
            # A bad config must not leave a half-built singleton behind.
            with HOLDER.lock:
                if DBOS._instance is self:
                    DBOS._instance = None
            raise
        self._runtime: Optional[Runtime] = None
        self._services: list[Service] = []
        self._heartbeat: Optional[Heartbeat] = None
        self._poller: Optional[QueuePoller] = None
        self._listen_queues: Optional[list[str]] = None
        self._pool: Optional[WorkflowPool] = None
        self._dbs: list[Database] = []
        self._stop_otlp: Callable[[], None] = lambda: None
        self._admin: Any = None  # the admin server of config run_admin_server
        self.logger = configure(self.settings.log_level, self.settings.executor_id)
        web.install(fastapi=fastapi, flask=flask)

    # -- lifecycle ----------------------------------------------------------
    @classmethod
    def launch(cls) -> None:
        self = cls._instance
        if self is None:
            raise DBOSInitializationError("call DBOS(config=...) before DBOS.launch()")
        if self._launched:
            return
        s = self.settings
        for url in {s.system_database_url, s.application_database_url} if s.run_migrations else ():
            try:
                if ensure_database(url):
                    self.logger.info("created the database %s", sa.make_url(url).database)
            except Exception as e:  # no right to create it, ...: the connection below reports the cause
                self.logger.warning("could not create the database %s: %s", sa.make_url(url).database, e)
        # On PostgreSQL one connection of the budget is the heartbeat's own (``_start``).
        budget = s.sys_db_pool_size - (0 if s.system_database_url.startswith("sqlite") else 1)
        sys_db = Database(s.system_database_url, s.schema, max(1, budget), s.db_engine_kwargs, s.use_prepared_statements)
        self._dbs.append(sys_db)
        app_db = sys_db
        try:
            if s.run_migrations:
                migrate_system(sys_db)
            else:  # verify instead: nothing is created or upgraded
                require_system_tables(sys_db, f"the system database ({sa.make_url(s.system_database_url).database})")
            if s.application_database_url != s.system_database_url:
                app_db = Database(s.application_database_url, s.schema, s.sys_db_pool_size, s.db_engine_kwargs, s.use_prepared_statements)
                self._dbs.append(app_db)
            if s.run_migrations:
                migrate_application(app_db)
        except Exception as e:
            for db in self._dbs:
                db.dispose()
            self._dbs.clear()
            raise DBOSInitializationError(f"could not prepare the database: {e}") from e
        try:
            self._start(sys_db, app_db)
        except BaseException:
            # All or nothing: a failed launch leaves no thread, exporter or connection behind.
            HOLDER.runtime = None
            self._release(wait=False)
            raise

    def _start(self, sys_db: Database, app_db: Database) -> None:
        s = self.settings
        app_version = s.app_version or REGISTRY.source_hash()
        self._stop_otlp = otlp.setup(s, self.logger)
        self._pool = WorkflowPool(s.max_executor_threads)
        hub = Hub()
        rt = Runtime(s, sys_db, app_db, REGISTRY, app_version, self._pool, hub, self.logger)
        rt.note_app_loop()  # launched from async code: recovered and queued async workflows run on its loop
        self._pool.running = rt.running_ids  # named when the interpreter exits with workflows running
        self._runtime = rt
        listened = self._listen_queues
        served = None if listened is None else sorted({INTERNAL_QUEUE.name, *listened})
        # The heartbeat has a connection of its own (PostgreSQL), so a saturated pool cannot delay it.
        beat_db = sys_db
        if not sys_db.dialect.is_sqlite:
            beat_db = Database(s.system_database_url, s.schema, 1, s.db_engine_kwargs, s.use_prepared_statements)
            self._dbs.append(beat_db)
        specs = [
            {"name": q.name, "concurrency": q.concurrency,
             "worker_concurrency": q.limits(s.default_worker_concurrency).worker_concurrency,
             "limit": q.limit, "period_sec": q.period_sec, "partitioned": q.partition_queue}  # the console shows these
            for q in (INTERNAL_QUEUE, *REGISTRY.queues.values()) if served is None or q.name in served
        ]
        hb = self._heartbeat = Heartbeat(
            beat_db, s.executor_id, app_version, s.heartbeat_interval_sec, self.logger, queues=served,
            queue_specs=specs,
        )
        hb.running = lambda: len(rt.running_ids())
        hb.on_declared_dead = lambda: fleet.rejoin(rt, hb)
        holder = fleet.check_identity(beat_db, s.executor_id, self.logger)
        if holder is None:
            rt.incarnation = hb.register()
        else:
            # Another live process holds this ID: taking its row or its PENDING work would
            # run that work twice. Run without recovery and without a heartbeat of our own.
            self.logger.error(
                "executor ID %s is also used by the live pid %d on %s: this process recovers none of its "
                "workflows and does not heartbeat; give every process its own DBOS__VMID",
                s.executor_id, holder.pid, holder.hostname,
            )
        versions.register(sys_db, app_version)
        schedules.register_decorated(rt)  # this version's @DBOS.scheduled, visible fleet-wide
        # Every background service this process runs, in start order (all but the
        # heartbeat start after recovery, so recovered work is not claimed twice).
        self._services = [self._heartbeat]
        if s.redis_url is not None:
            bridge = hub.attach_redis(s.redis_url, wakeup_namespace(s), self.logger)
            self._services.append(bridge)
        poller = QueuePoller(
            rt,
            lambda: [q for q in (INTERNAL_QUEUE, *REGISTRY.queues.values()) if served is None or q.name in served],
            s.default_worker_concurrency,
            self.logger,
            listens=lambda name: served is None or name in served,
        )
        self._poller = poller
        hub.add_listener("queue:", lambda key: poller.wake_queue(key[len("queue:"):]))
        canceller = Canceller(rt, s.polling_interval_sec, self.logger)
        hub.add_listener("cancel:", lambda _key: canceller.wake())
        # Writes workflows owe the database after an outage (their outcome, or a resume).
        retrier = OutcomeRetrier(rt, s.polling_interval_sec, self.logger)
        scheduler = Scheduler(rt, self.logger)
        hub.add_listener(schedules.CHANGED, lambda _key: scheduler.wake())
        self._services += [poller, canceller, retrier, scheduler]
        if holder is None:
            self._heartbeat.start()
            rt.confirm_alive = hb.confirm_alive
        else:
            self._services.remove(hb)
        HOLDER.runtime = rt
        self._launched = True
        recovered = type(self)._recover_pending() if holder is None else 0
        for service in self._services:
            if service is not hb:
                service.start()
        self.logger.info(
            "DBOS launched: executor %s, app version %s, %d workflow(s) recovered",
            s.executor_id, app_version, recovered,
        )
        if s.run_admin_server:
            from dbos._api.admin import AdminServer

            admin = AdminServer("127.0.0.1", s.admin_port, self.logger)
            admin.start()
            self._admin = admin

    @classmethod
    def _recover_pending(cls) -> int:
        rt = runtime()
        # Queued work this executor held goes back on its queue, under the queue's limits.
        requeued = rt.sys_db.run(
            lambda c: queues.requeue_pending(c, rt.executor_id, now_ms(), app_version=rt.app_version)
        )
        for name in requeued:
            rt.wakeups.notify(queue_ready(name))
        rows = rt.sys_db.query(lambda c: workflows.list_pending(c, rt.executor_id, rt.app_version))
        count = 0
        for row in rows:
            try:
                count += recovery.recover(rt, row)
            except DBOSException as e:
                rt.logger.error("cannot recover workflow %s: %s", row.workflow_uuid, e)
        return count

    @classmethod
    def destroy(cls, *, destroy_registry: bool = False, workflow_completion_timeout_sec: float = 0) -> None:
        """Stop every thread this process started and close every connection.
        ``destroy_registry``: also forget every registered workflow, class, configured
        instance and queue, so the next DBOS starts from an empty registry (tests)."""
        with HOLDER.lock:
            self = cls._instance
            cls._instance = None
        if self is not None:
            self._await_running(workflow_completion_timeout_sec)
            if self._runtime is not None:  # preempted first: none of them records an outcome from here
                for workflow_id in self._runtime.running_ids():
                    self._runtime.preempt_local(workflow_id)
            HOLDER.runtime = None
            self._release(wait=False)
        if destroy_registry:
            REGISTRY.clear()

    def _await_running(self, timeout_sec: float) -> None:
        """``destroy(workflow_completion_timeout_sec=N)``: give the workflows running here
        up to N seconds to finish (then they are stopped at their next step and stay
        PENDING, recovered like after a crash); never longer."""
        rt = self._runtime
        if rt is None or not (isinstance(timeout_sec, (int, float)) and timeout_sec > 0):
            return
        end = time.monotonic() + min(float(timeout_sec), 1e9)
        while rt.running_ids() and time.monotonic() < end:
            time.sleep(0.01)

    def _release(self, *, wait: bool) -> None:
        """Stop what this instance started: services, workflows, pool, connections, exporters."""
        rt = self._runtime
        if self._admin is not None:
            self._admin.stop()
            self._admin = None
        for service in reversed(self._services):
            service.stop()
        if rt is not None:
            for workflow_id in rt.running_ids():
                rt.preempt_local(workflow_id)
        if self._heartbeat is not None:
            try:
                self._heartbeat.mark_stopped()
            except Exception:
                pass
        if self._pool is not None:
            self._pool.stop(wait=wait)
        for db in self._dbs:
            db.dispose()
        self._stop_otlp()
        self._services, self._heartbeat, self._pool, self._runtime = [], None, None, None
        self._poller = None
        self._dbs.clear()
        self._stop_otlp = lambda: None
        self._launched = False

    @classmethod
    def listen_queues(cls, queues: List[Any]) -> None:
        """Dequeue only from these queues (``Queue`` objects or names), plus the internal
        queue that resumed, forked and handed-over workflows wait on. Before launch, once."""
        self = cls._instance
        if self is None:
            raise DBOSInitializationError("call DBOS(config=...) before DBOS.listen_queues()")
        if self._launched:
            raise DBOSInitializationError("DBOS.listen_queues() must be called before DBOS.launch()")
        if self._listen_queues is not None:
            raise DBOSInitializationError("DBOS.listen_queues() may be called only once")
        names = [q if isinstance(q, str) else getattr(q, "name", None) for q in queues]
        bad = [q for q, n in zip(queues, names) if not isinstance(n, str) or not n]
        if bad:
            raise DBOSInitializationError(f"DBOS.listen_queues() takes queues or queue names, got {bad[0]!r}")
        self._listen_queues = [str(n) for n in names]

    # -- decorators -----------------------------------------------------------
    @staticmethod
    def workflow(
        *, name: Optional[str] = None, max_recovery_attempts: Optional[int] = None,
        serialization_type: Optional[WorkflowSerializationFormat] = None,
    ) -> Callable[[F], F]:
        """``serialization_type``: NATIVE or None (every value is pickled); PORTABLE is refused."""
        check_serialization_type(serialization_type, "DBOS.workflow")
        return decorators.workflow_decorator(name=name, max_recovery_attempts=max_recovery_attempts)

    @staticmethod
    def step(
        *,
        name: Optional[str] = None,
        retries_allowed: bool = False,
        interval_seconds: float = 1.0,
        max_attempts: int = 3,
        backoff_rate: float = 2.0,
        should_retry: Optional[Callable[[BaseException], Any]] = None,
        preemptible: bool = False,
        timeout_seconds: Optional[float] = None,
    ) -> Callable[[F], F]:
        """A checkpointed step. With ``retries_allowed``, ``should_retry(error)`` decides
        whether a failure is retried (False: it is raised at once; may be async for an
        async step). For async steps only: ``timeout_seconds`` bounds each attempt
        (DBOSStepTimeoutError), ``preemptible`` lets a cancellation of the workflow
        interrupt a running attempt."""
        return decorators.step_decorator(
            name=name,
            retries_allowed=retries_allowed,
            interval_seconds=interval_seconds,
            max_attempts=max_attempts,
            backoff_rate=backoff_rate,
            should_retry=should_retry,
            preemptible=preemptible,
            timeout_seconds=timeout_seconds,
        )

    @staticmethod
    def transaction(*, isolation_level: Optional[str] = None, name: Optional[str] = None) -> Callable[[F], F]:
        return decorators.transaction_decorator(isolation_level=isolation_level, name=name)

    required_roles = staticmethod(classes.required_roles)
    default_required_roles = staticmethod(classes.default_required_roles)
    dbos_class = staticmethod(classes.dbos_class)

    @staticmethod
    def set_authentication(authenticated_user: Optional[str], authenticated_roles: Optional[List[str]]) -> None:
        """Set the user and roles of the current context (what HTTP middleware does)."""
        roles = tuple(authenticated_roles) if authenticated_roles is not None else None
        context.set_auth(context.Auth(authenticated_user, roles, None))

    # -- starting and finding workflows ---------------------------------------
    @classmethod
    def start_workflow(cls, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> WorkflowHandle[R]:
        check_not_async("start_workflow")
        pinned = start_fields()
        rt = runtime()
        info, instance = decorators.info_of(func, startable=True)
        call = wf.Call.of(info, (instance, *args) if instance is not None else args, kwargs)
        created = wf.create(rt, call, enqueue_fields=pinned)
        wf.start(rt, created, call)
        return WorkflowHandle(rt, created.workflow_id)

    @classmethod
    async def start_workflow_async(
        cls, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]:
        pinned = start_fields()
        rt = runtime()
        rt.note_app_loop()
        info, instance = decorators.info_of(func, startable=True)
        call = wf.Call.of(info, (instance, *args) if instance is not None else args, kwargs)
        # Its step ID in the calling workflow taken here, before the first await (step.reserve).
        created = await rt.to_thread(functools.partial(wf.create, rt, call, enqueue_fields=pinned, reserved=reserve()))
        local = await rt.to_thread(wf.claim_for_execution, rt, created)
        if local is not None:
            if info.is_async:
                coro = wf.execute_async(rt, created, call, local, movable=True)
                asyncio.get_running_loop().create_task(_quiet(coro))
            else:
                wf.submit(rt, created, call, local)
        return WorkflowHandleAsync(rt, created.workflow_id)

def wakeup_namespace(s: Settings) -> str:
    """Redis channel prefix: one namespace per system database and schema."""
    return namespace_for(s.system_database_url, s.schema)


async def _quiet(coro: Coroutine[Any, Any, Any]) -> None:
    try:
        await coro
    except BaseException:
        pass


__all__ = ["DBOS", "now_ms"]
