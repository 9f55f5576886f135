"""Launch and destroy: destroy stops every thread and closes every connection; launch
migrates; many workflows run concurrently."""

from __future__ import annotations

import threading

import pytest
from conftest import Backend, Harness, eventually

from dbos import DBOS, SetWorkflowID


def _dbos_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("dbos") and t.is_alive()]


def _pg_connections(backend: Backend) -> int:
    name = backend.url.rsplit("/", 1)[-1].split("?", 1)[0]
    return int(
        backend.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()", d=name
        )
    )


def _dbos_connections(backend: Backend) -> int:
    """Connections DBOS opened (application_name 'dbos'), not the test's own."""
    name = backend.url.rsplit("/", 1)[-1].split("?", 1)[0]
    return int(
        backend.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND application_name = 'dbos'", d=name
        )
    )


def test_destroy_stops_threads_and_closes_connections(harness: Harness, backend: Backend) -> None:
    @DBOS.step()
    def step(i: int) -> int:
        return i

    @DBOS.workflow()
    def wf(i: int) -> int:
        return step(i)

    @DBOS.workflow()
    async def awf(i: int) -> int:
        return i

    import asyncio

    before = set(_dbos_threads())
    harness.launch()
    handles = [DBOS.start_workflow(wf, i) for i in range(5)]
    assert [h.get_result() for h in handles] == list(range(5))
    assert asyncio.run(awf(3)) == 3
    assert set(_dbos_threads()) - before, "launch should have started its threads"
    if not backend.is_sqlite:
        assert _pg_connections(backend) > 0
    harness.destroy()
    eventually(lambda: set(_dbos_threads()) <= before, timeout=10, what=f"threads left: {_dbos_threads()}")
    if not backend.is_sqlite:
        eventually(lambda: _pg_connections(backend) == 0, timeout=10, what="connections left open")
    DBOS.destroy()  # idempotent


def test_relaunch_after_destroy(harness: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def wf() -> str:
        return "ok"

    for i in range(3):
        harness.launch()
        with SetWorkflowID(f"relaunch-{i}"):
            assert wf() == "ok"
        harness.destroy()
    assert backend.workflow_count() == 3


def test_launch_is_idempotent(dbos: Harness) -> None:
    @DBOS.workflow()
    def wf() -> int:
        return 1

    DBOS.launch()
    assert wf() == 1


def test_custom_system_schema(harness: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def wf() -> str:
        return "custom"

    harness.launch(dbos_system_schema="custom_sys")
    with SetWorkflowID("in-custom-schema"):
        assert wf() == "custom"
    if backend.is_sqlite:  # accepted, but SQLite keeps its tables in the file's main schema
        assert backend.status("in-custom-schema") == "SUCCESS"
        return
    assert backend.scalar(
        "SELECT status FROM custom_sys.workflow_status WHERE workflow_uuid = 'in-custom-schema'"
    ) == "SUCCESS"
    assert backend.scalar("SELECT count(*) FROM dbos.workflow_status") == 0


def test_many_concurrent_workflows(dbos: Harness, backend: Backend) -> None:
    lock = threading.Lock()
    counts: dict[int, int] = {}

    @DBOS.step()
    def step(i: int) -> int:
        with lock:
            counts[i] = counts.get(i, 0) + 1
        return i

    @DBOS.workflow()
    def wf(i: int) -> int:
        return step(i) + step(i)

    handles = [DBOS.start_workflow(wf, i) for i in range(40)]
    assert [h.get_result() for h in handles] == [2 * i for i in range(40)]
    assert counts == {i: 2 for i in range(40)}
    assert backend.scalar(f"SELECT count(*) FROM {backend.table('operation_outputs')}") == 80
    assert backend.scalar(
        f"SELECT count(*) FROM {backend.table('workflow_status')} WHERE status = 'SUCCESS'"
    ) == 40


@pytest.mark.fresh_database
def test_launch_migrates_an_empty_database(harness: Harness, backend: Backend) -> None:
    @DBOS.workflow()
    def wf() -> int:
        return 7

    harness.launch()
    assert wf() == 7
    harness.restart()  # already migrated: launch again is fine
    assert wf() == 7


def test_sys_db_pool_size_bounds_the_connections_of_a_busy_process(harness: Harness, backend: Backend) -> None:
    """sys_db_pool_size is the process's whole connection budget: a fleet of executors
    must fit the server's max_connections, whatever the process is doing. On SQLite
    (no server connections to count) the same load must finish within the budget."""
    harness.launch(sys_db_pool_size=4)
    gate = threading.Event()

    @DBOS.step()
    def step(i: int) -> int:
        return i

    @DBOS.workflow()
    def wf(i: int) -> int:
        gate.wait(10)
        total = 0
        for _ in range(5):
            total += step(i)
            DBOS.set_event("progress", total)
        return total

    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set() and not backend.is_sqlite:
            peak = max(peak, _dbos_connections(backend))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        handles = [DBOS.start_workflow(wf, i) for i in range(40)]
        gate.set()
        listings = [threading.Thread(target=lambda: DBOS.list_workflows(limit=10)) for _ in range(8)]
        for t in listings:
            t.start()
        assert [h.get_result() for h in handles] == [5 * i for i in range(40)]
        for t in listings:
            t.join()
    finally:
        stop.set()
        sampler.join()
    if not backend.is_sqlite:
        assert 2 <= peak <= 4, f"{peak} connections open at once with sys_db_pool_size=4"
