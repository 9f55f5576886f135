"""Versions first-class (issue 14): pinned work waits for an executor of its version,
and the coordinator's local launcher starts one, within a cap, with backoff after
failures, once across two coordinators. Real ``dbos-worker`` and
``dbos-coordinator`` processes of tests/apps/handover_app.py on PostgreSQL + Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from conftest import Backend
from handover_helpers import ROOT, Cluster, Proc, expected, free_port, http_get, parse_metrics, unique

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)

APP = ROOT / "tests" / "apps" / "handover_app.py"
WORKER_CMD = f"{sys.executable} -m worker {APP} --exit-when-idle 2 --drain-timeout 2"


@pytest.fixture
def cluster(backend: Backend, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(backend, tmp_path)
    try:
        yield c
    finally:
        try:
            _stop_launched(c)
        finally:
            c.close()


def _launches(c: Cluster, version: Optional[str] = None) -> list[dict[str, Any]]:
    rows = c.backend.rows(
        f"SELECT launch_id, app_version, state, attempt, started_at, finished_at, handle, error "
        f"FROM {c.backend.table('launches')} ORDER BY started_at"
    )
    out = [dict(zip(("launch_id", "app_version", "state", "attempt", "started_at", "finished_at", "handle",
                     "error"), r)) for r in rows]
    return [r for r in out if version is None or r["app_version"] == version]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_launched(c: Cluster) -> None:
    """The launched workers are the coordinator's children (their pids in ``launches``):
    end any still running so nothing outlives the test."""
    try:
        launches = _launches(c)
    except Exception:
        return
    for launch in launches:
        handle = launch["handle"]
        if handle and handle.isdigit() and _pid_alive(int(handle)):
            os.kill(int(handle), signal.SIGTERM)


def start_launcher_coordinator(c: Cluster, *extra: str, http_port: Optional[int] = None) -> Proc:
    argv = [sys.executable, "-m", "coordinator", "--db-url", c.backend.url, "--redis-url", str(c.redis_url),
            "--launcher", "local", "--launch-log-dir", str(c.dir / "launches"), *extra]
    if http_port is not None:
        argv += ["--http-port", str(http_port)]
    name = f"coordinator-{len(c.coordinators)}"
    proc = Proc(name, argv, c._env(DBOS_LOG_LEVEL="INFO"), c.dir / f"{name}.log")
    c.coordinators.append(proc)
    c.all.append(proc)
    c.wait(lambda: " started:" in proc.log() or not proc.alive(), f"({name} started)")
    assert proc.alive(), proc.log()
    return proc


def fleet_versions(c: Cluster) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "dbos.cli.main", "fleet", "versions", "--db-url", c.backend.url, "--json"],
        capture_output=True, text=True, timeout=60, cwd=str(ROOT),
    )
    assert out.returncode == 0, out.stderr
    return {v["app_version"]: v for v in json.loads(out.stdout)}


def test_pinned_work_without_launcher_waits_untouched_and_is_listed(cluster: Cluster) -> None:
    v1, v2 = unique("v1"), unique("v2")
    cluster.start_worker(unique("w1"), version=v1)
    port = free_port()
    cluster.start_coordinator(http_port=port)
    tag = unique("pinned")
    wid = cluster.enqueue("ho_a", tag, version=v2)
    time.sleep(5.0)  # the claim: nothing may happen for 5 s (v1 polls every 0.5 s meanwhile)
    st = cluster.statuses([wid])[wid]
    assert st.status == "ENQUEUED" and st.executor_id is None, st
    assert cluster.step_runs([wid]) == [], "a v1 executor ran v2 work"
    listed = fleet_versions(cluster)
    assert listed[v2]["waiting"] == 1 and listed[v2]["live_executors"] == 0, listed
    assert listed[v2]["oldest_waiting_age_s"] >= 4.5
    assert listed[v2]["launches_in_flight"] == 0
    assert listed[v1]["live_executors"] == 1 and listed[v1]["waiting"] == 0
    assert listed[v1]["latest"] is True  # the only version an executor launched with
    _, body = http_get(port, "/metrics")
    desired = {s[0]["app_version"]: s[1] for s in parse_metrics(body.decode()).get("dbos_fleet_desired_executors", [])}
    assert desired.get(v2) == 1.0, desired
    code, body = http_get(port, f"/api/scaling/{v2}")
    assert code == 200 and json.loads(body)["desired_executors"] == 1


def test_local_launcher_starts_an_executor_that_exits_when_idle(cluster: Cluster) -> None:
    v2 = unique("v2")
    port = free_port()
    start_launcher_coordinator(cluster, "--worker-cmd", WORKER_CMD, http_port=port)
    tags = [unique("launch") for _ in range(3)]
    appeared = time.time()
    ids = [cluster.enqueue("ho_b", t, version=v2) for t in tags]
    done = cluster.wait_done(ids, timeout=60)
    assert {s.application_version for s in done.values()} == {v2}
    for t, wid in zip(tags, ids):
        assert cluster.result(wid) == expected(t)
    launches = _launches(cluster, v2)
    assert len(launches) == 1, launches
    assert launches[0]["started_at"] / 1000 - appeared <= 3.0  # decided at the next tick or two
    cluster.wait(lambda: _launches(cluster, v2)[0]["state"] == "SUCCEEDED", "(launch counted done)")
    pid = int(launches[0]["handle"])
    # --exit-when-idle 2: the launched worker drains and exits by itself.
    cluster.wait(lambda: not _pid_alive(pid) or _zombie(pid), "(launched worker exited when idle)", timeout=30)
    listed = fleet_versions(cluster)
    assert listed[v2]["live_executors"] == 0 and listed[v2]["waiting"] == 0, listed
    _, body = http_get(port, "/metrics")
    outcomes = {(s[0]["app_version"], s[0]["outcome"]): s[1]
                for s in parse_metrics(body.decode()).get("dbos_coordinator_launches_total", [])}
    assert outcomes.get((v2, "started")) == 1.0 and outcomes.get((v2, "succeeded")) == 1.0, outcomes


def _zombie(pid: int) -> bool:
    """Exited but not yet reaped by the coordinator (its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_failing_launch_is_retried_with_backoff_and_reported(cluster: Cluster) -> None:
    v9 = unique("v9")
    port = free_port()
    bad = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    coord = start_launcher_coordinator(cluster, "--worker-cmd", bad, http_port=port)
    wid = cluster.enqueue("ho_a", unique("never"), version=v9)
    time.sleep(9.0)  # backoff 2 s, 4 s, 8 s: at most 3 attempts in 9 s, never a tight loop
    launches = _launches(cluster, v9)
    assert 2 <= len(launches) <= 3, launches
    assert [r["attempt"] for r in launches] == list(range(1, len(launches) + 1))
    assert all(r["state"] == "FAILED" for r in launches[:-1])
    assert "exited with code 3" in (launches[0]["error"] or ""), launches[0]
    gaps = [(b["started_at"] - a["finished_at"]) / 1000 for a, b in zip(launches, launches[1:])]
    assert all(g >= 1.9 for g in gaps), gaps
    assert cluster.statuses([wid])[wid].status == "ENQUEUED"
    _, body = http_get(port, "/metrics")
    failed = [s for s in parse_metrics(body.decode()).get("dbos_coordinator_launches_total", [])
              if s[0]["app_version"] == v9 and s[0]["outcome"] == "failed"]
    assert failed and failed[0][1] >= 1.0
    assert "failed: the worker exited with code 3" in coord.log()


def test_two_coordinators_never_launch_twice_for_one_version(cluster: Cluster) -> None:
    v3 = unique("v3")
    sleeper = f"{sys.executable} -c 'import time; time.sleep(60)'"  # never heartbeats
    for _ in range(2):
        start_launcher_coordinator(cluster, "--worker-cmd", sleeper, "--launch-timeout", "60")
    cluster.enqueue("ho_a", unique("once"), version=v3)
    cluster.wait(lambda: len(_launches(cluster, v3)) >= 1, "(a launch)")
    time.sleep(4.0)  # both coordinators tick four times meanwhile; the lease may even move
    launches = _launches(cluster, v3)
    assert len(launches) == 1 and launches[0]["state"] == "LAUNCHING", launches
    assert fleet_versions(cluster)[v3]["launches_in_flight"] == 1


def test_old_version_work_of_dead_executors_gets_an_executor_launched(cluster: Cluster) -> None:
    v1 = unique("v1")
    w = cluster.start_worker(unique("w1"), version=v1, hold=True)
    start_launcher_coordinator(cluster, "--worker-cmd", WORKER_CMD)
    tags = [unique("old") for _ in range(4)]
    ids = [cluster.enqueue("ho_c", t, hold_at=3, version=v1) for t in tags]
    cluster.wait(lambda: len({r.workflow_id for r in cluster.step_runs(ids) if r.step == 3}) == 4,
                 "(v1 work in flight)")
    w.kill()  # the last v1 executor: the work is handed over, and v1 has no executor
    cluster.wait_done(ids, timeout=60)
    for t, wid in zip(tags, ids):
        assert cluster.result(wid) == expected(t)
    cluster.wait(lambda: [r["state"] for r in _launches(cluster, v1)] == ["SUCCEEDED"], "(one launch, done)")
    assert cluster.tx_counts() == {wid: 1 for wid in ids}


def test_the_patch_fork_story_runs_end_to_end(tmp_path: Path, backend: Backend) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "patch_fork" / "run.py"), "--db-url", backend.url],
        capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "it failed on v1: ZeroDivisionError" in text
    assert "forked onto v2 from step 3" in text
    lines = text.split("5. the fork succeeded on v2:")[1].splitlines()
    assert "reserved e-book by shop-v1-a (v1)" in lines[1]  # recorded on v1, reused
    assert "charged 12 by shop-v1-a (v1)" in lines[2]
    assert "nothing to ship (digital) by launch-" in lines[3] and "(v2)" in lines[3]
    assert "6. the launched v2 worker exited by itself" in text

