"""Chaos (issue 13): four real ``dbos-worker`` processes run a few hundred five-step
workflows over limited queues while a random one is SIGKILLed every 2 s and
replaced under a new executor ID, and the throwaway ``redis-server`` they all use
is killed mid-run. Then: 0 lost, 0 duplicated transaction effects, 0 limit
violations, and no operation re-run except one in flight on a killed process.
"""

from __future__ import annotations

import collections
import math
import os
import random
import statistics
import time
from pathlib import Path

import pytest
from conftest import Backend
from fleet_helpers import max_overlap
from handover_helpers import (
    Cluster,
    Proc,
    RedisServer,
    executions,
    expected,
    free_port,
    http_get,
    parse_metrics,
    unique,
)

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("backend", ["postgres"], indirect=True)]

KILL_EVERY_SEC = 2.0
WORKERS = 4
SECONDS_PER_OP = 0.2
CHAOS_WINDOW_SEC = 30.0  # kills stop after this (then the fleet finishes what is left)
# queue -> how many workflows; the limits are handover_app's
PLAN = {"ho_global": 90, "ho_worker": 80, "ho_part": 60, "ho_a": 70}
PART_KEYS = ["k0", "k1", "k2", "k3"]
POOL = 8  # connections per worker: four busy workers (and the kills' replacements) fit beside other tests


@pytest.mark.timeout(300)
def test_chaos_random_sigkill_every_2s_and_redis_killed(
    backend: Backend, tmp_path: Path, redis_server: RedisServer
) -> None:
    seed = int(os.environ.get("HO_CHAOS_SEED", str(random.randrange(1 << 30))))
    rng = random.Random(seed)
    cluster = Cluster(backend, tmp_path, redis_url=redis_server.url)
    try:
        _chaos(cluster, redis_server, rng, seed)
    finally:
        cluster.close()


