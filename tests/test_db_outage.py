"""The system database goes away at a workflow's last write, on a live executor.

Each test runs DBOS on a throwaway PostgreSQL it starts on its own port
(tests/pg_server.py); a workflow stops that server (``pg_ctl stop -m immediate``)
and the test starts it again a few seconds later, without restarting DBOS.

- The last step stops the server, so its checkpoint is lost: the workflow
  raises ``DBOSDatabaseUnavailableError``, which is no outcome. It resumes in
  this process once the database is back (the step re-runs: at-least-once) and
  ends SUCCESS.
- The server stops after the last step, so only the outcome write fails: the
  caller gets a clear ``DBOSDatabaseUnavailableError``, local waiters keep
  waiting, and the outcome retrier writes SUCCESS once the database is back,
  without running the workflow again.
- ``DBOS.destroy()`` while the database is still down returns in bounded time;
  the owed outcome is abandoned (waiters are told) and the workflow, still
  PENDING, is recovered at the next launch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
import uuid
from typing import Any, Iterator

import pytest
from conftest import Backend, Harness, eventually
from pg_server import PgServer

from dbos import DBOS, DBOSClient, Queue, SetWorkflowID
from dbos._api.instance import runtime
from dbos._telemetry.logs import LOGGER_NAME
from dbos.error import DBOSDatabaseUnavailableError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


class Server:
    """The server the running test's workflows stop."""

    pg: PgServer


RUNS: collections.Counter[str] = collections.Counter()


def _stop_server_once(key: str) -> None:
    RUNS[key] += 1
    if RUNS[key] == 1:  # a re-run (replay after the outage) must not stop it again
        Server.pg.stop()


@DBOS.step(name="outage.double")
def double(x: int) -> int:
    RUNS["double"] += 1
    return x * 2


@DBOS.step(name="outage.stop_server")
def stop_server_step() -> str:
    _stop_server_once("stop_server_step")
    return "stopped"


@DBOS.workflow(name="outage.last_step_stops_server")
def last_step_stops_server(x: int) -> str:
    a = double(x)
    b = stop_server_step()  # its checkpoint is the write that fails
    return f"{a}-{b}"


@DBOS.workflow(name="outage.server_stops_after_last_step")
def server_stops_after_last_step(x: int) -> int:
    a = double(x)
    _stop_server_once("body")  # not a step: every step is recorded, the outcome write fails
    return a


@DBOS.workflow(name="outage.server_stops_after_last_step_async")
async def server_stops_after_last_step_async(x: int) -> int:
    a = double(x)
    await asyncio.to_thread(_stop_server_once, "body")
    return a


# Polled by the launched DBOS (declared at import, like any queue).
ORPHANS_Q = Queue("outage_orphans", polling_interval_sec=0.2)


@DBOS.workflow(name="outage.orphan")
def orphan_wf(x: int) -> int:
    RUNS["orphan"] += 1
    return x + 1


class Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def retrier_failed(self) -> bool:
        return any(m.startswith("outcome-retrier failed") for m in self.messages)

    def poller_failed(self) -> bool:
        return any(m.startswith("queue-poller failed") for m in self.messages)


class Outage:
    def __init__(self, pg: PgServer, harness: Harness, logs: Logs) -> None:
        self.pg = pg
        self.harness = harness
        self.backend = harness.backend
        self.logs = logs

    def owed(self) -> list[str]:
        return [w.what for w in runtime().deferred()]

    def restart_server_after_a_failed_retry(self) -> None:
        """Leave the server down until the retrier has tried (and failed) at least once."""
        eventually(self.logs.retrier_failed, timeout=30, interval=0.05, what="(the retrier to try while down)")
        self.pg.start()

    def recovery_attempts(self, workflow_id: str) -> int:
        return int(self.backend.scalar(
            f"SELECT recovery_attempts FROM {self.backend.table('workflow_status')} WHERE workflow_uuid = :w",
            w=workflow_id,
        ))


@pytest.fixture
def outage(tmp_path: Any) -> Iterator[Outage]:
    RUNS.clear()
    logs = Logs()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(logs)
    with PgServer() as pg:
        Server.pg = pg
        backend = Backend("postgres", pg.url(), tmp_path)
        harness = Harness(backend, "outage-app")
        try:
            harness.launch(sys_db_pool_size=5)
            yield Outage(pg, harness, logs)
        finally:
            if not pg.running:
                pg.start()  # so destroy() below is quick
            DBOS.destroy()
            backend.dispose()
            logger.removeHandler(logs)


