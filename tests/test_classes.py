"""Classes and configured instances (issue 6): @DBOS.dbos_class(), DBOSConfiguredInstance
(class_name / config_name in WorkflowStatus, a recovered workflow finds its instance by
config_name, in process and in a restarted process after a SIGKILL), plain instances,
static and class methods as workflows and steps. PostgreSQL and SQLite."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from auth_helpers import AuthApp, wid
from conftest import Backend, Harness, eventually

from dbos import DBOS, DBOSClient, DBOSConfiguredInstance, DBOSException, Queue, SetWorkflowID
from dbos._execution.registry import REGISTRY

classes_queue = Queue("classes_tests_queue")
CALLS: dict[str, int] = {}
CALLS_LOCK = threading.Lock()


def hit(name: str) -> None:
    with CALLS_LOCK:
        CALLS[name] = CALLS.get(name, 0) + 1


@DBOS.dbos_class()
class ClsAccount(DBOSConfiguredInstance):
    def __init__(self, config_name: str, currency: str) -> None:
        super().__init__(config_name)
        self.currency = currency

    @DBOS.workflow()
    def deposit(self, amount: int) -> str:
        hit(f"deposit:{self.config_name}")
        return self.fmt(amount)

    @DBOS.step()
    def fmt(self, amount: int) -> str:
        return f"{self.config_name}:{amount}{self.currency}:step{DBOS.step_id}"

    @DBOS.transaction()
    def tx_fmt(self, amount: int) -> str:
        return f"{self.config_name}:{amount}:tx"

    @DBOS.workflow()
    def both(self, amount: int) -> list[str]:
        return [self.fmt(amount), self.tx_fmt(amount)]

    @DBOS.workflow()
    async def deposit_async(self, amount: int) -> str:
        return f"{self.config_name}:{amount}:async"


USD = ClsAccount("usd-account", "$")
EUR = ClsAccount("eur-account", "EUR")


@DBOS.dbos_class("renamed_ledger")
class ClsRenamed(DBOSConfiguredInstance):
    @DBOS.workflow()
    def run(self, x: int) -> str:
        hit(f"renamed:{self.config_name}")
        return f"{self.config_name}:{x}"


RENAMED = ClsRenamed("renamed-1")


@DBOS.dbos_class()
class ClsPlain:
    """Not configured: the instance travels with the workflow by value."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    @DBOS.workflow()
    def run(self, x: int) -> str:
        hit(f"plain:{self.tag}")
        return f"{self.tag}:{self.step(x)}"

    @DBOS.step()
    def step(self, x: int) -> int:
        return x + 1


@DBOS.dbos_class()
class ClsStatics:
    factor = 10

    @staticmethod
    @DBOS.workflow()
    def static_wf(x: int) -> int:
        return ClsStatics.static_step(x) + ClsStatics.class_step(x)

    @staticmethod
    @DBOS.step()
    def static_step(x: int) -> int:
        return x + 1

    @classmethod
    @DBOS.step()
    def class_step(cls, x: int) -> int:
        return x * cls.factor

    @classmethod
    @DBOS.workflow()
    def class_wf(cls, x: int) -> dict[str, Any]:
        hit("class_wf")
        return {"cls": cls.__name__, "value": cls.class_step(x), "static": cls.static_step(x)}

    @classmethod
    @DBOS.transaction()
    def class_tx(cls, x: int) -> int:
        return x * cls.factor


def status(workflow_id: str) -> Any:
    return DBOS.retrieve_workflow(workflow_id).get_status()


# -- configured instances -------------------------------------------------------------


def test_configured_instances_record_class_and_config_name(dbos: Harness) -> None:
    a, b = wid("usd"), wid("eur")
    with SetWorkflowID(a):
        assert USD.deposit(5) == "usd-account:5$:step1"
    with SetWorkflowID(b):
        assert EUR.deposit(7) == "eur-account:7EUR:step1"
    for workflow_id, config in ((a, "usd-account"), (b, "eur-account")):
        st = status(workflow_id)
        assert (st.name, st.class_name, st.config_name) == ("ClsAccount.deposit", "ClsAccount", config)
        # The instance is named, not stored: the input is just the arguments.
        assert st.input is not None and st.input["args"] in ((5,), (7,))
    assert {s.workflow_id for s in DBOS.list_workflows(name="ClsAccount.deposit")} == {a, b}


