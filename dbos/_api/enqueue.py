"""Enqueueing by options, without the workflow's function: ``DBOSClient.enqueue`` from
outside the application, ``DBOS.enqueue_workflow_with_options`` from inside it (DBOS
2.x), both building the same row; and ``DBOS.enqueue_workflow`` (by queue name).

Options are checked, not dropped: an unknown key is an error naming the closest known
one; DBOS 2.x keys that need a feature left out here raise ``DBOSNotImplementedError``.
"""

from __future__ import annotations

import difflib
import functools
import json
from typing import Any, Callable, Coroutine, Dict, List, Optional, ParamSpec, TypedDict, TypeVar, cast

import sqlalchemy as sa

from dbos._api.context_managers import SetEnqueueOptions
from dbos._api.decorators import info_of
from dbos._api.handles import WorkflowHandle, WorkflowHandleAsync
from dbos._api.instance import runtime
from dbos._api.missing import check_serialization_type
from dbos._execution import checks, context, versions
from dbos._execution import queues as q
from dbos._execution import workflow as wf
from dbos._execution.context import Auth, DuplicationPolicy, IdBox
from dbos._execution.registry import WorkflowInfo
from dbos._execution.runtime import Runtime
from dbos._execution.step import Reserved, reserve
from dbos._wakeups.local import queue_ready
from dbos.error import DBOSException

P = ParamSpec("P")
R = TypeVar("R")


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
    duplication_policy: DuplicationPolicy  # "reject" (the default) or "return-existing" (the holder)
    serialization_type: Any  # WorkflowSerializationFormat.NATIVE or None: every value is pickled
    application_name: Optional[str]  # accepted; no effect (one application per system database here)
    otel_context: Any  # an OpenTelemetry Context the workflow's trace continues
    attributes: Dict[str, Any]  # DBOS 2.x's workflow attributes (see SetWorkflowAttributes)


_KEYS = frozenset(EnqueueOptions.__annotations__)


