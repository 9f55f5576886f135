"""Helpers for the queue tests (issue 4): a fleet of real executor processes
(tests/apps/queue_worker.py), the side table they record into, and interval maths.

Each executor is ``sys.executable tests/apps/queue_worker.py <spec>`` with its own
DBOS__VMID. Every execution of a workflow body inserts one row into ``q4_runs``
(workflow ID, executor, pid, queue, partition key, tag, start and end in epoch
seconds); the tests read that table and the workflow_status rows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import pytest
from conftest import Backend, eventually

from dbos import DBOSClient

REDIS_URL = os.environ.get("DBOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
APPS = Path(__file__).parent / "apps"
QUEUE_WORKER = APPS / "queue_worker.py"
WORKER_VERSION = "q4-v1"


def require_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as e:
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({e}); start one or point DBOS_TEST_REDIS_URL at one.",
            pytrace=False,
        )


@dataclass(frozen=True)
class Run:
    """One execution of a workflow body, as recorded by the executor that ran it."""

    workflow_id: str
    executor_id: str
    pid: int
    queue_name: str
    part_key: Optional[str]
    tag: str
    started: float
    ended: float


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at a tie)."""
    events: list[tuple[float, int]] = []
    for start, end in intervals:
        events.append((start, 1))
        events.append((end, -1))
    events.sort(key=lambda e: (e[0], e[1]))
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def max_in_window(times: Sequence[float], window: float) -> int:
    """The largest number of ``times`` inside any half-open window of ``window`` length."""
    ordered = sorted(times)
    best = 0
    lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def create_side_table(backend: Backend) -> None:
    real = "REAL" if backend.is_sqlite else "DOUBLE PRECISION"
    backend.execute(
        "CREATE TABLE IF NOT EXISTS q4_runs (workflow_id TEXT NOT NULL, executor_id TEXT NOT NULL, "
        f"pid INTEGER NOT NULL, queue_name TEXT NOT NULL, part_key TEXT, tag TEXT NOT NULL, "
        f"started {real} NOT NULL, ended {real} NOT NULL)"
    )


class ClientSide:
    """What a test fleet offers the test: a DBOSClient on its database, enqueue by name,
    and the ``release-<tag>`` files its apps' held workflows wait for. Needs ``backend``,
    ``redis_url``, ``dir`` and ``_client`` on the instance."""

    backend: Backend
    redis_url: Optional[str]
    dir: Path
    _client: Optional[DBOSClient]

    def release(self, tag: str) -> None:
        (self.dir / f"release-{tag}").write_text("go")

    @property
    def client(self) -> DBOSClient:
        if self._client is None:
            self._client = DBOSClient(self.backend.url, redis_url=self.redis_url)
        return self._client

    def enqueue(self, queue: str, workflow: str, *args: Any, **options: Any) -> str:
        opts: dict[str, Any] = {"queue_name": queue, "workflow_name": workflow, **options}
        return self.client.enqueue(opts, *args).workflow_id  # type: ignore[arg-type]


