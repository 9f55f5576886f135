"""The decorators: register at import time, find the runtime at call time.

Each wrapper keeps the user's signature (``functools.wraps`` and a typed
TypeVar), so type checkers see the function as written.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable, Optional, TypeVar, cast

from dbos._api.instance import maybe_runtime, runtime
from dbos._execution import context
from dbos._execution import workflow as wf
from dbos._execution.auth import RoleSpec, authorize
from dbos._execution.registry import REGISTRY, TEMP_PREFIX, StepOptions, WorkflowInfo, takes_self
from dbos._execution.step import run_step, run_step_async, run_transaction
from dbos.error import DBOSConflictingRegistrationError, DBOSException

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_MAX_RECOVERY_ATTEMPTS = 100


def info_of(func: Callable[..., Any], *, startable: bool = False) -> tuple[WorkflowInfo, Optional[Any]]:
    """The registered workflow behind a decorated function or bound method, and its bound
    instance. ``startable``: a step or transaction stands for its temporary workflow (what
    ``start_workflow`` and ``enqueue`` run, as in DBOS 2.x)."""
    instance = getattr(func, "__self__", None)
    target = getattr(func, "__func__", func)
    info = getattr(target, "__dbos_workflow__", None)
    if info is None and startable:
        info = getattr(target, "__dbos_temp_workflow__", None)
    if info is None:
        what = "@DBOS.workflow(), @DBOS.step() or @DBOS.transaction()" if startable else "@DBOS.workflow()"
        raise DBOSException(f"{getattr(func, '__qualname__', func)!r} is not a {what} function")
    return info, instance


def _temp_workflow(kind: str, name: str, func: Callable[..., Any], body: Callable[..., Any],
                   roles: RoleSpec) -> WorkflowInfo:
    """Register the one-step workflow ``<temp>.<name>`` whose only step is ``body`` (the
    decorated step or transaction): recovery and queues find it by that name."""
    info = WorkflowInfo(
        name=TEMP_PREFIX + name,
        func=body,
        is_async=inspect.iscoroutinefunction(func),
        max_recovery_attempts=DEFAULT_MAX_RECOVERY_ATTEMPTS,
        takes_self=takes_self(func),
        roles=roles,
        temp_kind=kind,
        user_func=func,
    )
    REGISTRY.add_workflow(info)
    return info


def workflow_decorator(*, name: Optional[str] = None, max_recovery_attempts: Optional[int] = None) -> Callable[[F], F]:
    attempts = DEFAULT_MAX_RECOVERY_ATTEMPTS if max_recovery_attempts is None else max_recovery_attempts
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        raise DBOSException(f"max_recovery_attempts must be a non-negative integer, got {max_recovery_attempts!r}")

    def decorate(func: F) -> F:
        info = WorkflowInfo(
            name=name or func.__qualname__,
            func=func,
            is_async=inspect.iscoroutinefunction(func),
            max_recovery_attempts=attempts,
            takes_self=takes_self(func),
            roles=_roles_of(func),
        )
        REGISTRY.add_workflow(info)
        if info.is_async:

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                return await wf.call_direct_async(runtime(), wf.Call.of(info, args, kwargs))

            setattr(run_async, "__dbos_workflow__", info)
            setattr(run_async, "__dbos_roles__", info.roles)
            return cast(F, run_async)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            return wf.call_direct(runtime(), wf.Call.of(info, args, kwargs))

        setattr(run, "__dbos_workflow__", info)
        setattr(run, "__dbos_roles__", info.roles)
        return cast(F, run)

    return decorate


def _roles_of(func: Callable[..., Any]) -> RoleSpec:
    """A role spec for a function, honouring @required_roles applied below the DBOS decorator."""
    below = getattr(func, "__dbos_required_roles__", None)
    return RoleSpec(list(below), True) if below is not None else RoleSpec()


def _authorize_call(name: str, spec: RoleSpec) -> None:
    if spec.roles:
        ctx = context.current()
        own = context.auth_of(ctx)
        auth = ctx.run.auth if ctx.run is not None and own.user is None else own
        authorize(name, spec.roles, auth)


def _check_not_decorated(func: Callable[..., Any], kind: str, name: str) -> None:
    """One DBOS decorator per function: a step over a transaction (or the other way round)
    would run the body twice over or checkpoint it twice."""
    for attr, other in (("__dbos_kind__", None), ("__dbos_workflow__", "workflow")):
        found = getattr(func, attr, None)
        if found is not None and (other or found) != kind:
            raise DBOSConflictingRegistrationError(
                name, f"{name} is already a DBOS {other or found}; it cannot also be a {kind} "
                "(use one of @DBOS.workflow, @DBOS.step and @DBOS.transaction per function)"
            )


def _check_step_options(retries_allowed: bool, interval_seconds: float, max_attempts: int, backoff_rate: float) -> None:
    if not isinstance(retries_allowed, bool):
        raise DBOSException(f"retries_allowed must be a bool, got {retries_allowed!r}")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise DBOSException(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
    if not isinstance(interval_seconds, (int, float)) or interval_seconds < 0:
        raise DBOSException(f"interval_seconds must be a number >= 0, got {interval_seconds!r}")
    if not isinstance(backoff_rate, (int, float)) or backoff_rate < 1:
        raise DBOSException(f"backoff_rate must be a number >= 1, got {backoff_rate!r}")


def check_step_extras(
    name: str, is_async: bool, should_retry: Any, timeout_seconds: Any, preemptible: Any
) -> Optional[float]:
    """The DBOS 2.x step options beyond retries; ``timeout_seconds`` as a float. As in
    DBOS, a timeout and preemption need an async step (a running sync function cannot
    be interrupted), and an async ``should_retry`` an async step."""
    if should_retry is not None:
        if not callable(should_retry):
            raise DBOSException(f"should_retry of step {name} must be a callable taking the exception, "
                                f"got {should_retry!r}")
        if inspect.iscoroutinefunction(should_retry) and not is_async:
            raise DBOSException(f"Step {name} is sync but should_retry is async. "
                                "Use an async step to pair with an async validator.")
    if not isinstance(preemptible, bool):
        raise DBOSException(f"preemptible of step {name} must be a bool, got {preemptible!r}")
    if preemptible and not is_async:
        raise DBOSException(f"Step {name} is sync but preemptible=True. "
                            "Preemption is only supported for async steps.")
    if timeout_seconds is None:
        return None
    if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)) \
            or not (timeout_seconds > 0 and math.isfinite(timeout_seconds)):  # `<= 0` would let NaN through
        raise DBOSException(f"Step {name} has timeout_seconds={timeout_seconds!r}. "
                            "Step timeouts must be positive and finite.")
    if not is_async:
        raise DBOSException(f"Step {name} is sync but timeout_seconds is set. "
                            "Step timeouts are only supported for async steps.")
    return float(timeout_seconds)


def step_decorator(
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
    _check_step_options(retries_allowed, interval_seconds, max_attempts, backoff_rate)
    if should_retry is not None and not callable(should_retry):
        raise DBOSException(f"should_retry must be a callable taking the exception, got {should_retry!r}")

    def decorate(func: F) -> F:
        step_name = name or func.__qualname__
        timeout = check_step_extras(step_name, inspect.iscoroutinefunction(func), should_retry, timeout_seconds,
                                    preemptible)
        opts = StepOptions(
            step_name, retries_allowed, float(interval_seconds), max_attempts, float(backoff_rate),
            should_retry, timeout, preemptible,
        )
        _check_not_decorated(func, "step", opts.name)
        roles = _roles_of(func)
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                _authorize_call(opts.name, roles)
                return await run_step_async(maybe_runtime(), opts, func, args, kwargs)

            async def temp_async(*args: Any, **kwargs: Any) -> Any:
                return await run_async(*args, **kwargs)

            setattr(run_async, "__dbos_roles__", roles)
            setattr(run_async, "__dbos_kind__", "step")
            setattr(run_async, "__dbos_temp_workflow__", _temp_workflow("step", opts.name, func, temp_async, roles))
            return cast(F, run_async)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            if roles.roles:
                _authorize_call(opts.name, roles)
            return run_step(maybe_runtime(), opts, func, args, kwargs)

        def temp(*args: Any, **kwargs: Any) -> Any:
            return run(*args, **kwargs)

        setattr(run, "__dbos_roles__", roles)
        setattr(run, "__dbos_kind__", "step")
        setattr(run, "__dbos_temp_workflow__", _temp_workflow("step", opts.name, func, temp, roles))
        return cast(F, run)

    return decorate


_ISOLATION_LEVELS = ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED")


def transaction_decorator(*, isolation_level: Optional[str] = None, name: Optional[str] = None) -> Callable[[F], F]:
    if isolation_level is not None and isolation_level not in _ISOLATION_LEVELS:
        raise DBOSException(f"isolation_level must be one of {_ISOLATION_LEVELS}, got {isolation_level!r}")

    def decorate(func: F) -> F:
        tx_name = name or func.__qualname__
        if inspect.iscoroutinefunction(func):
            # As in DBOS 2.x: DBOS.sql_session is a sync session, so the body is sync too.
            raise DBOSException(
                f"Function {tx_name} is a coroutine function, but DBOS.transaction does not support "
                "coroutine functions: make it a plain def (an async workflow may call it)"
            )
        _check_not_decorated(func, "transaction", tx_name)
        roles = _roles_of(func)

        def in_workflow(*args: Any, **kwargs: Any) -> Any:
            return run_transaction(runtime(), tx_name, isolation_level, func, args, kwargs)

        temp = _temp_workflow("transaction", tx_name, func, in_workflow, roles)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            _authorize_call(tx_name, roles)
            if context.current().run is None:
                # Outside a workflow, as in DBOS 2.x: a one-step temporary workflow, so the
                # call is durable (idempotent under SetWorkflowID) and listed.
                return wf.call_direct(runtime(), wf.Call.of(temp, args, kwargs))
            return in_workflow(*args, **kwargs)

        setattr(run, "__dbos_roles__", roles)
        setattr(run, "__dbos_kind__", "transaction")
        setattr(run, "__dbos_temp_workflow__", temp)
        return cast(F, run)

    return decorate
