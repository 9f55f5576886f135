"""A ``dbos-worker`` app that builds its own ``DBOS(config=...)`` at import (tests/test_worker*.py).

Its config comes from variables the worker itself does not read (``W12_DB``,
``W12_REDIS``), so a worker that ignored this instance would not find the
test's database. The workflows are tests/apps/worker_flows.py's. With
``W12_IMPORT_DELAY`` its import takes that many seconds (a slow app), after writing
``importing-<pid>`` into ``W12_DIR``; with ``W12_ATEXIT`` it registers an ``atexit``
handler that writes ``atexit-<pid>`` there.
"""

from __future__ import annotations

import atexit
import os
import time
from typing import Any

from worker_flows import DIR, POLL, POOL  # (registers the queues and workflows)

from dbos import DBOS

config: dict[str, Any] = {
    "name": "w12-own",
    "system_database_url": os.environ["W12_DB"],
    "polling_interval_sec": POLL,
    "log_level": "INFO",
    "sys_db_pool_size": POOL,  # a few connections each: the test server is shared
}
if os.environ.get("W12_REDIS"):
    config["redis_url"] = os.environ["W12_REDIS"]
DBOS(config=config)  # type: ignore[arg-type]
if os.environ.get("W12_ATEXIT"):
    atexit.register(lambda: (DIR / f"atexit-{os.getpid()}").write_text("ran"))
if os.environ.get("W12_IMPORT_DELAY"):
    (DIR / f"importing-{os.getpid()}").write_text("importing")
    time.sleep(float(os.environ["W12_IMPORT_DELAY"]))
