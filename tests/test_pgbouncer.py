"""Behind PgBouncer in transaction pooling mode (server backends rotate between
transactions, PgBouncer does not track prepared statements): with
``use_prepared_statements: False``, and with the default, where the first refused
prepared statement switches the database to unprepared statements (one warning)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest

from dbos import DBOS, Queue, SetWorkflowID
from tests.conftest import PG_BASE_URL, _create_pg_database, _drop_pg_database, _psycopg_url, eventually

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[int]:
    if not os.path.exists(PGBOUNCER):
        pytest.fail("pgbouncer is not installed: run `apt-get install -y pgbouncer`", pytrace=False)
    # Under /tmp itself: pgbouncer runs as postgres, who cannot enter pytest's tmp dirs.
    d = Path(tempfile.mkdtemp(prefix="dbos-pgbouncer-"))
    port = _free_port()
    info = psycopg.conninfo.conninfo_to_dict(_psycopg_url(PG_BASE_URL))
    (d / "users.txt").write_text('"postgres" ""\n')
    (d / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={info.get('host', '127.0.0.1')} port={info.get('port', 5432)}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {d / 'users.txt'}\n"
        "pool_mode = transaction\n"  # 1.18 has no max_prepared_statements: never tracks them
        
        "default_pool_size = 3\nmax_client_conn = 500\n"
        f"logfile = {d / 'pgbouncer.log'}\n"
    )
    cmd = [PGBOUNCER, str(d / "pgbouncer.ini")]
    if os.geteuid() == 0:
        os.chmod(d, 0o777)
        for f in d.iterdir():
            os.chmod(f, 0o666)
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"pgbouncer did not start: {out}", pytrace=False)
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()  # only the pgbouncer we started
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def bounced(pgbouncer: int) -> Iterator[str]:
    """A fresh database made on PostgreSQL directly; its URL through PgBouncer."""
    name, _ = _create_pg_database()
    try:
        yield f"postgresql://postgres@127.0.0.1:{pgbouncer}/{name}"
    finally:
        DBOS.destroy()
        _drop_pg_database(name)


def _workload() -> None:
    @DBOS.step()
    def add(x: int, y: int) -> int:
        return x + y

    @DBOS.transaction()
    def txn(x: int) -> int:
        return x * 2

    @DBOS.workflow()
    def work(x: int) -> int:
        return txn(add(add(x, 1), 1))

    @DBOS.workflow()
    def receiver() -> Any:
        return DBOS.recv("topic", timeout_seconds=20)

    @DBOS.workflow()
    def sender(dest: str) -> None:
        DBOS.send(dest, "hello", "topic")

    queue = Queue("q" + uuid.uuid4().hex[:6], concurrency=2)
    return_values = (work, receiver, sender, queue)
    _workload.funcs = return_values  # type: ignore[attr-defined]


def _run(url: str, **config: Any) -> None:
    _workload()
    work, receiver, sender, queue = _workload.funcs  # type: ignore[attr-defined]
    DBOS(config={"name": "pgb", "system_database_url": url, **config})  # type: ignore[typeddict-item]
    DBOS.launch()

    assert work(1) == 6
    handles = [queue.enqueue(work, i) for i in range(20)]
    assert [h.get_result() for h in handles] == [(i + 2) * 2 for i in range(20)]

    rid = str(uuid.uuid4())
    with SetWorkflowID(rid):
        rh = DBOS.start_workflow(receiver)
    sender(rid)
    assert rh.get_result() == "hello"

    results: dict[int, int] = {}
    errors: list[BaseException] = []

    def many(base: int) -> None:
        try:
            for i in range(base, base + 25):
                results[i] = work(i)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=many, args=(k * 25,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == {i: (i + 2) * 2 for i in range(200)}
    eventually(lambda: all(h.get_status().status == "SUCCESS" for h in handles))


def test_unprepared_behind_pgbouncer(bounced: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dbos"):
        _run(bounced, use_prepared_statements=False)
    assert not [r for r in caplog.records if "refused a prepared statement" in r.getMessage()]


def test_default_falls_back_behind_pgbouncer(bounced: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dbos"):
        _run(bounced)
    warnings = [r for r in caplog.records if "refused a prepared statement" in r.getMessage()]
    assert len(warnings) >= 1
    # One warning per Database (the system database here is also the application one).
    assert len(warnings) <= 2, [w.getMessage() for w in warnings]
