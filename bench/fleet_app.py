"""The app ``bench/fleet.py`` runs under ``dbos-worker`` (``dbos-worker bench/fleet_app.py``).

It builds no DBOS instance of its own: the worker configures it from the
environment (``DBOS_SYSTEM_DATABASE_URL``, ``DBOS_REDIS_URL``, ``DBOS__VMID``,
``DBOS__APPVERSION``). What it adds, each switched on by an environment variable
the bench sets:

- ``FLEET_BENCH_SIDE`` (a libpq URL): every call of the step ``tick`` inserts one
  row ``(workflow_id, seq, executor_id, at)`` into ``bench_fleet_steps`` there,
  over a connection of its own, *before* it sleeps. The bench reads the first
  row another executor wrote after a signal: the moment the work ran again.
- ``chaos_flow`` (section (g)) runs on ``bench_chaos`` (5 at a time per worker):
  four 0.25 s steps and the transaction ``pay``, which inserts one row into
  ``bench_fleet_tx`` of the application database: one row per committed execution.
- ``FLEET_BENCH_DIRECT`` (``prefix:count:ticks``): once launched, start ``count``
  workflows directly (not on a queue), IDs ``prefix-0`` ..., so this executor
  owns direct work that a drain or a hand-over must give to another one.

(``FLEET_BENCH_COUNTS``, the round-trip counter, is installed in every process
the bench starts by ``bench/fleet_site/sitecustomize.py``: see ``fleet_counter``.)
"""

from __future__ import annotations

import os
import threading
import time
from typing import Optional

from dbos import DBOS, Queue

TICK_SEC = 0.1  # how long one tick step sleeps
CHAOS_STEP_SEC = 0.25  # how long one step of a chaos workflow sleeps
QUEUE = Queue("bench_fleet")
CHAOS_QUEUE = Queue("bench_chaos", worker_concurrency=5)


class _Side:
    """This process's own connection to the side table (not DBOS's: no checkpoint)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.lock = threading.Lock()
        self.executor = os.environ.get("DBOS__VMID", "local")

    def record(self, workflow_id: Optional[str], seq: int) -> None:
        with self.lock:
            self.conn.execute(
                "INSERT INTO bench_fleet_steps (workflow_id, seq, executor_id, at) VALUES (%s, %s, %s, %s)",
                (workflow_id, seq, self.executor, time.time()),
            )


_side: Optional[_Side] = None
_side_lock = threading.Lock()


def _record(seq: int) -> None:
    global _side
    url = os.environ.get("FLEET_BENCH_SIDE")
    if not url:
        return
    with _side_lock:
        if _side is None:
            _side = _Side(url)
    _side.record(DBOS.workflow_id, seq)


@DBOS.step()
def tick(seq: int) -> int:
    _record(seq)
    time.sleep(TICK_SEC)
    return seq


@DBOS.workflow()
def ticks(n: int) -> int:
    """``n`` steps of ``TICK_SEC`` each; a resumed run re-runs only the in-flight step."""
    for i in range(n):
        tick(i)
    return n


@DBOS.step()
def chaos_step(seq: int) -> int:
    _record(seq)
    time.sleep(CHAOS_STEP_SEC)
    return seq


@DBOS.transaction()
def pay() -> None:
    """One row per committed execution: a second row for a workflow is a duplicated effect."""
    import sqlalchemy as sa

    DBOS.sql_session.execute(
        sa.text("INSERT INTO bench_fleet_tx (workflow_id, executor_id) VALUES (:w, :e)"),
        {"w": DBOS.workflow_id, "e": os.environ.get("DBOS__VMID", "local")},
    )


@DBOS.workflow()
def chaos_flow() -> int:
    """(g): five steps, the middle one a transaction (needs DBOS_APPLICATION_DATABASE_URL)."""
    chaos_step(0)
    chaos_step(1)
    pay()
    chaos_step(3)
    chaos_step(4)
    return 5


def _start_direct(spec: str) -> None:
    prefix, count, n = spec.rsplit(":", 2)

    def start() -> None:
        while DBOS._instance is None or not DBOS._instance._launched:
            time.sleep(0.01)
        from dbos import SetWorkflowID

        for i in range(int(count)):
            with SetWorkflowID(f"{prefix}-{i}"):
                DBOS.start_workflow(ticks, int(n))

    threading.Thread(target=start, name="bench-direct", daemon=True).start()


if os.environ.get("FLEET_BENCH_DIRECT"):
    _start_direct(os.environ["FLEET_BENCH_DIRECT"])
