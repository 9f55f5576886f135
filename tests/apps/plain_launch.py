"""A plain ``DBOS.launch()`` process (not ``dbos-worker``) for tests/test_worker.py.

Usage: plain_launch.py (env: W12_DB, DBOS__VMID, DBOS__APPVERSION, W12_DIR, W12_SIDE_DB,
and W12_ADMIN_PORT: if set, the config keys ``run_admin_server`` / ``admin_port``).
Launches with the workflows of worker_flows.py, writes ``plain-ready-<pid>``
into W12_DIR, and runs until ``release-plain-stop`` exists, then destroys DBOS.
"""

from __future__ import annotations

import os
import time
from typing import Any

from worker_flows import DIR, POLL, POOL, released

from dbos import DBOS


def main() -> None:
    config: dict[str, Any] = {"name": "w12-plain", "system_database_url": os.environ["W12_DB"],
                              "polling_interval_sec": POLL, "log_level": "INFO", "sys_db_pool_size": POOL}
    if os.environ.get("W12_REDIS"):
        config["redis_url"] = os.environ["W12_REDIS"]
    if os.environ.get("W12_ADMIN_PORT"):
        config.update(run_admin_server=True, admin_port=int(os.environ["W12_ADMIN_PORT"]))
    DBOS(config=config)  # type: ignore[arg-type]
    DBOS.launch()
    (DIR / f"plain-ready-{os.getpid()}").write_text("ready")
    while not released("plain-stop"):
        time.sleep(0.05)
    DBOS.destroy()


if __name__ == "__main__":
    main()
