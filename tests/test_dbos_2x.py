"""Drop-in for DBOS Transact 2.x code (issue 11): the API a DBOS user reaches for first,
on PostgreSQL and SQLite.

The registry and system-database reset, the 2.x workflow methods (get_result,
get_workflow_status, run_step, wait_first, get_all_events, retrieve_workflow of a
workflow that does not exist yet), errors of the types DBOS raises, and class and
static methods of classes that cannot be pickled.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Iterator

import pytest
from conftest import Backend, Harness, eventually

from dbos import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSException,
    DBOSNonExistentWorkflowError,
    Queue,
    SetWorkflowID,
    SetWorkflowTimeout,
)
from dbos._execution.registry import REGISTRY


@pytest.fixture(autouse=True)
def _keep_registry() -> Iterator[None]:
    """These tests clear the process-wide registry; other test modules in this worker
    process still need their module-level workflows and queues afterwards."""
    saved = REGISTRY.snapshot()
    yield
    DBOS.destroy()
    REGISTRY.restore(saved)


# -- destroy(destroy_registry=True) and reset_system_database --------------------------


@DBOS.workflow(name="compat_module_wf")
def module_wf(x: int) -> int:
    return x * 2


def test_destroy_keeps_the_registry_unless_asked(harness: Harness) -> None:
    harness.launch()
    assert "compat_module_wf" in REGISTRY.workflows
    DBOS.destroy()
    assert "compat_module_wf" in REGISTRY.workflows  # module-level decorators stay registered
    Queue("compat_q_kept")
    DBOS.destroy(workflow_completion_timeout_sec=0)
    with pytest.raises(DBOSException, match="already declared"):
        Queue("compat_q_kept")
    DBOS.destroy(destroy_registry=True, workflow_completion_timeout_sec=0)
    assert REGISTRY.workflows == {} and REGISTRY.queues == {}
    Queue("compat_q_kept")  # the same name again: a fresh registry
    DBOS.destroy(destroy_registry=True)


def test_module_level_workflow_and_queue_work_after_the_registry_is_destroyed(harness: Harness) -> None:
    queue = Queue("compat_q_module")
    DBOS.destroy(destroy_registry=True)
    assert "compat_module_wf" not in REGISTRY.workflows
    harness.launch()
    # Used again, they register again: the queue is served and the workflow found by name.
    assert queue.enqueue(module_wf, 21).get_result() == 42
    assert "compat_module_wf" in REGISTRY.workflows and "compat_q_module" in REGISTRY.queues
    DBOS.destroy(destroy_registry=True)


@pytest.mark.parametrize("truncate", [False, True], ids=["drop", "truncate"])
def test_reset_system_database(harness: Harness, backend: Backend, truncate: bool) -> None:
    harness.launch()
    with SetWorkflowID("reset-me"):
        assert module_wf(1) == 2
    assert backend.workflow_count() == 1
    DBOS.destroy()
    DBOS(config=harness.config())
    DBOS.reset_system_database(truncate=truncate)
    if not truncate:  # dropped: no system table left until the next launch migrates
        tables = backend.rows(
            "SELECT name FROM sqlite_master WHERE type = 'table'" if backend.is_sqlite
            else "SELECT table_name FROM information_schema.tables WHERE table_schema = 'dbos'"
        )
        assert tables == []
    DBOS.launch()
    assert backend.workflow_count() == 0
    assert DBOS.get_workflow_status("reset-me") is None
    with SetWorkflowID("reset-me"):
        assert module_wf(5) == 10  # the same ID runs afresh


def test_reset_system_database_refused_after_launch(dbos: Harness) -> None:
    with pytest.raises(DBOSException, match="before DBOS.launch"):
        DBOS.reset_system_database()


# -- the 2.x workflow methods -----------------------------------------------------------


def test_get_result_and_get_workflow_status(dbos: Harness) -> None:
    assert DBOS.get_workflow_status("no-such-id") is None
    with SetWorkflowID("gr-1"):
        DBOS.start_workflow(module_wf, 4)
    assert DBOS.get_result("gr-1") == 8
    status = DBOS.get_workflow_status("gr-1")
    assert status is not None and status.status == "SUCCESS" and status.output == 8

    async def main() -> Any:
        return await DBOS.get_result_async("gr-1"), await DBOS.get_workflow_status_async("gr-1")

    result, status = asyncio.run(main())
    assert result == 8 and status.workflow_id == "gr-1"
    assert asyncio.run(DBOS.get_workflow_status_async("nope")) is None


def test_get_result_inside_a_workflow_is_a_step(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def parent(child: str) -> Any:
        status = DBOS.get_workflow_status(child)
        return DBOS.get_result(child), status.status if status else None

    with SetWorkflowID("gr-child"):
        module_wf(3)
    with SetWorkflowID("gr-parent"):
        assert parent("gr-child") == (6, "SUCCESS")
    assert [n for _, n in backend.steps("gr-parent")] == ["DBOS.getStatus", "DBOS.getResult"]


def test_get_result_waits_for_a_workflow_created_later(dbos: Harness) -> None:
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(DBOS.get_result("gr-later")))
    t.start()
    time.sleep(0.2)
    assert t.is_alive()
    with SetWorkflowID("gr-later"):
        module_wf(7)
    t.join(10)
    assert got == [14]


def test_run_step_checkpoints_an_undecorated_callable(dbos: Harness, backend: Backend) -> None:
    calls: list[int] = []

    def add(a: int, b: int) -> int:
        calls.append(a)
        return a + b

    async def mul(a: int, b: int) -> int:
        calls.append(a)
        return a * b

    @DBOS.workflow()
    def wf(a: int) -> int:
        return DBOS.run_step({"name": "adder"}, add, a, 1) + DBOS.run_step(None, mul, a, 2)

    @DBOS.workflow()
    async def wf_async(a: int) -> int:
        x = await DBOS.run_step_async({"name": "adder"}, add, a, 1)
        return x + await DBOS.run_step_async(None, mul, a, 2)

    with SetWorkflowID("rs-1"):
        assert wf(3) == 10
    steps = [n for _, n in backend.steps("rs-1")]
    assert steps[0] == "adder" and steps[1].endswith("mul")
    backend.force_pending("rs-1")
    with SetWorkflowID("rs-1"):
        assert wf(3) == 10
    assert calls == [3, 3]  # replayed, not re-run
    with SetWorkflowID("rs-2"):
        assert asyncio.run(wf_async(5)) == 16
    assert len(backend.steps("rs-2")) == 2
    assert DBOS.run_step(None, add, 1, 1) == 2  # outside a workflow: just a call


def test_run_step_retries(dbos: Harness) -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ValueError("not yet")
        return "ok"

    @DBOS.workflow()
    def wf() -> str:
        return DBOS.run_step({"retries_allowed": True, "max_attempts": 5, "interval_seconds": 0.01}, flaky)

    assert wf() == "ok" and len(attempts) == 3
    with pytest.raises(TypeError, match="unknown step option"):
        DBOS.run_step({"retries": True}, flaky)  # type: ignore[typeddict-unknown-key]


def test_wait_first(dbos: Harness, backend: Backend) -> None:
    release = threading.Event()

    @DBOS.workflow()
    def slow() -> str:
        release.wait(20)
        return "slow"

    @DBOS.workflow()
    def fast() -> str:
        return "fast"

    h_slow = DBOS.start_workflow(slow)
    h_fast = DBOS.start_workflow(fast)
    start = time.monotonic()
    assert DBOS.wait_first([h_slow, h_fast]) is h_fast
    assert time.monotonic() - start < 5

    @DBOS.workflow()
    def waiter(a: str, b: str) -> str:
        return DBOS.wait_first([DBOS.retrieve_workflow(a), DBOS.retrieve_workflow(b)]).workflow_id

    with SetWorkflowID("wf-waiter"):
        assert waiter(h_slow.workflow_id, h_fast.workflow_id) == h_fast.workflow_id
    assert "DBOS.waitFirst" in [n for _, n in backend.steps("wf-waiter")]

    async def main() -> Any:
        a = await DBOS.retrieve_workflow_async(h_slow.workflow_id)
        b = await DBOS.retrieve_workflow_async(h_fast.workflow_id)
        return await DBOS.wait_first_async([a, b])

    assert asyncio.run(main()).workflow_id == h_fast.workflow_id
    with pytest.raises(ValueError):
        DBOS.wait_first([])
    release.set()
    assert h_slow.get_result() == "slow"


def test_get_all_events(dbos: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def setter() -> None:
        DBOS.set_event("a", 1)
        DBOS.set_event("b", {"x": 2})
        DBOS.set_event("a", 3)

    @DBOS.workflow()
    def reader(wid: str) -> Any:
        return DBOS.get_all_events(wid)

    with SetWorkflowID("ev-set"):
        setter()
    assert DBOS.get_all_events("ev-set") == {"a": 3, "b": {"x": 2}}
    assert DBOS.get_all_events("no-events") == {}
    assert asyncio.run(DBOS.get_all_events_async("ev-set")) == {"a": 3, "b": {"x": 2}}
    with SetWorkflowID("ev-read"):
        assert reader("ev-set") == {"a": 3, "b": {"x": 2}}
    assert [n for _, n in backend.steps("ev-read")] == ["DBOS.get_events"]


def test_executor_id_and_application_version(dbos: Harness) -> None:
    assert DBOS.executor_id == "local"
    assert DBOS.application_version == "test-version"


# -- retrieve_workflow(existing_workflow=False) ------------------------------------------


def test_retrieve_a_workflow_that_does_not_exist_yet(dbos: Harness) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        DBOS.retrieve_workflow("future-wf")
    start = time.monotonic()
    handle = DBOS.retrieve_workflow("future-wf", existing_workflow=False)
    assert time.monotonic() - start < 1  # at once
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(handle.get_result()))
    t.start()
    time.sleep(0.3)
    assert t.is_alive() and got == []
    # The creation wakes the wait: with a 60 s poll a wait by polling would not finish.
    with SetWorkflowID("future-wf"):
        module_wf(10)
    t.join(10)
    assert got == [20]

    async def main() -> Any:
        h = await DBOS.retrieve_workflow_async("future-async", existing_workflow=False)
        DBOS_later = asyncio.get_running_loop().run_in_executor(None, _run_later, "future-async")
        result = await h.get_result()
        await DBOS_later
        return result

    assert asyncio.run(main()) == 2


def _run_later(wid: str) -> None:
    time.sleep(0.2)
    with SetWorkflowID(wid):
        module_wf(1)


def test_retrieve_not_existing_is_woken_by_the_creation(harness: Harness) -> None:
    from dbos._api.instance import runtime
    from dbos._wakeups.local import workflow_created

    harness.launch(polling_interval_sec=30)  # a wait woken only by polling would take 30 s
    handle = DBOS.retrieve_workflow("woken-wf", existing_workflow=False)
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.append(handle.get_result()))
    t.start()
    # The wait listens for the workflow's creation (here, or from another process via Redis).
    eventually(lambda: runtime().wakeups.local.has_waiters(workflow_created("woken-wf")), timeout=5)
    with SetWorkflowID("woken-wf"):
        module_wf(2)
    t.join(5)
    assert got == [4], "the waiting handle was not woken"


# -- errors of the right type -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{"concurrency": 2, "worker_concurrency": 3}, {"concurrency": 0}, {"worker_concurrency": -1},
     {"limiter": {"limit": 0, "period": 1}}, {"limiter": {"limit": 1, "period": 0}}],
)
def test_invalid_queue_arguments_raise_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Queue("compat_bad_queue", **kwargs)
    assert "compat_bad_queue" not in REGISTRY.queues


def test_direct_call_past_its_timeout_raises_awaited_cancelled(dbos: Harness) -> None:
    @DBOS.workflow()
    def long_wf() -> None:
        for _ in range(200):
            DBOS.sleep(0.05)

    with SetWorkflowTimeout(0.3):
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            long_wf()

    @DBOS.workflow()
    async def long_async() -> None:
        for _ in range(200):
            await DBOS.sleep_async(0.05)

    async def main() -> None:
        with SetWorkflowTimeout(0.3):
            await long_async()

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        asyncio.run(main())


def test_sleep_outside_a_workflow_or_in_a_step_raises(dbos: Harness) -> None:
    with pytest.raises(DBOSException, match="within a workflow"):
        DBOS.sleep(0.01)
    with pytest.raises(DBOSException, match="within a workflow"):
        asyncio.run(DBOS.sleep_async(0.01))

    @DBOS.step()
    def sleepy_step() -> None:
        DBOS.sleep(0.01)

    @DBOS.workflow()
    def wf() -> None:
        sleepy_step()

    with pytest.raises(DBOSException, match="within a workflow"):
        wf()


def test_sync_methods_refuse_a_running_event_loop(dbos: Harness) -> None:
    with SetWorkflowID("loop-target"):
        module_wf(1)
    calls = {
        "send": lambda: DBOS.send("loop-target", 1),
        "recv": lambda: DBOS.recv(),
        "set_event": lambda: DBOS.set_event("k", 1),
        "get_event": lambda: DBOS.get_event("loop-target", "k", 0),
        "sleep": lambda: DBOS.sleep(0.01),
        "start_workflow": lambda: DBOS.start_workflow(module_wf, 1),
        "retrieve_workflow": lambda: DBOS.retrieve_workflow("loop-target"),
        "get_result": lambda: DBOS.get_result("loop-target"),
    }

    async def main() -> dict[str, str]:
        seen = {}
        for name, call in calls.items():
            try:
                call()
            except RuntimeError as e:
                seen[name] = str(e)
        return seen

    seen = asyncio.run(main())
    assert set(seen) == set(calls)
    for name, message in seen.items():
        assert f"{name}_async" in message


def test_cancel_of_an_unknown_workflow_does_nothing(dbos: Harness, backend: Backend) -> None:
    DBOS.cancel_workflow("never-existed")
    asyncio.run(DBOS.cancel_workflow_async("never-existed"))
    assert backend.workflow_count() == 0


# -- classes that cannot be pickled -------------------------------------------------------


def test_class_and_static_methods_of_an_unpicklable_class(harness: Harness, backend: Backend) -> None:
    queue = Queue("compat_class_q")

    @DBOS.dbos_class()
    class Local:  # defined in a function: pickle cannot find it by name
        lock = threading.Lock()  # and holds a lock

        @classmethod
        @DBOS.workflow()
        def cls_wf(cls, x: int) -> str:
            return f"{cls.__name__}:{cls.cls_step(x)}"

        @classmethod
        @DBOS.step()
        def cls_step(cls, x: int) -> int:
            return x + 1

        @staticmethod
        @DBOS.workflow()
        def static_wf(x: int) -> int:
            return Local.static_step(x) * 10

        @staticmethod
        @DBOS.step()
        def static_step(x: int) -> int:
            return x + 2

    harness.launch()
    assert Local.cls_wf(1) == "Local:2"
    assert Local.static_wf(1) == 30
    assert DBOS.start_workflow(Local.cls_wf, 2).get_result() == "Local:3"
    assert queue.enqueue(Local.cls_wf, 3).get_result() == "Local:4"
    assert queue.enqueue(Local.static_wf, 3).get_result() == 50
    # Recovery finds the class again by its registered name.
    with SetWorkflowID("cls-recover"):
        Local.cls_wf(5)
    backend.force_pending("cls-recover")
    harness.restart()
    assert eventually(lambda: backend.status("cls-recover") == "SUCCESS")
    assert DBOS.retrieve_workflow("cls-recover").get_result() == "Local:6"


# -- SetEnqueueOptions(delay_seconds=...): DELAYED until due ---------------------------


def test_delayed_enqueue(dbos: Harness, backend: Backend) -> None:
    from dbos import DBOSClient, DBOSQueueDeduplicatedError, SetEnqueueOptions

    queue = Queue("compat_delay_q", polling_interval_sec=0.05)
    before = time.time()
    with SetWorkflowID("delayed-1"), SetEnqueueOptions(delay_seconds=1.0):
        handle = queue.enqueue(module_wf, 5)
    status = DBOS.get_workflow_status("delayed-1")
    assert status is not None and status.status == "DELAYED"
    assert status.delay_until_epoch_ms is not None and status.delay_until_epoch_ms >= int(before * 1000) + 999
    assert [w.workflow_id for w in DBOS.list_queued_workflows(status="DELAYED")] == ["delayed-1"]
    assert [w.workflow_id for w in DBOS.list_workflows(status="DELAYED")] == ["delayed-1"]
    time.sleep(0.5)
    assert backend.status("delayed-1") == "DELAYED"  # polled many times: not claimed before it is due
    assert handle.get_result() == 10
    started = backend.scalar(f"SELECT started_at FROM {backend.table('workflow_status')} WHERE workflow_uuid = 'delayed-1'")
    assert started >= int(before * 1000) + 999

    # A dedup ID is held while DELAYED.
    with SetEnqueueOptions(delay_seconds=30, deduplication_id="d1"):
        queue.enqueue(module_wf, 1)
        with pytest.raises(DBOSQueueDeduplicatedError):
            queue.enqueue(module_wf, 2)

    # set_workflow_delay moves the due time; cancel works on a DELAYED workflow.
    with SetWorkflowID("delayed-2"), SetEnqueueOptions(delay_seconds=3600):
        h2 = queue.enqueue(module_wf, 6)
    DBOS.set_workflow_delay("delayed-2", delay_seconds=0.1)
    assert h2.get_result() == 12
    with pytest.raises(DBOSException, match="not DELAYED"):
        DBOS.set_workflow_delay("delayed-2", delay_seconds=1)
    with SetWorkflowID("delayed-3"), SetEnqueueOptions(delay_seconds=3600):
        queue.enqueue(module_wf, 7)
    DBOS.cancel_workflow("delayed-3")
    assert backend.status("delayed-3") == "CANCELLED"
    with pytest.raises(DBOSException, match="delay_seconds"):
        SetEnqueueOptions(delay_seconds=float("nan"))

    # Durable and fleet-wide: a client (no poller of its own) enqueues with a delay, this
    # process restarts meanwhile, and runs it once it is due.
    client = DBOSClient(backend.url)
    try:
        client.enqueue({"queue_name": "compat_delay_q", "workflow_name": "compat_module_wf",
                        "workflow_id": "delayed-4", "delay_seconds": 0.8}, 4)
        assert backend.status("delayed-4") == "DELAYED"
        dbos.restart()
        assert DBOS.retrieve_workflow("delayed-4").get_result() == 8
    finally:
        client.destroy()


# -- every DBOS 2.31.1 name: implemented, or a clear NotImplementedError ----------------


def _resolve(get: Any) -> str:
    """'ok' if the name resolves, 'missing' if it raises NotImplementedError naming the
    feature; an AttributeError fails the test."""
    try:
        get()
    except NotImplementedError as e:
        assert "not implemented" in str(e) and "decisions.md" in str(e), str(e)
        return "missing"
    except AttributeError as e:  # the one answer the issue rules out
        raise AssertionError(f"AttributeError: {e}") from e
    except DBOSException:
        return "ok"  # it exists (e.g. a property that needs a launched DBOS)
    return "ok"


def test_every_dbos_2_31_name_exists_or_says_it_is_left_out(dbos: Harness, backend: Backend) -> None:
    from dbos_2x_names import CLIENT_2_31, DBOS_2_31, ERRORS_2_31, MODULE_2_31, QUEUE_2_31

    import dbos as dbos_module
    import dbos.error as dbos_error
    from dbos import DBOSClient

    queue = Queue("compat_names_q")
    client = DBOSClient(backend.url)
    try:
        seen = {
            "dbos": {n: _resolve(lambda n=n: getattr(dbos_module, n)) for n in MODULE_2_31},
            "DBOS": {n: _resolve(lambda n=n: getattr(DBOS, n)) for n in DBOS_2_31},
            "DBOSClient": {n: _resolve(lambda n=n: getattr(client, n)) for n in CLIENT_2_31},
            "Queue": {n: _resolve(lambda n=n: getattr(queue, n)) for n in QUEUE_2_31},
            "dbos.error": {n: _resolve(lambda n=n: getattr(dbos_error, n)) for n in ERRORS_2_31},
        }
    finally:
        client.destroy()
    # What this issue implements resolves.
    for owner, name in [("dbos", "StepOptions"), ("DBOS", "destroy"), ("DBOS", "reset_system_database"),
                        ("DBOS", "listen_queues"), ("DBOS", "get_result"), ("DBOS", "get_result_async"),
                        ("DBOS", "get_workflow_status"), ("DBOS", "run_step"), ("DBOS", "run_step_async"),
                        ("DBOS", "wait_first"), ("DBOS", "wait_first_async"), ("DBOS", "get_all_events"),
                        ("DBOS", "get_all_events_async"), ("DBOS", "set_workflow_delay"),
                        ("DBOS", "cancel_workflows"), ("DBOS", "resume_workflows"),
                        ("DBOS", "executor_id"), ("DBOS", "application_version"),
                        ("DBOSClient", "wait_first"), ("DBOSClient", "wait_first_async"),
                        ("DBOSClient", "set_workflow_delay"), ("DBOSClient", "retrieve_workflow")]:
        assert seen[owner][name] == "ok", (owner, name)
    # A name DBOS never had is still an AttributeError.
    with pytest.raises(AttributeError):
        DBOS.no_such_method  # noqa: B018
    with pytest.raises(AttributeError):
        queue.no_such_attribute  # noqa: B018


def test_cancel_and_resume_many(dbos: Harness, backend: Backend) -> None:
    from dbos import SetEnqueueOptions

    queue = Queue("compat_many_q", polling_interval_sec=0.05)
    for wid in ("many-1", "many-2"):
        with SetWorkflowID(wid), SetEnqueueOptions(delay_seconds=3600):
            queue.enqueue(module_wf, 1)
    DBOS.cancel_workflows(["many-1", "many-2", "never-existed"])
    assert backend.status("many-1") == backend.status("many-2") == "CANCELLED"
    handles = DBOS.resume_workflows(["many-1", "many-2"])
    assert [h.get_result() for h in handles] == [2, 2]
