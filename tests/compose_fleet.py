"""docker-compose.yml's dbos services as local processes (tests/test_deploy_artifacts.py).

No container engine runs here, so the test reads the compose file and starts each
service's ``command`` with its ``environment`` as a process of this machine,
rewritten as little as it takes to share one host:

- a URL whose host is ``postgres`` becomes this test's fresh database on the test
  PostgreSQL; one whose host is ``redis`` becomes the test Redis (its wakeup
  namespace follows the database, so parallel tests do not hear each other);
- ``--admin-port`` / ``--http-port`` get a free loopback port each (three workers
  cannot all have 3001 on one host), ``--admin-host`` / ``--http-host``
  0.0.0.0 becomes 127.0.0.1 (only loopback here), and a local launcher's
  ``--launch-log-dir`` moves into the test's directory;
- the executables are this venv's (its ``bin`` goes first on PATH, which also
  serves a local launcher's ``--worker-cmd``), the working directory is the
  repository root, where ``examples/`` sits as it does in the image's /app.

Services without a ``command`` (postgres, redis: the machine's own servers stand
in) and services behind a ``profiles`` entry (not started by ``docker compose
up``) are not started. Every process gets its own process group; stopping the
fleet signals every process this fleet started, the local launcher's children
included.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
VENV_BIN = Path(sys.executable).parent
PORT_FLAGS = ("--admin-port", "--http-port")
HOST_FLAGS = ("--admin-host", "--http-host")
def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    with open(path) as f:
        data = yaml.safe_load(f)  # resolves the file's anchors and `<<` merge keys
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), f"{path}: no services"
    return data


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    if isinstance(cmd, str):
        return shlex.split(cmd)
    return [str(a) for a in cmd or []]


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        env = {k: v for k, v in pairs}
    out = {str(k): "" if v is None else str(v) for k, v in env.items()}
    for k, v in out.items():
        assert "${" not in v and not v.startswith("$"), f"{k}={v!r}: the local fleet does not interpolate"
    return out


def flag_value(args: list[str], flag: str) -> Optional[str]:
    """The value of ``--flag V`` or ``--flag=V`` in ``args`` (the last one wins), else None."""
    value = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    for i, a in enumerate(out):
        if a == flag and i + 1 < len(out):
            out[i + 1] = value
        elif a.startswith(flag + "="):
            out[i] = f"{flag}={value}"
    return out



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22): with
    the pid, what tells this process from a later one that reuses the pid."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _signal_if_same(pid: int, started: Optional[str], sig: int) -> None:
    if started is None or _start_time(pid) != started:
        return  # gone, or the pid now names another process
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _descendants(pids: list[int]) -> list[int]:
    """Every live process whose ancestry reaches ``pids`` (Linux /proc)."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parent[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = set(pids)
    while frontier:
        children = {p for p, pp in parent.items() if pp in frontier and p not in found}
        found.extend(children)
        frontier = children
    return found


@dataclass
class Service:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: Optional[int]  # the rewritten admin / HTTP port
    log_path: Path
    proc: Optional["subprocess.Popen[bytes]"] = None

    @property
    def is_worker(self) -> bool:
        return Path(self.argv[0]).name == "dbos-worker"

    @property
    def is_coordinator(self) -> bool:
        return Path(self.argv[0]).name == "dbos-coordinator"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str) -> tuple[int, bytes]:
        assert self.port is not None, f"{self.name} serves no HTTP"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return 0, b""


@dataclass
class ComposeFleet:
    """The compose file's dbos services, prepared to run against ``db_url`` and ``redis_url``."""

    db_url: str
    redis_url: str
    log_dir: Path
    compose: dict[str, Any] = field(default_factory=load_compose)
    services: dict[str, Service] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was rewritten beyond hosts and ports

    def __post_init__(self) -> None:
        for name, svc in self.compose["services"].items():
            if svc.get("profiles") or not svc.get("command") or svc.get("image", "").startswith(("postgres", "redis")):
                continue
            argv = command_of(svc)
            self.services[name] = self.prepare(name, svc, argv)

    def rewrite_url(self, value: str) -> str:
        host = urlsplit(value).hostname
        if host == "postgres":
            return self.db_url
        if host == "redis":
            return self.redis_url
        raise AssertionError(f"{value!r}: the local fleet knows only the hosts postgres and redis")

    def prepare(self, name: str, svc: dict[str, Any], argv: list[str]) -> Service:
        port = None
        for flag in PORT_FLAGS:
            if flag_value(argv, flag) is not None:
                port = free_port()
                argv = replace_flag(argv, flag, str(port))
        if flag_value(argv, "--launch-log-dir") is not None:
            argv = replace_flag(argv, "--launch-log-dir", str(self.log_dir / "launches"))
        for flag in HOST_FLAGS:
            if flag_value(argv, flag) not in (None, "127.0.0.1", "localhost"):
                argv = replace_flag(argv, flag, "127.0.0.1")
        if argv[0] == "python":
            argv = [sys.executable, *argv[1:]]
        elif (VENV_BIN / argv[0]).exists():
            argv = [str(VENV_BIN / argv[0]), *argv[1:]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
        for k, v in environment_of(svc).items():
            env[k] = self.rewrite_url(v) if "://" in v else v
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        return Service(name, argv, env, port, self.log_dir / f"{name}.log")

    def by_kind(self, kind: str) -> list[Service]:
        return [s for s in self.services.values() if getattr(s, f"is_{kind}")]

    # -- processes ------------------------------------------------------------------
    def start(self, *names: str) -> None:
        for name in names or tuple(self.services):
            s = self.services[name]
            assert s.proc is None or s.proc.poll() is not None, f"{name} already runs"
            log = open(s.log_path, "ab")
            try:
                s.proc = subprocess.Popen(s.argv, env=s.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
            finally:
                log.close()

    def check_alive(self) -> None:
        for s in self.services.values():
            if s.proc is not None and s.proc.poll() is not None:
                raise AssertionError(f"{s.name} exited with {s.proc.returncode}:\n{s.log()[-4000:]}")

    def ready(self) -> bool:
        """Every worker answers /readyz with 200; every coordinator ticks, and one leads."""
        self.check_alive()
        if not all(s.get("/readyz")[0] == 200 for s in self.by_kind("worker")):
            return False
        bodies = [s.get("/healthz") for s in self.by_kind("coordinator")]
        return all(code == 200 for code, _ in bodies) and any(b'"leader":true' in body for _, body in bodies)

    def kill(self, name: str) -> None:
        """SIGKILL the service's whole process group: no drain, nothing handed back."""
        s = self.services[name]
        assert s.proc is not None
        os.killpg(s.proc.pid, signal.SIGKILL)
        s.proc.wait(timeout=10)
        s.proc = None  # gone on purpose: check_alive() and stop() leave it be

    def stop(self) -> None:
        """SIGTERM every process this fleet started (a second one skips a worker's drain
        wait), then SIGKILL what is left after a few seconds."""
        started = [s.proc.pid for s in self.services.values() if s.proc is not None and s.proc.poll() is None]
        pids = {pid: _start_time(pid) for pid in started + _descendants(started)}
        for _ in range(2):
            for pid, when in pids.items():
                _signal_if_same(pid, when, signal.SIGTERM)
            time.sleep(0.2)
        deadline = time.monotonic() + 8
        for s in self.services.values():
            if s.proc is None:
                continue
            try:
                s.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for pid, when in pids.items():
            _signal_if_same(pid, when, signal.SIGKILL)
        for s in self.services.values():
            if s.proc is not None:
                s.proc.wait(timeout=10)
