"""Helpers for the coordinator tests (issue 13): real ``dbos-worker`` processes of
tests/apps/handover_app.py, real ``dbos-coordinator`` processes, throwaway
``redis-server`` processes, and reads of the side tables the app records into.

Every process here is started by the test and ended by it (by its own pid), in
``Cluster.close()``: a stopped (SIGSTOP) one is continued first so it can exit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import pytest
from conftest import Backend, eventually
from fleet_helpers import REDIS_URL, require_redis

from dbos import DBOSClient

ROOT = Path(__file__).resolve().parent.parent
APP = Path(__file__).parent / "apps" / "handover_app.py"
VERSION = "ho-v1"
QUEUES = ("ho_a", "ho_b", "ho_c")  # handover_app's three plain queues
OPERATIONS = 5


def expected(tag: str, tx_at: int = 2) -> str:
    """What handover_app's ``job(tag, tx_at=tx_at)`` returns."""
    return "|".join([tag, *(f"paid-{tag}" if s == tx_at else f"s{s}" for s in range(1, OPERATIONS + 1))])
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def create_side_tables(backend: Backend) -> None:
    backend.execute(
        "CREATE TABLE IF NOT EXISTS ho_steps (id BIGSERIAL PRIMARY KEY, workflow_id TEXT NOT NULL, "
        "step INTEGER NOT NULL, executor_id TEXT NOT NULL, pid INTEGER NOT NULL, "
        "started DOUBLE PRECISION NOT NULL, ended DOUBLE PRECISION)"
    )
    backend.execute(
        "CREATE TABLE IF NOT EXISTS ho_tx (workflow_id TEXT NOT NULL, tag TEXT NOT NULL, executor_id TEXT NOT NULL, "
        "pid INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL)"
    )


@dataclasses.dataclass(frozen=True)
class StepRun:
    """One execution of one operation of a workflow, as the executor recorded it."""

    workflow_id: str
    step: int
    executor_id: str
    pid: int
    started: float
    ended: Optional[float]


@dataclasses.dataclass(frozen=True)
class Status:
    status: str
    executor_id: Optional[str]
    recovery_attempts: int
    application_version: Optional[str]
    queue_name: Optional[str]


