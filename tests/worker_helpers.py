"""Helpers for the ``dbos-worker`` tests (issue 12): real worker processes, the side
tables their workflows record into, the admin server over HTTP, ``dbos fleet executors``.

Every worker is the installed console script ``dbos-worker`` (or ``python -m
worker``) running one of the apps of tests/apps (worker_app.py, worker_bare.py,
w12pkg/...), whose workflows are tests/apps/worker_flows.py's. Its stdout and
stderr go to files of the test's ``tmp_path``; a worker is "started" once its
"dbos-worker started" line is logged (DBOS launched, services running).
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import pytest
from conftest import Backend, eventually
from fleet_helpers import REDIS_URL, ClientSide, require_redis

from dbos import DBOSClient

APPS = Path(__file__).parent / "apps"
BIN = Path(sys.executable).parent
WORKER = BIN / "dbos-worker"
DBOS_CLI = BIN / "dbos"
INTERNAL_QUEUE = "_dbos_internal_queue"
STARTED = "dbos-worker started"


def free_port() -> int:
    """A TCP port nothing listens on now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class Run:
    """One execution of a workflow's first line or of a step body (tests/apps/worker_flows.py)."""

    workflow_id: str
    label: str
    seq: int
    executor_id: str
    pid: int
    at: float


class Worker:
    """One ``dbos-worker`` process."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, logdir: Path) -> None:
        self.name = name
        self.vmid = env.get("DBOS__VMID", "")
        self.out = logdir / f"{name}.out"
        self.err = logdir / f"{name}.err"
        self._files = [open(self.out, "ab"), open(self.err, "ab")]
        self.argv = argv
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self._files[0], stderr=self._files[1])
        self.pid = self.proc.pid
        self.signalled_at: Optional[float] = None
        self.exited_at: Optional[float] = None

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def describe(self) -> str:
        return f"worker {self.name} (pid {self.pid}, {' '.join(self.argv[1:])}):\n{self.stderr()[-6000:]}"

    def alive(self) -> bool:
        if self.proc.poll() is None:
            return True
        if self.exited_at is None:
            self.exited_at = time.monotonic()
        return False

    def check_alive(self) -> None:
        if not self.alive():
            pytest.fail(f"exited with {self.proc.returncode}: {self.describe()}", pytrace=False)

    def wait_started(self, timeout: float = 30) -> "Worker":
        def started() -> bool:
            if STARTED in self.stderr():
                return True
            self.check_alive()
            return STARTED in self.stderr()

        eventually(started, timeout=timeout, interval=0.02, what=f"({self.name} started)")
        return self

    def admin_port(self) -> int:
        m = re.search(r"admin server listening on http://[^:]+:(\d+)", self.stderr())
        assert m is not None, self.describe()
        return int(m.group(1))

    def signal(self, signum: int = signal.SIGTERM) -> float:
        """Send ``signum``; return (and remember) when, in ``time.monotonic()``."""
        now = time.monotonic()
        if self.signalled_at is None:
            self.signalled_at = now
        self.proc.send_signal(signum)
        return now

    def kill(self) -> None:
        """SIGKILL: no clean-up at all; its row and its PENDING work stay as they are."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.exited_at = time.monotonic()

    def wait_exit(self, timeout: float = 40) -> int:
        """Wait for the process to end (polling, so the exit instant is measured); its code."""
        eventually(lambda: not self.alive(), timeout=timeout, interval=0.02, what=f"({self.name} exits)")
        code = self.proc.returncode
        assert code is not None
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        for f in self._files:
            f.close()


