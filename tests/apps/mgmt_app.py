"""An executor process for the fleet management tests (tests/test_management_fleet.py)
and bench/management.py.

Usage: mgmt_app.py '<json spec>' with keys ``db`` (system database URL), ``redis``
(URL or null), ``marks`` (a JSON-lines file every event is appended to), ``dir``
(where release files appear) and optionally ``polling_interval_sec``.
The executor ID comes from DBOS__VMID, the application version from DBOS__APPVERSION.
It launches, writes a ``ready`` mark, and runs until SIGTERM (then DBOS.destroy()).
Workflows are started by the tests through DBOSClient.enqueue on the queues below.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from dbos import DBOS, Queue

SPEC: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
MARKS = SPEC.get("marks", os.devnull)
DIR = Path(SPEC.get("dir", "."))

FLEET_Q = Queue("mgmt_fleet_q", polling_interval_sec=0.1)
PARENTS_Q = Queue("mgmt_parents_q", polling_interval_sec=0.1)
CHILDREN_Q = Queue("mgmt_children_q", worker_concurrency=1, polling_interval_sec=0.1)

_lock = threading.Lock()


def mark(event: str, **extra: Any) -> None:
    line = {
        "t": time.time(),
        "event": event,
        "wf": DBOS.workflow_id,
        "vmid": os.environ.get("DBOS__VMID"),
        "version": os.environ.get("DBOS__APPVERSION"),
        "pid": os.getpid(),
        **extra,
    }
    with _lock, open(MARKS, "a") as f:
        f.write(json.dumps(line) + "\n")
        f.flush()


def released(name: str) -> bool:
    return (DIR / f"release-{name}").exists()


def wait_release(name: str, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not released(name) and time.time() < end:
        time.sleep(0.01)


def _stopped(exc: Optional[BaseException]) -> None:
    mark("stopped", exc=type(exc).__name__ if exc is not None else None)


# -- cancel mid-step -----------------------------------------------------------------------


@DBOS.step()
def step_one() -> str:
    mark("one")
    return "one"


@DBOS.step()
def long_step(name: str) -> str:
    mark("long-start")
    wait_release(name)
    mark("long-end")
    return "long"


@DBOS.step()
def step_three() -> str:
    mark("three")
    return "three"


@DBOS.workflow()
def stepper(name: str) -> str:
    exc: Optional[BaseException] = None
    try:
        return step_one() + long_step(name) + step_three()
    except BaseException as e:
        exc = e
        raise
    finally:
        _stopped(exc)


# -- cancel while sleeping -------------------------------------------------------------------


@DBOS.workflow()
def sleeper(seconds: float) -> str:
    exc: Optional[BaseException] = None
    try:
        mark("sleeping")
        DBOS.sleep(seconds)
        mark("woke")
        return "woke"
    except BaseException as e:
        exc = e
        raise
    finally:
        _stopped(exc)


# -- a tree of workflows under one timeout ----------------------------------------------------


@DBOS.workflow()
def tree_grandchild() -> str:
    exc: Optional[BaseException] = None
    try:
        mark("grandchild-start")
        DBOS.sleep(60)
        mark("woke")
        return "grandchild"
    except BaseException as e:
        exc = e
        raise
    finally:
        _stopped(exc)


@DBOS.workflow()
def tree_child(i: int) -> str:
    exc: Optional[BaseException] = None
    try:
        mark("child-start", i=i)
        DBOS.start_workflow(tree_grandchild)
        DBOS.recv("never", timeout_seconds=60)
        mark("woke")
        return f"child-{i}"
    except BaseException as e:
        exc = e
        raise
    finally:
        _stopped(exc)


@DBOS.workflow()
def tree_parent(n: int) -> list[str]:
    exc: Optional[BaseException] = None
    try:
        mark("parent-start")
        handles = [CHILDREN_Q.enqueue(tree_child, i) for i in range(n)]
        DBOS.sleep(60)
        mark("woke")
        return [h.get_result() for h in handles]
    except BaseException as e:
        exc = e
        raise
    finally:
        _stopped(exc)


# -- fork onto another application version --------------------------------------------------


@DBOS.step()
def patch_one(x: int) -> int:
    mark("p1")
    return x + 1


@DBOS.step()
def patch_two(x: int) -> str:
    mark("p2")
    return f"{x}@{DBOS.application_version}"


@DBOS.workflow()
def patchable(x: int) -> str:
    return patch_two(patch_one(x))


# -- recovery attempts ------------------------------------------------------------------------


@DBOS.step()
def fragile_one() -> str:
    mark("f1")
    return "f1"


@DBOS.step()
def fragile_two(name: str) -> str:
    mark("f2-start")
    wait_release(name, timeout=3600)
    mark("f2-end")
    return "f2"


@DBOS.workflow(max_recovery_attempts=1)
def fragile(name: str) -> str:
    return fragile_one() + "+" + fragile_two(name)


# -- main -------------------------------------------------------------------------------------


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    config: dict[str, Any] = {
        "name": "mgmt-app",
        "system_database_url": SPEC["db"],
        "polling_interval_sec": SPEC.get("polling_interval_sec", 1.0),
        "log_level": "WARNING",
    }
    if SPEC.get("redis"):
        config["redis_url"] = SPEC["redis"]
    DBOS(config=config)  # type: ignore[arg-type]
    DBOS.launch()
    if SPEC.get("redis"):
        from dbos._api.instance import runtime

        bridge = runtime().wakeups.bridge
        assert bridge is not None and bridge.connected.wait(10), "Redis bridge did not connect"
    mark("ready")
    try:
        while not stop.wait(0.1):
            pass
    finally:
        DBOS.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