class Proc:
    """One child process with its log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, env=env, cwd=str(ROOT), stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.popen.pid
        self.stopped = False
        self.killed_at: Optional[float] = None  # time.time() of the SIGKILL
        self.ended = False  # the test ended it (SIGKILL or SIGTERM): its exit is no failure

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> float:
        """SIGKILL (no clean-up at all); return the time.time() just before the signal."""
        self.killed_at = time.time()
        self.ended = True
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        self.stopped = False
        return self.killed_at

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
        self.stopped = False

    def terminate(self, timeout: float = 20) -> Optional[int]:
        self.ended = True
        if self.popen.poll() is None:
            if self.stopped:
                self.resume()
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._log.close()
        return self.popen.returncode


class RedisServer:
    """A throwaway ``redis-server`` on a loopback port of its own (no persistence); only that
    process is ever killed, and ``start()`` after ``kill()`` restarts it on the same port."""

    def __init__(self, tmp: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed (the Redis-outage tests start their own)", pytrace=False)
        self.exe = exe
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ho-redis-", dir=tmp))
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        assert self.proc is None
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "redis-server exited"
            try:
                return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
            except redis.RedisError:
                return False

        eventually(up, timeout=15, interval=0.05, what="(throwaway redis-server up)")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            self.kill()


def http_get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


class Cluster:
    """Workers and coordinators of one test, on one test database."""

    def __init__(self, backend: Backend, tmp_path: Path, redis_url: Optional[str] = REDIS_URL) -> None:
        assert not backend.is_sqlite, "the coordinator tests run on PostgreSQL"
        if redis_url == REDIS_URL:
            require_redis()
        self.backend = backend
        self.dir = tmp_path
        self.redis_url = redis_url
        self.workers: dict[str, Proc] = {}
        self.coordinators: list[Proc] = []
        self.all: list[Proc] = []
        self._client: Optional[DBOSClient] = None
        create_side_tables(backend)

    # -- processes -------------------------------------------------------------
    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
        env["DBOS_SYSTEM_DATABASE_URL"] = self.backend.url
        if self.redis_url is not None:
            env["DBOS_REDIS_URL"] = self.redis_url
        env["HO_DIR"] = str(self.dir)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def hold(self, vmid: str) -> None:
        """From now on the holding step of ``vmid``'s workflows waits."""
        (self.dir / f"hold-{vmid}").write_text("hold")

    def unhold(self, vmid: str) -> None:
        (self.dir / f"hold-{vmid}").unlink(missing_ok=True)

    def start_worker(
        self, vmid: str, *, version: str = VERSION, queues: Optional[Sequence[str]] = None, hold: bool = False,
        poll: float = 0.5, wait: bool = True, pool: Optional[int] = None,
    ) -> Proc:
        assert vmid not in self.workers or not self.workers[vmid].alive(), f"executor {vmid} already runs"
        if hold:
            self.hold(vmid)
        argv = [str(BIN / "dbos-worker"), str(APP), "--drain-timeout", "2"]
        if queues is not None:
            argv += ["--queues", ",".join(queues)]
        env = self._env(DBOS__VMID=vmid, DBOS__APPVERSION=version, HO_POLL=str(poll), DBOS_LOG_LEVEL="INFO")
        if pool is not None:
            env["HO_POOL"] = str(pool)
        proc = Proc(vmid, argv, env, self.dir / f"worker-{vmid}-{len(self.all)}.log")
        self.workers[vmid] = proc
        self.all.append(proc)
        if wait:
            self.wait_registered(proc)
        return proc

    def start_workers(self, *vmids: str, **options: Any) -> list[Proc]:
        """Start several at once, then wait for each to register."""
        procs = [self.start_worker(v, wait=False, **options) for v in vmids]
        for p in procs:
            self.wait_registered(p)
        return procs

    def wait_registered(self, proc: Proc, timeout: float = 60) -> None:
        def registered() -> bool:
            if not proc.alive():
                pytest.fail(f"worker {proc.name} exited with {proc.popen.returncode}:\n{proc.log()}", pytrace=False)
            row = self.executor(proc.name)
            return row is not None and row["pid"] == proc.pid and row["state"] == "RUNNING" and (
                "dbos-worker started" in proc.log()
            )

        eventually(registered, timeout=timeout, interval=0.05, what=f"(worker {proc.name} registered)")

    def start_coordinator(
        self, *, dead_after: Optional[float] = None, interval: Optional[float] = None, http_port: Optional[int] = None,
        redis_url: Optional[str] = "default", db_url: Optional[str] = None, module: bool = False,
    ) -> Proc:
        argv = [sys.executable, "-m", "coordinator"] if module else [str(BIN / "dbos-coordinator")]
        argv += ["--db-url", db_url or self.backend.url]
        redis = self.redis_url if redis_url == "default" else redis_url
        if redis is not None:
            argv += ["--redis-url", redis]
        if dead_after is not None:
            argv += ["--dead-after", str(dead_after)]
        if interval is not None:
            argv += ["--interval", str(interval)]
        if http_port is not None:
            argv += ["--http-port", str(http_port)]
        proc = Proc(f"coordinator-{len(self.coordinators)}", argv, self._env(DBOS_LOG_LEVEL="INFO"),
                    self.dir / f"coordinator-{len(self.coordinators)}.log")
        self.coordinators.append(proc)
        self.all.append(proc)

        def started() -> bool:
            if not proc.alive():
                pytest.fail(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log()}", pytrace=False)
            return "dbos-coordinator" in proc.log() and " started:" in proc.log()

        eventually(started, timeout=60, interval=0.05, what=f"({proc.name} started)")
        return proc

    def check_alive(self, *procs: Proc) -> None:
        for p in procs or [p for p in self.all if not p.ended]:
            if not p.alive():
                pytest.fail(f"{p.name} exited with {p.popen.returncode}:\n{p.log()}", pytrace=False)

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} (pid {p.pid}) =====\n{p.log()[-6000:]}" for p in self.all)

    def close(self) -> None:
        for p in self.all:
            if p.stopped and p.alive():
                p.resume()
        for p in self.all:
            if p.alive():
                p.popen.send_signal(signal.SIGTERM)
        for p in self.all:
            p.terminate()
        if self._client is not None:
            self._client.destroy()
            self._client = None

    # -- enqueue -------------------------------------------------------------------
    @property
    def client(self) -> DBOSClient:
        if self._client is None:
            self._client = DBOSClient(self.backend.url)
        return self._client

    def enqueue(self, queue: str, tag: str, *, hold_at: int = 0, tx_at: int = 2, seconds: float = 0.0,
                key: Optional[str] = None, version: Optional[str] = None) -> str:
        opts: dict[str, Any] = {"queue_name": queue, "workflow_name": "job", "workflow_id": f"wf-{tag}"}
        if key is not None:
            opts["queue_partition_key"] = key
        if version is not None:
            opts["app_version"] = version
        return self.client.enqueue(opts, tag, hold_at, tx_at, seconds).workflow_id  # type: ignore[arg-type]

    def result(self, workflow_id: str) -> Any:
        return self.client.retrieve_workflow(workflow_id).get_result()

    # -- reads ---------------------------------------------------------------------
    def executor(self, vmid: str) -> Optional[dict[str, Any]]:
        rows = self.backend.rows(
            f"SELECT executor_id, state, incarnation, pid, heartbeat_at, app_version, running "
            f"FROM {self.backend.table('executors')} "
            "WHERE executor_id = :e", e=vmid,
        )
        if not rows:
            return None
        r = rows[0]
        return {"executor_id": r[0], "state": r[1], "incarnation": int(r[2]), "pid": int(r[3]),
                "heartbeat_at": int(r[4]), "app_version": r[5], "running": int(r[6])}

    def statuses(self, ids: Iterable[str]) -> dict[str, Status]:
        wanted = list(ids)
        rows = self.backend.rows(
            f"SELECT workflow_uuid, status, executor_id, recovery_attempts, application_version, queue_name "
            f"FROM {self.backend.table('workflow_status')} WHERE workflow_uuid = ANY(:ids)", ids=wanted,
        )
        return {r[0]: Status(r[1], r[2], int(r[3] or 0), r[4], r[5]) for r in rows}

    def created_at(self, ids: Iterable[str]) -> dict[str, int]:
        """workflow ID -> its enqueue time (epoch ms): a queue's claim order, after priority."""
        rows = self.backend.rows(
            f"SELECT workflow_uuid, created_at FROM {self.backend.table('workflow_status')} "
            "WHERE workflow_uuid = ANY(:ids)", ids=list(ids),
        )
        return {r[0]: int(r[1]) for r in rows}

    def step_runs(self, ids: Optional[Iterable[str]] = None) -> list[StepRun]:
        rows = self.backend.rows("SELECT workflow_id, step, executor_id, pid, started, ended FROM ho_steps ORDER BY id")
        wanted = set(ids) if ids is not None else None
        return [
            StepRun(r[0], int(r[1]), r[2], int(r[3]), float(r[4]), None if r[5] is None else float(r[5]))
            for r in rows if wanted is None or r[0] in wanted
        ]

    def tx_counts(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self.backend.rows("SELECT workflow_id, count(*) FROM ho_tx GROUP BY workflow_id")}

    def checkpointed(self, ids: Iterable[str]) -> dict[str, set[int]]:
        """workflow ID -> the operation IDs DBOS has recorded for it."""
        wanted = list(ids)
        out: dict[str, set[int]] = {w: set() for w in wanted}
        for w, f in self.backend.rows(
            f"SELECT workflow_uuid, function_id FROM {self.backend.table('operation_outputs')} "
            "WHERE workflow_uuid = ANY(:ids)", ids=wanted,
        ):
            out[w].add(int(f))
        return out

    def lease(self) -> Optional[tuple[str, int, int]]:
        rows = self.backend.rows(f"SELECT holder, expires_at, term FROM {self.backend.table('leader_lease')}")
        return (rows[0][0], int(rows[0][1]), int(rows[0][2])) if rows else None

    def leader(self) -> Optional[Proc]:
        """The coordinator process holding an unexpired lease (its holder names its pid)."""
        lease = self.lease()
        if lease is None or lease[1] < time.time() * 1000:
            return None
        for p in self.coordinators:
            if f"-{p.pid}-" in lease[0]:
                return p
        return None

    def wait(self, fn: Any, what: str, timeout: float = 30, interval: float = 0.1) -> Any:
        """``eventually(fn)``; on a timeout the assertion carries every process's log."""
        try:
            return eventually(fn, timeout=timeout, interval=interval, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.logs()}") from None

    def wait_done(self, ids: Sequence[str], timeout: float = 30) -> dict[str, Status]:
        def done() -> Optional[dict[str, Status]]:
            self.check_alive()
            st = self.statuses(ids)
            return st if sum(1 for s in st.values() if s.status == "SUCCESS") == len(ids) else None

        try:
            result = eventually(done, timeout=timeout, interval=0.1)
        except AssertionError:
            counts: dict[str, int] = {}
            for s in self.statuses(ids).values():
                counts[s.status] = counts.get(s.status, 0) + 1
            raise AssertionError(
                f"not every workflow finished within {timeout} s: {counts}\n{self.logs()}"
            ) from None
        assert result is not None
        return result


def executions(runs: Iterable[StepRun], killed_at: dict[int, float]) -> list[tuple[str, int, float, float]]:
    """One (workflow ID, pid, start, end) per execution of a workflow body on one process:
    from its first recorded operation's start to its last one's end, or to the SIGKILL
    of that process if it never ended (``killed_at``: pid -> time)."""
    spans: dict[tuple[str, int], list[float]] = {}
    for r in runs:
        end = r.ended if r.ended is not None else killed_at.get(r.pid)
        if end is None:
            end = time.time()  # still running (or paused): open until now
        span = spans.setdefault((r.workflow_id, r.pid), [r.started, end])
        span[0] = min(span[0], r.started)
        span[1] = max(span[1], end)
    return [(w, pid, s, e) for (w, pid), (s, e) in spans.items()]


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text -> sample name -> [(labels, value)], with prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)
