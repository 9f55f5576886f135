"""DBOS class methods that look up, await and run without a decorated function:
``get_result``, ``get_workflow_status``, ``get_all_events``, ``wait_first``,
``run_step``, and ``reset_system_database`` (DBOS Transact 2.x).

``DBOS`` inherits them (``_CallsMixin``); each is a few lines over
``_execution``. Called from a workflow, the lookups and waits are recorded as
steps, so a replay returns what the first execution saw.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable, Coroutine, Dict, List, Optional, ParamSpec, TypedDict, TypeVar, Union, cast

from dbos._api.decorators import _check_step_options, check_step_extras
from dbos._api.handles import (
    WorkflowHandle,
    WorkflowHandleAsync,
    _as_step,
    _poll_interval,
    as_step_async,
    as_step_wait,
    get_status,
)
from dbos._api.instance import maybe_runtime, runtime
from dbos._execution import checks, context, management, messaging, queues, results
from dbos._execution import step as steps
from dbos._execution.registry import StepOptions as _StepConfig
from dbos._execution.runtime import Runtime, now_ms
from dbos._execution.status import WorkflowStatus
from dbos._execution.waits import run_async
from dbos._storage.database import Database
from dbos._storage.migrations import reset_application, reset_system

P = ParamSpec("P")
R = TypeVar("R")


class StepOptions(TypedDict, total=False):
    """Options of ``DBOS.run_step``: those of ``@DBOS.step()``."""

    name: str
    retries_allowed: bool
    interval_seconds: float
    max_attempts: int
    backoff_rate: float
    should_retry: Optional[Callable[[BaseException], Any]]
    preemptible: bool
    timeout_seconds: Optional[float]


def check_not_async(method: str) -> None:
    """A blocking DBOS method called on a thread running an event loop would block the
    loop (and every async workflow on it): refuse, naming the ``_async`` variant."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"DBOS.{method}() was called while an asyncio event loop is running in this thread; "
        f"use `await DBOS.{method}_async(...)` instead"
    )


def _step_config(options: Optional[StepOptions], func: Callable[..., Any]) -> _StepConfig:
    opts: Dict[str, Any] = dict(options or {})
    unknown = set(opts) - set(StepOptions.__annotations__)
    if unknown:
        raise TypeError(f"unknown step option(s) {sorted(unknown)}; expected {sorted(StepOptions.__annotations__)}")
    name = str(opts.get("name") or getattr(func, "__qualname__", repr(func)))
    config = _StepConfig(
        name=name,
        retries_allowed=opts.get("retries_allowed", False),
        interval_seconds=opts.get("interval_seconds", 1.0),
        max_attempts=opts.get("max_attempts", 3),
        backoff_rate=opts.get("backoff_rate", 2.0),
        should_retry=opts.get("should_retry"),
        preemptible=opts.get("preemptible", False),
    )
    _check_step_options(config.retries_allowed, config.interval_seconds, config.max_attempts, config.backoff_rate)
    config.timeout_seconds = check_step_extras(
        name, inspect.iscoroutinefunction(func), config.should_retry, opts.get("timeout_seconds"), config.preemptible
    )
    return config


def _distinct_ids(handles: List[Any]) -> List[str]:
    if not handles:
        raise ValueError("wait_first needs at least one handle")
    ids = [h.workflow_id for h in handles]
    if len(set(ids)) != len(ids):
        raise ValueError("wait_first: the handles name the same workflow more than once")
    return ids


def cancel_each(rt: Runtime, workflow_ids: List[str], cancel_children: bool = False) -> None:
    """The body of a ``DBOS.cancelWorkflow`` step: one transaction for them all (unknown IDs
    are skipped); ``cancel_children``: their descendants too."""
    management.cancel_workflows(rt, workflow_ids, cancel_children=cancel_children)


