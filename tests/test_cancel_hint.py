"""Issue 17 item 7: `dbos workflow cancel` and DBOSClient reach a running workflow as fast
as an executor does. With Redis (``--redis-url`` or ``$DBOS_REDIS_URL``) the cancel hint
wakes the executor at once, far inside its polling interval; without Redis the executor
notices within that interval."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from typing import Optional

import pytest
from conftest import Backend, Harness, eventually
from mgmt_helpers import REDIS_URL, dbos_command, require_redis

from dbos import DBOS, SetWorkflowID

STEPS: list[tuple[str, float]] = []
_lock = threading.Lock()


@DBOS.step()
def ch_tick(wid: str) -> None:
    with _lock:
        STEPS.append((wid, time.monotonic()))
    time.sleep(0.02)


@DBOS.workflow()
def ch_busy(wid: str) -> None:
    for _ in range(2000):
        ch_tick(wid)


def _cancel_with_cli(backend: Backend, workflow_id: str, redis_flag: Optional[str], redis_env: Optional[str]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    if redis_env is not None:
        env["DBOS_REDIS_URL"] = redis_env
    argv = [dbos_command(), "workflow", "cancel", workflow_id, "--db-url", backend.url]
    if redis_flag is not None:
        argv += ["--redis-url", redis_flag]
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return time.monotonic()


def _steps_of(wid: str) -> list[float]:
    with _lock:
        return [t for w, t in STEPS if w == wid]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_cli_cancel_over_redis_stops_the_workflow_at_once(harness: Harness, backend: Backend, how: str) -> None:
    require_redis()
    harness.launch(redis_url=REDIS_URL, polling_interval_sec=5.0)  # polling alone would take up to 5 s
    wid = f"cli-cancel-{how}"
    with SetWorkflowID(wid):
        handle = DBOS.start_workflow(ch_busy, wid)
    eventually(lambda: len(_steps_of(wid)) >= 3, what="(running)")
    done = _cancel_with_cli(backend, wid, REDIS_URL if how == "flag" else None, REDIS_URL if how == "env" else None)
    time.sleep(1.0)  # well inside the 5 s polling interval
    after = [t for t in _steps_of(wid) if t > done + 0.2]
    assert after == [], f"{len(after)} steps started more than 0.2 s after the cancel returned"
    assert eventually(lambda: handle.get_status().status == "CANCELLED")


def test_cli_cancel_without_redis_lands_within_the_polling_interval(harness: Harness, backend: Backend) -> None:
    harness.launch(polling_interval_sec=0.5)
    wid = "cli-cancel-polling"
    with SetWorkflowID(wid):
        DBOS.start_workflow(ch_busy, wid)
    eventually(lambda: len(_steps_of(wid)) >= 3, what="(running)")
    done = _cancel_with_cli(backend, wid, None, None)
    time.sleep(1.5)
    after = [t for t in _steps_of(wid) if t > done + 0.5 + 0.3]  # one interval, plus jitter and a step
    assert after == [], f"{len(after)} steps started more than one polling interval after the cancel"
