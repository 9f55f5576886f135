"""Step and transaction rules: replay a recorded output, or run and record once.

A step is at-least-once: it re-runs only if the process died between its end
and its checkpoint. A transaction is exactly-once: its checkpoint row in the
application database commits with the user's own writes.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from typing import Any, Awaitable, Callable, Optional

from dbos._execution import checks, context
from dbos._execution.context import Ctx, WorkflowRun
from dbos._execution.registry import StepOptions
from dbos._execution.runtime import Runtime, now_ms
from dbos._execution.serialization import (
    as_recorded,
    deserialize,
    deserialize_error,
    serialize,
    serialize_error,
)
from dbos._execution.status import StepStatus
from dbos._storage import operations, transactions
from dbos._storage.database import is_outage
from dbos._storage.operations import StepRow
from dbos._telemetry import tracing
from dbos.error import (
    DBOSDatabaseUnavailableError,
    DBOSException,
    DBOSMaxStepRetriesExceeded,
    DBOSStepTimeoutError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
)


def durable_run(ctx: Ctx) -> Optional[WorkflowRun]:
    """The workflow a step called now belongs to, or None (outside a workflow, or nested)."""
    return ctx.run if ctx.run is not None and not ctx.in_step else None


_log = logging.getLogger("dbos")
# What DBOS 2.x's debug lines call the built-in steps ("Running sleep, id: 3, ...").
_OPERATIONS = {"DBOS.sleep": "sleep", "DBOS.send": "send", "DBOS.recv": "recv",
               "DBOS.setEvent": "set_event", "DBOS.getEvent": "get_event"}


def _log_step(run: WorkflowRun, fid: int, name: str, kind: str, recorded: Optional[StepRow]) -> None:
    """A DEBUG line per step, in DBOS 2.x's form: "Running step, id: 2, name: f" (or
    "Replaying ..." when its record answers); one level check when DEBUG is off."""
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug("%s %s, id: %d, name: %s, workflow: %s", "Running" if recorded is None else "Replaying",
                   _OPERATIONS.get(name, kind), fid, name, run.workflow_id)


def lookup(run: WorkflowRun, name: str, kind: str = "step") -> tuple[int, Optional[StepRow]]:
    """Take the next step ID (preempting a cancelled workflow) and its recorded row, if any."""
    run.check_cancelled()
    fid = run.next_function_id()
    recorded = run.recorded.get(fid)
    if recorded is not None and recorded.function_name != name:
        raise DBOSUnexpectedStepError(run.workflow_id, fid, name, recorded.function_name)
    _log_step(run, fid, name, kind, recorded)
    return fid, recorded


class Reserved:
    """Step IDs an ``_async`` call took on its calling task, before its first await, for
    the code it then runs in a pool thread (or as a wait): there ``take`` hands them out
    where the sync form takes the run's next IDs. Concurrent calls in one workflow (an
    ``asyncio.gather``) so number their steps in the order they were made, not in the
    order their threads got to them, and a replay matches each recorded step to its call."""

    __slots__ = ("run", "_fids")

    def __init__(self, run: WorkflowRun, count: int) -> None:
        run.check_cancelled()
        self.run = run
        self._fids = [run.next_function_id() for _ in range(count)]
        self._fids.reverse()

    def next_function_id(self) -> int:
        assert self._fids, "an _async call took more step IDs than it reserved"
        return self._fids.pop()


def reserve(count: int = 1) -> Optional[Reserved]:
    """Take ``count`` step IDs of the calling workflow now (None outside one, or in a step).
    On the calling task, before any await: what the thread's code takes then is in call order."""
    run = durable_run(context.current())
    return Reserved(run, count) if run is not None else None


def take(run: WorkflowRun, name: str, reserved: Optional[Reserved]) -> tuple[int, Optional[StepRow]]:
    """``lookup``, with the next ID ``reserved`` on the calling task if there is one."""
    if reserved is None:
        return lookup(run, name)
    fid = reserved.next_function_id()
    recorded = run.recorded.get(fid)
    if recorded is not None and recorded.function_name != name:
        raise DBOSUnexpectedStepError(run.workflow_id, fid, name, recorded.function_name)
    _log_step(run, fid, name, "step", recorded)
    return fid, recorded


