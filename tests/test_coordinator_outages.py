"""Bad input and outages (issue 13): a database or Redis that cannot be reached at
start is a clear error and exit 2; one lost later is retried, the coordinator
keeps running, logs the change once, and acts again when it is back.

Redis outages use a throwaway ``redis-server`` the test starts and kills; the
database outage a throwaway PostgreSQL server (tests/pg_server.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Backend
from handover_helpers import BIN, ROOT, Cluster, RedisServer, expected, free_port, http_get, unique
from pg_server import PgServer

pytestmark = [pytest.mark.parametrize("backend", ["postgres"], indirect=True), pytest.mark.timeout(240)]


def _coordinator(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    started = time.monotonic()
    done = subprocess.run([str(BIN / "dbos-coordinator"), *args], capture_output=True, text=True, timeout=60,
                          cwd=str(ROOT), env=env)
    return done.returncode, done.stderr, time.monotonic() - started


def test_unreachable_database_or_redis_at_start_exit_2(backend: Backend) -> None:
    dead_port = free_port()
    cases = [
        ((), "no database: pass --db-url or set DBOS_SYSTEM_DATABASE_URL"),
        (("--db-url", f"postgresql://postgres@127.0.0.1:{dead_port}/nowhere"),
         f"cannot prepare the system database postgresql+psycopg://postgres@127.0.0.1:{dead_port}/nowhere"),
        (("--db-url", backend.url, "--redis-url", f"redis://127.0.0.1:{dead_port}/0"),
         f"cannot reach Redis at redis://127.0.0.1:{dead_port}/0"),
        (("--db-url", backend.url, "--dead-after", "0"), "--dead-after: must be a positive"),
    ]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}  # no DBOS_* variable
    for args, message in cases:
        code, stderr, took = _coordinator(*args, env=env)
        assert code == 2, (args, code, stderr)
        assert message in stderr, (args, stderr)
        assert "Traceback" not in stderr, stderr
        assert took < 45, f"{args}: {took:.1f} s to fail"  # one interpreter start and a refused connection


def _round(cluster: Cluster, survivor: str, n: int = 3) -> None:
    """A worker dies with ``n`` workflows in flight; they finish on ``survivor``."""
    victim = cluster.start_worker(unique("victim"), hold=True)
    tags = [unique("o") for _ in range(n)]
    ids = [cluster.enqueue("ho_a", t, hold_at=3) for t in tags]
    cluster.wait(lambda: len({r.workflow_id for r in cluster.step_runs(ids) if r.step == 3}) == n,
                 "(work in flight on the victim)")
    victim.kill()
    st = cluster.wait_done(ids, timeout=30)
    assert {s.executor_id for s in st.values()} == {survivor}
    assert [cluster.result(w) for w in ids] == [expected(t) for t in tags]


def test_redis_lost_later_coordinator_keeps_handing_over(
    backend: Backend, tmp_path: Path, redis_server: RedisServer
) -> None:
    cluster = Cluster(backend, tmp_path, redis_url=redis_server.url)
    try:
        port = free_port()
        coord = cluster.start_coordinator(http_port=port)
        survivor = cluster.start_worker(unique("s"))
        _round(cluster, survivor.name)

        redis_server.kill()
        cluster.wait(lambda: "redis-wakeups failed" in coord.log(), "(the coordinator saw Redis go)", timeout=15)
        _round(cluster, survivor.name)  # hand-over and pick-up by polling alone
        cluster.check_alive(coord)
        assert http_get(port, "/healthz")[0] == 200
        assert coord.log().count("redis-wakeups failed") == 1, "the outage was logged more than once"

        redis_server.start()
        cluster.wait(lambda: "redis subscription restored" in coord.log(), "(the coordinator reconnected)",
                     timeout=20)
        _round(cluster, survivor.name)
        tx = cluster.tx_counts()
        assert len(tx) == 9 and set(tx.values()) == {1}, tx
    finally:
        cluster.close()


def test_database_lost_later_coordinator_retries_and_recovers(backend: Backend, tmp_path: Path) -> None:
    with PgServer() as pg:
        url = pg.url()
        port = free_port()
        cluster = Cluster(backend, tmp_path, redis_url=None)
        try:
            coord = cluster.start_coordinator(db_url=url, http_port=port, redis_url=None)
            cluster.wait(lambda: "leader (term 1)" in coord.log(), "(leader on the throwaway server)")
            pg.stop()
            cluster.wait(lambda: "coordinator failed:" in coord.log(), "(the coordinator saw the database go)",
                         timeout=15)
            assert "cannot renew the leader lease; acting as standby" in coord.log()
            code, _ = http_get(port, "/api/executors")
            assert code == 503
            cluster.check_alive(coord)
            pg.start()
            cluster.wait(lambda: "coordinator recovered" in coord.log(), "(the coordinator recovered)", timeout=30)
            cluster.wait(lambda: http_get(port, "/healthz")[0] == 200, "(healthy again)", timeout=10)
            assert json.loads(http_get(port, "/healthz")[1])["leader"] is True  # it leads (and acts) again
            cluster.check_alive(coord)
            log = coord.log()
            # Each state change logged once, however many retries the outage took.
            assert log.count("coordinator failed:") == 1, log
            assert log.count("cannot renew the leader lease") == 1, log
            assert log.count("coordinator recovered") == 1, log
            assert log.count("leader (term 1)") == 2, log  # its own lease, taken again after the outage
            code, body = http_get(port, "/api/executors")
            assert code == 200 and body == b"[]"
        finally:
            cluster.close()
