"""``dbos-worker`` drains on SIGTERM / SIGINT (issue 12), with real processes.

What a drain must do: stop claiming at once (DRAINING), give what runs up to
``--drain-timeout`` seconds, hand the rest back to the fleet at once (queued
work to its queue, direct work to the internal queue, the fleet woken by a
Redis hint), STOPPED, exit 0; a second signal skips the wait. Nothing lost or
run twice: every execution is counted in the side tables of
tests/apps/worker_flows.py (``check_exactly_once``).
"""

from __future__ import annotations

import collections
import random
import re
import signal
import threading
import time

import httpx
import pytest
from conftest import Backend, eventually
from worker_helpers import INTERNAL_QUEUE, Fleet, check_exactly_once, fleet_fixture, free_port, new_id

fleet = pytest.fixture(fleet_fixture, name="fleet")

PG = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


def ticking(f: Fleet, ids: list[str], at_least: int = 2) -> bool:
    """Each of these gated workflows has committed its transaction and run ``at_least`` ticks."""
    ticks = collections.Counter(r.workflow_id for r in f.runs(label="tick"))
    paid = {w for w, _, _ in f.tx_rows()}
    return all(ticks[w] >= at_least and w in paid for w in ids)


@PG
@pytest.mark.slow
def test_drain_hands_back_what_runs_and_claims_nothing(fleet: Fleet, backend: Backend) -> None:
    tag_long, tag_pair = new_id("long"), new_id("pair")
    # Enqueued before any worker runs: the first worker's start-up poll claims them.
    slow = [fleet.enqueue("w12_slow", "gated", tag_long) for _ in range(2)]  # polled every 30 s
    spawner = fleet.enqueue("w12_plain", "spawn", tag_long)  # starts a direct (unqueued) gated child
    pair = [fleet.enqueue("w12_pair", "gated", tag_pair) for _ in range(2)]  # concurrency 2 fleet-wide
    waiting = [fleet.enqueue("w12_pair", "quick", new_id("q")) for _ in range(3)]
    a = fleet.start("worker_app.py", "--drain-timeout", "5", name="A")
    child = fleet.wait_status([spawner], alive=[a])[spawner]
    child_id = fleet.client.retrieve_workflow(spawner).get_result()
    in_flight = [*slow, child_id, *pair]
    eventually(lambda: ticking(fleet, in_flight), timeout=20, what="(A runs everything it can)")
    assert child["executor_id"] == a.vmid
    assert fleet.status_of(in_flight) == {w: ("PENDING", a.vmid) for w in in_flight}
    assert fleet.rows([child_id])[child_id]["queue_name"] is None  # direct work
    assert fleet.status_of(waiting) == {w: ("ENQUEUED", None) for w in waiting}
    # B serves only w12_slow (and the internal queue): it can take the hand-back, not the pair queue.
    b = fleet.start("worker_app.py", "--queues", "w12_slow", name="B")

    signalled_wall = time.time()
    signalled = a.signal(signal.SIGTERM)
    fleet.wait_executor_state(a.vmid, "DRAINING")
    # The pair workflows finish during the drain: they free their slots, which A must not
    # hand to the waiting quick ones (not by its poller, not by a finish's slot hand-over).
    fleet.release(tag_pair)
    fleet.wait_status(pair, alive=[a])
    code = a.wait_exit(timeout=20)
    assert a.exited_at is not None
    assert code == 0, a.describe()
    assert a.exited_at - signalled <= 5 + 5, f"exited {a.exited_at - signalled:.1f} s after SIGTERM: {a.describe()}"
    # It waited the drain timeout for the long ones before handing them back.
    assert a.exited_at - signalled >= 5
    handed_at = time.monotonic()
    assert re.search(r"handed 3 workflow\(s\) back to the fleet", a.stderr()), a.describe()
    assert fleet.executor_row(a.vmid)["state"] == "STOPPED"  # type: ignore[index]

    # Nothing claimed after the signal: the waiting ones never ran, anywhere.
    assert fleet.status_of(waiting) == {w: ("ENQUEUED", None) for w in waiting}
    assert [r for r in fleet.runs() if r.workflow_id in waiting] == []
    assert [r for r in fleet.runs(label="body") if r.pid == a.pid and r.at > signalled_wall] == []
    assert {w for w, r in fleet.rows(pair).items() if r["executor_id"] == a.vmid} == set(pair)

    # The hand-back reached B at once: the slow queue is polled every 30 s, the wakeup is what
    # brought them; the direct child went to the internal queue.
    def b_runs_them() -> bool:
        b.check_alive()
        return fleet.status_of([*slow, child_id]) == {w: ("PENDING", b.vmid) for w in [*slow, child_id]}

    eventually(b_runs_them, timeout=10, interval=0.02, what="(B resumes the handed-back work)")
    # (B polled it at its start, 5 s or more before the hand-back: its next poll is 25 s away.)
    assert time.monotonic() - handed_at < 12, "the handed-back work waited for a poll, not a wakeup"
    assert fleet.rows([child_id])[child_id]["queue_name"] == INTERNAL_QUEUE
    fleet.release(tag_long)
    rows = fleet.wait_status([*slow, child_id], alive=[b])
    assert {r["executor_id"] for r in rows.values()} == {b.vmid}
    assert all(r["attempts"] == 2 for r in rows.values()), rows

    # The waiting ones run on a worker that serves their queue, once each.
    c = fleet.start("worker_app.py", name="C")
    rows = fleet.wait_status(waiting, alive=[b, c])
    assert {r["executor_id"] for r in rows.values()} == {c.vmid}
    check_exactly_once(fleet, [*in_flight, *waiting], gated_ids=in_flight)
    for w in [*slow, child_id]:  # begin and pay ran on A only; the end on B
        assert {r.pid for r in fleet.runs(w, "begin")} == {a.pid}
        assert [r.executor_id for r in fleet.runs(w, "end")] == [b.vmid]
        assert [e for x, _, e in fleet.tx_rows() if x == w] == [a.vmid]
    for w in (b, c):
        w.signal(signal.SIGTERM)
    assert [b.wait_exit(15), c.wait_exit(15)] == [0, 0]