def replay(row: StepRow) -> Any:
    if row.error is not None:
        err = deserialize_error(row.error)
        assert err is not None
        raise err
    return deserialize(row.output, f"the recorded output of step {row.function_name}")


def record(
    rt: Runtime,
    run: WorkflowRun,
    fid: int,
    name: str,
    result: Any,
    error: Optional[BaseException],
    started: int,
    child_workflow_id: Optional[str] = None,
    attempts: int = 1,
    completed: Optional[int] = None,
) -> Any:
    """Checkpoint a step (one statement), then return its result or raise its error.

    If another execution of the same workflow recorded this step first, its
    record wins and is returned instead, so every execution agrees. ``completed``:
    the completion time to record, if not now (a sleep records its wake-up time).
    """
    if error is None:
        try:
            output: Optional[bytes] = serialize(result, "the result of step %s", name)
            checks.check_size(output, rt.settings.max_value_bytes, f"the result of step {name}")
        except Exception as e:
            error, output = e, None
    else:
        output = None
    error_data = serialize_error(error, rt.settings.max_value_bytes) if error is not None else None
    done = now_ms()
    rt.stats.step_done((done - started) / 1000)
    if not operations.record(
        rt.sys_db, run.workflow_id, fid, name, output, error_data, child_workflow_id, started,
        done if completed is None else completed, attempts,
    ):
        return replay(recorded_elsewhere(rt, run.workflow_id, fid))
    if error is not None:
        assert error_data is not None
        raise as_recorded(error, error_data)  # the type every replay raises
    return result


class _RecordedElsewhere(Exception):
    """Rolls back a ``tx_step`` whose step another execution recorded first."""


def tx_step(rt: Runtime, name: str, op: Callable[[Any], Any], reserved: Optional[Reserved] = None) -> Any:
    """``op(conn)`` in one system-database transaction. From a workflow, step ``name`` is
    recorded in that same transaction (DBOS 2.x's ``call_txn_as_step``): a crash keeps
    both the change and its record, or neither, and a replay returns the record without
    running ``op``. An error ``op`` raises rolls its change back and is recorded alone.
    ``reserved``: the step's ID, taken by an ``_async`` caller."""
    run = durable_run(context.current())
    if run is None:
        return rt.sys_db.run(op, tx=True)
    fid, recorded = take(run, name, reserved)
    if recorded is not None:
        return replay(recorded)
    started = now_ms()

    def in_tx(conn: Any) -> Any:
        result = op(conn)
        output = serialize(result, "the result of step %s", name)
        checks.check_size(output, rt.settings.max_value_bytes, f"the result of step {name}")
        row = StepRow(fid, name, output, None, None, started, now_ms())
        if not operations.insert(conn, rt.sys_db.dialect, run.workflow_id, row):
            raise _RecordedElsewhere()
        return result

    try:
        value = rt.sys_db.run(in_tx, tx=True)
    except _RecordedElsewhere:
        return replay(recorded_elsewhere(rt, run.workflow_id, fid))
    except Exception as e:  # not a cancellation: DBOSWorkflowCancelledError is a BaseException
        return record(rt, run, fid, name, None, e, started)
    rt.stats.step_done((now_ms() - started) / 1000)
    return value


def recorded_elsewhere(rt: Runtime, workflow_id: str, fid: int) -> StepRow:
    """The row another execution recorded for step ``fid``, whose write beat ours."""
    existing = rt.sys_db.query(lambda c: operations.get(c, workflow_id, fid))
    assert existing is not None
    return existing


def _attempts(opts: StepOptions) -> int:
    return max(1, opts.max_attempts) if opts.retries_allowed else 1


def _status(opts: StepOptions, fid: Optional[int], attempt: int) -> Optional[StepStatus]:
    if fid is None:
        return None
    if opts.retries_allowed:
        return StepStatus(fid, attempt, opts.max_attempts)
    return StepStatus(fid, None, None)


