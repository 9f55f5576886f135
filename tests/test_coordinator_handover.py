"""A dead executor's work resumes elsewhere, exactly once (issue 13), with real
``dbos-worker`` and ``dbos-coordinator`` processes on PostgreSQL and Redis.

Each workflow (tests/apps/handover_app.py ``job``) has five operations; every
execution of one is a row in ``ho_steps`` and every commit of its transaction a
row in ``ho_tx``, so a re-run shows as a second row.
"""

from __future__ import annotations

import collections
import json
import subprocess

import pytest
from handover_helpers import BIN, QUEUES, Cluster, expected, unique

pytestmark = [pytest.mark.parametrize("backend", ["postgres"], indirect=True), pytest.mark.timeout(240)]


def test_sigkill_with_60_in_flight_over_three_queues(cluster: Cluster) -> None:
    a, b, c = unique("a"), unique("b"), unique("c")
    cluster.start_coordinator()
    cluster.start_worker(a, hold=True)
    tags = [f"k{i}-{unique('t')}" for i in range(60)]
    ids = [cluster.enqueue(QUEUES[i % 3], tag, hold_at=3) for i, tag in enumerate(tags)]

    # All 60 run on A and wait in their third operation (A's hold), two recorded.
    def all_held() -> bool:
        cluster.check_alive()
        held = {r.workflow_id for r in cluster.step_runs(ids) if r.step == 3 and r.executor_id == a}
        return len(held) == 60

    cluster.wait(all_held, "(60 workflows in flight on A)")
    before = cluster.statuses(ids)
    assert {s.status for s in before.values()} == {"PENDING"}
    assert {s.executor_id for s in before.values()} == {a}
    b_proc, c_proc = cluster.start_workers(b, c)

    killed_at = cluster.workers[a].kill()
    recorded_at_kill = cluster.checkpointed(ids)
    # What A had checkpointed: operations 1 and 2 (the step and the transaction), never 3.
    assert all(recorded_at_kill[w] == {1, 2} for w in ids), recorded_at_kill

    st = cluster.wait_done(ids, timeout=30)
    assert {s.executor_id for s in st.values()} <= {b, c}
    # The fleet shared the work: both live executors ran some of it.
    assert {s.executor_id for s in st.values()} == {b, c}
    for w, tag in zip(ids, tags):
        assert cluster.result(w) == expected(tag)
    # recovery_attempts: one hand-over, one more attempt each.
    for w in ids:
        assert st[w].recovery_attempts == before[w].recovery_attempts + 1, (w, before[w], st[w])
        assert st[w].queue_name == QUEUES[ids.index(w) % 3]  # queued work kept its queue

    runs = cluster.step_runs(ids)
    per_op = collections.Counter((r.workflow_id, r.step) for r in runs)
    for w in ids:
        # Completed (checkpointed) operations never ran again: exactly one execution, on A.
        for op in recorded_at_kill[w]:
            assert per_op[(w, op)] == 1, f"{w}: operation {op} was checkpointed before the kill yet ran again"
        # The operation in flight at the kill ran on A and once more elsewhere; the rest once, elsewhere.
        assert per_op[(w, 3)] == 2
        assert per_op[(w, 4)] == per_op[(w, 5)] == 1
    assert {r.executor_id for r in runs if r.started >= killed_at} <= {b, c}
    tx = cluster.tx_counts()
    assert {w: tx.get(w, 0) for w in ids} == {w: 1 for w in ids}, "a transaction effect is missing or doubled"

    resumed = min(r.started for r in runs if r.pid in (b_proc.pid, c_proc.pid))
    latency = resumed - killed_at
    print(f"\nSIGKILL -> first resumed step elsewhere: {latency:.2f} s (60 workflows, 3 queues, dead-after 3 s)")
    assert 0 < latency < 8, f"kill -> first resumed step took {latency:.2f} s"


def test_replaced_pod_new_vmid_takes_the_old_work(cluster: Cluster) -> None:
    old, new = unique("pod-old"), unique("pod-new")
    cluster.start_coordinator()
    cluster.start_worker(old, hold=True)
    tags = [unique("r") for _ in range(6)]
    ids = [cluster.enqueue("ho_a", t, hold_at=4) for t in tags]
    cluster.wait(lambda: len({r.workflow_id for r in cluster.step_runs(ids) if r.step == 4}) == 6,
                 "(6 workflows in flight on the old pod)")
    cluster.workers[old].kill()
    # The replacement: same app version, a new executor ID (a new pod name).
    cluster.start_worker(new)
    st = cluster.wait_done(ids, timeout=30)
    assert {s.executor_id for s in st.values()} == {new}
    assert [cluster.result(w) for w in ids] == [expected(t) for t in tags]
    old_row = cluster.executor(old)
    assert old_row is not None and old_row["state"] == "DEAD"
    # Visibly so in `dbos fleet executors`: with a dead-after of 10 minutes the CLI derives
    # nothing itself, so the DEAD it shows is the coordinator's mark.
    shown = subprocess.run(
        [str(BIN / "dbos"), "fleet", "executors", "--db-url", cluster.backend.url, "--json", "--dead-after", "600"],
        capture_output=True, text=True, timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    states = {e["executor_id"]: e["state"] for e in json.loads(shown.stdout)}
    assert states[old] == "DEAD" and states[new] == "RUNNING", states
    runs = cluster.step_runs(ids)
    counts = collections.Counter((r.workflow_id, r.step) for r in runs)
    for w in ids:
        assert [counts[(w, s)] for s in range(1, 6)] == [1, 1, 1, 2, 1]
        assert {r.executor_id for r in runs if r.workflow_id == w and r.step < 4} == {old}
        assert {r.executor_id for r in runs if r.workflow_id == w and r.step == 5} == {new}
    assert cluster.tx_counts() == {w: 1 for w in ids}
