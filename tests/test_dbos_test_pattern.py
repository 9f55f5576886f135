"""A test suite written the way DBOS's documentation tells users to write theirs
(issue 11): one testing database for the whole suite, and a fixture that, for every
test, destroys DBOS, constructs it, resets the system database and launches it, then
destroys it with ``destroy_registry=True`` after the test.

The tests share workflow IDs, workflow names and queue names, declare workflows and
queues both at module level and inside tests, and pass in any order:
``test_the_suite_passes_in_any_order`` runs the rest of this file in a subprocess in
shuffled orders.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from conftest import _create_pg_database, _drop_pg_database, _require_postgres

from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID
from dbos._execution.registry import REGISTRY

IN_SUBPROCESS = os.environ.get("DBOS_TEST_PATTERN_SUBPROCESS") == "1"

# -- what an application module declares ---------------------------------------------------

orders_queue = Queue("pattern_orders")
ran: list[str] = []


@DBOS.step()
def charge(order_id: str) -> str:
    ran.append(order_id)
    return f"charged:{order_id}"


@DBOS.workflow()
def checkout(order_id: str) -> str:
    return charge(order_id)


# -- the fixture of DBOS's testing tutorial ---------------------------------------------------


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def testing_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One database for every test of the suite (what TESTING_DATABASE_URL names)."""
    saved = REGISTRY.snapshot()  # other test modules in this process keep their registry
    # Every test starts as after an earlier test's destroy(destroy_registry=True), whichever
    # test of this file runs first in this process (pytest-xdist spreads them): without
    # this, a test declaring the module's queue name conflicted only when it ran first.
    REGISTRY.clear()
    if request.param == "postgres":
        _require_postgres()
        name, url = _create_pg_database()
        try:
            yield url
        finally:
            _drop_pg_database(name)
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('pattern') / 'testing.sqlite'}"
    REGISTRY.restore(saved)


@pytest.fixture()
def reset_dbos(testing_database_url: str) -> Iterator[None]:
    DBOS.destroy()
    config: DBOSConfig = {
        "name": "pattern-app",
        "system_database_url": testing_database_url,
        "polling_interval_sec": 0.1,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.reset_system_database()
    DBOS.launch()
    yield
    DBOS.destroy(destroy_registry=True)


# -- the suite ------------------------------------------------------------------------------


def test_checkout_runs(reset_dbos: None) -> None:
    ran.clear()
    with SetWorkflowID("order-1"):
        assert checkout("order-1") == "charged:order-1"
    assert ran == ["order-1"]  # reset: the same ID in another test ran afresh here too


def test_checkout_through_the_queue(reset_dbos: None) -> None:
    ran.clear()
    with SetWorkflowID("order-1"):
        handle = orders_queue.enqueue(checkout, "order-1")
    assert handle.get_result() == "charged:order-1"
    assert ran == ["order-1"]
    assert [w.workflow_id for w in DBOS.list_workflows()] == ["order-1"]  # nothing from other tests


def test_a_local_queue_and_workflow(reset_dbos: None) -> None:
    queue = Queue("pattern_local", concurrency=1)

    @DBOS.workflow(name="pattern_local_wf")
    def local_wf(x: int) -> int:
        return x + 1

    with SetWorkflowID("order-1"):
        assert queue.enqueue(local_wf, 1).get_result() == 2
    assert DBOS.get_workflow_status("order-1").name == "pattern_local_wf"  # type: ignore[union-attr]


def test_the_same_names_declared_again(reset_dbos: None) -> None:
    queue = Queue("pattern_local", worker_concurrency=2)  # same name, other limits

    @DBOS.workflow(name="pattern_local_wf")
    def local_wf(x: int) -> int:
        return x * 10  # same name, another body: this one runs

    assert queue.enqueue(local_wf, 3).get_result() == 30
    handles = [queue.enqueue(local_wf, i) for i in range(5)]
    assert [h.get_result() for h in handles] == [0, 10, 20, 30, 40]


def test_a_module_queue_name_reused_locally(reset_dbos: None) -> None:
    local_orders = Queue("pattern_orders", concurrency=2)  # the module's name, declared in a test

    @DBOS.workflow()
    def refund(order_id: str) -> str:
        return f"refunded:{order_id}"

    assert local_orders.enqueue(refund, "order-1").get_result() == "refunded:order-1"


def test_messages_and_events(reset_dbos: None) -> None:
    @DBOS.workflow(name="pattern_local_wf")
    def local_wf() -> Any:
        DBOS.set_event("state", "waiting")
        return DBOS.recv("go", timeout_seconds=10)

    with SetWorkflowID("order-1"):
        handle = DBOS.start_workflow(local_wf)
    assert DBOS.get_event("order-1", "state", timeout_seconds=10) == "waiting"
    DBOS.send("order-1", "now", "go")
    assert handle.get_result() == "now"


def test_a_configured_class(reset_dbos: None) -> None:
    @DBOS.dbos_class()
    class Shop:
        lock = threading.Lock()

        @classmethod
        @DBOS.workflow()
        def open_shop(cls, name: str) -> str:
            return f"{cls.__name__}:{name}"

    assert orders_queue.enqueue(Shop.open_shop, "x").get_result() == "Shop:x"


# -- any order --------------------------------------------------------------------------------


@pytest.mark.skipif(IN_SUBPROCESS, reason="the subprocess runs the suite itself")
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [1, 2])
def test_the_suite_passes_in_any_order(seed: int) -> None:
    _require_postgres()
    here = Path(__file__)
    names = [n for n in dir(sys.modules[__name__]) if n.startswith("test_") and n != "test_the_suite_passes_in_any_order"]
    ids = [f"{here}::{n}[{db}]" for n in names for db in ("postgres", "sqlite")]
    random.Random(seed).shuffle(ids)
    env = {**os.environ, "DBOS_TEST_PATTERN_SUBPROCESS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly",
         "--basetemp", f"/tmp/pattern-{uuid.uuid4().hex[:8]}", *ids],
        cwd=here.parent.parent, env=env, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert f"{len(ids)} passed" in r.stdout, r.stdout[-2000:]
