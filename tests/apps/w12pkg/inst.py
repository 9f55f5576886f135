"""``dbos-worker w12pkg.inst:dbos``: the attribute is the app's own DBOS instance."""

from __future__ import annotations

import os

from worker_flows import POLL, POOL

from dbos import DBOS

dbos = DBOS(config={"name": "w12-inst", "system_database_url": os.environ["W12_DB"],
                    "polling_interval_sec": POLL, "log_level": "INFO", "sys_db_pool_size": POOL})
