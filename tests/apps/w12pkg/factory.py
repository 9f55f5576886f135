"""``dbos-worker w12pkg.factory:create``: the attribute is a factory the worker calls."""

from __future__ import annotations

import os

from worker_flows import POLL, POOL

from dbos import DBOS


def create() -> DBOS:
    return DBOS(config={"name": "w12-factory", "system_database_url": os.environ["W12_DB"],
                        "polling_interval_sec": POLL, "log_level": "INFO", "sys_db_pool_size": POOL})
