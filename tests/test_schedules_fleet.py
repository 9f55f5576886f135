"""Scheduled workflows on a fleet (issue 16): real ``dbos-worker`` processes of
tests/apps/schedule_app.py (``* * * * * *``) and a ``dbos-coordinator``, on PostgreSQL.

Three workers fire every tick for 10 s, one is SIGKILLed half-way: every second of
the window ran exactly once (counted by scheduled time in a side table written by a
transaction, so a second run would be a second row). Then the schedule is paused
through DBOSClient: nothing runs; a backfill of a 10 s window that overlaps ticks
already run and ticks missed while paused runs each missing tick once and none twice.
"""

from __future__ import annotations

import datetime
import os
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from conftest import Backend, eventually
from handover_helpers import BIN, Proc

from dbos import DBOSClient

APP = Path(__file__).parent / "apps" / "schedule_app.py"
UTC = datetime.timezone.utc


class Fleet:
    def __init__(self, backend: Backend, tmp: Path) -> None:
        self.backend, self.tmp = backend, tmp
        self.procs: list[Proc] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
        env.update(DBOS_SYSTEM_DATABASE_URL=self.backend.url, PYTHONUNBUFFERED="1", DBOS_LOG_LEVEL="INFO", **extra)
        return env

    def worker(self, vmid: str) -> Proc:
        p = Proc(vmid, [str(BIN / "dbos-worker"), str(APP), "--drain-timeout", "2"],
                 self.env(DBOS__VMID=vmid, DBOS__APPVERSION="sched-v1"), self.tmp / f"{vmid}.log")
        self.procs.append(p)
        return p

    def coordinator(self) -> Proc:
        p = Proc("coordinator", [str(BIN / "dbos-coordinator"), "--db-url", self.backend.url],
                 self.env(), self.tmp / "coordinator.log")
        self.procs.append(p)
        return p

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.log()[-4000:]}" for p in self.procs)

    def close(self) -> None:
        for p in self.procs:
            p.terminate()


@pytest.fixture
def fleet(backend: Backend, tmp_path: Path) -> Iterator[Fleet]:
    if backend.is_sqlite:
        pytest.skip("the fleet runs on PostgreSQL (the in-process schedule tests cover SQLite)")
    backend.execute("CREATE TABLE sched_ticks (scheduled_ms BIGINT NOT NULL, executor_id TEXT NOT NULL, "
                    "pid INTEGER NOT NULL)")
    f = Fleet(backend, tmp_path)
    try:
        yield f
    finally:
        f.close()


def ticks(backend: Backend) -> Counter[int]:
    return Counter(int(r[0]) for r in backend.rows("SELECT scheduled_ms FROM sched_ticks"))


def test_every_tick_once_across_a_sigkill_then_pause_and_backfill(fleet: Fleet, backend: Backend) -> None:
    fleet.coordinator()
    workers = [fleet.worker(f"sched-w{i}") for i in range(3)]
    live = lambda: backend.scalar(  # noqa: E731
        f"SELECT COUNT(*) FROM {backend.table('executors')} WHERE state = 'RUNNING'")
    eventually(lambda: live() == 3, timeout=60, what="(three workers registered)")
    start = (int(time.time()) + 1) * 1000  # the first whole second with all three firing
    time.sleep(4)
    workers[0].kill()  # SIGKILL: whatever it had enqueued or claimed is handed over
    end = start + 10_000
    time.sleep(max(0.0, end / 1000 - time.time()) + 0.2)
    try:
        window = range(start, end + 1, 1000)
        eventually(lambda: all(t in ticks(backend) for t in window), timeout=30, interval=0.2,
                   what="(every tick of the window ran)")
        counts = ticks(backend)
        assert [t for t in window if counts[t] != 1] == [], counts
        assert max(counts.values()) == 1, counts  # no tick ran twice, in the window or out of it
        ran_on = {r[0] for r in backend.rows("SELECT DISTINCT executor_id FROM sched_ticks")}
        assert len(ran_on) >= 2, ran_on  # the fleet shared the ticks

        client = DBOSClient(backend.url)
        try:
            [schedule] = client.list_schedules()
            assert schedule["schedule_name"] == "every_second" and schedule["kind"] == "decorator"
            client.pause_schedule("every_second")
            time.sleep(1.5)  # a tick enqueued just before the pause may still finish
            paused_from = time.time()
            before = sum(ticks(backend).values())
            time.sleep(3)
            assert sum(ticks(backend).values()) == before, "a paused schedule ran"
            # Backfill [paused_from - 6 s, paused_from + 4 s): about six ticks that already ran and
            # four missed while paused, each of which must end up run exactly once.
            bf_end = datetime.datetime.fromtimestamp(int(paused_from) + 4, UTC)
            bf_start = bf_end - datetime.timedelta(seconds=10)
            handles = client.backfill_schedule("every_second", bf_start, bf_end)
            assert len(handles) == 10
            for h in handles:
                h.get_result()
            counts = ticks(backend)
            bf = [int((bf_start + datetime.timedelta(seconds=i)).timestamp() * 1000) for i in range(10)]
            assert [counts[t] for t in bf] == [1] * 10, {t: counts[t] for t in bf}
            assert max(counts.values()) == 1
        finally:
            client.destroy()
    except BaseException:
        print(fleet.logs())
        raise
