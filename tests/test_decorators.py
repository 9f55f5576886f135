"""Decorators: registered at import time (before DBOS exists); sync and async; plain
functions and methods; the decorated functions keep their name, doc and signature."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Optional

import pytest
import sqlalchemy as sa
from conftest import Backend, Harness

from dbos import DBOS, SetWorkflowID
from dbos._api.classes import DBOSConfiguredInstance

# -- module level: these decorators run at import, before any DBOS(...) ---------

CALLS: dict[str, int] = {}


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


@DBOS.step()
def add_step(a: int, b: int = 1) -> int:
    """Add two numbers (a step)."""
    _count("add_step")
    return a + b


@DBOS.transaction()
def insert_txn(key: str, value: int) -> int:
    """Insert one row (a transaction)."""
    _count("insert_txn")
    DBOS.sql_session.execute(sa.text("INSERT INTO deco_kv (k, v) VALUES (:k, :v)"), {"k": key, "v": value})
    return int(DBOS.sql_session.execute(sa.text("SELECT count(*) FROM deco_kv")).scalar_one())


@DBOS.workflow()
def sync_workflow(x: int, *, label: str = "sum") -> dict[str, Any]:
    """Add then record (a workflow)."""
    _count("sync_workflow")
    total = add_step(x, 10)
    rows = insert_txn(f"{DBOS.workflow_id}-{label}", total)
    return {"total": total, "rows": rows, "id": DBOS.workflow_id}


@DBOS.step()
async def async_step(x: int) -> int:
    """An async step."""
    _count("async_step")
    await asyncio.sleep(0)
    return x * 2


@DBOS.transaction()
def async_txn(key: str) -> str:  # a transaction is sync (DBOS 2.x rejects async def); async workflows call it
    _count("async_txn")
    DBOS.sql_session.execute(sa.text("INSERT INTO deco_kv (k, v) VALUES (:k, 0)"), {"k": key})
    return key.upper()


@DBOS.workflow()
async def async_workflow(x: int) -> tuple[int, str, Optional[str]]:
    """An async workflow."""
    _count("async_workflow")
    doubled = await async_step(x)
    key = async_txn(f"k{x}")
    return doubled, key, DBOS.workflow_id


@DBOS.dbos_class()
class Calc:
    """Instances travel with the call by value (pickled)."""

    def __init__(self, base: int) -> None:
        self.base = base

    @DBOS.workflow()
    def method_workflow(self, x: int) -> int:
        return self.method_step(x) + self.base

    @DBOS.step()
    def method_step(self, x: int) -> int:
        _count("method_step")
        return x * 100

    @staticmethod
    @DBOS.workflow()
    def static_workflow(x: int) -> int:
        return Calc.static_step(x) + 1

    @staticmethod
    @DBOS.step()
    def static_step(x: int) -> int:
        _count("static_step")
        return x * 3

    @classmethod
    @DBOS.workflow()
    def class_workflow(cls, x: int) -> str:
        return f"{cls.__name__}:{cls.class_step(x)}"

    @classmethod
    @DBOS.step()
    def class_step(cls, x: int) -> int:
        _count("class_step")
        return x - 1


@DBOS.dbos_class()
class Configured(DBOSConfiguredInstance):
    def __init__(self, config_name: str, factor: int) -> None:
        self.factor = factor
        super().__init__(config_name)

    @DBOS.workflow()
    def scaled(self, x: int) -> int:
        return self.scale_step(x)

    @DBOS.step()
    def scale_step(self, x: int) -> int:
        _count("scale_step")
        return x * self.factor


CONFIGURED = Configured("by-ten", 10)


def _create_kv(backend: Backend) -> None:
    # The app database is the system database here; on PostgreSQL the session's
    # schema search path is the default one (public).
    backend.execute("CREATE TABLE deco_kv (k TEXT PRIMARY KEY, v INTEGER)")


# -- tests ---------------------------------------------------------------------


def test_module_level_decorators_run_before_construction(dbos: Harness, backend: Backend) -> None:
    _create_kv(backend)
    with SetWorkflowID("sync-1"):
        out = sync_workflow(5, label="x")
    assert out == {"total": 15, "rows": 1, "id": "sync-1"}
    assert backend.steps("sync-1") == [(1, "add_step"), (2, "insert_txn")]
    assert backend.status("sync-1") == "SUCCESS"
    assert backend.scalar("SELECT v FROM deco_kv WHERE k = 'sync-1-x'") == 15


def test_async_workflow_step_transaction(dbos: Harness, backend: Backend) -> None:
    _create_kv(backend)

    async def main() -> Any:
        with SetWorkflowID("async-1"):
            first = await async_workflow(4)
        with SetWorkflowID("async-1"):
            second = await async_workflow(4)
        return first, second

    first, second = asyncio.run(main())
    assert first == (8, "K4", "async-1")
    assert second == first
    assert CALLS == {"async_workflow": 1, "async_step": 1, "async_txn": 1}
    assert backend.steps("async-1") == [(1, "async_step"), (2, "async_txn")]
    assert backend.scalar("SELECT count(*) FROM deco_kv WHERE k = 'k4'") == 1


def test_async_step_outside_workflow_runs_plainly(dbos: Harness) -> None:
    assert asyncio.run(async_step(21)) == 42
    assert CALLS == {"async_step": 1}


def test_step_outside_workflow_runs_without_checkpoint(dbos: Harness, backend: Backend) -> None:
    assert add_step(1, 2) == 3
    assert DBOS.workflow_id is None
    assert backend.scalar(f"SELECT count(*) FROM {backend.table('operation_outputs')}") == 0


def test_instance_method_workflow_and_step(dbos: Harness, backend: Backend) -> None:
    calc = Calc(7)
    with SetWorkflowID("method-1"):
        assert calc.method_workflow(2) == 207
    assert backend.steps("method-1") == [(1, "Calc.method_step")]
    status = DBOS.retrieve_workflow("method-1").get_status()
    assert status.name == "Calc.method_workflow"
    assert status.class_name == "Calc"
    # Replay with the same ID: nothing re-runs.
    with SetWorkflowID("method-1"):
        assert calc.method_workflow(2) == 207
    assert CALLS == {"method_step": 1}
    # start_workflow with a bound method.
    handle = DBOS.start_workflow(Calc(1).method_workflow, 3)
    assert handle.get_result() == 301


def test_method_workflow_of_an_unregistered_class_is_rejected(dbos: Harness, backend: Backend) -> None:
    """As in DBOS 2.x: a method workflow's class must be a @DBOS.dbos_class (recovery finds
    classes and instances by their registered name); nothing is recorded."""

    class Loose:
        @DBOS.workflow()
        def method(self, x: int) -> int:
            return x

        @classmethod
        @DBOS.workflow()
        def cmethod(cls, x: int) -> int:
            return x

    from dbos import DBOSException

    with pytest.raises(DBOSException, match="appears to be a class instance, but is not properly registered"):
        with SetWorkflowID("loose-1"):
            Loose().method(1)
    with pytest.raises(DBOSException, match="appears to be a class, but is not properly registered"):
        DBOS.start_workflow(Loose.cmethod, 1)
    assert backend.status("loose-1") is None


def test_staticmethod_workflow_and_step(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("static-1"):
        assert Calc.static_workflow(5) == 16
    assert backend.steps("static-1") == [(1, "Calc.static_step")]
    assert DBOS.start_workflow(Calc.static_workflow, 1).get_result() == 4
    assert Calc.static_step(2) == 6  # outside a workflow: a plain call


def test_classmethod_workflow_and_step(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("cls-1"):
        assert Calc.class_workflow(5) == "Calc:4"
    assert backend.steps("cls-1") == [(1, "Calc.class_step")]
    assert DBOS.start_workflow(Calc.class_workflow, 10).get_result() == "Calc:9"
    assert DBOS.retrieve_workflow("cls-1").get_status().class_name == "Calc"


def test_configured_instance_workflow(dbos: Harness, backend: Backend) -> None:
    with SetWorkflowID("conf-1"):
        assert CONFIGURED.scaled(3) == 30
    status = DBOS.retrieve_workflow("conf-1").get_status()
    assert status.class_name == "Configured"
    assert status.config_name == "by-ten"
    assert backend.steps("conf-1") == [(1, "Configured.scale_step")]


def test_decorators_inside_a_test_register_by_qualname(dbos: Harness, backend: Backend) -> None:
    @DBOS.step(name="custom-step-name")
    def named_step() -> int:
        return 1

    @DBOS.workflow(name="custom-workflow-name")
    def named_workflow() -> int:
        return named_step()

    @DBOS.workflow()
    def local_workflow() -> int:
        return named_step()

    with SetWorkflowID("named"):
        named_workflow()
    with SetWorkflowID("local"):
        local_workflow()
    assert backend.steps("named") == [(1, "custom-step-name")]
    assert DBOS.retrieve_workflow("named").get_status().name == "custom-workflow-name"
    assert (
        DBOS.retrieve_workflow("local").get_status().name
        == "test_decorators_inside_a_test_register_by_qualname.<locals>.local_workflow"
    )


def test_context_variables_inside_steps(dbos: Harness) -> None:
    seen: dict[str, Any] = {}

    @DBOS.step()
    def probe() -> None:
        seen["wid"] = DBOS.workflow_id
        seen["step_id"] = DBOS.step_id
        seen["status"] = DBOS.step_status

    @DBOS.workflow()
    def wf() -> Optional[str]:
        seen["wf_step_id"] = DBOS.step_id
        add_step(1)
        probe()
        return DBOS.workflow_id

    with SetWorkflowID("ctx-vars"):
        assert wf() == "ctx-vars"
    assert seen["wid"] == "ctx-vars"
    assert seen["step_id"] == 2
    assert seen["status"].step_id == 2
    assert seen["status"].current_attempt is None  # no retries configured
    assert seen["status"].max_attempts is None
    assert seen["wf_step_id"] is None  # not inside a step
    assert DBOS.workflow_id is None and DBOS.step_id is None and DBOS.step_status is None
    assert DBOS.logger is not None


@pytest.mark.parametrize(
    ("decorated", "expected_doc"),
    [
        (add_step, "Add two numbers (a step)."),
        (insert_txn, "Insert one row (a transaction)."),
        (sync_workflow, "Add then record (a workflow)."),
        (async_step, "An async step."),
        (async_workflow, "An async workflow."),
    ],
)
def test_decorated_functions_keep_name_doc_and_signature(decorated: Any, expected_doc: str) -> None:
    original = decorated.__wrapped__
    assert decorated.__name__ == original.__name__
    assert decorated.__qualname__ == original.__qualname__
    assert decorated.__doc__ == expected_doc
    assert inspect.signature(decorated) == inspect.signature(original)
    assert inspect.iscoroutinefunction(decorated) == inspect.iscoroutinefunction(original)


def test_signatures_are_the_users() -> None:
    sig = inspect.signature(sync_workflow)
    assert list(sig.parameters) == ["x", "label"]
    assert sig.parameters["label"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sig.parameters["label"].default == "sum"
    assert inspect.signature(add_step).parameters["b"].default == 1
    assert list(inspect.signature(Calc(1).method_workflow).parameters) == ["x"]
    assert list(inspect.signature(Calc.class_workflow).parameters) == ["x"]
    assert inspect.iscoroutinefunction(async_workflow)
    assert inspect.iscoroutinefunction(async_step)
    assert not inspect.iscoroutinefunction(sync_workflow)


def test_invalid_decorator_options_fail_at_decoration() -> None:
    from dbos import DBOSException

    with pytest.raises(DBOSException, match="max_attempts"):
        DBOS.step(retries_allowed=True, max_attempts=0)
    with pytest.raises(DBOSException, match="backoff_rate"):
        DBOS.step(retries_allowed=True, backoff_rate=0.5)
    with pytest.raises(DBOSException, match="interval_seconds"):
        DBOS.step(interval_seconds=-1)
    with pytest.raises(DBOSException, match="max_recovery_attempts"):
        DBOS.workflow(max_recovery_attempts=-1)
    with pytest.raises(DBOSException, match="isolation_level"):
        DBOS.transaction(isolation_level="CHAOS")


def test_start_workflow_rejects_undecorated_function(dbos: Harness) -> None:
    from dbos import DBOSException

    def plain() -> None:
        pass

    with pytest.raises(DBOSException, match="not a @DBOS.workflow"):
        DBOS.start_workflow(plain)