def _retry_delay(opts: StepOptions, attempt: int) -> float:
    return float(opts.interval_seconds * (opts.backoff_rate**attempt))


def _final_error(opts: StepOptions, errors: list[Exception], durable: bool = True) -> Optional[BaseException]:
    if not errors:
        return None
    if opts.retries_allowed and durable:  # outside a workflow the step ran once: its own error
        return DBOSMaxStepRetriesExceeded(opts.name, opts.max_attempts, errors)
    return errors[-1]


def _verdict(opts: StepOptions, error: Exception) -> Any:
    """What ``should_retry`` says of a failed attempt (an awaitable for an async one), or
    the exception it raised."""
    assert opts.should_retry is not None
    try:
        return opts.should_retry(error)
    except Exception as e:
        return e


def _not_retried(error: Exception, verdict: Any) -> Optional[BaseException]:
    """None: retry. Else the step's error, now: the attempt's own error when the predicate
    said no (as DBOS 2.x re-raises it), or what the predicate raised."""
    if isinstance(verdict, BaseException):
        return verdict
    if inspect.isawaitable(verdict):  # an awaitable from a sync step's predicate
        close = getattr(verdict, "close", None)
        if close is not None:
            close()
        return DBOSException("should_retry returned an awaitable in a sync step; use a plain function, "
                             "or make the step async")
    return None if verdict else error


# How often a running preemptible step looks at its workflow's cancel flag (in memory).
_PREEMPT_CHECK_SEC = 0.05