@PG
def test_drain_exits_as_soon_as_the_last_workflow_ends(fleet: Fleet) -> None:
    port = free_port()
    a = fleet.start("worker_app.py", "--drain-timeout", "30", "--admin-port", str(port), name="A",
                    env={"W12_ATEXIT": "1"})
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/readyz").status_code == 200
    tag = new_id("t")
    ids = [fleet.enqueue("w12_plain", "gated", tag) for _ in range(3)]
    eventually(lambda: ticking(fleet, ids), timeout=20)
    a.signal(signal.SIGTERM)
    fleet.wait_executor_state(a.vmid, "DRAINING")
    # Draining: alive but not ready (a load balancer stops sending to it).
    r = httpx.get(f"{base}/readyz")
    assert (r.status_code, r.json()["status"]) == (503, "draining")
    assert httpx.get(f"{base}/dbos-healthz").status_code == 200
    a.check_alive()
    released = time.monotonic()
    fleet.release(tag)
    assert a.wait_exit(timeout=40) == 0, a.describe()
    assert a.exited_at is not None
    assert a.exited_at - released < 10, f"exited {a.exited_at - released:.1f} s after the last workflow could end"
    rows = fleet.rows(ids)
    assert {(r["status"], r["executor_id"], r["attempts"]) for r in rows.values()} == {("SUCCESS", a.vmid, 1)}
    assert "drained: nothing to hand back" in a.stderr()
    assert (fleet.dir / f"atexit-{a.pid}").exists(), "a normal exit skipped the app's atexit handlers"
    check_exactly_once(fleet, ids, gated_ids=ids)


