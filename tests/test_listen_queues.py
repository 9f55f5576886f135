"""DBOS.listen_queues (issue 11): a process dequeues only from the queues it listens
to (none: an enqueue-only process); the internal queue of resume and fork is always
served; no hint or poll makes it claim work of another queue.

In-process tests pin the rules on both backends; the fleet test runs real processes
(tests/apps/listen_app.py): an enqueue-only process enqueues 1,000 workflows while
two workers run them, and it runs none of them itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import Backend, Harness, eventually
from fleet_helpers import REDIS_URL, require_redis

from dbos import DBOS, DBOSException, Queue, SetWorkflowID
from dbos._api.instance import runtime
from dbos._wakeups.local import queue_ready

APP = Path(__file__).parent / "apps" / "listen_app.py"

HEARD_Q = Queue("lq_heard", polling_interval_sec=0.05)
DEAF_Q = Queue("lq_deaf", polling_interval_sec=0.05)


@DBOS.workflow()
def lq_echo(x: int) -> int:
    return x


def test_listen_queues_is_before_launch_and_once(harness: Harness) -> None:
    DBOS(config=harness.config())
    DBOS.listen_queues([HEARD_Q])
    with pytest.raises(DBOSException, match="only once"):
        DBOS.listen_queues([DEAF_Q])
    DBOS.launch()
    with pytest.raises(DBOSException, match="before DBOS.launch"):
        DBOS.listen_queues(["lq_heard"])


def test_only_listened_queues_are_claimed(harness: Harness, backend: Backend) -> None:
    DBOS(config=harness.config())
    DBOS.listen_queues(["lq_heard"])  # names work as well as Queue objects
    DBOS.launch()
    assert HEARD_Q.enqueue(lq_echo, 1).get_result() == 1
    with SetWorkflowID("lq-deaf-1"):
        DEAF_Q.enqueue(lq_echo, 2)
    # Hints for the queue (as an enqueue or a completion anywhere sends them) and
    # many polls: it stays ENQUEUED.
    for _ in range(10):
        runtime().wakeups.notify(queue_ready("lq_deaf"))
        time.sleep(0.05)
    assert backend.status("lq-deaf-1") == "ENQUEUED"
    # The internal queue (resume, fork) is served even so: resume runs it here now.
    assert DBOS.resume_workflow("lq-deaf-1").get_result() == 2
    with SetWorkflowID("lq-heard-src"):
        lq_echo(3)
    assert DBOS.fork_workflow("lq-heard-src", 1).get_result() == 3


def test_listen_to_no_queue(harness: Harness, backend: Backend) -> None:
    DBOS(config=harness.config())
    DBOS.listen_queues([])
    DBOS.launch()
    with SetWorkflowID("lq-none-1"):
        HEARD_Q.enqueue(lq_echo, 1)
    time.sleep(0.5)
    assert backend.status("lq-none-1") == "ENQUEUED"
    # A process listening to every queue runs it.
    harness.restart()
    assert DBOS.retrieve_workflow("lq-none-1").get_result() == 1


# -- the fleet: one enqueue-only process, two workers ------------------------------------


def _spawn(backend: Backend, tmp_path: Path, vmid: str, mode: str, redis: bool, count: int = 0) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    env["DBOS__VMID"] = vmid
    spec = {"db": backend.url, "redis": REDIS_URL if redis else None, "dir": str(tmp_path), "mode": mode,
            "count": count}
    log = open(tmp_path / f"{vmid}.log", "ab")
    return subprocess.Popen([sys.executable, str(APP), json.dumps(spec)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "backend, redis", [("postgres", True), ("sqlite", False)], indirect=["backend"], ids=["pg-redis", "sqlite"]
)
def test_enqueue_only_process_runs_none_of_1000(backend: Backend, tmp_path: Path, redis: bool) -> None:
    if redis:
        require_redis()
    count = 1000
    procs: dict[str, Any] = {}
    stopped: set[str] = set()

    def alive() -> None:
        for vmid, p in procs.items():
            if vmid not in stopped and p.poll() is not None and not (tmp_path / "fork.json").exists():
                log = (tmp_path / f"{vmid}.log").read_text(errors="replace")
                pytest.fail(f"{vmid} exited with {p.returncode}:\n{log[-3000:]}")

    try:
        for vmid in ("lq-worker-1", "lq-worker-2"):
            procs[vmid] = _spawn(backend, tmp_path, vmid, "work", redis)
        for ready in ("ready-lq-worker-1", "ready-lq-worker-2"):
            eventually(lambda r=ready: alive() or (tmp_path / r).exists(), timeout=60, what=f"({ready})")
        procs["lq-enqueuer"] = _spawn(backend, tmp_path, "lq-enqueuer", "enqueue", redis, count)
        eventually(lambda: alive() or (tmp_path / "results.json").exists(), timeout=240, interval=0.1,
                   what="(all 1,000 results)")
        results = json.loads((tmp_path / "results.json").read_text())
        assert sorted(r["i"] for r in results) == list(range(count))
        by_body = Counter(r["ran_on"] for r in results)
        table = backend.table("workflow_status")
        rows = backend.rows(f"SELECT executor_id, status FROM {table} WHERE queue_name = 'lq_work'")
        by_row = Counter(r[0] for r in rows)
        assert len(rows) == count and {r[1] for r in rows} == {"SUCCESS"}
        assert by_row["lq-enqueuer"] == 0 and by_body["lq-enqueuer"] == 0, (by_row, by_body)
        assert set(by_row) == {"lq-worker-1", "lq-worker-2"}, by_row  # both workers took a share
        # With the workers gone, the enqueue-only process still serves the internal
        # queue: a fork it starts runs there.
        for vmid in ("lq-worker-1", "lq-worker-2"):
            stopped.add(vmid)
            procs[vmid].send_signal(signal.SIGTERM)
            procs[vmid].wait(30)
        (tmp_path / "go-internal").write_text("go")
        eventually(lambda: alive() or (tmp_path / "fork.json").exists(), timeout=60, what="(fork ran)")
        fork = json.loads((tmp_path / "fork.json").read_text())
        assert fork["executor_id"] == "lq-enqueuer" and fork["result"]["ran_on"] == "lq-enqueuer"
        assert fork["result"]["step_on"] in {"lq-worker-1", "lq-worker-2"}  # step 1 copied, not re-run
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
