"""Zombies and the absence of a coordinator (issue 13), with real processes.

A worker SIGSTOPped past ``--dead-after`` is declared DEAD and its work handed
over; SIGCONT makes it a zombie that learns its fate at its next heartbeat. Its
workflows' transaction comes after the step they were paused in, so a zombie
that ran on would commit it a second time: the side table ``ho_tx`` shows it.
"""

from __future__ import annotations

import collections
import time

import pytest
from handover_helpers import Cluster, expected, unique

pytestmark = [pytest.mark.parametrize("backend", ["postgres"], indirect=True), pytest.mark.timeout(240)]


def test_sigstop_past_dead_after_then_sigcont(cluster: Cluster) -> None:
    cluster.start_coordinator(dead_after=3)
    z, b = unique("zombie"), unique("b")
    zombie = cluster.start_worker(z, hold=True)
    tags = [unique("z") for _ in range(6)]
    ids = [cluster.enqueue("ho_c", t, hold_at=3, tx_at=4) for t in tags]
    cluster.wait(lambda: len({r.workflow_id for r in cluster.step_runs(ids) if r.step == 3}) == 6,
                 "(6 workflows paused in step 3 on Z)")
    first = cluster.executor(z)
    assert first is not None and first["incarnation"] == 1
    b_proc = cluster.start_worker(b)

    zombie.pause()
    st = cluster.wait_done(ids, timeout=30)  # declared DEAD, handed over, finished on B
    assert {s.executor_id for s in st.values()} == {b}
    row = cluster.executor(z)
    assert row is not None and row["state"] == "DEAD" and row["incarnation"] == 1

    # Z wakes up inside step 3 of six workflows now finished elsewhere, with nothing held.
    cluster.unhold(z)
    zombie.resume()

    def rejoined() -> bool:
        cluster.check_alive(zombie)
        r = cluster.executor(z)
        assert r is not None
        return r["incarnation"] == 2 and r["state"] == "RUNNING" and r["pid"] == zombie.pid and (
            r["running"] == 0 and r["heartbeat_at"] > time.time() * 1000 - 2000
        )

    cluster.wait(rejoined, "(Z re-registered as incarnation 2 with nothing running)", timeout=20)
    # Logged just after the row is written: read the log once it is there.
    cluster.wait(lambda: "rejoined as incarnation 2" in zombie.log(), "(Z logged its rejoin)", timeout=10)

    # Results are B's, the outcome rows untouched by the zombie, each transaction committed once (on B).
    st = cluster.statuses(ids)
    assert {(s.status, s.executor_id) for s in st.values()} == {("SUCCESS", b)}
    assert [cluster.result(w) for w in ids] == [expected(t, tx_at=4) for t in tags]
    assert cluster.tx_counts() == {w: 1 for w in ids}
    tx_by = {r[0]: r[1] for r in cluster.backend.rows("SELECT workflow_id, executor_id FROM ho_tx")}
    assert {tx_by[w] for w in ids} == {b}
    assert all(ops == {1, 2, 3, 4, 5} for ops in cluster.checkpointed(ids).values())
    runs = cluster.step_runs(ids)
    counts = collections.Counter((r.workflow_id, r.step) for r in runs)
    for w in ids:
        assert counts[(w, 1)] == counts[(w, 2)] == 1  # checkpointed before the pause: never again
        assert counts[(w, 3)] == 2  # paused on Z, re-run on B
    zombie_after = [r for r in runs if r.pid == zombie.pid and r.step > 3]
    # Whatever the zombie reached past step 3 before its heartbeat told it, it committed nothing.
    assert all(tx_by[r.workflow_id] == b for r in zombie_after)
    print(f"\nzombie: {len(zombie_after)} operation(s) past step 3 started on Z after SIGCONT; 0 committed")

    # And it goes on: with B drained away, new work runs on the new incarnation.
    assert b_proc.terminate() == 0
    more = [unique("after") for _ in range(3)]
    more_ids = [cluster.enqueue("ho_a", t) for t in more]
    st = cluster.wait_done(more_ids, timeout=20)
    assert {s.executor_id for s in st.values()} == {z}
    assert [cluster.result(w) for w in more_ids] == [expected(t) for t in more]


def test_no_coordinator_work_waits_then_one_starts_and_it_completes(cluster: Cluster) -> None:
    a, b = unique("a"), unique("b")
    victim = cluster.start_worker(a, hold=True)
    tags = [unique("n") for _ in range(4)]
    ids = [cluster.enqueue("ho_a", t, hold_at=3) for t in tags]
    cluster.wait(lambda: len({r.workflow_id for r in cluster.step_runs(ids) if r.step == 3}) == 4,
                 "(4 workflows in flight on A)")
    before = cluster.statuses(ids)
    cluster.start_worker(b)
    victim.kill()

    # The fleet keeps running queued work without a coordinator ...
    other = [unique("q") for _ in range(3)]
    other_ids = [cluster.enqueue("ho_b", t) for t in other]
    assert {s.executor_id for s in cluster.wait_done(other_ids, timeout=20).values()} == {b}

    # ... but nobody hands A's over: well past twice the default dead-after, it is still A's.
    def a_silent_for_6s() -> bool:
        row = cluster.executor(a)
        assert row is not None
        return time.time() * 1000 - row["heartbeat_at"] > 6000

    cluster.wait(a_silent_for_6s, "(A silent for 6 s)", timeout=20)
    st = cluster.statuses(ids)
    assert {(s.status, s.executor_id) for s in st.values()} == {("PENDING", a)}
    row = cluster.executor(a)
    assert row is not None and row["state"] == "RUNNING"  # nobody declared it DEAD
    assert not [r for r in cluster.step_runs(ids) if r.executor_id == b]

    started = time.monotonic()
    cluster.start_coordinator()
    st = cluster.wait_done(ids, timeout=20)
    print(f"\ncoordinator start -> all {len(ids)} stranded workflows done: {time.monotonic() - started:.2f} s")
    assert {s.executor_id for s in st.values()} == {b}
    assert all(st[w].recovery_attempts == before[w].recovery_attempts + 1 for w in ids)
    assert [cluster.result(w) for w in ids] == [expected(t) for t in tags]
    row = cluster.executor(a)
    assert row is not None and row["state"] == "DEAD"
    assert cluster.tx_counts() == {w: 1 for w in ids + other_ids}