@PG
def test_second_signal_skips_the_wait(fleet: Fleet) -> None:
    a = fleet.start("worker_app.py", "--drain-timeout", "120", name="A", env={"W12_ATEXIT": "1"})
    tag = new_id("t")
    ids = [fleet.enqueue("w12_plain", "gated", tag) for _ in range(2)]
    eventually(lambda: ticking(fleet, ids), timeout=20)
    a.signal(signal.SIGINT)  # Ctrl-C drains like SIGTERM
    fleet.wait_executor_state(a.vmid, "DRAINING")
    a.check_alive()
    second = a.signal(signal.SIGTERM)
    assert a.wait_exit(timeout=15) == 0, a.describe()
    assert a.exited_at is not None and a.exited_at - second < 10, a.describe()
    assert "handed 2 workflow(s) back" in a.stderr()
    # Their threads stopped at their next step (0.1 s): a normal exit, the app's atexit handlers ran.
    assert (fleet.dir / f"atexit-{a.pid}").exists(), f"the exit skipped the app's atexit handlers: {a.describe()}"
    rows = fleet.rows(ids)
    assert {(r["status"], r["executor_id"], r["queue_name"]) for r in rows.values()} == {
        ("ENQUEUED", None, "w12_plain")
    }
    b = fleet.start("worker_app.py", name="B")
    fleet.release(tag)
    rows = fleet.wait_status(ids, alive=[b])
    assert {r["executor_id"] for r in rows.values()} == {b.vmid}
    check_exactly_once(fleet, ids, gated_ids=ids)
    b.signal(signal.SIGTERM)
    assert b.wait_exit(15) == 0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_drain_hands_back_on_sqlite(fleet: Fleet, backend: Backend) -> None:
    """Two workers on one SQLite file, no Redis (the hand-back is found by polling)."""
    tag = new_id("t")
    gated = [fleet.enqueue("w12_other", "gated", tag) for _ in range(3)]  # worker_concurrency 3
    waiting = [fleet.enqueue("w12_other", "quick", new_id("q")) for _ in range(2)]
    a = fleet.start("worker_app.py", "--drain-timeout", "1", name="A")
    eventually(lambda: ticking(fleet, gated), timeout=20)
    assert fleet.status_of(waiting) == {w: ("ENQUEUED", None) for w in waiting}
    signalled = a.signal(signal.SIGTERM)
    assert a.wait_exit(timeout=20) == 0, a.describe()
    assert a.exited_at is not None and a.exited_at - signalled <= 1 + 5, a.describe()
    assert "handed 3 workflow(s) back" in a.stderr()
    assert fleet.status_of([*gated, *waiting]) == {w: ("ENQUEUED", None) for w in [*gated, *waiting]}
    b = fleet.start("worker_app.py", name="B")
    fleet.release(tag)
    rows = fleet.wait_status([*gated, *waiting], alive=[b])
    assert {r["executor_id"] for r in rows.values()} == {b.vmid}
    check_exactly_once(fleet, [*gated, *waiting], gated_ids=gated)
    assert [r for r in fleet.runs() if r.workflow_id in waiting and r.pid == a.pid] == []
    b.signal(signal.SIGTERM)
    assert b.wait_exit(15) == 0


@PG
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_rolling_restart_under_load_loses_nothing(fleet: Fleet) -> None:
    """Three workers replaced one after another (SIGTERM, then a new one) while work streams in."""
    workers = [fleet.spawn("worker_app.py", "--drain-timeout", "2", name=f"gen0-{i}") for i in range(3)]
    for w in workers:
        w.wait_started()
    ids: list[str] = []
    lengths: dict[str, int] = {}
    stop = threading.Event()
    rng = random.Random(12)

    def feed() -> None:  # about 10 workflows a second, 0 to 4 s of ticks each
        while not stop.is_set():
            n = rng.randint(0, 40)
            wid = fleet.enqueue("w12_plain", "counted", new_id("r"), n)
            lengths[wid] = n
            ids.append(wid)
            stop.wait(0.1)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        eventually(lambda: len(ids) >= 20, timeout=20)
        for i in range(3):
            old = workers[i]
            signalled = old.signal(signal.SIGTERM)
            assert old.wait_exit(timeout=30) == 0, old.describe()
            # The drain tests above hold the worker to --drain-timeout + 5 s; here, three workers
            # and a feeder on two cores, the exit gets more slack (this test is about losing nothing).
            assert old.exited_at is not None and old.exited_at - signalled <= 2 + 10, old.describe()
            workers[i] = fleet.start("worker_app.py", "--drain-timeout", "2", name=f"gen1-{i}")
        eventually(lambda: len(ids) >= 60, timeout=30)
    finally:
        stop.set()
        feeder.join(timeout=10)
    rows = fleet.wait_status(list(ids), timeout=60, alive=workers)
    assert {r["executor_id"] for r in rows.values()} <= {w.vmid for w in fleet.workers}
    check_exactly_once(fleet, ids, gated_ids=[w for w in ids if lengths[w] > 0])
    # Every body reached its end; the restarts did hand work back (the rule was exercised).
    ends = collections.Counter(r.workflow_id for r in fleet.runs(label="end"))
    assert all(1 <= ends[w] <= 2 for w in ids), {w: ends[w] for w in ids if not 1 <= ends[w] <= 2}
    handed = sum(int(m) for w in fleet.workers for m in re.findall(r"handed (\d+) workflow", w.stderr()))
    assert handed >= 1, "no drain handed anything back: the load did not reach the drains"
    assert sum(1 for r in rows.values() if r["attempts"] >= 2) >= handed
    for w in workers:
        w.signal(signal.SIGTERM)
    assert [w.wait_exit(15) for w in workers] == [0, 0, 0]