def test_last_step_stops_the_database_and_the_workflow_resumes_here(outage: Outage) -> None:
    workflow_id = f"outage-{uuid.uuid4().hex[:8]}"
    with SetWorkflowID(workflow_id):
        handle = DBOS.start_workflow(last_step_stops_server, 4)
    # The step's checkpoint failed: nothing is recorded as the workflow's outcome;
    # it is owed a resume, and stays registered here (waiters wait for it).
    eventually(lambda: outage.owed() == ["resume"], timeout=30, what="(a resume to be owed)")
    local = runtime().local(workflow_id)
    assert local is not None and not local.outcome.done()

    outage.restart_server_after_a_failed_retry()

    eventually(lambda: outage.backend.status(workflow_id) == "SUCCESS", timeout=30, what="(SUCCESS)")
    assert handle.get_result() == "8-stopped"
    assert outage.owed() == []
    assert runtime().local(workflow_id) is None
    # The recorded step replayed; the step whose checkpoint was lost ran again.
    assert RUNS["double"] == 1 and RUNS["stop_server_step"] == 2
    assert outage.backend.steps(workflow_id) == [(1, "outage.double"), (2, "outage.stop_server")]
    assert outage.recovery_attempts(workflow_id) == 2


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_outcome_write_fails_and_is_recorded_when_the_database_is_back(outage: Outage, kind: str) -> None:
    workflow_id = f"outage-{kind}-{uuid.uuid4().hex[:8]}"
    with SetWorkflowID(workflow_id):
        with pytest.raises(DBOSDatabaseUnavailableError, match="its outcome could not be recorded") as raised:
            if kind == "sync":
                server_stops_after_last_step(5)
            else:
                asyncio.run(server_stops_after_last_step_async(5))
    assert workflow_id in str(raised.value) and "reachable again" in str(raised.value)
    # The outcome is owed; local waiters see no outcome until the database holds it.
    assert outage.owed() == ["outcome"]
    local = runtime().local(workflow_id)
    assert local is not None and not local.outcome.done()

    outage.restart_server_after_a_failed_retry()

    eventually(lambda: outage.backend.status(workflow_id) == "SUCCESS", timeout=30, what="(SUCCESS)")
    result: list[Any] = []
    waiter = threading.Thread(target=lambda: result.append(DBOS.retrieve_workflow(workflow_id).get_result()))
    waiter.start()
    waiter.join(30)
    assert result == [10], "a local waiter did not get the recorded outcome"
    assert local.outcome.done() and local.outcome.result() == 10
    assert runtime().local(workflow_id) is None and outage.owed() == []
    # Written, not re-run: the body and its step ran once, one attempt.
    assert RUNS["body"] == 1 and RUNS["double"] == 1
    assert outage.recovery_attempts(workflow_id) == 1


def test_destroy_while_the_database_is_down_is_bounded(outage: Outage) -> None:
    workflow_id = f"outage-destroy-{uuid.uuid4().hex[:8]}"
    with SetWorkflowID(workflow_id), pytest.raises(DBOSDatabaseUnavailableError):
        server_stops_after_last_step(6)
    local = runtime().local(workflow_id)
    assert local is not None and outage.owed() == ["outcome"]

    started = time.monotonic()
    DBOS.destroy()
    assert time.monotonic() - started < 20, "DBOS.destroy() hung on the unreachable database"
    # The owed outcome was abandoned: local waiters are told, nothing is left running.
    assert local.outcome.done()
    with pytest.raises(DBOSDatabaseUnavailableError, match="recovered at the next launch"):
        local.outcome.result()
    assert not [t.name for t in threading.enumerate() if t.name == "dbos-outcome-retrier"]

    outage.pg.start()
    assert outage.backend.status(workflow_id) == "PENDING"
    outage.harness.launch(sys_db_pool_size=5)  # a new process: recovery finishes it
    eventually(lambda: outage.backend.status(workflow_id) == "SUCCESS", timeout=30, what="(SUCCESS)")
    assert DBOS.retrieve_workflow(workflow_id).get_result() == 12
    assert RUNS["body"] == 2 and RUNS["double"] == 1  # the body replayed; its step did not re-run


def test_a_claim_lost_with_its_connection_goes_back_to_its_queue(outage: Outage) -> None:
    """A claim can commit while its connection drops: the rows are PENDING under this
    live executor, which never received them. After the outage the poller puts them
    back on their queue, and they run (once) instead of staying PENDING for ever."""
    backend = outage.backend
    client = DBOSClient(outage.pg.url())
    try:
        # An ENQUEUED row on a queue nobody polls, then made into what a lost claim
        # leaves behind: PENDING, owned by this executor, on a queue it polls.
        handle = client.enqueue({"queue_name": "outage_parked", "workflow_name": "outage.orphan"}, 41)
    finally:
        client.destroy()
    wid = handle.workflow_id
    backend.execute(
        f"UPDATE {backend.table('workflow_status')} SET status = 'PENDING', executor_id = :e,"
        " queue_name = 'outage_orphans', started_at = :t, application_version = :v WHERE workflow_uuid = :w",
        e=runtime().executor_id, t=int(time.time() * 1000), v=runtime().app_version, w=wid,
    )
    time.sleep(0.5)  # a few polls: nothing claims a PENDING row
    assert backend.status(wid) == "PENDING" and RUNS["orphan"] == 0

    outage.pg.stop()
    eventually(outage.logs.poller_failed, timeout=30, interval=0.05, what="(the poller to fail while down)")
    outage.pg.start()

    eventually(lambda: backend.status(wid) == "SUCCESS", timeout=30, interval=0.1, what="(the orphan to run)")
    assert RUNS["orphan"] == 1
    assert DBOS.retrieve_workflow(wid).get_result() == 42
    assert backend.scalar(
        f"SELECT executor_id FROM {backend.table('workflow_status')} WHERE workflow_uuid = :w", w=wid
    ) == runtime().executor_id
