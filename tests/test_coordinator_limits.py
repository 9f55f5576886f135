"""Queue limits hold at every instant of a hand-over (issue 13): three real
``dbos-worker`` processes, one SIGKILLed mid-run, a ``dbos-coordinator``.

Every execution's interval is taken from the side table (tests/apps/handover_app.py):
from its first operation's start to its last one's end, or to the SIGKILL of
its process. A recorded interval lies inside the time its row held a slot, so an
overlap seen here is a real one.
"""

from __future__ import annotations

import collections
from typing import Optional

import pytest
from fleet_helpers import max_overlap
from handover_helpers import Cluster, Proc, executions, expected, unique

pytestmark = [pytest.mark.parametrize("backend", ["postgres"], indirect=True), pytest.mark.timeout(240)]


def _busy_worker(cluster: Cluster, ids: list[str], done_at_least: int) -> Optional[Proc]:
    """A live worker now inside one of ``ids`` (an operation started, not ended), once
    at least ``done_at_least`` of them have finished."""
    cluster.check_alive()
    finished = sum(1 for s in cluster.statuses(ids).values() if s.status == "SUCCESS")
    if finished < done_at_least:
        return None
    for r in cluster.step_runs(ids):
        if r.ended is None:
            proc = cluster.workers.get(r.executor_id)
            if proc is not None and proc.alive() and proc.pid == r.pid and r.step <= 3:
                return proc
    return None


def test_concurrency_2_across_three_workers_one_killed(cluster: Cluster) -> None:
    cluster.start_coordinator()
    vmids = [unique(f"l{i}") for i in range(3)]
    cluster.start_workers(*vmids)
    tags = [unique("c") for _ in range(12)]
    ids = [cluster.enqueue("ho_limit", t, seconds=0.25) for t in tags]

    victim = cluster.wait(lambda: _busy_worker(cluster, ids, 3), "(a worker mid-run)", interval=0.02)
    killed_at = victim.kill()
    st = cluster.wait_done(ids, timeout=40)

    assert [cluster.result(w) for w in ids] == [expected(t) for t in tags]
    runs = cluster.step_runs(ids)
    spans = executions(runs, {victim.pid: killed_at})
    overlap = max_overlap((s, e) for _, _, s, e in spans)
    assert overlap <= 2, f"concurrency=2 exceeded: {overlap} workflows ran at once"
    assert overlap == 2, "the queue never used both of its slots"
    # The victim's unfinished work was handed over and finished on the others.
    moved = {w for w, pid, _, _ in spans if pid == victim.pid} - {
        w for w, s in st.items() if s.executor_id == victim.name
    }
    assert moved, "the killed worker had nothing in flight"
    assert all(st[w].executor_id != victim.name for w in moved)
    assert cluster.tx_counts() == {w: 1 for w in ids}
    # Every other operation ran once; at most the one in flight at the kill ran twice.
    counts = collections.Counter((r.workflow_id, r.step) for r in runs)
    again = {k for k, n in counts.items() if n > 1}
    assert all(n <= 2 for n in counts.values())
    assert len(again) <= len(moved), again


def test_partitioned_queue_keeps_per_key_order_across_a_kill(cluster: Cluster) -> None:
    cluster.start_coordinator()
    vmids = [unique(f"p{i}") for i in range(3)]
    cluster.start_workers(*vmids)
    keys = ["alpha", "beta", "gamma"]
    order: dict[str, list[str]] = {k: [] for k in keys}
    tags: dict[str, str] = {}
    for i in range(4):
        for k in keys:
            tag = unique(f"{k}{i}")
            w = cluster.enqueue("ho_part", tag, seconds=0.15, key=k)
            order[k].append(w)
            tags[w] = tag
    ids = [w for k in keys for w in order[k]]

    victim = cluster.wait(lambda: _busy_worker(cluster, ids, 2), "(a worker mid-run on a partition)",
                          interval=0.02)
    killed_at = victim.kill()
    cluster.wait_done(ids, timeout=40)

    assert all(cluster.result(w) == expected(tags[w]) for w in ids)
    spans = executions(cluster.step_runs(ids), {victim.pid: killed_at})
    assert any(pid == victim.pid for _, pid, _, _ in spans)
    resumed = [w for w, pid, _, _ in spans if pid == victim.pid]
    assert any(sum(1 for w2, _, _, _ in spans if w2 == w) == 2 for w in resumed), "nothing was handed over"
    created = cluster.created_at(ids)
    for k in keys:
        mine = sorted((s, e, created[w]) for w, _, s, e in spans if w in order[k])
        # One at a time per key, even while the killed holder's row waited for its hand-over ...
        assert max_overlap((s, e) for s, e, _ in mine) == 1, f"partition {k!r} ran two at once: {mine}"
        # ... and in claim order (enqueue time): a handed-over item resumed before its successors started.
        enqueued = [c for _, _, c in mine]
        assert enqueued == sorted(enqueued), f"partition {k!r} out of enqueue order: {enqueued}"
    assert cluster.tx_counts() == {w: 1 for w in ids}


def test_partition_order_kept_for_items_enqueued_in_the_same_millisecond(cluster: Cluster) -> None:
    cluster.start_coordinator()
    a, b = unique("tie-a"), unique("tie-b")
    cluster.start_worker(a, hold=True)
    tags = [unique(f"tie{i}") for i in range(3)]
    ids = [cluster.enqueue("ho_part", t, hold_at=3, key="same") for t in tags]
    # A fast client enqueues several a millisecond; the library's creation clock is strictly
    # increasing per process, so their created_at (the claim's order after priority) never tie.
    # (Found with ties here: a hand-over rewrote the held row, which then sorted after its
    # same-millisecond successors in the queue index.)
    created = cluster.created_at(ids)
    assert [created[w] for w in ids] == sorted(set(created[w] for w in ids)), created
    cluster.wait(lambda: [r.workflow_id for r in cluster.step_runs(ids) if r.step == 3] == [ids[0]],
                 "(the first item held on A)")
    victim = cluster.workers[a]
    victim.kill()
    cluster.start_worker(b)
    cluster.wait_done(ids, timeout=30)
    after = sorted((s, w) for w, pid, s, _ in executions(cluster.step_runs(ids), {victim.pid: 0.0})
                   if pid != victim.pid)
    assert [w for _, w in after] == ids, "a successor started before the handed-over item resumed"
