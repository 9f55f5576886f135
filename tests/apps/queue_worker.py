"""An executor process for the fleet queue tests (tests/test_queues_fleet.py).

Usage: queue_worker.py '<json spec>' with keys

- ``db``: the system database URL (PostgreSQL or a shared SQLite file);
- ``redis``: a Redis URL or null;
- ``dir``: a directory where this process writes ``ready-<vmid>-<pid>`` once launched
  and where ``release-<tag>`` files let ``hold`` workflows finish;
- ``poll`` (optional): the polling interval of every queue below, seconds.

The executor ID comes from DBOS__VMID, the application version from DBOS__APPVERSION.
The queues and workflows are declared here; the tests enqueue them by name with a
DBOSClient. Every execution of a workflow body (not a durable record: a second
execution would add a second row) inserts one row into the side table ``q4_runs``:
workflow ID, this executor's ID and pid, the queue, the partition key, the tag, and
the body's start and end (epoch seconds). The test creates that table.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from dbos import DBOS, Queue

SPEC: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
DB_URL: str = SPEC.get("db", "")
DIR = Path(SPEC.get("dir", "."))
POLL = float(SPEC.get("poll", 0.5))
VMID = os.environ.get("DBOS__VMID", "local")

# Every limit the fleet tests exercise, one queue each.
GLOBAL_Q = Queue("fq_global", concurrency=2, polling_interval_sec=POLL)
WORKER_Q = Queue("fq_worker", worker_concurrency=2, polling_interval_sec=POLL)
PART_Q = Queue("fq_part", concurrency=1, partition_queue=True, polling_interval_sec=POLL)
RATE_Q = Queue("fq_rate", limiter={"limit": 5, "period": 1.0}, polling_interval_sec=POLL)
PRIO_Q = Queue("fq_prio", concurrency=1, priority_enabled=True, polling_interval_sec=POLL)
PLAIN_Q = Queue("fq_plain", polling_interval_sec=POLL)
HOLD_Q = Queue("fq_hold", concurrency=2, polling_interval_sec=POLL)


class _Recorder:
    """One connection of this process to the side table (not DBOS's: no checkpoint)."""

    def __init__(self, url: str) -> None:
        self._lock = threading.Lock()
        self._sqlite = url.startswith("sqlite")
        if self._sqlite:
            path = url.split(":///", 1)[1]
            self._conn: Any = sqlite3.connect(path, timeout=60, check_same_thread=False, isolation_level=None)
        else:
            import psycopg

            libpq = "postgresql://" + url.split("://", 1)[1]
            self._conn = psycopg.connect(libpq, autocommit=True)

    def insert(self, row: tuple[Any, ...]) -> None:
        mark = "?" if self._sqlite else "%s"
        sql = (
            "INSERT INTO q4_runs (workflow_id, executor_id, pid, queue_name, part_key, tag, started, ended) "
            f"VALUES ({', '.join([mark] * 8)})"
        )
        with self._lock:
            self._conn.execute(sql, row)


_recorder: Optional[_Recorder] = None


def _record(queue: str, key: Optional[str], tag: str, started: float, ended: float) -> None:
    assert _recorder is not None
    _recorder.insert((DBOS.workflow_id, VMID, os.getpid(), queue, key, tag, started, ended))


@DBOS.workflow()
def work(queue: str, seconds: float, tag: str, key: Optional[str] = None) -> str:
    """Sleep ``seconds`` (not durably) and record the interval; returns the executor ID."""
    started = time.time()
    if seconds > 0:
        time.sleep(seconds)
    _record(queue, key, tag, started, time.time())
    return VMID


@DBOS.workflow()
def hold(queue: str, tag: str) -> str:
    """Run until ``release-<tag>`` exists in DIR (or 60 s), then record the interval."""
    started = time.time()
    end = started + 60
    while not (DIR / f"release-{tag}").exists() and time.time() < end:
        time.sleep(0.01)
    _record(queue, None, tag, started, time.time())
    return VMID


def main() -> None:
    global _recorder
    _recorder = _Recorder(DB_URL)
    config: dict[str, Any] = {
        "name": "queue-worker",
        "system_database_url": DB_URL,
        "log_level": "WARNING",
    }
    if SPEC.get("redis"):
        config["redis_url"] = SPEC["redis"]
    DBOS(config=config)  # type: ignore[arg-type]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    DBOS.launch()
    if SPEC.get("redis"):
        from dbos._api.instance import runtime

        bridge = runtime().wakeups.bridge
        if bridge is not None:
            bridge.connected.wait(10)  # hints from other processes reach us from now on
    (DIR / f"ready-{VMID}-{os.getpid()}").write_text("ready")
    while not stop.is_set():
        stop.wait(0.5)
    DBOS.destroy()


if __name__ == "__main__":
    main()