def _chaos(cluster: Cluster, redis_server: RedisServer, rng: random.Random, seed: int) -> None:
    port = free_port()
    cluster.start_coordinator(http_port=port)
    live: list[Proc] = cluster.start_workers(*(unique("chaos") for _ in range(WORKERS)), pool=POOL)

    queue_of: dict[str, str] = {}
    tags: dict[str, str] = {}
    part_order: dict[str, list[str]] = {k: [] for k in PART_KEYS}
    for queue, n in PLAN.items():
        for i in range(n):
            tag = unique(f"{queue}-{i}")
            key = PART_KEYS[i % len(PART_KEYS)] if queue == "ho_part" else None
            w = cluster.enqueue(queue, tag, seconds=SECONDS_PER_OP, key=key)
            queue_of[w], tags[w] = queue, tag
            if key is not None:
                part_order[key].append(w)
    ids = list(queue_of)
    started = time.monotonic()

    killed: dict[int, float] = {}  # pid -> time.time() of its SIGKILL
    redis_killed = False
    next_kill = started + KILL_EVERY_SEC

    def finished() -> int:
        return sum(1 for s in cluster.statuses(ids).values() if s.status == "SUCCESS")

    def step() -> bool:
        nonlocal redis_killed, next_kill, live
        cluster.check_alive(*live)
        done = finished()
        if done == len(ids):
            return True
        if not redis_killed and done >= len(ids) // 3:
            redis_server.kill()  # from here on every wakeup is a poll
            redis_killed = True
        if time.monotonic() >= next_kill and time.monotonic() - started < CHAOS_WINDOW_SEC:
            # A victim among those registered (a replacement may still be starting).
            registered = [p for p in live if (row := cluster.executor(p.name)) is not None and row["pid"] == p.pid]
            if registered:
                victim = rng.choice(registered)
                killed[victim.pid] = victim.kill()
                live = [p for p in live if p is not victim]
                live.append(cluster.start_worker(unique("chaos"), wait=False, pool=POOL))  # a new pod name
                next_kill += KILL_EVERY_SEC
        return False

    cluster.wait(step, "(every workflow finished under chaos)", timeout=150, interval=0.1)
    took = time.monotonic() - started
    st = cluster.statuses(ids)
    assert redis_killed, "the run ended before Redis was killed"

    # 0 lost: every workflow finished, with its own result.
    assert sum(1 for s in st.values() if s.status == "SUCCESS") == len(ids)
    wrong = [w for w in ids if cluster.result(w) != expected(tags[w])]
    assert not wrong, f"{len(wrong)} wrong results"
    # 0 duplicated (and 0 missing) transaction effects.
    tx = cluster.tx_counts()
    duplicated = sum(1 for w in ids if tx.get(w, 0) > 1)
    missing = sum(1 for w in ids if tx.get(w, 0) == 0)
    assert duplicated == 0 and missing == 0, f"transactions: {duplicated} duplicated, {missing} missing"

    runs = cluster.step_runs(ids)
    # An operation ran again only after the process running it was SIGKILLed.
    by_op: dict[tuple[str, int], list[int]] = collections.defaultdict(list)
    for r in runs:
        by_op[(r.workflow_id, r.step)].append(r.pid)
    rerun_on_live = {k: pids for k, pids in by_op.items() if any(p not in killed for p in pids[:-1])}
    assert not rerun_on_live, f"operations re-run though no process running them died: {rerun_on_live}"
    reruns = sum(len(p) - 1 for p in by_op.values())

    # 0 limit violations, at every instant (recorded intervals; a killed execution ends at its SIGKILL).
    spans = executions(runs, killed)
    violations = []
    glob = [(s, e) for w, _, s, e in spans if queue_of[w] == "ho_global"]
    if max_overlap(glob) > 6:
        violations.append(f"ho_global concurrency=6: {max_overlap(glob)} at once")
    per_pid: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
    for w, pid, s, e in spans:
        if queue_of[w] == "ho_worker":
            per_pid[pid].append((s, e))
    for pid, intervals in per_pid.items():
        if max_overlap(intervals) > 3:
            violations.append(f"ho_worker worker_concurrency=3: {max_overlap(intervals)} at once on pid {pid}")
    created = cluster.created_at(ids)
    for key, order in part_order.items():
        mine = sorted((s, e, created[w]) for w, _, s, e in spans if w in order)
        if max_overlap((s, e) for s, e, _ in mine) > 1:
            violations.append(f"partition {key}: two at once")
        # Claim order is enqueue time (created_at: strictly increasing per enqueuing
        # process, so one client's workflows never tie).
        enqueued = [c for _, _, c in mine]
        if enqueued != sorted(enqueued):
            violations.append(f"partition {key}: out of enqueue order {enqueued}")
    assert not violations, violations

    # Kill -> first resumed operation elsewhere, per kill that left work behind.
    latencies = []
    slowest: list[tuple[float, int, list[str]]] = []
    for pid, at in killed.items():
        left = {r.workflow_id for r in runs if r.pid == pid and r.ended is None}
        later = [r.started for r in runs if r.workflow_id in left and r.pid != pid and r.started >= at]
        if later:
            latencies.append(min(later) - at)
            slowest.append((min(later) - at, pid, sorted({queue_of[w] for w in left})))
    # Every killed worker is declared DEAD once (the last one maybe after the run ended), no live one.
    def metrics() -> dict[str, list[tuple[dict[str, str], float]]]:
        return parse_metrics(http_get(port, "/metrics")[1].decode())

    cluster.wait(lambda: metrics()["dbos_coordinator_executors_declared_dead_total"][0][1] >= len(killed),
                 f"({len(killed)} killed workers declared DEAD)", timeout=10)
    final = metrics()
    declared = final["dbos_coordinator_executors_declared_dead_total"][0][1]
    handovers = final["dbos_coordinator_handovers_total"][0][1]
    assert declared == len(killed), f"{len(killed)} workers killed, {declared} declared DEAD"
    dead = {r[0] for r in cluster.backend.rows(
        f"SELECT executor_id FROM {cluster.backend.table('executors')} WHERE state = 'DEAD'")}
    assert dead.isdisjoint(p.name for p in live), "a live worker was declared DEAD"
    assert latencies, "no kill left work behind to hand over"
    ordered = sorted(latencies)
    p99 = ordered[math.ceil(0.99 * len(ordered)) - 1]  # nearest rank
    print(
        f"\nchaos (seed {seed}): {len(ids)} workflows x 5 operations in {took:.1f} s "
        f"({len(ids) / took:.1f} workflows/s); {len(killed)} SIGKILLs, Redis killed at 1/3; "
        f"lost 0, duplicated 0, limit violations 0; {int(handovers)} hand-overs, {reruns} operation re-runs; "
        f"kill -> first resumed step p50 {statistics.median(latencies):.2f} s, p99 {p99:.2f} s, "
        f"max {max(latencies):.2f} s"
    )
    print("slowest resumptions:", sorted(slowest, reverse=True)[:5])
    assert len(killed) >= 5, f"only {len(killed)} kills: the run was too short to be chaos"