def test_configured_instance_start_enqueue_steps_transactions_async(dbos: Harness) -> None:
    import asyncio

    started = DBOS.start_workflow(EUR.deposit, 1)
    queued = classes_queue.enqueue(USD.both, 2)
    assert started.get_result() == "eur-account:1EUR:step1"
    assert queued.get_result() == ["usd-account:2$:step1", "usd-account:2:tx"]
    assert (queued.get_status().class_name, queued.get_status().config_name) == ("ClsAccount", "usd-account")
    steps = DBOS.list_workflow_steps(queued.workflow_id)
    assert [s["function_name"] for s in steps] == ["ClsAccount.fmt", "ClsAccount.tx_fmt"]

    async def main() -> tuple[str, str]:
        direct = await USD.deposit_async(3)
        handle = await DBOS.start_workflow_async(EUR.deposit_async, 4)
        return direct, await handle.get_result()

    assert asyncio.run(main()) == ("usd-account:3:async", "eur-account:4:async")


def test_same_id_for_another_instance_conflicts(dbos: Harness) -> None:
    """As in DBOS 2.31.1: an ID used by one configured instance's workflow is not another's."""
    from dbos import DBOSConflictingWorkflowError

    before = dict(CALLS)
    with SetWorkflowID("cls-shared-id"):
        assert USD.deposit(1) == "usd-account:1$:step1"
    with SetWorkflowID("cls-shared-id"):
        assert USD.deposit(2) == "usd-account:1$:step1"  # the recorded workflow
    with SetWorkflowID("cls-shared-id"):
        with pytest.raises(DBOSConflictingWorkflowError, match="different config name: usd-account"):
            EUR.deposit(1)
    assert CALLS["deposit:usd-account"] == before.get("deposit:usd-account", 0) + 1
    assert CALLS.get("deposit:eur-account") == before.get("deposit:eur-account")


def test_recovered_workflow_finds_its_instance_by_config_name(dbos: Harness) -> None:
    a, b, c = wid("rec-usd"), wid("rec-eur"), wid("rec-renamed")
    with SetWorkflowID(a):
        USD.deposit(11)
    with SetWorkflowID(b):
        EUR.deposit(12)
    with SetWorkflowID(c):
        RENAMED.run(13)
    assert status(c).class_name == "renamed_ledger"  # the name dbos_class was given
    before = dict(CALLS)
    for workflow_id in (a, b, c):
        dbos.backend.force_pending(workflow_id)
        dbos.backend.delete_steps_from(workflow_id, 1)
    dbos.restart()
    assert DBOS.retrieve_workflow(a).get_result() == "usd-account:11$:step1"
    assert DBOS.retrieve_workflow(b).get_result() == "eur-account:12EUR:step1"
    assert DBOS.retrieve_workflow(c).get_result() == "renamed-1:13"
    assert CALLS["deposit:usd-account"] == before["deposit:usd-account"] + 1
    assert CALLS["deposit:eur-account"] == before["deposit:eur-account"] + 1
    assert CALLS["renamed:renamed-1"] == before["renamed:renamed-1"] + 1
    for workflow_id in (a, b, c):
        assert status(workflow_id).recovery_attempts == 2


def test_client_enqueues_for_a_configured_instance(dbos: Harness) -> None:
    with DBOSClient(dbos.backend.url, polling_interval_sec=0.1) as client:
        handle = client.enqueue(
            {
                "workflow_name": "ClsAccount.deposit",
                "queue_name": "classes_tests_queue",
                "workflow_class_name": "ClsAccount",
                "workflow_config_name": "eur-account",
            },
            9,
        )
        missing = client.enqueue(
            {
                "workflow_name": "ClsAccount.deposit",
                "queue_name": "classes_tests_queue",
                "workflow_class_name": "ClsAccount",
                "workflow_config_name": "no-such-account",
            },
            9,
        )
        assert handle.get_result() == "eur-account:9EUR:step1"
    eventually(lambda: dbos.backend.status(missing.workflow_id) == "ERROR")
    st = status(missing.workflow_id)
    assert "no-such-account" in str(st.error)


def test_configured_instance_needs_a_name() -> None:
    with pytest.raises(DBOSException):
        ClsAccount("", "$")
    with pytest.raises(DBOSException):
        ClsAccount(None, "$")  # type: ignore[arg-type]


def test_instances_are_registered_by_class_and_config_name() -> None:
    assert REGISTRY.instance("ClsAccount", "usd-account") is USD
    assert REGISTRY.instance("ClsAccount", "eur-account") is EUR
    assert REGISTRY.instance("renamed_ledger", "renamed-1") is RENAMED
    assert REGISTRY.classes["renamed_ledger"] is ClsRenamed


# -- plain instances, static and class methods -------------------------------------------


