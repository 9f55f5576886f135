"""Helpers shared by the management, timeout, fleet and CLI tests (issue 5).

``Executor`` runs tests/apps/mgmt_app.py as a real executor process (its own
DBOS__VMID / DBOS__APPVERSION); the app appends one JSON line per event to a
marks file, which is how a test sees what ran where and when it stopped.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import pytest
from conftest import Backend, eventually

REDIS_URL = os.environ.get("DBOS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
APPS = Path(__file__).parent / "apps"
MGMT_APP = APPS / "mgmt_app.py"


def wid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def rfc3339(ms: int) -> str:
    """Epoch milliseconds as an RFC 3339 timestamp (UTC, 'Z')."""
    dt = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Counter:
    """Thread-safe execution counts, by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def hit(self, name: str) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self.counts.get(name, 0)


def wait_status(backend: Backend, workflow_id: str, status: str, timeout: float = 20) -> None:
    eventually(lambda: backend.status(workflow_id) == status, timeout=timeout,
               what=f"({workflow_id} to be {status}; is {backend.status(workflow_id)})")


def require_redis() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as e:
        pytest.fail(
            f"Redis is not reachable at {REDIS_URL} ({e}); start one or point DBOS_TEST_REDIS_URL at one.",
            pytrace=False,
        )


def dbos_command() -> str:
    """The installed ``dbos`` console script, next to this interpreter."""
    path = Path(sys.executable).parent / "dbos"
    assert path.exists(), f"the dbos console script is not installed at {path}"
    return str(path)


class Executor:
    """tests/apps/mgmt_app.py as a real executor process of the fleet."""

    def __init__(
        self,
        backend: Backend,
        tmp_path: Path,
        vmid: str,
        *,
        app_version: str = "v1",
        redis: bool = True,
        polling_interval_sec: float = 1.0,
    ) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self.vmid = vmid
        self.app_version = app_version
        self.redis = redis
        self.polling_interval_sec = polling_interval_sec
        self.marks = tmp_path / "marks.jsonl"  # shared by every executor of the test
        self.proc: Optional[subprocess.Popen[str]] = None
        self.log = tmp_path / f"{vmid}.log"

    def start(self) -> "Executor":
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
        env["DBOS__VMID"] = self.vmid
        env["DBOS__APPVERSION"] = self.app_version
        spec = {
            "db": self.backend.url,
            "redis": REDIS_URL if self.redis else None,
            "marks": str(self.marks),
            "dir": str(self.tmp_path),
            "polling_interval_sec": self.polling_interval_sec,
        }
        self._logf = open(self.log, "a")
        self.proc = subprocess.Popen(
            [sys.executable, str(MGMT_APP), json.dumps(spec)],
            env=env, stdout=self._logf, stderr=subprocess.STDOUT, text=True,
        )
        return self

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"executor {self.vmid} exited with {self.proc.returncode}:\n{self.log.read_text()}")

    def wait_ready(self, timeout: float = 30) -> "Executor":
        pid = self.proc.pid if self.proc is not None else -1

        def ready() -> bool:
            self.check_alive()
            return any(m["event"] == "ready" and m["pid"] == pid for m in read_marks(self.marks))

        eventually(ready, timeout=timeout, interval=0.05, what=f"(executor {self.vmid} ready)")
        return self

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if getattr(self, "_logf", None) is not None:
            self._logf.close()
            self._logf = None


def read_marks(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written
            continue
    return out


def marks_of(path: Path, event: str, workflow_id: Optional[str] = None) -> list[dict[str, Any]]:
    return [
        m for m in read_marks(path)
        if m["event"] == event and (workflow_id is None or m.get("wf") == workflow_id)
    ]