@PG
def test_drain_with_a_long_step_in_flight_exits_in_time(fleet: Fleet) -> None:
    """A workflow inside one long step when the drain timeout ends: handed back, and the
    process still exits within --drain-timeout + 5 s (it does not wait for the step)."""
    a = fleet.start("worker_app.py", "--drain-timeout", "1", name="A")
    tag = new_id("n")
    wid = fleet.enqueue("w12_plain", "napping", tag, 60.0)
    eventually(lambda: fleet.runs(wid, "nap"), timeout=20)
    signalled = a.signal(signal.SIGTERM)
    code = a.wait_exit(timeout=30)
    assert a.exited_at is not None
    assert a.exited_at - signalled <= 1 + 5, f"exited {a.exited_at - signalled:.1f} s after SIGTERM: {a.describe()}"
    assert code == 0, a.describe()
    assert fleet.status_of([wid]) == {wid: ("ENQUEUED", None)}
    b = fleet.start("worker_app.py", name="B")
    fleet.release(tag)
    assert fleet.wait_status([wid], alive=[b])[wid]["executor_id"] == b.vmid
    check_exactly_once(fleet, [wid])  # the nap ran twice (it was in flight), begin and pay once
    assert [r.pid for r in fleet.runs(wid, "nap")] == [a.pid, b.pid]
    b.signal(signal.SIGTERM)
    assert b.wait_exit(15) == 0


@PG
def test_signal_while_importing_the_app_claims_nothing(fleet: Fleet, backend: Backend) -> None:
    """SIGTERM before launch (a pod terminated during a slow start-up): exit 0, nothing claimed."""
    ids = [fleet.enqueue("w12_plain", "quick", new_id("q")) for _ in range(3)]
    a = fleet.spawn("worker_app.py", env={"W12_IMPORT_DELAY": "3"}, name="A")
    eventually(lambda: (fleet.dir / f"importing-{a.pid}").exists(), timeout=30, what="(A imports the app)")
    a.signal(signal.SIGTERM)
    assert a.wait_exit(timeout=30) == 0, a.describe()
    assert "dbos-worker started" not in a.stderr() and "SIGTERM before launch" in a.stderr(), a.describe()
    assert fleet.status_of(ids) == {w: ("ENQUEUED", None) for w in ids}
    assert fleet.executor_row(a.vmid) is None  # never registered
    assert fleet.runs() == []


@PG
def test_signal_during_the_identity_wait_claims_nothing(fleet: Fleet, backend: Backend) -> None:
    """SIGTERM while the worker waits for a holder elsewhere to go stale: nothing claimed after it."""
    vmid = new_id("far")
    first = fleet.start("worker_app.py", vmid=vmid, name="first")
    first.kill()
    table = backend.table("executors")
    backend.execute(f"UPDATE {table} SET hostname = 'w12-elsewhere', pid = 4242 WHERE executor_id = :e", e=vmid)
    stop = threading.Event()

    def beat() -> None:  # the holder elsewhere keeps heartbeating: the wait lasts its 6 s
        while not stop.is_set():
            backend.execute(f"UPDATE {table} SET heartbeat_at = :t WHERE executor_id = :e",
                            t=int(time.time() * 1000), e=vmid)
            stop.wait(0.2)

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    ids = [fleet.enqueue("w12_plain", "quick", new_id("q")) for _ in range(3)]
    try:
        a = fleet.spawn("worker_app.py", vmid=vmid, name="A")
        eventually(lambda: "waiting up to" in a.stderr(), timeout=30)
        signalled = a.signal(signal.SIGTERM)
        assert a.wait_exit(timeout=30) == 0, a.describe()
    finally:
        stop.set()
        beater.join(timeout=5)
    assert a.exited_at is not None and a.exited_at - signalled < 5  # the wait (up to 6 s) ends at the signal
    assert "SIGTERM during launch" in a.stderr() and "dbos-worker started" not in a.stderr(), a.describe()
    assert fleet.status_of(ids) == {w: ("ENQUEUED", None) for w in ids}
    assert fleet.runs() == []
