"""Queues and workflows the ``dbos-worker`` tests (tests/test_worker*.py) run.

Imported by every worker test app (tests/apps/worker_app.py, worker_bare.py,
w12pkg/...); it declares no DBOS instance of its own. Configured by environment
variables the test sets (read at import, before any worker builds its config):

- ``W12_SIDE_DB``: a libpq or SQLite URL where executions are counted;
- ``W12_DIR``: a directory where the test creates ``release-<tag>`` files (gates);
- ``W12_POLL`` (default 0.2): the polling interval of the queues, seconds;
- ``W12_SLOW_POLL`` (default 30): the polling interval of ``w12_slow`` (only a
  wakeup claims from it quickly).

Every execution of a step body and of a workflow's first line inserts one row into
``w12_runs`` (workflow ID, label, sequence number, executor ID, pid, epoch
seconds) over a connection of its own, so a re-run adds a second row. The
transaction ``pay`` inserts its row into ``w12_tx`` inside the DBOS transaction:
one row per committed execution. The test creates both tables.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Optional

import sqlalchemy as sa

from dbos import DBOS, Queue

SIDE_DB = os.environ.get("W12_SIDE_DB", "")
DIR = Path(os.environ.get("W12_DIR", "."))
POLL = float(os.environ.get("W12_POLL", "0.2"))
SLOW_POLL = float(os.environ.get("W12_SLOW_POLL", "30"))
TICK = 0.1  # seconds a tick step lasts
POOL = 6  # sys_db_pool_size of the apps that build their own DBOS (the test server is shared)

PLAIN_Q = Queue("w12_plain", polling_interval_sec=POLL)
PAIR_Q = Queue("w12_pair", concurrency=2, polling_interval_sec=POLL)  # global limit: slot hand-over on finish
SLOW_Q = Queue("w12_slow", polling_interval_sec=SLOW_POLL)
OTHER_Q = Queue("w12_other", worker_concurrency=3, polling_interval_sec=POLL)


def executor() -> str:
    return os.environ.get("DBOS__VMID", "local")


class _Recorder:
    """One connection of this process to the side table (not DBOS's: no checkpoint)."""

    def __init__(self, url: str) -> None:
        self._lock = threading.Lock()
        self._sqlite = url.startswith("sqlite")
        self._conn: Any
        if self._sqlite:
            self._conn = sqlite3.connect(url.split(":///", 1)[1], timeout=60, check_same_thread=False,
                                         isolation_level=None)
        else:
            import psycopg

            self._conn = psycopg.connect("postgresql://" + url.split("://", 1)[1], autocommit=True)

    def insert(self, workflow_id: Optional[str], label: str, seq: int) -> None:
        mark = "?" if self._sqlite else "%s"
        sql = f"INSERT INTO w12_runs (workflow_id, label, seq, executor_id, pid, at) VALUES ({', '.join([mark] * 6)})"
        with self._lock:
            self._conn.execute(sql, (workflow_id, label, seq, executor(), os.getpid(), time.time()))


_recorder: Optional[_Recorder] = None
_recorder_lock = threading.Lock()


def record(label: str, seq: int = 0) -> None:
    global _recorder
    with _recorder_lock:
        if _recorder is None:
            _recorder = _Recorder(SIDE_DB)
    _recorder.insert(DBOS.workflow_id, label, seq)


def released(tag: str) -> bool:
    return (DIR / f"release-{tag}").exists()


@DBOS.step()
def note(label: str, seq: int = 0) -> int:
    record(label, seq)
    return seq


@DBOS.step()
def tick(tag: str, i: int) -> bool:
    """One short step of a gated workflow: True once ``release-<tag>`` exists."""
    record("tick", i)
    time.sleep(TICK)
    return released(tag)


@DBOS.step()
def nap(tag: str, seconds: float) -> bool:
    """One long step (a call to a slow service): up to ``seconds``, or until ``release-<tag>``."""
    record("nap")
    end = time.time() + seconds
    while not released(tag) and time.time() < end:
        time.sleep(0.02)
    return released(tag)


@DBOS.transaction()
def pay(tag: str) -> str:
    DBOS.sql_session.execute(
        sa.text("INSERT INTO w12_tx (workflow_id, tag, executor_id) VALUES (:w, :t, :e)"),
        {"w": DBOS.workflow_id, "t": tag, "e": executor()},
    )
    return f"paid-{tag}"


@DBOS.workflow()
def gated(tag: str) -> str:
    """begin, pay, ticks until ``release-<tag>``, end; returns the executor that finished it."""
    record("body")
    note("begin")
    pay(tag)
    i = 0
    while not tick(tag, i):
        i += 1
    note("end", i)
    return executor()


@DBOS.workflow()
def counted(tag: str, n: int) -> str:
    """begin, pay, ``n`` ticks (``n`` x 0.1 s), end; returns the executor that finished it."""
    record("body")
    note("begin")
    pay(tag)
    for i in range(n):
        tick(tag, i)
    note("end", max(0, n - 1))
    return executor()


@DBOS.workflow()
def napping(tag: str, seconds: float) -> str:
    """begin, pay, one step of up to ``seconds`` (until ``release-<tag>``), end."""
    record("body")
    note("begin")
    pay(tag)
    nap(tag, seconds)
    note("end")
    return executor()


@DBOS.workflow()
def quick(tag: str) -> str:
    record("body")
    note("begin")
    pay(tag)
    return executor()


@DBOS.workflow()
def spawn(tag: str) -> str:
    """Start ``gated(tag)`` as a direct (not queued) child here; return its workflow ID."""
    record("body")
    return DBOS.start_workflow(gated, tag).workflow_id


@DBOS.workflow()
def fail(tag: str) -> str:
    record("body")
    note("begin")
    raise ValueError(f"failing on purpose: {tag}")