def _check_keys(options: Any, caller: str) -> None:
    if not isinstance(options, dict):
        raise DBOSException(f"{caller} takes an EnqueueOptions dict, got {options!r}")
    for key in options:
        if key not in _KEYS:
            close = difflib.get_close_matches(str(key), sorted(_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DBOSException(f"EnqueueOptions has no key {key!r}{hint}; known keys: {', '.join(sorted(_KEYS))}")
    check_serialization_type(options.get("serialization_type"), caller)


def _noop() -> None:
    return None


def enqueue_with_options(
    rt: Runtime, options: EnqueueOptions, args: tuple[Any, ...], kwargs: dict[str, Any],
    latest_version: Optional[str], caller: str, *, as_child: bool = False, reserved: Optional[Reserved] = None,
    conn: Optional[sa.Connection] = None,
) -> str:
    """Write the ENQUEUED row ``options`` describe; return its workflow ID (under
    ``duplication_policy="return-existing"``, that of the workflow holding its deduplication
    ID, if one does). ``as_child``: called from a workflow, the enqueue is that workflow's
    recorded child (a replay finds it; ``reserved``: its step ID, taken by an async caller
    on its task); a client's never is. ``conn``: written in the caller's transaction, which
    no wakeup follows (executors find the row when they next poll the queue)."""
    _check_keys(options, caller)
    workflow_name, queue_name = options.get("workflow_name"), options.get("queue_name")
    if not isinstance(workflow_name, str) or not workflow_name.strip():
        raise DBOSException(f"{caller} needs options['workflow_name']")
    if not isinstance(queue_name, str) or not queue_name.strip():
        raise DBOSException(f"{caller} needs options['queue_name']")
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
        duplication_policy=options.get("duplication_policy"),
    ).options
    if conn is not None and opts.duplication_policy == "return-existing":
        # Finding the holder means trying the insert again, which a transaction the caller
        # owns cannot do: on PostgreSQL the collision aborts it (DBOS 2.x refuses it too).
        raise DBOSException(
            f"duplication_policy 'return-existing' is not supported by enqueue_in_transaction ({caller}): "
            "use DBOSClient.enqueue"
        )
    spec = q.QueueSpec(queue_name, None, None, None, None, True, opts.queue_partition_key is not None, 1.0)
    # Work that names no version goes to the latest registered one (DBOS 2.x); with
    # none registered yet it is unpinned (any version may run it).
    fields = q.enqueue_fields(spec, opts, latest_version)
    class_name = options.get("class_name", options.get("workflow_class_name"))
    fields["class_name"] = class_name
    fields["config_name"] = options.get("instance_name", options.get("workflow_config_name"))
    attempts = options.get("max_recovery_attempts")
    if attempts is not None and (isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0):
        raise DBOSException(f"options['max_recovery_attempts'] must be a non-negative integer, got {attempts!r}")
    info = WorkflowInfo(workflow_name, _noop, False, 100 if attempts is None else attempts, False, class_name)
    call = wf.Call(info, None, tuple(args), dict(kwargs))
    changes: dict[str, Any] = {} if as_child else {"run": None, "in_step": False}
    if "attributes" in options:
        changes["attributes"] = checks.workflow_attributes(options["attributes"])
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
    token = None
    if otel is not None:
        from opentelemetry import context as otel_context

        token = otel_context.attach(otel)
    try:
        with context.updated(**changes):
            # A deduplication ID already queued: wf.create raises DBOSQueueDeduplicatedError.
            created = wf.create(rt, call, queue_name=queue_name, enqueue_fields=fields, reserved=reserved,
                                return_existing=opts.duplication_policy == "return-existing", conn=conn)
    finally:
        if token is not None:
            from opentelemetry import context as otel_context

            otel_context.detach(token)
    if conn is None and created.fresh:
        rt.wakeups.notify(queue_ready(queue_name))
    return created.workflow_id


_LATEST: dict[int, tuple[Runtime, versions.LatestCache]] = {}


def _latest_version(rt: Runtime) -> Optional[str]:
    """The latest registered version, read at most once a second per runtime."""
    found = _LATEST.get(id(rt))
    if found is None or found[0] is not rt:
        _LATEST.clear()  # one runtime at a time in a process: drop a destroyed one's
        found = _LATEST[id(rt)] = (rt, versions.LatestCache(rt.sys_db))
    return found[1].get()


def _queue_spec(rt: Runtime, queue_name: str) -> q.QueueSpec:
    """The queue declared under this name here; else one this process does not run (its
    executors declare it), taking what any queue takes, as a client enqueue does. Never
    registered here: only a ``Queue`` object re-registers its queue after a registry clear."""
    checks.identifier("queue_name", queue_name)
    spec = rt.queue_spec(queue_name)  # declared in code here, or stored (as last read)
    if spec is not None:
        return spec  # type: ignore[no-any-return]
    partitioned = (context.current().enqueue or _NO_OPTIONS).queue_partition_key is not None
    return q.QueueSpec(queue_name, None, None, None, None, True, partitioned, 1.0)


_NO_OPTIONS = context.EnqueueOptions()
_AMBIENT_KEYS = ("deduplication_id", "priority", "app_version", "queue_partition_key", "delay_seconds",
                 "duplication_policy")


def _with_ambient(options: EnqueueOptions) -> EnqueueOptions:
    """As in DBOS 2.31.1, for ``DBOS.enqueue_workflow_with_options`` (not for a client, which
    has no ambient context): the options win; what they leave unset (or None) comes from the
    ``SetEnqueueOptions`` around the call, and their attributes merge over those of a
    ``SetWorkflowAttributes`` around it. The caller's dict is not changed."""
    if not isinstance(options, dict):
        return options  # _check_keys names the problem
    ctx = context.current()
    merged: dict[str, Any] = dict(options)
    ambient = ctx.enqueue or _NO_OPTIONS
    for key in _AMBIENT_KEYS:
        if merged.get(key) is None and getattr(ambient, key) is not None:
            merged[key] = getattr(ambient, key)
    explicit = options.get("attributes")
    if ctx.attributes is not None and isinstance(explicit, dict):
        merged["attributes"] = {**json.loads(ctx.attributes), **explicit}
    return cast(EnqueueOptions, merged)


class _EnqueueMixin:
    """``DBOS.enqueue_workflow`` and ``enqueue_workflow_with_options`` (and ``_async``)."""

    @classmethod
    def enqueue_workflow(cls, queue_name: str, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> WorkflowHandle[R]:
        """Enqueue ``func`` on the queue named ``queue_name`` (declared here or not), with the
        options of any ``SetEnqueueOptions`` around the call."""
        rt = runtime()
        rt.note_app_loop()  # called from async code: the workflow runs on its loop
        # A step or transaction runs as its temporary workflow, as with Queue.enqueue.
        info, instance = info_of(func, startable=True)
        call = wf.Call.of(info, (instance, *args) if instance is not None else args, kwargs)
        return WorkflowHandle(rt, q.enqueue(rt, _queue_spec(rt, queue_name), call))

    @classmethod
    async def enqueue_workflow_async(
        cls, queue_name: str, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]:
        rt = runtime()
        rt.note_app_loop()  # called from async code: the workflow runs on its loop
        info, instance = info_of(func, startable=True)
        call = wf.Call.of(info, (instance, *args) if instance is not None else args, kwargs)
        spec = _queue_spec(rt, queue_name)
        reserved = reserve()  # its step ID in the calling workflow: taken before the first await
        workflow_id = await rt.to_thread(
            functools.partial(q.enqueue, rt, spec, call, reserved=reserved)
        )
        return WorkflowHandleAsync(rt, workflow_id)

    @classmethod
    def enqueue_workflow_with_options(cls, options: EnqueueOptions, *args: Any, **kwargs: Any) -> WorkflowHandle[Any]:
        """Enqueue by name, as ``DBOSClient.enqueue`` with the same options, from inside the
        application: the workflow may be implemented by another executor; from a workflow
        the enqueue is its recorded child."""
        rt = runtime()
        rt.note_app_loop()  # called from async code: the workflow runs on its loop
        workflow_id = enqueue_with_options(
            rt, _with_ambient(options), args, kwargs, _latest_version(rt), "DBOS.enqueue_workflow_with_options",
            as_child=True,
        )
        return WorkflowHandle(rt, workflow_id)

    @classmethod
    async def enqueue_workflow_with_options_async(
        cls, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandleAsync[Any]:
        rt = runtime()
        rt.note_app_loop()  # called from async code: the workflow runs on its loop
        reserved = reserve()  # its step ID in the calling workflow: taken before the first await
        options = _with_ambient(options)

        def run() -> str:
            return enqueue_with_options(
                rt, options, args, kwargs, _latest_version(rt), "DBOS.enqueue_workflow_with_options", as_child=True,
                reserved=reserved,
            )

        return WorkflowHandleAsync(rt, await rt.to_thread(run))
