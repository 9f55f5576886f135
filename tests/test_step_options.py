"""DBOS 2.x step options (issue 18), on PostgreSQL and SQLite: ``should_retry`` (a
predicate on each failure; False raises that error at once), ``timeout_seconds`` (per
attempt, async steps: DBOSStepTimeoutError) and ``preemptible`` (async steps: cancelling
the workflow interrupts a running attempt), on ``@DBOS.step`` and in ``StepOptions``
for ``DBOS.run_step`` / ``run_step_async``; bad values are refused when declared.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from typing import Any

import pytest
from conftest import Backend, Harness, eventually

from dbos import DBOS, DBOSException, SetWorkflowID, SetWorkflowTimeout, StepOptions
from dbos.error import DBOSAwaitedWorkflowCancelledError, DBOSMaxStepRetriesExceeded, DBOSStepTimeoutError


class Transient(Exception):
    pass


class Fatal(Exception):
    pass


def _attempts(backend: Backend, workflow_id: str, function_id: int = 1) -> Any:
    return backend.scalar(
        f"SELECT attempts FROM {backend.table('operation_outputs')} WHERE workflow_uuid = :w AND function_id = :f",
        w=workflow_id, f=function_id,
    )


# -- should_retry ------------------------------------------------------------------------


def test_should_retry_stops_at_an_error_it_refuses(dbos: Harness, backend: Backend) -> None:
    calls: list[str] = []
    seen: list[type] = []
    plan = [Transient, Transient, Fatal]

    def transient_only(e: BaseException) -> bool:
        seen.append(type(e))
        return isinstance(e, Transient)

    @DBOS.step(retries_allowed=True, max_attempts=6, interval_seconds=0.01, should_retry=transient_only)
    def flaky() -> str:
        calls.append("x")
        raise plan[len(calls) - 1](f"attempt {len(calls)}")

    @DBOS.workflow()
    def wf() -> str:
        return flaky()

    with SetWorkflowID("sr-fatal"):
        with pytest.raises(Fatal, match="attempt 3"):  # the error itself, not DBOSMaxStepRetriesExceeded
            wf()
    assert len(calls) == 3 and seen == [Transient, Transient, Fatal]
    assert _attempts(backend, "sr-fatal") == 3
    [step] = DBOS.list_workflow_steps("sr-fatal")
    assert isinstance(step["error"], Fatal)
    # Replayed (the workflow runs again under its ID): the recorded error, no new attempt.
    with SetWorkflowID("sr-fatal"):
        with pytest.raises(Fatal):
            wf()
    assert len(calls) == 3


def test_should_retry_true_retries_to_the_limit_and_without_retries_is_not_asked(
    dbos: Harness, backend: Backend
) -> None:
    asked: list[BaseException] = []

    def always(e: BaseException) -> bool:
        asked.append(e)
        return True

    @DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.01, should_retry=always)
    def always_fails() -> None:
        raise Transient("again")

    @DBOS.step(should_retry=always)  # retries_allowed=False: the predicate is ignored, as in DBOS
    def once() -> None:
        raise Transient("once")

    @DBOS.workflow()
    def wf(which: str) -> None:
        always_fails() if which == "retry" else once()

    with pytest.raises(DBOSMaxStepRetriesExceeded):
        wf("retry")
    assert len(asked) == 3
    with pytest.raises(Transient, match="once"):
        wf("once")
    assert len(asked) == 3

    # A predicate that raises: its error is the step's outcome, recorded like any other.
    def broken(e: BaseException) -> bool:
        raise RuntimeError("predicate broke")

    tries: list[int] = []

    @DBOS.step(retries_allowed=True, max_attempts=4, interval_seconds=0.01, should_retry=broken)
    def fails_once() -> None:
        tries.append(1)
        raise Transient("t")

    @DBOS.workflow()
    def wf2() -> None:
        fails_once()

    with SetWorkflowID("sr-broken"):
        with pytest.raises(RuntimeError, match="predicate broke"):
            wf2()
    assert len(tries) == 1
    assert isinstance(DBOS.list_workflow_steps("sr-broken")[0]["error"], RuntimeError)


def test_async_should_retry_on_an_async_step(dbos: Harness, backend: Backend) -> None:
    calls: list[int] = []

    async def retry_transient(e: BaseException) -> bool:
        await asyncio.sleep(0)
        return isinstance(e, Transient)

    @DBOS.step(retries_allowed=True, max_attempts=5, interval_seconds=0.01, should_retry=retry_transient)
    async def flaky(n_transient: int) -> str:
        calls.append(1)
        if len(calls) <= n_transient:
            raise Transient("t")
        if len(calls) == n_transient + 1 and n_transient == 1:
            raise Fatal("f")
        return "ok"

    @DBOS.workflow()
    async def wf(n: int) -> str:
        return await flaky(n)

    assert asyncio.run(wf(2)) == "ok"
    assert len(calls) == 3
    calls.clear()
    with SetWorkflowID("sr-async-fatal"):
        with pytest.raises(Fatal):
            asyncio.run(wf(1))
    assert len(calls) == 2
    assert _attempts(backend, "sr-async-fatal") == 2


# -- timeout_seconds -----------------------------------------------------------------------


def test_timeout_raises_step_timeout_error_after_the_attempts_cleanup(dbos: Harness, backend: Backend) -> None:
    cleaned: list[str] = []

    @DBOS.step(timeout_seconds=0.2)
    async def hangs() -> str:
        try:
            await asyncio.sleep(30)
            return "never"
        finally:
            cleaned.append("cleanup")

    @DBOS.workflow()
    async def wf() -> str:
        try:
            return await hangs()
        except DBOSStepTimeoutError as e:
            assert cleaned == ["cleanup"]  # the attempt's own cleanup ran first
            return f"timed out: {e.step_name} {e.timeout_seconds}"

    started = time.monotonic()
    with SetWorkflowID("to-once"):
        out = asyncio.run(wf())
    assert time.monotonic() - started < 5
    assert out == f"timed out: {hangs.__qualname__} 0.2"
    [step] = DBOS.list_workflow_steps("to-once")
    assert isinstance(step["error"], DBOSStepTimeoutError)  # checkpointed like any failure
    assert "timeout of 0.2 seconds" in str(step["error"])


def test_timeout_is_per_attempt_and_retried(dbos: Harness, backend: Backend) -> None:
    attempts: list[float] = []

    @DBOS.step(timeout_seconds=0.3, retries_allowed=True, max_attempts=3, interval_seconds=0.5)
    async def slow_then_fast() -> str:
        attempts.append(time.monotonic())
        # 0.2 s each: under the timeout, though two attempts and the retry wait are not.
        await asyncio.sleep(10 if len(attempts) == 1 else 0.2)
        return f"attempt {len(attempts)}"

    @DBOS.step(timeout_seconds=0.1, retries_allowed=True, max_attempts=2, interval_seconds=0.01)
    async def always_slow() -> None:
        await asyncio.sleep(10)

    def not_timeouts(e: BaseException) -> bool:
        return not isinstance(e, DBOSStepTimeoutError)

    @DBOS.step(timeout_seconds=0.1, retries_allowed=True, max_attempts=5, interval_seconds=0.01,
               should_retry=not_timeouts)
    async def slow_unretried() -> None:
        await asyncio.sleep(10)

    @DBOS.workflow()
    async def wf(which: str) -> Any:
        if which == "retry":
            return await slow_then_fast()
        if which == "exhaust":
            return await always_slow()
        return await slow_unretried()

    with SetWorkflowID("to-retry"):
        assert asyncio.run(wf("retry")) == "attempt 2"
    assert _attempts(backend, "to-retry") == 2
    with pytest.raises(DBOSMaxStepRetriesExceeded) as info:
        asyncio.run(wf("exhaust"))
    assert all(isinstance(e, DBOSStepTimeoutError) for e in info.value.errors) and len(info.value.errors) == 2
    with pytest.raises(DBOSStepTimeoutError):
        asyncio.run(wf("unretried"))


def test_timeout_is_inert_outside_a_workflow(dbos: Harness) -> None:
    @DBOS.step(timeout_seconds=0.05)
    async def takes_a_while() -> str:
        await asyncio.sleep(0.2)
        return "done"

    assert asyncio.run(takes_a_while()) == "done"


# -- preemptible -----------------------------------------------------------------------------


def test_preemptible_step_stops_when_its_workflow_is_cancelled(dbos: Harness, backend: Backend) -> None:
    entered = threading.Event()
    interrupted: list[str] = []
    block = {"seconds": 30.0}

    @DBOS.step(preemptible=True)
    async def long_wait() -> str:
        entered.set()
        try:
            await asyncio.sleep(block["seconds"])
        except asyncio.CancelledError:
            interrupted.append("cancelled")
            raise
        return "finished"

    @DBOS.workflow()
    async def wf() -> str:
        return await long_wait()

    result: dict[str, Any] = {}

    def runner() -> None:
        try:
            result["value"] = asyncio.run(wf_with_id())
        except BaseException as e:
            result["error"] = e

    async def wf_with_id() -> str:
        with SetWorkflowID("pre-1"):
            return await wf()

    thread = threading.Thread(target=runner)
    thread.start()
    assert entered.wait(10)
    started = time.monotonic()
    DBOS.cancel_workflow("pre-1")
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 3  # not the step's 30 s
    assert interrupted == ["cancelled"]
    assert isinstance(result.get("error"), DBOSAwaitedWorkflowCancelledError)  # the caller's view
    assert backend.status("pre-1") == "CANCELLED"
    assert DBOS.list_workflow_steps("pre-1") == []  # not recorded: a resume runs it again
    block["seconds"] = 0.01
    assert DBOS.resume_workflow("pre-1").get_result() == "finished"
    assert [s["output"] for s in DBOS.list_workflow_steps("pre-1")] == ["finished"]


def test_preemptible_step_stops_at_its_workflows_deadline(dbos: Harness, backend: Backend) -> None:
    interrupted = threading.Event()

    @DBOS.step(preemptible=True)
    async def very_long() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            interrupted.set()
            raise

    @DBOS.workflow()
    async def wf() -> None:
        await very_long()

    async def main() -> Any:
        with SetWorkflowID("pre-deadline"), SetWorkflowTimeout(0.3):
            handle = await DBOS.start_workflow_async(wf)
        try:
            await handle.get_result()
        except DBOSAwaitedWorkflowCancelledError:
            # The workflow runs on this loop: keep it open, or its end would cancel the step.
            for _ in range(100):
                if interrupted.is_set():
                    return "cancelled and interrupted"
                await asyncio.sleep(0.05)
            return "cancelled, the step still running"
        return "finished"

    started = time.monotonic()
    assert asyncio.run(main()) == "cancelled and interrupted"  # not left running for 30 s
    assert time.monotonic() - started < 5
    eventually(lambda: not DBOS.list_workflows(workflow_ids=["pre-deadline"], status="PENDING"))
    assert DBOS.list_workflow_steps("pre-deadline") == []


# -- DBOS.run_step with the same options -------------------------------------------------------


def test_run_step_takes_the_new_options(dbos: Harness, backend: Backend) -> None:
    async def hang() -> None:
        await asyncio.sleep(30)

    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Transient("t")
        raise Fatal("f")

    @DBOS.workflow()
    async def wf_async() -> str:
        opts: StepOptions = {"name": "hang", "timeout_seconds": 0.1}
        try:
            await DBOS.run_step_async(opts, hang)
        except DBOSStepTimeoutError as e:
            return e.step_name
        return "no timeout"

    @DBOS.workflow()
    def wf_sync() -> str:
        try:
            DBOS.run_step({"name": "hang", "timeout_seconds": 0.1}, hang)
        except DBOSStepTimeoutError:
            pass
        else:
            raise AssertionError("no timeout")
        try:
            DBOS.run_step({"retries_allowed": True, "max_attempts": 9, "interval_seconds": 0.01,
                           "should_retry": lambda e: isinstance(e, Transient)}, flaky)
        except Fatal:
            return f"fatal after {len(calls)}"
        return "?"

    assert asyncio.run(wf_async()) == "hang"
    assert wf_sync() == "fatal after 3"
    with pytest.raises(DBOSException, match="only supported for async steps"):
        DBOS.run_step({"timeout_seconds": 1.0}, flaky)
    with pytest.raises(TypeError, match="unknown step option"):
        DBOS.run_step({"timeout": 1.0}, flaky)  # type: ignore[typeddict-unknown-key]


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "5", True])
def test_bad_timeouts_are_refused(bad: Any) -> None:
    with pytest.raises(DBOSException, match="positive and finite"):
        @DBOS.step(timeout_seconds=bad)
        async def s() -> None:
            pass


def test_bad_step_options_are_refused() -> None:
    with pytest.raises(DBOSException, match="only supported for async steps"):
        @DBOS.step(timeout_seconds=1)
        def sync_timeout() -> None:
            pass
    with pytest.raises(DBOSException, match="Preemption is only supported for async steps"):
        @DBOS.step(preemptible=True)
        def sync_preempt() -> None:
            pass
    with pytest.raises(DBOSException, match="should_retry must be a callable"):
        DBOS.step(retries_allowed=True, should_retry="yes")  # type: ignore[arg-type]
    with pytest.raises(DBOSException, match="preemptible"):
        @DBOS.step(preemptible="yes")  # type: ignore[arg-type]
        async def not_bool() -> None:
            pass

    async def async_predicate(e: BaseException) -> bool:
        return True

    with pytest.raises(DBOSException, match="should_retry is async"):
        @DBOS.step(retries_allowed=True, should_retry=async_predicate)
        def sync_with_async_predicate() -> None:
            pass

    @DBOS.step(timeout_seconds=2.5, preemptible=True, retries_allowed=True, should_retry=lambda e: True)
    async def fine() -> None:
        pass


def test_step_timeout_error_is_a_dbos_exception_that_pickles() -> None:
    err = DBOSStepTimeoutError("my_step", 1.5)
    assert isinstance(err, DBOSException) and isinstance(err, Exception)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is DBOSStepTimeoutError
    assert (back.step_name, back.timeout_seconds, str(back)) == ("my_step", 1.5, str(err))
    assert back.dbos_error_code == 18