class Plain:
    """tests/apps/plain_launch.py: a plain ``DBOS.launch()`` process (no dbos-worker around it)."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.err = logdir / f"plain-{uuid.uuid4().hex[:6]}.err"
        self._file = open(self.err, "wb")
        self.dir = logdir
        self.proc = subprocess.Popen([sys.executable, str(APPS / "plain_launch.py")], env=env, cwd=APPS,
                                     stdout=subprocess.DEVNULL, stderr=self._file)
        self.pid = self.proc.pid

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> "Plain":
        ready = self.dir / f"plain-ready-{self.pid}"

        def is_ready() -> bool:
            if ready.exists():
                return True
            assert self.proc.poll() is None, f"plain launch exited {self.proc.returncode}:\n{self.stderr()}"
            return False

        eventually(is_ready, timeout=timeout, interval=0.02, what="(plain launch ready)")
        return self

    def stop(self, timeout: float = 30) -> int:
        """Let it destroy DBOS and exit (``release-plain-stop``); its exit code."""
        (self.dir / "release-plain-stop").write_text("go")
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._file.close()


class Fleet(ClientSide):
    """The workers of one test, its side tables, a DBOSClient and the release files."""

    def __init__(self, backend: Backend, tmp_path: Path, *, redis: bool = True, poll: float = 0.2,
                 slow_poll: float = 30.0) -> None:
        if redis:
            require_redis()
        self.backend = backend
        self.dir = tmp_path
        self.redis_url = REDIS_URL if redis else None
        self.poll = poll
        self.slow_poll = slow_poll
        self.workers: list[Worker] = []
        self.plains: list[Plain] = []
        self._client: Optional[DBOSClient] = None
        real = "REAL" if backend.is_sqlite else "DOUBLE PRECISION"
        backend.execute(
            "CREATE TABLE w12_runs (workflow_id TEXT, label TEXT NOT NULL, seq INTEGER NOT NULL, "
            f"executor_id TEXT NOT NULL, pid INTEGER NOT NULL, at {real} NOT NULL)"
        )
        backend.execute("CREATE TABLE w12_tx (workflow_id TEXT NOT NULL, tag TEXT NOT NULL, executor_id TEXT NOT NULL)")

    # -- processes -------------------------------------------------------------
    def env(self, vmid: Optional[str], version: Optional[str], **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOS", "W12_"))}
        env.update({
            "W12_DB": self.backend.url,
            "W12_SIDE_DB": self.backend.url,
            "W12_DIR": str(self.dir),
            "W12_POLL": str(self.poll),
            "W12_SLOW_POLL": str(self.slow_poll),
            "PYTHONUNBUFFERED": "1",
        })
        if self.redis_url is not None:
            env["W12_REDIS"] = self.redis_url
        if vmid is not None:
            env["DBOS__VMID"] = vmid
        if version is not None:
            env["DBOS__APPVERSION"] = version
        env.update(extra)
        return env

    def spawn(
        self,
        app: str = "worker_app.py",
        *args: str,
        vmid: Optional[str] = None,
        version: Optional[str] = "w12-v1",
        env: Optional[dict[str, str]] = None,
        cwd: Optional[Path] = None,
        module_form: bool = False,
        name: Optional[str] = None,
    ) -> Worker:
        """Start ``dbos-worker APP ARGS`` (a bare ``app`` ending in .py is a file of tests/apps).
        ``vmid`` None: a new random DBOS__VMID; "": none (the worker's default)."""
        if vmid is None:
            vmid = new_id("w")
        full_env = self.env(vmid or None, version)
        full_env.update(env or {})
        if app.endswith(".py") and "/" not in app:
            app = str(APPS / app)
        cmd = [sys.executable, "-m", "worker"] if module_form else [str(WORKER)]
        worker = Worker(name or vmid or new_id("w"), [*cmd, app, *args], full_env, cwd or APPS, self.dir)
        self.workers.append(worker)
        return worker

    def start(self, *args: str, **kwargs: Any) -> Worker:
        return self.spawn(*args, **kwargs).wait_started()

    def plain(self, vmid: str, version: str = "w12-v1", **extra: str) -> Plain:
        p = Plain(self.env(vmid, version, **extra), self.dir)
        self.plains.append(p)
        return p

    def close(self) -> None:
        for w in self.workers:
            w.close()
        for p in self.plains:
            p.close()
        if self._client is not None:
            self._client.destroy()
            self._client = None

    # -- work ------------------------------------------------------------------

    def rows(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """workflow ID -> its status row's status, executor_id, queue_name, recovery_attempts."""
        table = self.backend.table("workflow_status")
        wanted = set(ids)
        out = {}
        for r in self.backend.rows(
            f"SELECT workflow_uuid, status, executor_id, queue_name, recovery_attempts, application_version "
            f"FROM {table}"
        ):
            if r[0] in wanted:
                out[r[0]] = {"status": r[1], "executor_id": r[2], "queue_name": r[3], "attempts": int(r[4] or 0),
                             "version": r[5]}
        return out

    def status_of(self, ids: Sequence[str]) -> dict[str, tuple[str, Optional[str]]]:
        return {w: (r["status"], r["executor_id"]) for w, r in self.rows(ids).items()}

    def wait_status(self, ids: Sequence[str], status: str = "SUCCESS", timeout: float = 30,
                    alive: Sequence[Worker] = ()) -> dict[str, dict[str, Any]]:
        def reached() -> Optional[dict[str, dict[str, Any]]]:
            for w in alive:
                w.check_alive()
            rows = self.rows(ids)
            return rows if len(rows) == len(ids) and all(r["status"] == status for r in rows.values()) else None

        try:
            result = eventually(reached, timeout=timeout, interval=0.05)
        except AssertionError:
            rows = self.rows(ids)
            raise AssertionError(
                f"not all {len(ids)} workflows reached {status} within {timeout}s: "
                f"{collections.Counter((r['status'], r['executor_id']) for r in rows.values())}"
            ) from None
        assert result is not None
        return result

    def runs(self, workflow_id: Optional[str] = None, label: Optional[str] = None) -> list[Run]:
        rows = self.backend.rows("SELECT workflow_id, label, seq, executor_id, pid, at FROM w12_runs ORDER BY at")
        runs = [Run(r[0], r[1], int(r[2]), r[3], int(r[4]), float(r[5])) for r in rows]
        return [r for r in runs if (workflow_id is None or r.workflow_id == workflow_id)
                and (label is None or r.label == label)]

    def tx_rows(self) -> list[tuple[str, str, str]]:
        """(workflow ID, tag, executor) of every committed ``pay`` transaction."""
        return [(r[0], r[1], r[2]) for r in self.backend.rows("SELECT workflow_id, tag, executor_id FROM w12_tx")]

    def executor_row(self, vmid: str) -> Optional[dict[str, Any]]:
        table = self.backend.table("executors")
        rows = self.backend.rows(
            f"SELECT state, pid, hostname, heartbeat_at, started_at, incarnation FROM {table} WHERE executor_id = :e",
            e=vmid,
        )
        if not rows:
            return None
        r = rows[0]
        return {"state": r[0], "pid": int(r[1]), "hostname": r[2], "heartbeat_at": int(r[3]),
                "started_at": int(r[4]), "incarnation": int(r[5])}

    def wait_executor_state(self, vmid: str, state: str, timeout: float = 15) -> dict[str, Any]:
        def reached() -> Optional[dict[str, Any]]:
            row = self.executor_row(vmid)
            return row if row is not None and row["state"] == state else None

        row = eventually(reached, timeout=timeout, interval=0.02, what=f"(executor {vmid} {state})")
        assert row is not None
        return row


def check_exactly_once(fleet: Fleet, ids: Sequence[str], *, gated_ids: Sequence[str] = ()) -> None:
    """The side tables of finished workflows: each one's ``pay`` committed once; a step
    ran a second time only if it was the one in flight when its workflow was handed
    back: the last step the earlier process began for it (one per hand-back at most)."""
    tx = collections.Counter(w for w, _, _ in fleet.tx_rows())
    for w in ids:
        assert tx[w] == 1, f"transaction of {w} committed {tx[w]} times"
    rows = fleet.rows(ids)
    by_workflow: dict[str, list[Run]] = collections.defaultdict(list)
    for r in fleet.runs():
        by_workflow[r.workflow_id].append(r)
    for w in ids:
        steps = [r for r in by_workflow[w] if r.label != "body"]
        counts = collections.Counter((r.label, r.seq) for r in steps)
        assert counts[("begin", 0)] >= 1, f"{w}: no begin step recorded"
        twice = {k: n for k, n in counts.items() if n > 1}
        assert all(n == 2 for n in twice.values()), f"{w}: a step ran more than twice: {twice}"
        handbacks = rows[w]["attempts"] - 1
        assert len(twice) <= max(0, handbacks), (
            f"{w}: {len(twice)} steps re-run ({sorted(twice)}) over {handbacks} hand-back(s)"
        )
        for key in twice:
            first = next(r for r in steps if (r.label, r.seq) == key)
            last_of_that_process = [r for r in steps if r.pid == first.pid][-1]
            assert last_of_that_process == first, (
                f"{w}: completed step {key} re-run (pid {first.pid} went on to "
                f"{last_of_that_process.label} {last_of_that_process.seq} after it)"
            )
    for w in gated_ids:
        ticks = sorted(r.seq for r in by_workflow[w] if r.label == "tick")
        assert sorted(set(ticks)) == list(range(max(ticks) + 1)), f"{w}: ticks skipped: {ticks}"
        ends = [r for r in by_workflow[w] if r.label == "end"]
        assert ends and {e.seq for e in ends} == {max(ticks)}, f"{w}: end {ends} after ticks {ticks}"


def fleet_executors(url: str, *args: str) -> list[dict[str, Any]]:
    """``dbos fleet executors --json --db-url URL ARGS``, parsed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    proc = subprocess.run([str(DBOS_CLI), "fleet", "executors", "--json", "--db-url", url, *args],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"dbos fleet executors failed ({proc.returncode}):\n{proc.stderr}"
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    return rows


def executor_state(url: str, vmid: str, *args: str) -> Optional[str]:
    for row in fleet_executors(url, *args):
        if row["executor_id"] == vmid:
            return str(row["state"])
    return None


def fleet_fixture(backend: Backend, tmp_path: Path) -> Iterator[Fleet]:
    """The body of each test module's ``fleet`` fixture (Redis on PostgreSQL, none on SQLite)."""
    f = Fleet(backend, tmp_path, redis=not backend.is_sqlite)
    try:
        yield f
    finally:
        f.close()
