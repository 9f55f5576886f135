"""DBOS's workflow management: listing, cancel, resume, fork, steps, retrieving handles,
configured instances and application versions, with their ``_async`` forms (``DBOS``
inherits them); thin shells over ``_execution/management.py`` and ``versions.py``.

Called from a workflow, the calls DBOS Transact 2.31 records are recorded steps under
its names (``DBOS.listWorkflows``, ``DBOS.cancelWorkflow``, ``DBOS.forkWorkflow`` then
``DBOS.getStatus``, ...): a replay returns (or raises) what the first execution saw and
does not act again, and later step IDs match DBOS's. In a step they are plain calls."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, TypeVar, Union

from dbos._api import classes
from dbos._api.calls import cancel_each, check_not_async
from dbos._api.handles import WorkflowHandle, WorkflowHandleAsync, _as_step, as_step_async, get_status
from dbos._api.instance import runtime
from dbos._execution import context, management, versions
from dbos._execution import step as steps
from dbos._execution.checks import identifier
from dbos._execution.runtime import Runtime
from dbos._execution.status import StepInfo, WorkflowStatus
from dbos._storage import workflows
from dbos.error import DBOSNonExistentWorkflowError

T = TypeVar("T")


def plain(fn: Callable[[], T]) -> T:
    """``fn()`` taking no step of its own: the body of a step its caller records (an
    ``_async`` form running the sync one in the pool)."""
    with context.updated(in_step=True):
        return fn()


class _ManagementMixin:
    @classmethod
    def list_workflows(
        cls,
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
        ``queues_only``: as ``list_queued_workflows``; ``was_forked_from``: only workflows
        some fork was made from (True) or none (False)."""
        f = management.workflow_filter(
            workflow_ids=workflow_ids, status=status, start_time=start_time, end_time=end_time, name=name,
            app_version=app_version, user=user, limit=limit, offset=offset, sort_desc=sort_desc,
            workflow_id_prefix=workflow_id_prefix, queue_name=queue_name, executor_id=executor_id,
            forked_from=forked_from, parent_workflow_id=parent_workflow_id, has_parent=has_parent, attributes=attributes,
            completed_after=completed_after, completed_before=completed_before, dequeued_after=dequeued_after,
            dequeued_before=dequeued_before, queued_only=bool(queues_only), schedule_name=schedule_name,
            was_forked_from=was_forked_from,
        )
        rt = runtime()
        return _as_step(rt, "DBOS.listWorkflows", None,  # type: ignore[no-any-return]
                        lambda: management.list_workflows(rt, f, load_input=load_input, load_output=load_output))

    @classmethod
    async def list_workflows_async(cls, **kwargs: Any) -> List[WorkflowStatus]:
        return await as_step_async(  # type: ignore[no-any-return]
            runtime(), "DBOS.listWorkflows", None, lambda: plain(lambda: cls.list_workflows(**kwargs)))

    @classmethod
    def list_queued_workflows(
        cls,
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
        filters of ``list_workflows`` (``completed_after/before`` then match none: a
        queued workflow has not completed)."""
        f = management.workflow_filter(
            workflow_ids=workflow_ids, queue_name=queue_name, status=status, start_time=start_time,
            end_time=end_time, name=name, app_version=app_version, user=user, limit=limit, offset=offset,
            sort_desc=sort_desc, workflow_id_prefix=workflow_id_prefix, executor_id=executor_id,
            forked_from=forked_from, parent_workflow_id=parent_workflow_id, has_parent=has_parent, attributes=attributes,
            completed_after=completed_after, completed_before=completed_before, dequeued_after=dequeued_after,
            dequeued_before=dequeued_before, queued_only=True, schedule_name=schedule_name,
        )
        rt = runtime()
        return _as_step(rt, "DBOS.listQueuedWorkflows", None,  # type: ignore[no-any-return]
                        lambda: management.list_workflows(rt, f, load_input=load_input, load_output=load_output))

    @classmethod
    async def list_queued_workflows_async(cls, **kwargs: Any) -> List[WorkflowStatus]:
        return await as_step_async(  # type: ignore[no-any-return]
            runtime(), "DBOS.listQueuedWorkflows", None, lambda: plain(lambda: cls.list_queued_workflows(**kwargs)))

    @classmethod
    def cancel_workflow(cls, workflow_id: str, *, cancel_children: bool = False) -> None:
        """``cancel_children``: its descendants too, at any depth."""
        rt = runtime()
        _as_step(rt, "DBOS.cancelWorkflow", None, lambda: cancel_each(rt, [workflow_id], cancel_children))

    @classmethod
    async def cancel_workflow_async(cls, workflow_id: str, *, cancel_children: bool = False) -> None:
        rt = runtime()
        await as_step_async(rt, "DBOS.cancelWorkflow", None, lambda: cancel_each(rt, [workflow_id], cancel_children))

    @classmethod
    def resume_workflow(cls, workflow_id: str, *, queue_name: Optional[str] = None) -> WorkflowHandle[Any]:
        rt = runtime()
        return WorkflowHandle(rt, _as_step(rt, "DBOS.resumeWorkflow", None,
                                           lambda: management.resume(rt, workflow_id, queue_name)))

    @classmethod
    async def resume_workflow_async(
        cls, workflow_id: str, *, queue_name: Optional[str] = None
    ) -> WorkflowHandleAsync[Any]:
        rt = runtime()
        resumed = await as_step_async(rt, "DBOS.resumeWorkflow", None,
                                      lambda: management.resume(rt, workflow_id, queue_name))
        return WorkflowHandleAsync(rt, resumed)

    @classmethod
    def fork_workflow(
        cls, workflow_id: str, start_step: int, *, application_version: Optional[str] = None,
        queue_name: Optional[str] = None, queue_partition_key: Optional[str] = None,
        replacement_children: Optional[Dict[str, str]] = None, timeout_seconds: Optional[float] = None,
    ) -> WorkflowHandle[Any]:
        """``replacement_children`` {original child ID: replacement ID}: the fork uses the
        replacement wherever its copied steps started or awaited the original child."""
        rt = runtime()
        return WorkflowHandle(rt, _fork(rt, lambda: management.fork(
            rt, workflow_id, start_step, application_version, timeout_seconds, queue_name, queue_partition_key,
            replacement_children)))

    @classmethod
    async def fork_workflow_async(
        cls, workflow_id: str, start_step: int, *, application_version: Optional[str] = None,
        queue_name: Optional[str] = None, queue_partition_key: Optional[str] = None,
        replacement_children: Optional[Dict[str, str]] = None, timeout_seconds: Optional[float] = None,
    ) -> WorkflowHandleAsync[Any]:
        rt = runtime()
        reserved = steps.reserve(2)  # the fork's step and its status step, in call order
        new_id = await rt.to_thread(_fork, rt, lambda: management.fork(
            rt, workflow_id, start_step, application_version, timeout_seconds, queue_name, queue_partition_key,
            replacement_children), reserved)
        return WorkflowHandleAsync(rt, new_id)

    @classmethod
    def list_workflow_steps(
        cls, workflow_id: str, *, load_output: bool = True, limit: Optional[int] = None, offset: Optional[int] = None
    ) -> List[StepInfo]:
        rt = runtime()
        return _as_step(rt, "DBOS.listWorkflowSteps", None,  # type: ignore[no-any-return]
                        lambda: management.list_steps(rt, workflow_id, load_output=load_output, limit=limit,
                                                      offset=offset))

    @classmethod
    async def list_workflow_steps_async(
        cls, workflow_id: str, *, load_output: bool = True, limit: Optional[int] = None, offset: Optional[int] = None
    ) -> List[StepInfo]:
        rt = runtime()
        return await as_step_async(  # type: ignore[no-any-return]
            rt, "DBOS.listWorkflowSteps", None,
            lambda: management.list_steps(rt, workflow_id, load_output=load_output, limit=limit, offset=offset))

    @classmethod
    def retrieve_workflow(cls, workflow_id: str, existing_workflow: bool = True) -> WorkflowHandle[Any]:
        """A handle on the workflow; ``existing_workflow=False``: at once, even before the
        workflow exists (its ``get_result`` then waits for it to be created)."""
        check_not_async("retrieve_workflow")
        rt = runtime()
        if existing_workflow:
            _check_exists(rt, workflow_id)
        return WorkflowHandle(rt, workflow_id, await_creation=not existing_workflow)

    @classmethod
    async def retrieve_workflow_async(
        cls, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandleAsync[Any]:
        rt = runtime()
        if existing_workflow:
            await rt.to_thread(_check_exists, rt, workflow_id, steps.reserve())
        return WorkflowHandleAsync(rt, workflow_id, await_creation=not existing_workflow)

    @classmethod
    def register_instance(cls, inst: object) -> None:
        """Register an instance whose methods are workflows under its ``config_name`` (a
        DBOSConfiguredInstance does this itself when constructed), as DBOS 2.x."""
        classes.register_instance(inst)

    # -- application versions (DBOS 2.x) ------------------------------------------
    @classmethod
    def list_application_versions(cls) -> List[versions.VersionInfo]:
        """Every version an executor launched with, the latest first."""
        return versions.list_versions(runtime().sys_db)

    @classmethod
    def get_latest_application_version(cls) -> Optional[versions.VersionInfo]:
        """The version new work that names none goes to (from clients)."""
        return versions.latest(runtime().sys_db)

    @classmethod
    def set_latest_application_version(cls, version_name: str) -> None:
        """Promote a registered version to latest (an older one: a rollback)."""
        versions.set_latest(runtime().sys_db, version_name)

    @classmethod
    async def list_application_versions_async(cls) -> List[versions.VersionInfo]:
        rt = runtime()
        return await rt.to_thread(versions.list_versions, rt.sys_db)

    @classmethod
    async def get_latest_application_version_async(cls) -> Optional[versions.VersionInfo]:
        rt = runtime()
        return await rt.to_thread(versions.latest, rt.sys_db)

    @classmethod
    async def set_latest_application_version_async(cls, version_name: str) -> None:
        rt = runtime()
        await rt.to_thread(versions.set_latest, rt.sys_db, version_name)


def _check_exists(rt: Runtime, workflow_id: str, reserved: Optional[steps.Reserved] = None) -> None:
    """Raise unless the workflow exists. In a workflow, as DBOS 2.x, by a ``DBOS.getStatus``
    step (``reserved``: its ID, taken by an ``_async`` caller); else by a light lookup."""
    if reserved is not None or steps.durable_run(context.current()) is not None:
        status = _as_step(rt, "DBOS.getStatus", workflow_id, lambda: get_status(rt, workflow_id), reserved)
        if status is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return
    identifier("workflow_id", workflow_id)  # NUL or an over-long ID: a clear error, not the driver's
    if rt.sys_db.query(lambda c: workflows.get_outcome(c, workflow_id)) is None:
        raise DBOSNonExistentWorkflowError(workflow_id)


def _fork(rt: Runtime, fork: Callable[[], str], reserved: Optional[steps.Reserved] = None) -> str:
    """``fork()`` as a ``DBOS.forkWorkflow`` step recording the new ID, then, as DBOS 2.x's
    retrieve of the fork, a ``DBOS.getStatus`` step (``reserved``: both IDs, taken by an
    ``_async`` caller). Outside a workflow: the fork alone."""
    new_id: str = _as_step(rt, "DBOS.forkWorkflow", None, fork, reserved)
    if reserved is not None or steps.durable_run(context.current()) is not None:
        _check_exists(rt, new_id, reserved)
    return new_id