class _CallsMixin:
    @classmethod
    def get_workflow_status(cls, workflow_id: str) -> Optional[WorkflowStatus]:
        """The workflow's status, or None if no workflow has this ID."""
        check_not_async("get_workflow_status")
        rt = runtime()
        return _as_step(rt, "DBOS.getStatus", workflow_id, lambda: get_status(rt, workflow_id))  # type: ignore[no-any-return]

    @classmethod
    async def get_workflow_status_async(cls, workflow_id: str) -> Optional[WorkflowStatus]:
        rt = runtime()
        return await as_step_async(rt, "DBOS.getStatus", workflow_id, lambda: get_status(rt, workflow_id))  # type: ignore[no-any-return]

    @classmethod
    def get_result(cls, workflow_id: str) -> Any:
        """Wait for the workflow to finish (waiting for it to exist first) and return its
        result or raise its error."""
        check_not_async("get_result")
        rt = runtime()
        return _as_step(rt, "DBOS.getResult", workflow_id,
                        lambda: results.wait_result(rt, workflow_id, await_creation=True))

    @classmethod
    async def get_result_async(cls, workflow_id: str) -> Any:
        rt = runtime()
        return await run_async(rt, as_step_wait(
            rt, "DBOS.getResult", workflow_id, lambda: results.result_wait(rt, workflow_id, await_creation=True),
            steps.reserve(),
        ))

    @classmethod
    def get_all_events(cls, workflow_id: str) -> Dict[str, Any]:
        """Every event the workflow has set so far: key -> latest value."""
        check_not_async("get_all_events")
        rt = runtime()
        return _as_step(rt, "DBOS.get_events", None, lambda: messaging.get_all_events(rt, workflow_id))  # type: ignore[no-any-return]

    @classmethod
    async def get_all_events_async(cls, workflow_id: str) -> Dict[str, Any]:
        rt = runtime()
        return await as_step_async(rt, "DBOS.get_events", None, lambda: messaging.get_all_events(rt, workflow_id))  # type: ignore[no-any-return]

    @classmethod
    def wait_first(
        cls, handles: List[WorkflowHandle[Any]], *, polling_interval_sec: Optional[float] = None
    ) -> WorkflowHandle[Any]:
        """Wait until one of these workflows has finished; return its handle.
        ``polling_interval_sec``: as in ``WorkflowHandle.get_result``."""
        check_not_async("wait_first")
        ids = _distinct_ids(handles)
        poll = _poll_interval(polling_interval_sec)
        rt = runtime()
        first = _as_step(rt, "DBOS.waitFirst", None, lambda: results.wait_first(rt, ids, None, poll))
        return handles[ids.index(first)]

    @classmethod
    async def wait_first_async(
        cls, handles: List[WorkflowHandleAsync[Any]], *, polling_interval_sec: Optional[float] = None
    ) -> WorkflowHandleAsync[Any]:
        ids = _distinct_ids(handles)
        poll = _poll_interval(polling_interval_sec)
        rt = runtime()
        first = await run_async(rt, as_step_wait(
            rt, "DBOS.waitFirst", None, lambda: results.first_wait(rt, ids, None, poll), steps.reserve()
        ))
        return handles[ids.index(first)]

    @classmethod
    async def asyncio_wait(
        cls, fs: List[Any], *, timeout: Optional[float] = None, return_when: str = asyncio.ALL_COMPLETED
    ) -> tuple[set["asyncio.Future[Any]"], set["asyncio.Future[Any]"]]:
        """``asyncio.wait``, durable: in a workflow, which of ``fs`` were done is recorded (a
        ``DBOS.asyncio_wait`` step holding their positions), so a replay answers the same
        split, waiting only for those; outside a workflow it is ``asyncio.wait``."""
        if return_when not in (asyncio.ALL_COMPLETED, asyncio.FIRST_COMPLETED, asyncio.FIRST_EXCEPTION):
            raise ValueError(f"asyncio_wait: return_when must be one of asyncio's constants, got {return_when!r}")
        if timeout is not None:
            timeout = checks.duration("asyncio_wait timeout", timeout)
        run = steps.durable_run(context.current())
        if run is None:
            futures = [asyncio.ensure_future(f) for f in fs]
            plain_done, plain_pending = await asyncio.wait(futures, timeout=timeout, return_when=return_when)
            return plain_done, plain_pending
        # The step ID is taken before the awaitables run (their own steps come after it).
        fid, recorded = steps.lookup(run, "DBOS.asyncio_wait")
        futures = [asyncio.ensure_future(f) for f in fs]
        if recorded is not None:
            positions = set(steps.replay(recorded) or [])
            done = {futures[i] for i in positions}
            if done:
                await asyncio.wait(done)
            else:
                # Let the awaitables start (taking their step IDs) before the workflow goes
                # on, as they did while the first run waited.
                await asyncio.sleep(0)
            return done, {f for i, f in enumerate(futures) if i not in positions}
        rt = runtime()
        started = now_ms()
        done, pending = await asyncio.wait(futures, timeout=timeout, return_when=return_when)
        positions_done = [i for i, f in enumerate(futures) if f in done]
        await rt.to_thread(steps.record, rt, run, fid, "DBOS.asyncio_wait", positions_done, None, started)
        return done, pending

    @classmethod
    def run_step(
        cls,
        dbos_step_options: Optional[StepOptions],
        func: Union[Callable[P, R], Callable[P, Coroutine[Any, Any, R]]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Run ``func(*args, **kwargs)`` as a checkpointed step of the calling workflow
        (outside a workflow: just call it), with the options of ``@DBOS.step()``."""
        check_not_async("run_step")
        config = _step_config(dbos_step_options, func)
        target: Callable[..., Any] = func
        if inspect.iscoroutinefunction(func):
            run = steps.durable_run(context.current())
            if run is not None and (config.timeout_seconds is not None or config.preemptible):
                # Each attempt on a loop of its own, under the step's timeout and preemption.

                def attempt(*a: Any, **k: Any) -> Any:
                    return asyncio.run(steps.supervised(config, run, func, a, k))

                target = functools.wraps(func)(attempt)
            else:
                target = functools.wraps(func)(lambda *a, **k: asyncio.run(func(*a, **k)))
        return cast(R, steps.run_step(maybe_runtime(), config, target, args, kwargs))

    @classmethod
    async def run_step_async(
        cls,
        dbos_step_options: Optional[StepOptions],
        func: Union[Callable[P, R], Callable[P, Coroutine[Any, Any, R]]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """``run_step`` for async code: a coroutine function runs on the caller's loop, a
        plain function on the blocking pool."""
        config = _step_config(dbos_step_options, func)
        rt = maybe_runtime()
        target: Callable[..., Any] = func
        if not inspect.iscoroutinefunction(func):
            plain = cast(Callable[..., Any], func)

            async def in_thread(*a: Any, **k: Any) -> Any:
                if rt is None:
                    return plain(*a, **k)
                return await rt.to_thread(functools.partial(plain, *a, **k))

            target = in_thread
        return cast(R, await steps.run_step_async(rt, config, target, args, kwargs))

    @classmethod
    def set_workflow_delay(
        cls, workflow_id: str, *, delay_seconds: Optional[float] = None, delay_until_epoch_ms: Optional[int] = None
    ) -> None:
        """Change when a DELAYED workflow becomes claimable (from now, or at an epoch time)."""
        rt = runtime()
        _as_step(rt, "DBOS.setWorkflowDelay", None,
                 lambda: queues.set_delay(rt, workflow_id, delay_seconds, delay_until_epoch_ms))

    @classmethod
    async def set_workflow_delay_async(
        cls, workflow_id: str, *, delay_seconds: Optional[float] = None, delay_until_epoch_ms: Optional[int] = None
    ) -> None:
        rt = runtime()
        await as_step_async(rt, "DBOS.setWorkflowDelay", None,
                            lambda: queues.set_delay(rt, workflow_id, delay_seconds, delay_until_epoch_ms))

    @classmethod
    def cancel_workflows(cls, workflow_ids: List[str], *, cancel_children: bool = False) -> None:
        """``cancel_workflow`` of each, in one transaction (unknown IDs are skipped);
        ``cancel_children``: their descendants too, at any depth. In a workflow one
        ``DBOS.cancelWorkflow`` step for them all, as DBOS 2.x."""
        rt = runtime()
        _as_step(rt, "DBOS.cancelWorkflow", None, lambda: cancel_each(rt, workflow_ids, cancel_children))

    @classmethod
    async def cancel_workflows_async(cls, workflow_ids: List[str], *, cancel_children: bool = False) -> None:
        rt = runtime()
        await as_step_async(rt, "DBOS.cancelWorkflow", None, lambda: cancel_each(rt, workflow_ids, cancel_children))

    @classmethod
    def resume_workflows(
        cls, workflow_ids: List[str], *, queue_name: Optional[str] = None
    ) -> List[WorkflowHandle[Any]]:
        """``resume_workflow`` of each; their handles, in order (in a workflow one
        ``DBOS.resumeWorkflow`` step for them all, as DBOS 2.x)."""
        rt = runtime()
        ids = _as_step(rt, "DBOS.resumeWorkflow", None,
                       lambda: [management.resume(rt, w, queue_name) for w in workflow_ids])
        return [WorkflowHandle(rt, w) for w in ids]

    @classmethod
    async def resume_workflows_async(
        cls, workflow_ids: List[str], *, queue_name: Optional[str] = None
    ) -> List[WorkflowHandleAsync[Any]]:
        rt = runtime()
        ids = await as_step_async(rt, "DBOS.resumeWorkflow", None,
                                  lambda: [management.resume(rt, w, queue_name) for w in workflow_ids])
        return [WorkflowHandleAsync(rt, w) for w in ids]

    @classmethod
    def reset_system_database(
        cls, *, system_database_url: Optional[str] = None, schema: Optional[str] = None, truncate: bool = False
    ) -> None:
        """Before launch: drop (``truncate``: empty) the configured system database, and
        this library's table in the application database, so the next launch starts
        from nothing. For tests; destroys every workflow's record."""
        from dbos._api.dbos import DBOS
        from dbos.error import DBOSException, DBOSInitializationError

        inst = DBOS._instance
        if inst is None and system_database_url is None:
            raise DBOSInitializationError("call DBOS(config=...) before DBOS.reset_system_database()")
        if inst is not None and inst._launched:
            raise DBOSException(
                "DBOS.reset_system_database() must be called before DBOS.launch() (or after DBOS.destroy())"
            )
        urls: List[str] = []
        if system_database_url is not None:
            from dbos._config.settings import load_settings

            s = load_settings({"name": "reset", "system_database_url": system_database_url}, env={})
            kwargs, prepared = s.db_engine_kwargs, s.use_prepared_statements
            urls = [s.system_database_url]
        else:
            assert inst is not None
            s = inst.settings
            kwargs, prepared = s.db_engine_kwargs, s.use_prepared_statements
            urls = [s.system_database_url, s.application_database_url]
        target_schema = schema or s.schema
        for i, url in enumerate(dict.fromkeys(urls)):
            db = Database(url, target_schema, 2, kwargs, prepared)
            try:
                if i == 0:
                    reset_system(db, truncate=truncate)
                reset_application(db, truncate=truncate)
            finally:
                db.dispose()
