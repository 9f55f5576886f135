"""A throwaway PostgreSQL server a test starts on a loopback port of its own (initdb + pg_ctl).

For database-outage tests: ``stop()`` kills the server the way a crash would
(``pg_ctl stop -m immediate``), ``start()`` brings it back on the same port and
data directory. pg_ctl acts on this server's data directory only, so no other
PostgreSQL is ever touched. As root the server runs as the ``postgres`` user
(PostgreSQL refuses to run as root).

    with PgServer() as pg:
        url = pg.url()
        pg.stop(); ...; pg.start()
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Optional

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        pytest.fail(f"{name} is not installed (the database-outage tests start their own PostgreSQL)", pytrace=False)
    return found


class PgServer:
    def __init__(self) -> None:
        self.initdb = _pg_bin("initdb")
        self.pg_ctl = _pg_bin("pg_ctl")
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="dbos-test-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.running = False
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr}{done.stdout}\n{log}")

    def init(self) -> "PgServer":
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        return self

    def start(self) -> None:
        # fsync off is safe here (only an OS crash loses unsynced writes); synchronous_commit
        # must stay on, or an immediate stop loses commits already acknowledged.
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self.running = True

    def stop(self) -> None:
        """Stop at once, as a crash would (no checkpoint; clients see their connections drop)."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self.running = False

    def remove(self) -> None:
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PgServer":
        self.init()
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: Optional[Any]) -> None:
        self.remove()