class Fleet(ClientSide):
    """Executor processes of tests/apps/queue_worker.py on one test database."""

    def __init__(self, backend: Backend, tmp_path: Path, *, redis: bool, poll: float = 0.5) -> None:
        if redis:
            require_redis()
        self.backend = backend
        self.dir = tmp_path
        self.redis_url = REDIS_URL if redis else None
        self.poll = poll
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, Any] = {}
        self._client: Optional[DBOSClient] = None
        create_side_table(backend)

    # -- processes ---------------------------------------------------------------
    def start(self, *vmids: str, wait: bool = True) -> "Fleet":
        for vmid in vmids:
            assert vmid not in self.procs, f"executor {vmid} already runs"
            env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
            env["DBOS__VMID"] = vmid
            env["DBOS__APPVERSION"] = WORKER_VERSION
            spec = {"db": self.backend.url, "redis": self.redis_url, "dir": str(self.dir), "poll": self.poll}
            log = open(self.dir / f"{vmid}.log", "ab")
            self._logs[vmid] = log
            self.procs[vmid] = subprocess.Popen(
                [sys.executable, str(QUEUE_WORKER), json.dumps(spec)], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        if wait:
            for vmid in vmids:
                self.wait_ready(vmid)
        return self

    def log(self, vmid: str) -> str:
        path = self.dir / f"{vmid}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def check_alive(self) -> None:
        for vmid, proc in self.procs.items():
            if proc.poll() is not None:
                pytest.fail(f"executor {vmid} exited with {proc.returncode}:\n{self.log(vmid)}")

    def wait_ready(self, vmid: str, timeout: float = 30) -> None:
        proc = self.procs[vmid]
        ready = self.dir / f"ready-{vmid}-{proc.pid}"

        def is_ready() -> bool:
            self.check_alive()
            return ready.exists()

        eventually(is_ready, timeout=timeout, interval=0.02, what=f"(executor {vmid} ready)")

    def kill(self, vmid: str) -> None:
        """SIGKILL: no clean-up at all, claims stay PENDING under this executor ID."""
        proc = self.procs.pop(vmid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()
        for log in self._logs.values():
            log.close()
        self._logs.clear()
        if self._client is not None:
            self._client.destroy()
            self._client = None

    # -- enqueue and inspect ----------------------------------------------------------

    def statuses(self, ids: Sequence[str]) -> dict[str, tuple[str, Optional[str]]]:
        """workflow_id -> (status, executor_id)."""
        table = self.backend.table("workflow_status")
        rows = self.backend.rows(f"SELECT workflow_uuid, status, executor_id FROM {table}")
        wanted = set(ids)
        return {r[0]: (r[1], r[2]) for r in rows if r[0] in wanted}

    def wait_done(self, ids: Sequence[str], timeout: float = 25) -> dict[str, tuple[str, Optional[str]]]:
        def done() -> Optional[dict[str, tuple[str, Optional[str]]]]:
            self.check_alive()
            st = self.statuses(ids)
            finished = [w for w in ids if st.get(w, ("", None))[0] == "SUCCESS"]
            return st if len(finished) == len(ids) else None

        try:
            result = eventually(done, timeout=timeout, interval=0.05)
        except AssertionError:
            st = self.statuses(ids)
            counts: dict[str, int] = {}
            for s, _ in st.values():
                counts[s] = counts.get(s, 0) + 1
            raise AssertionError(f"not every workflow finished within {timeout}s: {counts}") from None
        assert result is not None
        return result

    def runs(self, queue: Optional[str] = None) -> list[Run]:
        rows = self.backend.rows(
            "SELECT workflow_id, executor_id, pid, queue_name, part_key, tag, started, ended FROM q4_runs"
        )
        runs = [Run(r[0], r[1], int(r[2]), r[3], r[4], r[5], float(r[6]), float(r[7])) for r in rows]
        return [r for r in runs if queue is None or r.queue_name == queue]

    def started_at(self, ids: Sequence[str]) -> dict[str, int]:
        """The claim time (epoch ms) the system database recorded for each workflow."""
        table = self.backend.table("workflow_status")
        rows = self.backend.rows(f"SELECT workflow_uuid, started_at FROM {table} WHERE started_at IS NOT NULL")
        wanted = set(ids)
        return {r[0]: int(r[1]) for r in rows if r[0] in wanted}


def wait_until(fn: Any, timeout: float = 20, what: str = "") -> Any:
    return eventually(fn, timeout=timeout, interval=0.02, what=what)


def elapsed(since: float) -> float:
    return time.monotonic() - since


def rfc3339(ms: int) -> str:
    """Epoch milliseconds as an RFC 3339 timestamp (UTC, 'Z')."""
    import datetime

    dt = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_ms() -> int:
    return int(time.time() * 1000)


class Gates:
    """Named gates a test's workflows wait on; ``release_all`` at teardown frees any thread left."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._events: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        import threading

        with self._lock:
            return self._events.setdefault(name, threading.Event())

    def wait(self, name: str, timeout: float = 30) -> None:
        self.get(name).wait(timeout)

    def release(self, name: str) -> None:
        self.get(name).set()

    def release_all(self) -> None:
        with self._lock:
            events = list(self._events.values())
            self._events.clear()
        for e in events:
            e.set()
