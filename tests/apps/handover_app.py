"""A ``dbos-worker`` app for the coordinator tests (tests/test_coordinator*.py, issue 13).

Run as ``dbos-worker tests/apps/handover_app.py`` with DBOS__VMID, DBOS__APPVERSION,
DBOS_SYSTEM_DATABASE_URL (and DBOS_REDIS_URL) set, plus ``HO_DIR``: a directory
where a file ``hold-<vmid>`` makes this executor's holding step wait (the test
removes it, or kills the process, while it waits). The worker builds DBOS from
that environment; this file only declares queues and workflows. With ``HO_POOL``
set it builds its own ``DBOS(config=...)`` from the same variables with that
``sys_db_pool_size`` (the chaos run: many processes on one 100-connection server).

What every execution does is counted in side tables the test creates (not DBOS's
tables, so a second execution is a second row, never a no-op):

- ``ho_steps``: one row per execution of an operation (a step or the transaction),
  inserted when it starts (``ended`` NULL) and completed when its body returns;
- ``ho_tx``: the transaction's effect, one row per commit (no key: a second
  commit would add a second row).

``job`` has five operations; operation ``tx_at`` is the transaction ``pay``, the
others are the step ``work``. Operation ``hold_at`` waits while ``hold-<vmid>``
exists; every operation first sleeps ``seconds``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Optional

import psycopg
import sqlalchemy as sa

from dbos import DBOS, Queue

DIR = Path(os.environ.get("HO_DIR", "."))
VMID = os.environ.get("DBOS__VMID", "")
POLL = float(os.environ.get("HO_POLL", "0.5"))
OPERATIONS = 5
HOLD_LIMIT_SEC = 90.0

if os.environ.get("HO_POOL"):
    _config: dict[str, Any] = {
        "name": "handover_app",
        "system_database_url": os.environ["DBOS_SYSTEM_DATABASE_URL"],
        "sys_db_pool_size": int(os.environ["HO_POOL"]),
        "log_level": "INFO",
    }
    if os.environ.get("DBOS_REDIS_URL"):
        _config["redis_url"] = os.environ["DBOS_REDIS_URL"]
    DBOS(config=_config)  # type: ignore[arg-type]

# Three plain queues (the 60-in-flight test spreads its work over them: 20 each may
# run on one executor, above the default of 16), then the limits.
QUEUES = ("ho_a", "ho_b", "ho_c")
for _name in QUEUES:
    Queue(_name, worker_concurrency=20, polling_interval_sec=POLL)
LIMIT_Q = Queue("ho_limit", concurrency=2, polling_interval_sec=POLL)
PART_Q = Queue("ho_part", concurrency=1, partition_queue=True, polling_interval_sec=POLL)
WORKER_Q = Queue("ho_worker", worker_concurrency=3, polling_interval_sec=POLL)
GLOBAL_Q = Queue("ho_global", concurrency=6, polling_interval_sec=POLL)


class _Recorder:
    """This process's own connection to the side tables (autocommit: a row is there
    as soon as the statement returns, whatever happens to the process after)."""

    def __init__(self) -> None:
        url = os.environ.get("HO_SIDE_DB_URL") or os.environ["DBOS_SYSTEM_DATABASE_URL"]  # direct, past any PgBouncer
        self._url = "postgresql://" + url.split("://", 1)[1]
        self._lock = threading.Lock()
        self._conn: Optional[psycopg.Connection[Any]] = None

    def execute(self, sql: str, params: tuple[Any, ...]) -> Any:
        with self._lock:
            for attempt in range(50):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(self._url, autocommit=True)
                    cursor = self._conn.execute(sql, params)
                    return cursor.fetchone() if cursor.description is not None else None
                except psycopg.OperationalError:
                    self._conn = None
                    if attempt == 49:
                        raise
                    time.sleep(0.1)


_recorder = _Recorder()


def _started(step: int) -> int:
    row = _recorder.execute(
        "INSERT INTO ho_steps (workflow_id, step, executor_id, pid, started) VALUES (%s, %s, %s, %s, %s) RETURNING id",
        (DBOS.workflow_id, step, VMID, os.getpid(), time.time()),
    )
    return int(row[0])


def _ended(row_id: int) -> None:
    _recorder.execute("UPDATE ho_steps SET ended = %s WHERE id = %s", (time.time(), row_id))


def _hold(step: int, hold_at: int) -> None:
    if step != hold_at:
        return
    deadline = time.time() + HOLD_LIMIT_SEC
    while (DIR / f"hold-{VMID}").exists() and time.time() < deadline:
        time.sleep(0.01)


@DBOS.step()
def work(step: int, hold_at: int, seconds: float) -> str:
    row = _started(step)
    if seconds > 0:
        time.sleep(seconds)
    _hold(step, hold_at)
    _ended(row)
    return f"s{step}"


@DBOS.transaction()
def pay(tag: str, step: int, hold_at: int, seconds: float) -> str:
    row = _started(step)
    if seconds > 0:
        time.sleep(seconds)
    _hold(step, hold_at)
    DBOS.sql_session.execute(
        sa.text("INSERT INTO ho_tx (workflow_id, tag, executor_id, pid, at) VALUES (:w, :t, :e, :p, :a)"),
        {"w": DBOS.workflow_id, "t": tag, "e": VMID, "p": os.getpid(), "a": time.time()},
    )
    _ended(row)
    return f"paid-{tag}"


@DBOS.workflow()
def job(tag: str, hold_at: int = 0, tx_at: int = 2, seconds: float = 0.0) -> str:
    """Five operations; returns ``tag|s1|paid-tag|s3|s4|s5`` (with ``tx_at=2``)."""
    out = []
    for step in range(1, OPERATIONS + 1):
        if step == tx_at:
            out.append(pay(tag, step, hold_at, seconds))
        else:
            out.append(work(step, hold_at, seconds))
    return "|".join([tag, *out])



@DBOS.step()
def risky(step: int, tag: str) -> str:
    """Fails on an app version whose name has "bug" in it (the console's fork test, issue 15)."""
    version = os.environ.get("DBOS__APPVERSION", "")
    if "bug" in version:
        raise ValueError(f"{version} cannot handle {tag!r} at step {step}")
    return f"ok-{tag}"


@DBOS.workflow()
def flaky(tag: str, seconds: float = 0.05) -> str:
    """``work`` (1), ``risky`` (2: the failing one on a "bug" version), ``work`` (3)."""
    first = work(1, 0, seconds)
    second = risky(2, tag)
    return "|".join([tag, first, second, work(3, 0, seconds)])
