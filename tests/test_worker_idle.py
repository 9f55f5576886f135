"""``dbos-worker --exit-when-idle`` (issue 12): a worker per app version that exits 0 by
itself once its version has nothing waiting or running (a Kubernetes Job per version),
beside a worker of another version that never touches that work."""

from __future__ import annotations

import collections
import signal
import time

import pytest
from conftest import eventually
from worker_helpers import Fleet, check_exactly_once, fleet_fixture, new_id

fleet = pytest.fixture(fleet_fixture, name="fleet")

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


def test_v2_worker_finishes_v2_work_and_exits_beside_v1(fleet: Fleet) -> None:
    v1 = fleet.start("worker_app.py", "--queues", "w12_plain,w12_other", version="w12-v1", name="v1")
    tag_v1, tag_v2 = new_id("v1"), new_id("v2")
    # v1 work: one that runs throughout, quick ones, and some on a queue no v1 worker serves
    # (waiting for the whole test: not the v2 worker's to run, nor to wait for).
    v1_long = fleet.enqueue("w12_plain", "gated", tag_v1, app_version="w12-v1")
    v1_quick = [fleet.enqueue("w12_plain", "quick", new_id("q1"), app_version="w12-v1") for _ in range(3)]
    v1_waiting = [fleet.enqueue("w12_pair", "quick", new_id("w1"), app_version="w12-v1") for _ in range(2)]
    # v2 work, enqueued for a version with no executor yet.
    v2_quick = [fleet.enqueue("w12_plain", "quick", new_id("q2"), app_version="w12-v2") for _ in range(4)]
    v2_gated = [fleet.enqueue("w12_other", "gated", tag_v2, app_version="w12-v2") for _ in range(2)]
    v2 = [*v2_quick, *v2_gated]
    fleet.wait_status(v1_quick, alive=[v1])
    eventually(lambda: fleet.runs(v1_long, "tick"), timeout=20)
    # The v1 worker has done its own work and is idle-polling: v2 work stays where it is.
    assert fleet.status_of(v2) == {w: ("ENQUEUED", None) for w in v2}

    started = fleet.spawn("worker_app.py", "--exit-when-idle", "1", version="w12-v2", name="v2")
    started.wait_started()
    eventually(lambda: fleet.status_of(v2_gated) == {w: ("PENDING", started.vmid) for w in v2_gated}, timeout=20)
    fleet.wait_status(v2_quick, alive=[started])
    # Its gated work keeps it busy (not idle) for more than the idle period: it stays.
    eventually(lambda: all(len(fleet.runs(w, "tick")) >= 15 for w in v2_gated), timeout=30)
    started.check_alive()
    finish = time.monotonic()
    fleet.release(tag_v2)
    code = started.wait_exit(timeout=30)
    assert code == 0, started.describe()
    assert started.exited_at is not None
    # ... and goes about a second after its last workflow (plus a drain with nothing left).
    assert started.exited_at - finish < 1 + 9, f"exited {started.exited_at - finish:.1f} s after its work ended"
    err = started.stderr()
    assert "draining (idle for 1 s)" in err and "drained: nothing to hand back" in err, err
    assert fleet.executor_row(started.vmid)["state"] == "STOPPED"  # type: ignore[index]

    rows = fleet.rows(v2)
    assert {(r["status"], r["executor_id"], r["version"]) for r in rows.values()} == {
        ("SUCCESS", started.vmid, "w12-v2")
    }
    check_exactly_once(fleet, v2, gated_ids=v2_gated)
    # The v1 worker never ran any v2 workflow, not a single step; it still runs its own.
    by_pid = collections.Counter(r.pid for r in fleet.runs() if r.workflow_id in v2)
    assert set(by_pid) == {started.pid}
    v1.check_alive()
    assert fleet.status_of([v1_long]) == {v1_long: ("PENDING", v1.vmid)}
    fleet.release(tag_v1)
    fleet.wait_status([v1_long], alive=[v1])
    assert {r.pid for r in fleet.runs() if r.workflow_id in [v1_long, *v1_quick]} == {v1.pid}
    assert fleet.status_of(v1_waiting) == {w: ("ENQUEUED", None) for w in v1_waiting}
    v1.signal(signal.SIGTERM)
    assert v1.wait_exit(15) == 0


def test_idle_worker_with_nothing_to_do_exits_at_once(fleet: Fleet) -> None:
    """No work of its version at all: it exits after the idle period, whatever other versions wait."""
    others = [fleet.enqueue("w12_plain", "quick", new_id("q"), app_version="w12-other") for _ in range(2)]
    w = fleet.spawn("worker_app.py", "--exit-when-idle", "0.5", version="w12-v3", name="v3")
    w.wait_started()
    assert w.wait_exit(timeout=20) == 0, w.describe()
    assert fleet.status_of(others) == {o: ("ENQUEUED", None) for o in others}
    assert fleet.runs() == []