def test_plain_instance_travels_by_value_and_recovers(dbos: Harness) -> None:
    workflow_id = wid("plain")
    with SetWorkflowID(workflow_id):
        assert ClsPlain("t1").run(1) == "t1:2"
    st = status(workflow_id)
    assert (st.class_name, st.config_name) == ("ClsPlain", None)
    assert DBOS.start_workflow(ClsPlain("t2").run, 5).get_result() == "t2:6"
    assert classes_queue.enqueue(ClsPlain("t3").run, 6).get_result() == "t3:7"
    dbos.backend.force_pending(workflow_id)
    dbos.backend.delete_steps_from(workflow_id, 1)
    before = CALLS["plain:t1"]
    dbos.restart()
    assert DBOS.retrieve_workflow(workflow_id).get_result() == "t1:2"
    assert CALLS["plain:t1"] == before + 1


def test_static_and_class_methods_as_workflows_and_steps(dbos: Harness) -> None:
    assert ClsStatics.static_step(1) == 2  # outside a workflow a step is a plain call
    assert ClsStatics.class_step(2) == 20
    assert ClsStatics.class_tx(3) == 30
    s_id, c_id = wid("static"), wid("classm")
    with SetWorkflowID(s_id):
        assert ClsStatics.static_wf(4) == 5 + 40
    with SetWorkflowID(c_id):
        assert ClsStatics.class_wf(5) == {"cls": "ClsStatics", "value": 50, "static": 6}
    assert [s["function_name"] for s in DBOS.list_workflow_steps(s_id)] == [
        "ClsStatics.static_step", "ClsStatics.class_step"
    ]
    assert [s["function_name"] for s in DBOS.list_workflow_steps(c_id)] == [
        "ClsStatics.class_step", "ClsStatics.static_step"
    ]
    assert (status(s_id).name, status(s_id).class_name, status(s_id).config_name) == (
        "ClsStatics.static_wf", "ClsStatics", None
    )
    assert (status(c_id).name, status(c_id).class_name) == ("ClsStatics.class_wf", "ClsStatics")
    assert DBOS.start_workflow(ClsStatics.static_wf, 1).get_result() == 12
    assert DBOS.start_workflow(ClsStatics.class_wf, 1).get_result() == {"cls": "ClsStatics", "value": 10, "static": 2}
    handle = classes_queue.enqueue(ClsStatics.class_wf, 2)
    assert handle.get_result() == {"cls": "ClsStatics", "value": 20, "static": 3}
    assert classes_queue.enqueue(ClsStatics.static_wf, 0).get_result() == 1

    # A class-method workflow recovers too (its class travels with it).
    dbos.backend.force_pending(c_id)
    dbos.backend.delete_steps_from(c_id, 1)
    before = CALLS["class_wf"]
    dbos.restart()
    assert DBOS.retrieve_workflow(c_id).get_result() == {"cls": "ClsStatics", "value": 50, "static": 6}
    assert CALLS["class_wf"] == before + 1


# -- across a SIGKILL ---------------------------------------------------------------------


@pytest.mark.slow
def test_configured_instance_recovered_after_sigkill_in_a_restarted_process(
    backend: Backend, tmp_path: Path
) -> None:
    workflow_id = wid("ledger")
    app = AuthApp(backend, tmp_path, "instance_start", workflow_id, "ledger-vm").start()
    first_pid = app.proc.pid if app.proc else None
    app.kill_when(lambda events: any(e["event"] == "waiting" for e in events), "(tally waiting for release)")
    assert backend.status(workflow_id) == "PENDING"

    (tmp_path / "release").touch()
    result = AuthApp(backend, tmp_path, "recover", workflow_id, "ledger-vm").start().result()
    # The restarted process has two instances of Ledger; the workflow ran on "west" again.
    assert result["config_name"] == "west"
    assert result["region"] == "us-west-2"
    assert result["amount"] == 5
    assert result["pid"] != first_pid
    events = [e["event"] for e in read_events(tmp_path)]
    assert events.count("tally-start:west") == 1  # recorded before the kill: not re-run
    assert events.count("tally-end:west") == 1
    assert not any(":east" in e for e in events)

    with DBOSClient(backend.url) as client:
        st = client.get_workflow(workflow_id)
        assert st is not None
        assert (st.status, st.name, st.class_name, st.config_name) == ("SUCCESS", "Ledger.tally", "Ledger", "west")
        assert st.recovery_attempts == 2
        assert st.executor_id == "ledger-vm"


def read_events(tmp_path: Path) -> list[dict[str, Any]]:
    from auth_helpers import read_marks

    return read_marks(tmp_path / "marks.jsonl")
