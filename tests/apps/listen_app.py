"""A process for tests/test_listen_queues.py: an enqueue-only process or a worker.

Usage: listen_app.py '<json spec>' with keys ``db`` (system database URL), ``redis``
(URL or null), ``dir`` (where this process writes its files), ``mode``:

- ``work``: listen to every queue; write ``ready-<vmid>``; run until SIGTERM.
- ``enqueue``: ``DBOS.listen_queues([])`` (dequeue from no queue of the app), write
  ``ready-<vmid>``, enqueue ``count`` workflows on ``lq_work``, wait for every
  result, write ``results.json``; then wait for ``go-internal`` and fork the first
  one from its step 2 (the fork waits on the internal queue, which this process
  still serves), and write ``fork.json`` with the executor that ran the fork.

The executor ID comes from DBOS__VMID.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dbos import DBOS, Queue

SPEC: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
DIR = Path(SPEC.get("dir", "."))
VMID = os.environ.get("DBOS__VMID", "local")

WORK_Q = Queue("lq_work", polling_interval_sec=0.2)


@DBOS.step()
def where() -> str:
    return VMID


@DBOS.workflow()
def lq_task(i: int) -> dict[str, Any]:
    return {"i": i, "ran_on": DBOS.executor_id, "step_on": where()}


def main() -> None:
    config: dict[str, Any] = {
        "name": "listen-app",
        "system_database_url": SPEC["db"],
        "log_level": "WARNING",
        "application_version": "listen-v1",
        "polling_interval_sec": 0.2,
    }
    if SPEC.get("redis"):
        config["redis_url"] = SPEC["redis"]
    DBOS(config=config)  # type: ignore[arg-type]
    if SPEC["mode"] == "enqueue":
        DBOS.listen_queues([])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    DBOS.launch()
    (DIR / f"ready-{VMID}").write_text("ready")
    if SPEC["mode"] == "work":
        while not stop.is_set():
            stop.wait(0.2)
    else:
        handles = [WORK_Q.enqueue(lq_task, i) for i in range(int(SPEC["count"]))]
        results = [h.get_result() for h in handles]
        _write(DIR / "results.json", results)
        while not (DIR / "go-internal").exists() and not stop.is_set():
            time.sleep(0.05)
        forked = DBOS.fork_workflow(handles[0].workflow_id, 2)
        result = forked.get_result()
        status = DBOS.get_workflow_status(forked.workflow_id)
        _write(DIR / "fork.json", {
            "result": result, "executor_id": status.executor_id if status else None,
            "queue_name": status.queue_name if status else None,
        })
    DBOS.destroy()


def _write(path: Path, value: object) -> None:
    """Whole or not at all: the test polls for the file and reads it at once."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
