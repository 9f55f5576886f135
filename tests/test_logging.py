"""DBOS.logger (issue 6): a standard logging logger whose records carry the workflow ID
and executor ID of where they were logged (captured with a logging handler).
PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from auth_helpers import LogCapture, wid
from conftest import Harness

from dbos import DBOS, Queue, SetWorkflowID

logging_queue = Queue("logging_tests_queue")


@DBOS.step(name="logging_tests.step")
def log_step(tag: str) -> None:
    DBOS.logger.warning("step says %s", tag)


@DBOS.transaction(name="logging_tests.tx")
def log_tx(tag: str) -> None:
    DBOS.logger.warning("transaction says %s", tag)


@DBOS.workflow(name="logging_tests.child")
def log_child(tag: str) -> None:
    DBOS.logger.warning("child says %s", tag)


@DBOS.workflow(name="logging_tests.parent")
def log_parent(tag: str) -> str:
    DBOS.logger.warning("workflow says %s", tag)
    log_step(tag)
    log_tx(tag)
    log_child(tag)
    return DBOS.workflow_id or ""


@DBOS.workflow(name="logging_tests.async")
async def log_async(tag: str) -> None:
    await asyncio.sleep(0)
    DBOS.logger.warning("async workflow says %s", tag)
    await log_async_step(tag)


@DBOS.step(name="logging_tests.async_step")
async def log_async_step(tag: str) -> None:
    DBOS.logger.warning("async step says %s", tag)


def one(logs: LogCapture, text: str) -> logging.LogRecord:
    found = logs.matching(text)
    assert len(found) == 1, (text, [r.getMessage() for r in logs.records])
    return found[0]


def test_records_carry_workflow_and_executor_id(dbos: Harness) -> None:
    workflow_id = wid("logged")
    tag = wid("tag")
    with LogCapture() as logs:
        DBOS.logger.warning("outside says %s", tag)
        with SetWorkflowID(workflow_id):
            log_parent(tag)
    outside = one(logs, f"outside says {tag}")
    assert getattr(outside, "workflow_id") == ""
    assert getattr(outside, "executor_id") == "local"
    for text in ("workflow says", "step says", "transaction says"):
        record = one(logs, f"{text} {tag}")
        assert getattr(record, "workflow_id") == workflow_id, text
        assert getattr(record, "executor_id") == "local", text
        assert record.levelno == logging.WARNING
        assert record.name == "dbos"
    assert getattr(one(logs, f"child says {tag}"), "workflow_id") == f"{workflow_id}-3"


def test_background_queued_and_async_workflows(dbos: Harness) -> None:
    tag = wid("bg")
    with LogCapture() as logs:
        started = DBOS.start_workflow(log_parent, f"{tag}-started")
        queued = logging_queue.enqueue(log_parent, f"{tag}-queued")
        started.get_result()
        queued.get_result()
        async_id = wid("async")

        async def main() -> None:
            with SetWorkflowID(async_id):
                await log_async(tag)

        asyncio.run(main())
    assert getattr(one(logs, f"workflow says {tag}-started"), "workflow_id") == started.workflow_id
    assert getattr(one(logs, f"step says {tag}-started"), "workflow_id") == started.workflow_id
    assert getattr(one(logs, f"workflow says {tag}-queued"), "workflow_id") == queued.workflow_id
    assert getattr(one(logs, f"transaction says {tag}-queued"), "workflow_id") == queued.workflow_id
    assert getattr(one(logs, f"async workflow says {tag}"), "workflow_id") == async_id
    assert getattr(one(logs, f"async step says {tag}"), "workflow_id") == async_id


def test_executor_id_from_dbos_vmid(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBOS__VMID", "vm-from-env")
    harness.launch(executor_id=None)  # the ID comes from DBOS__VMID
    workflow_id = wid("vmid")
    tag = wid("tag")
    with LogCapture() as logs, SetWorkflowID(workflow_id):
        log_parent(tag)
    record = one(logs, f"step says {tag}")
    assert (getattr(record, "workflow_id"), getattr(record, "executor_id")) == (workflow_id, "vm-from-env")
    assert DBOS.retrieve_workflow(workflow_id).get_status().executor_id == "vm-from-env"


def test_threads_log_their_own_workflow(dbos: Harness) -> None:
    tag = wid("thr")
    ids = {name: wid(name) for name in ("a", "b", "c")}

    def run(name: str) -> None:
        with SetWorkflowID(ids[name]):
            log_parent(f"{tag}-{name}")

    with LogCapture() as logs:
        threads = [threading.Thread(target=run, args=(n,)) for n in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    for name, workflow_id in ids.items():
        assert getattr(one(logs, f"step says {tag}-{name}"), "workflow_id") == workflow_id


def test_log_level_from_config(harness: Harness) -> None:
    harness.launch(log_level="ERROR")
    assert DBOS.logger.getEffectiveLevel() == logging.ERROR
    tag = wid("lvl")
    with LogCapture() as logs:
        DBOS.logger.warning("dropped %s", tag)
        DBOS.logger.error("kept %s", tag)
    assert logs.matching(f"dropped {tag}") == []
    assert getattr(one(logs, f"kept {tag}"), "executor_id") == "local"
    harness.launch(log_level="DEBUG")
    assert DBOS.logger.isEnabledFor(logging.DEBUG)


def test_logger_is_the_standard_dbos_logger(dbos: Harness) -> None:
    assert DBOS.logger is logging.getLogger("dbos")
    assert isinstance(DBOS.logger, logging.Logger)
    # Formatting with the extra fields works on any handler.
    handler_output: list[str] = []

    class Fmt(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_output.append(self.format(record))

    h = Fmt()
    h.setFormatter(logging.Formatter("%(executor_id)s|%(workflow_id)s|%(message)s"))
    DBOS.logger.addHandler(h)
    try:
        workflow_id = wid("fmt")
        with SetWorkflowID(workflow_id):
            log_child("formatted")
    finally:
        DBOS.logger.removeHandler(h)
    assert f"local|{workflow_id}|child says formatted" in handler_output


def test_debug_lines_for_each_step_run_and_replayed(dbos: Harness, caplog: pytest.LogCaptureFixture) -> None:
    # As DBOS 2.x at DEBUG: "Running step, id: 1, name: ..." per step, and "Replaying ..."
    # when the step's record answers (a second execution of the workflow).
    @DBOS.step()
    def log_step() -> str:
        return "s"

    @DBOS.transaction()
    def log_tx() -> str:
        return "t"

    @DBOS.workflow()
    def log_wf() -> str:
        DBOS.set_event("k", 1)
        DBOS.sleep(0)
        return log_step() + log_tx()

    caplog.set_level(logging.DEBUG, "dbos")
    workflow_id = wid("debug-lines")
    with SetWorkflowID(workflow_id):
        assert log_wf() == "st"
    for line in ("Running set_event, id: 1", "Running sleep, id: 2",
                 f"Running step, id: 3, name: {log_step.__qualname__}",
                 f"Running transaction, id: 4, name: {log_tx.__qualname__}"):
        assert line in caplog.text
    assert "Replaying" not in caplog.text
    caplog.clear()
    with SetWorkflowID(workflow_id):
        assert log_wf() == "st"
    assert f"Workflow {workflow_id} is already completed with status SUCCESS" in caplog.text
    assert "Running" not in caplog.text and "Replaying" not in caplog.text
    caplog.clear()
    dbos.backend.force_pending(workflow_id)
    with SetWorkflowID(workflow_id):
        assert log_wf() == "st"
    for line in ("Replaying set_event, id: 1", "Replaying sleep, id: 2",
                 f"Replaying step, id: 3, name: {log_step.__qualname__}",
                 f"Replaying transaction, id: 4, name: {log_tx.__qualname__}"):
        assert line in caplog.text
