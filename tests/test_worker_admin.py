"""The worker's admin server over real HTTP, and ``dbos fleet executors`` (issue 12).

Every endpoint of ``dbos-worker --admin-port``: ``/dbos-healthz``, ``/readyz``,
``/deactivate``, ``POST /dbos-workflow-recovery``, ``/dbos-workflow-queues-metadata``,
``/metrics`` (parsed with ``prometheus_client.parser``, its counters checked
against the workflows run), and the token rule of a non-loopback bind. Then the
executor states ``dbos fleet executors --json`` derives, at the moments they change.
"""

from __future__ import annotations

import signal
import socket
import time
from typing import Any

import httpx
import pytest
from conftest import Backend, eventually
from prometheus_client.parser import text_string_to_metric_families
from worker_helpers import (
    INTERNAL_QUEUE,
    Fleet,
    check_exactly_once,
    executor_state,
    fleet_executors,
    fleet_fixture,
    free_port,
    new_id,
)

fleet = pytest.fixture(fleet_fixture, name="fleet")

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed: (sample name, sorted labels) -> value."""
    r = httpx.get(f"{base}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, /, **labels: str) -> float:
    return metrics.get((metric, tuple(sorted(labels.items()))), 0.0)


def test_admin_endpoints_over_http(fleet: Fleet, backend: Backend) -> None:
    port = free_port()
    # A serves every queue but w12_slow; the ghost serves only w12_slow, so what it held
    # is recovered on A only through /dbos-workflow-recovery.
    a = fleet.spawn("worker_app.py", "--admin-port", str(port), "--queues", "w12_plain,w12_pair,w12_other",
                    name="A")
    base = f"http://127.0.0.1:{port}"
    a.wait_started()
    assert a.admin_port() == port
    r = httpx.get(f"{base}/dbos-healthz")
    assert r.status_code == 200 and r.json()["status"] == "healthy"
    r = httpx.get(f"{base}/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"

    # /dbos-workflow-queues-metadata: the app's queues, as DBOS lists them.
    meta = {q["name"]: q for q in httpx.get(f"{base}/dbos-workflow-queues-metadata").json()}
    assert set(meta) == {"w12_plain", "w12_pair", "w12_slow", "w12_other"}
    assert meta["w12_pair"]["concurrency"] == 2 and "workerConcurrency" not in meta["w12_pair"]
    assert meta["w12_other"]["workerConcurrency"] == 3 and "concurrency" not in meta["w12_other"]
    assert "concurrency" not in meta["w12_plain"] and meta["w12_plain"]["priorityEnabled"] is False

    # /metrics against what ran: 4 successes and 2 errors on w12_plain, 1 success on w12_pair.
    ok = [fleet.enqueue("w12_plain", "quick", new_id("ok")) for _ in range(4)]
    bad = [fleet.enqueue("w12_plain", "fail", new_id("bad")) for _ in range(2)]
    pair = [fleet.enqueue("w12_pair", "quick", new_id("p"))]
    fleet.wait_status([*ok, *pair], alive=[a])
    fleet.wait_status(bad, "ERROR", alive=[a])
    # Then load: 3 gated runs fill w12_other's worker concurrency, 2 more wait behind them.
    tag = new_id("g")
    gated = [fleet.enqueue("w12_other", "gated", tag) for _ in range(3)]
    behind = [fleet.enqueue("w12_other", "quick", new_id("b")) for _ in range(2)]
    eventually(lambda: fleet.status_of(gated) == {w: ("PENDING", a.vmid) for w in gated}, timeout=20)
    m = scrape(base)
    assert sample(m, "dbos_workflows_started_total", name="quick", queue="w12_plain") == 4
    assert sample(m, "dbos_workflows_started_total", name="fail", queue="w12_plain") == 2
    assert sample(m, "dbos_workflows_started_total", name="quick", queue="w12_pair") == 1
    assert sample(m, "dbos_workflows_started_total", name="gated", queue="w12_other") == 3
    assert sample(m, "dbos_workflows_finished_total", name="quick", queue="w12_plain", status="SUCCESS") == 4
    assert sample(m, "dbos_workflows_finished_total", name="fail", queue="w12_plain", status="ERROR") == 2
    assert sample(m, "dbos_workflows_finished_total", name="quick", queue="w12_pair", status="SUCCESS") == 1
    assert sample(m, "dbos_workflows_finished_total", name="fail", queue="w12_plain", status="SUCCESS") == 0
    assert sample(m, "dbos_queue_claims_total", queue="w12_plain") == 6
    assert sample(m, "dbos_queue_claims_total", queue="w12_pair") == 1
    assert sample(m, "dbos_queue_claims_total", queue="w12_other") == 3
    assert sample(m, "dbos_workflow_duration_seconds_count") == 7
    assert sample(m, "dbos_workflow_duration_seconds_bucket", le="+Inf") == 7
    assert sample(m, "dbos_workflow_duration_seconds_sum") > 0
    # Every begin step of the 10 started (gated ones are ticking), and more.
    assert sample(m, "dbos_step_duration_seconds_count") >= 10
    assert sample(m, "dbos_workflows_running") == 3
    assert sample(m, "dbos_queue_depth", queue="w12_other") == 2
    assert sample(m, "dbos_queue_depth", queue="w12_plain") == 0
    assert 0 <= sample(m, "dbos_heartbeat_age_seconds") < 3
    assert sample(m, "dbos_executor_info", executor_id=a.vmid, app_version="w12-v1", state="RUNNING") == 1

    # POST /dbos-workflow-recovery: a SIGKILLed executor's PENDING work, recovered here.
    tag_r = new_id("r")
    orphans = [fleet.enqueue("w12_slow", "gated", tag_r) for _ in range(2)]
    ghost = fleet.start("worker_app.py", "--queues", "w12_slow", name="ghost")
    eventually(lambda: fleet.status_of(orphans) == {w: ("PENDING", ghost.vmid) for w in orphans}, timeout=20)
    eventually(lambda: all(fleet.runs(w, "tick") for w in orphans), timeout=20)
    ghost.kill()
    r = httpx.post(f"{base}/dbos-workflow-recovery", json=[ghost.vmid])
    assert r.status_code == 200, r.text
    assert sorted(r.json()) == sorted(orphans)
    eventually(lambda: fleet.status_of(orphans) == {w: ("PENDING", a.vmid) for w in orphans}, timeout=10)
    r = httpx.post(f"{base}/dbos-workflow-recovery", json=[ghost.vmid])  # nothing left to recover
    assert (r.status_code, r.json()) == (200, [])
    for body in ('"not a list"', "[1, 2]", "{not json"):
        r = httpx.post(f"{base}/dbos-workflow-recovery", content=body,
                       headers={"content-type": "application/json"})
        assert r.status_code == 400, (body, r.text)
    assert httpx.get(f"{base}/dbos-workflow-recovery").status_code == 405

    # GET /deactivate: no more claims; DRAINING to the fleet; not ready; still healthy.
    r = httpx.get(f"{base}/deactivate")
    assert r.status_code == 200
    fleet.wait_executor_state(a.vmid, "DRAINING")
    r = httpx.get(f"{base}/readyz")
    assert (r.status_code, r.json()["status"]) == (503, "draining")
    assert httpx.get(f"{base}/dbos-healthz").status_code == 200
    late = fleet.enqueue("w12_plain", "quick", new_id("late"))
    fleet.release(tag)  # the gated ones finish, freeing w12_other's slots: still nothing claimed
    fleet.release(tag_r)
    fleet.wait_status([*gated, *orphans], alive=[a])
    assert fleet.status_of([*behind, late]) == {w: ("ENQUEUED", None) for w in [*behind, late]}
    assert sample(scrape(base), "dbos_executor_info", executor_id=a.vmid, app_version="w12-v1",
                  state="DRAINING") == 1
    a.signal(signal.SIGTERM)
    assert a.wait_exit(timeout=15) == 0, a.describe()
    assert fleet.status_of([*behind, late]) == {w: ("ENQUEUED", None) for w in [*behind, late]}
    check_exactly_once(fleet, [*ok, *pair, *gated, *orphans], gated_ids=[*gated, *orphans])
    for w in orphans:  # begun on the ghost, finished here
        assert {r.pid for r in fleet.runs(w, "begin")} == {ghost.pid}
        assert [r.pid for r in fleet.runs(w, "end")] == [a.pid]
    with pytest.raises(httpx.TransportError):  # the admin server went with the process
        httpx.get(f"{base}/dbos-healthz", timeout=2)


def test_admin_token_rule_for_a_non_loopback_bind(fleet: Fleet) -> None:
    port = free_port()
    refused = fleet.spawn("worker_app.py", "--admin-host", "0.0.0.0", "--admin-port", str(port), name="no-token")
    assert refused.wait_exit(timeout=30) == 2, refused.describe()
    err = refused.stderr()
    assert "DBOS_ADMIN_TOKEN" in err and "0.0.0.0" in err, err
    assert "dbos-worker started" not in err

    token = "s3cret-" + new_id("t")
    port = free_port()
    a = fleet.start("worker_app.py", "--admin-host", "0.0.0.0", "--admin-port", str(port),
                    env={"DBOS_ADMIN_TOKEN": token}, name="token")
    base = f"http://127.0.0.1:{port}"
    good = {"Authorization": f"Bearer {token}"}
    # Reads need no token.
    assert httpx.get(f"{base}/dbos-healthz").status_code == 200
    assert httpx.get(f"{base}/readyz").status_code == 200
    assert httpx.get(f"{base}/metrics").status_code == 200
    assert httpx.get(f"{base}/dbos-workflow-queues-metadata").status_code == 200
    # Mutations do: none, a wrong one, the raw token without "Bearer".
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        assert httpx.get(f"{base}/deactivate", headers=headers).status_code == 401, headers
        assert httpx.post(f"{base}/dbos-workflow-recovery", json=["x"], headers=headers).status_code == 401
    assert httpx.get(f"{base}/readyz").status_code == 200  # the refused deactivations changed nothing
    assert fleet.executor_row(a.vmid)["state"] == "RUNNING"  # type: ignore[index]
    r = httpx.post(f"{base}/dbos-workflow-recovery", json=["nobody"], headers=good)
    assert (r.status_code, r.json()) == (200, [])
    assert httpx.get(f"{base}/deactivate", headers=good).status_code == 200
    assert httpx.get(f"{base}/readyz").status_code == 503
    fleet.wait_executor_state(a.vmid, "DRAINING")
    a.signal(signal.SIGTERM)
    assert a.wait_exit(timeout=15) == 0


def by_id(url: str, *args: str) -> dict[str, dict[str, Any]]:
    return {r["executor_id"]: r for r in fleet_executors(url, *args)}


@pytest.mark.slow
def test_fleet_executors_shows_each_state_when_it_holds(fleet: Fleet, backend: Backend) -> None:
    """One ``dbos fleet executors`` call per moment (each is a process start): each state is
    checked while the worker is held in it (its workflows gated, a drain timeout of 60 s)."""
    a = fleet.start("worker_app.py", "--queues", "w12_other", "--drain-timeout", "60", name="A")
    tag = new_id("t")
    ids = [fleet.enqueue("w12_other", "gated", tag) for _ in range(2)]
    eventually(lambda: fleet.status_of(ids) == {w: ("PENDING", a.vmid) for w in ids}, timeout=20)
    table = backend.table("executors")
    eventually(lambda: backend.scalar(f"SELECT running FROM {table} WHERE executor_id = :e", e=a.vmid) == 2,
               timeout=10, what="(the heartbeat carries the running count)")
    row = by_id(backend.url)[a.vmid]
    assert row["state"] == "RUNNING" and row["pid"] == a.pid and row["hostname"] == socket.gethostname()
    assert row["app_version"] == "w12-v1" and row["running"] == 2 and row["heartbeat_age_s"] < 3
    assert sorted(row["queues"]) == sorted([INTERNAL_QUEUE, "w12_other"])

    a.signal(signal.SIGTERM)
    fleet.wait_executor_state(a.vmid, "DRAINING")
    row = by_id(backend.url)[a.vmid]  # draining: its two workflows still run
    assert (row["state"], row["running"]) == ("DRAINING", 2), row
    a.check_alive()
    fleet.release(tag)
    assert a.wait_exit(timeout=20) == 0
    fleet.wait_status(ids)
    row = by_id(backend.url, "--dead-after", "0.5")[a.vmid]  # STOPPED stays STOPPED, however old
    assert (row["state"], row["running"]) == ("STOPPED", 0)

    # A SIGKILLed worker: RUNNING while its heartbeat is fresher than --dead-after,
    # DEAD once it is older, before any coordinator marks it.
    k = fleet.start("worker_app.py", name="K")
    k.kill()
    killed = fleet.executor_row(k.vmid)
    assert killed is not None and killed["state"] == "RUNNING"
    assert executor_state(backend.url, k.vmid, "--dead-after", "600") == "RUNNING"
    eventually(lambda: time.time() * 1000 - killed["heartbeat_at"] > 1500, timeout=10)
    dead = by_id(backend.url, "--dead-after", "1")[k.vmid]
    assert (dead["state"], dead["running"]) == ("DEAD", 0) and dead["heartbeat_age_s"] >= 1.5
    assert fleet.executor_row(k.vmid)["state"] == "RUNNING"  # type: ignore[index]  # derived, not written

    # Stopped and dead rows silent for more than a day are listed only with --all.
    two_days_ago = int(time.time() * 1000) - 2 * 24 * 3600 * 1000
    backend.execute(f"UPDATE {table} SET heartbeat_at = :t", t=two_days_ago)
    assert set(by_id(backend.url)) == set()
    listed = by_id(backend.url, "--all")
    assert {listed[a.vmid]["state"], listed[k.vmid]["state"]} == {"STOPPED", "DEAD"}


def test_plain_launch_serves_admin_from_config(fleet: Fleet) -> None:
    """The config keys run_admin_server / admin_port turn the same server on for a plain DBOS.launch()."""
    port = free_port()
    plain = fleet.plain(new_id("plain"), W12_ADMIN_PORT=str(port)).wait_ready()
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/dbos-healthz").status_code == 200
    assert httpx.get(f"{base}/readyz").status_code == 200
    ids = [fleet.enqueue("w12_plain", "quick", new_id("q")) for _ in range(2)]
    fleet.wait_status(ids)
    m = scrape(base)
    assert sample(m, "dbos_workflows_finished_total", name="quick", queue="w12_plain", status="SUCCESS") == 2
    assert plain.stop() == 0, plain.stderr()
    with pytest.raises(httpx.TransportError):  # stopped with DBOS.destroy()
        httpx.get(f"{base}/dbos-healthz", timeout=2)