async def supervised(
    opts: StepOptions, run: Optional[WorkflowRun], func: Callable[..., Awaitable[Any]], args: Any, kwargs: Any
) -> Any:
    """One attempt of an async step under ``timeout_seconds`` and ``preemptible``: the
    attempt runs as a task; past its timeout it is cancelled and DBOSStepTimeoutError
    raised (an Exception: retried, recorded); a preemptible one whose workflow is
    cancelled meanwhile is cancelled and DBOSWorkflowCancelledError raised (not
    recorded: a resume runs the step again). The task's own cleanup finishes first."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(func(*args, **kwargs))  # copies the step's context
    deadline = None if opts.timeout_seconds is None else loop.time() + opts.timeout_seconds
    watch = opts.preemptible and run is not None
    try:
        while True:
            wait = None if deadline is None else max(0.0, deadline - loop.time())
            if watch:
                wait = _PREEMPT_CHECK_SEC if wait is None else min(wait, _PREEMPT_CHECK_SEC)
            await asyncio.wait((task,), timeout=wait)
            if task.done():
                return task.result()  # finished: its outcome stands, whatever else happened
            abort: Optional[BaseException] = None
            if watch and run is not None and run.cancel_event.is_set():
                # A cancellation outranks a timeout reached at the same moment.
                abort = DBOSWorkflowCancelledError(f"Workflow {run.workflow_id} was cancelled: preemptible step "
                                                   f"{opts.name} interrupted")
            elif deadline is not None and loop.time() >= deadline:
                assert opts.timeout_seconds is not None
                abort = DBOSStepTimeoutError(opts.name, opts.timeout_seconds)
            if abort is not None:
                break
        task.cancel()
        await asyncio.wait((task,))
        cause = None if task.cancelled() else task.exception()
        if cause is not None and not isinstance(cause, Exception):
            raise cause
        raise abort from cause
    finally:
        if not task.done():  # we were cancelled ourselves: do not leave the attempt running
            task.cancel()
        elif not task.cancelled():
            task.exception()  # retrieved: asyncio does not log it as unhandled


def _span(rt: Optional[Runtime], run: Optional[WorkflowRun], fid: Optional[int], name: str, kind: str) -> Any:
    if not tracing.enabled():
        return tracing.NO_SPAN
    attributes: dict[str, Any] = {}
    if run is not None and rt is not None:
        attributes[tracing.ATTR_WORKFLOW_ID] = run.workflow_id
        attributes[tracing.ATTR_STEP_ID] = fid
        attributes[tracing.ATTR_EXECUTOR_ID] = rt.executor_id
        attributes[tracing.ATTR_APP_VERSION] = rt.app_version
    return tracing.span(name, kind, attributes)


def run_step(rt: Optional[Runtime], opts: StepOptions, func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    ctx = context.current()
    run = durable_run(ctx)
    fid: Optional[int] = None
    if run is not None:
        rt = run.runtime  # the execution's own runtime: after DBOS.destroy() the step is preempted
        fid, recorded = lookup(run, opts.name)
        if recorded is not None:
            return replay(recorded)
    if not tracing.enabled():  # every step call: no span to enter
        return _run_step(rt, opts, func, args, kwargs, ctx, run, fid)
    with _span(rt, run, fid, opts.name, "step"):
        return _run_step(rt, opts, func, args, kwargs, ctx, run, fid)


def _run_step(
    rt: Optional[Runtime],
    opts: StepOptions,
    func: Callable[..., Any],
    args: Any,
    kwargs: Any,
    ctx: Ctx,
    run: Optional[WorkflowRun],
    fid: Optional[int],
) -> Any:
    started = now_ms()
    errors: list[Exception] = []
    result: Any = None
    total = _attempts(opts) if run is not None else 1  # outside a workflow: one plain call, as in DBOS
    made = 0
    stop: Optional[BaseException] = None  # should_retry said no: this is the step's error
    for attempt in range(total):
        made = attempt + 1
        with context.using(ctx.in_step_with(_status(opts, fid, attempt))):
            try:
                result = func(*args, **kwargs)
                errors = []
                break
            except DBOSWorkflowCancelledError:
                raise
            except Exception as e:
                errors.append(e)
                if opts.should_retry is not None and opts.retries_allowed and run is not None:
                    stop = _not_retried(e, _verdict(opts, e))
        if stop is not None:
            break
        if attempt + 1 < total:
            delay = _retry_delay(opts, attempt)
            if run is not None and run.cancel_event.wait(delay):
                run.check_cancelled()
            elif run is None:
                time.sleep(delay)
    error = stop if stop is not None else _final_error(opts, errors, run is not None) if errors else None
    if run is None or rt is None or fid is None:
        if error is not None:
            raise error
        return result
    return record(rt, run, fid, opts.name, result, error, started, attempts=made)


async def run_step_async(
    rt: Optional[Runtime], opts: StepOptions, func: Callable[..., Awaitable[Any]], args: Any, kwargs: Any
) -> Any:
    ctx = context.current()
    run = durable_run(ctx)
    fid: Optional[int] = None
    if run is not None:
        rt = run.runtime  # the execution's own runtime: after DBOS.destroy() the step is preempted
        fid, recorded = lookup(run, opts.name)
        if recorded is not None:
            return replay(recorded)
    with _span(rt, run, fid, opts.name, "step"):
        return await _run_step_async(rt, opts, func, args, kwargs, ctx, run, fid)


async def _run_step_async(
    rt: Optional[Runtime],
    opts: StepOptions,
    func: Callable[..., Awaitable[Any]],
    args: Any,
    kwargs: Any,
    ctx: Ctx,
    run: Optional[WorkflowRun],
    fid: Optional[int],
) -> Any:
    started = now_ms()
    errors: list[Exception] = []
    result: Any = None
    total = _attempts(opts) if run is not None else 1
    made = 0
    stop: Optional[BaseException] = None  # should_retry said no: this is the step's error
    supervise = run is not None and (opts.timeout_seconds is not None or opts.preemptible)
    for attempt in range(total):
        made = attempt + 1
        with context.using(ctx.in_step_with(_status(opts, fid, attempt))):
            try:
                if supervise:
                    result = await supervised(opts, run, func, args, kwargs)
                else:
                    result = await func(*args, **kwargs)
                errors = []
                break
            except DBOSWorkflowCancelledError:
                raise
            except Exception as e:
                errors.append(e)
                if opts.should_retry is not None and opts.retries_allowed and run is not None:
                    verdict = _verdict(opts, e)
                    if inspect.isawaitable(verdict):
                        try:
                            verdict = await verdict
                        except Exception as pe:
                            verdict = pe
                    stop = _not_retried(e, verdict)
        if stop is not None:
            break
        if attempt + 1 < total:
            await asyncio.sleep(_retry_delay(opts, attempt))
            if run is not None:
                run.check_cancelled()
    error = stop if stop is not None else _final_error(opts, errors, run is not None)
    if run is None or rt is None or fid is None:
        if error is not None:
            raise error
        return result
    return await rt.to_thread(record, rt, run, fid, opts.name, result, error, started, None, made)


# -- transactions -------------------------------------------------------------

_SERIALIZATION_FAILURES = ("40001", "40P01")  # serialization failure, deadlock


@functools.cache
def _session_class() -> Any:
    import sqlalchemy.exc
    from sqlalchemy.orm import Session

    class TransactionSession(Session):
        """``DBOS.sql_session`` in a ``@DBOS.transaction``: the transaction is the
        library's (its checkpoint commits with it), so ending it here is an error, as in
        DBOS 2.x, rather than a silent split of the user's writes from the checkpoint."""

        def commit(self) -> None:
            raise sqlalchemy.exc.InvalidRequestError(
                "DBOS.sql_session.commit() inside a @DBOS.transaction: the transaction commits "
                "when the function returns (with its checkpoint); do not commit it yourself"
            )

        def rollback(self) -> None:
            raise sqlalchemy.exc.InvalidRequestError(
                "DBOS.sql_session.rollback() inside a @DBOS.transaction: raise an exception to "
                "roll the transaction back"
            )

    return TransactionSession


def _transaction_session(conn: Any) -> Any:
    return _session_class()(bind=conn)


def run_transaction(
    rt: Runtime, name: str, isolation_level: Optional[str], func: Callable[..., Any], args: Any, kwargs: Any
) -> Any:
    ctx = context.current()
    run = durable_run(ctx)
    fid: Optional[int] = None
    if run is not None:
        fid, recorded = lookup(run, name, "transaction")
        if recorded is not None:
            return replay(recorded)
    with _span(rt, run, fid, name, "transaction"):
        return _run_transaction(rt, name, isolation_level, func, args, kwargs, ctx, run, fid)


def _run_transaction(
    rt: Runtime,
    name: str,
    isolation_level: Optional[str],
    func: Callable[..., Any],
    args: Any,
    kwargs: Any,
    ctx: Ctx,
    run: Optional[WorkflowRun],
    fid: Optional[int],
) -> Any:
    started = now_ms()
    delay = 0.01
    while True:
        try:
            with rt.app_db.transaction(isolation_level) as conn:
                if run is not None and fid is not None and run.replaying:
                    found, out = transactions.get(conn, run.workflow_id, fid)
                    if found:  # committed before a crash that lost its checkpoint
                        result = deserialize(out, f"the recorded output of transaction {name}")
                        break
                session = _transaction_session(conn)
                status = StepStatus(fid, None, None) if fid is not None else None
                try:
                    with context.using(ctx.in_step_with(status, session)):
                        result = func(*args, **kwargs)
                    session.flush()
                finally:
                    session.close()
                if run is not None and fid is not None:
                    out = serialize(result, "the result of transaction %s", name)
                    checks.check_size(out, rt.settings.max_value_bytes, f"the result of transaction {name}")
                    transactions.insert(conn, run.workflow_id, fid, out, now_ms())
            break
        except DBOSWorkflowCancelledError:
            raise
        except Exception as e:
            if is_outage(e):
                # The application database is away: no outcome of the transaction. The
                # workflow resumes once it is back, and its replay finds the transaction's
                # output if it did commit (docs/decisions.md, outages).
                raise DBOSDatabaseUnavailableError(f"transaction {name}: the database is unreachable: {e}") from e
            if getattr(getattr(e, "orig", None), "sqlstate", None) in _SERIALIZATION_FAILURES:
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if run is None or fid is None:
                raise
            return record(rt, run, fid, name, None, e, started)
    if run is None or fid is None:
        return result
    return record(rt, run, fid, name, result, None, started)
