"""A stored queue's limit changed at run time across real executor processes (issue 18).

Executors are subprocesses of tests/apps/queue_worker.py (tests/fleet_helpers.py); the
test registers the queue ``fq_stored`` with a DBOSClient (no executor declares it) and
changes its global concurrency twice with ``set_concurrency``:

- raised from 2 to 5 while five ``hold`` workflows wait for a release (nothing
  completes, so no completion wakes anyone): the fleet claims up to the new limit
  within a polling interval, at once with Redis (whose executors poll every 5 s here);
- lowered to 1 before the holds are released: the backlog of ``work`` workflows
  behind them then runs one at a time, on every executor's claims.

The claimed rows (PENDING in workflow_status) are sampled throughout; every workflow
body records its interval in ``q4_runs``, and a recorded interval lies inside the time
its row was PENDING, so an overlap seen there is a real one.
"""

from __future__ import annotations

import collections
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from conftest import Backend
from fleet_helpers import Fleet, Run, max_overlap, wait_until

# (executors, Redis, polling interval of the stored queue, how soon a raised limit is used)
Setup = tuple[int, bool, float, float]
pytestmark = pytest.mark.parametrize(
    "backend, setup",
    [("postgres", (3, True, 5.0, 1.0)), ("sqlite", (2, False, 0.2, 1.2))],
    indirect=["backend"],
    ids=["pg-3procs-redis", "sqlite-2procs"],
)

QUEUE = "fq_stored"
SECONDS = 0.25  # each workflow's run


@pytest.fixture
def fleet(setup: Setup, backend: Backend, tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(backend, tmp_path, redis=setup[1], poll=0.2)
    try:
        yield f
    finally:
        f.stop_all()


def _running_at(runs: list[Run], t: float) -> int:
    return sum(1 for r in runs if r.started <= t < r.ended)


def test_set_concurrency_is_obeyed_by_every_executor_and_never_exceeded(fleet: Fleet, setup: Setup) -> None:
    count, _, poll, soon = setup
    suffix = uuid.uuid4().hex[:6]
    executors = [f"sq-{i}-{suffix}" for i in range(count)]
    fleet.start(*executors)
    queue = fleet.client.register_queue(QUEUE, concurrency=2, polling_interval_sec=poll)
    holds = [fleet.enqueue(QUEUE, "hold", QUEUE, "h") for _ in range(5)]
    works = [fleet.enqueue(QUEUE, "work", QUEUE, SECONDS, f"w{i}") for i in range(24)]
    peak = 0

    def pending(at_least: int) -> bool:
        nonlocal peak
        fleet.check_alive()
        n = sum(1 for status, _ in fleet.statuses(holds + works).values() if status == "PENDING")
        peak = max(peak, n)
        return n >= at_least

    wait_until(lambda: pending(2), timeout=20, what="(the first limit, 2, in use)")
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        pending(0)
    assert peak == 2, f"{peak} claimed at once under the first limit (2)"

    queue.set_concurrency(5)
    raised = time.monotonic()
    wait_until(lambda: pending(5), timeout=20, what="(the raised limit, 5, in use)")
    took = time.monotonic() - raised
    assert took <= soon, f"the raised limit was in use {took:.2f}s after the change (polling interval {poll}s)"
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        pending(0)
    assert peak == 5, f"{peak} claimed at once under a limit of 5"
    assert _pending_of(fleet, holds) == 5, "the slots went to other work than the five holds"

    queue.set_concurrency(1)
    fleet.release("h")
    st = fleet.wait_done(holds + works, timeout=40)
    runs = fleet.runs(QUEUE)
    assert sorted(r.workflow_id for r in runs) == sorted(holds + works), "a workflow ran twice or not at all"
    worst = max(_running_at(runs, r.started) for r in runs if r.workflow_id in works)
    assert worst == 1, f"{worst} workflows ran at once after the limit was lowered to 1"
    assert max_overlap((r.started, r.ended) for r in runs) <= 5
    # Which executor claims what is a race (every one claims under the same limits).
    ran_on = collections.Counter(e for _, e in st.values())
    assert set(ran_on) <= set(executors)
    print(f"{fleet.backend.kind}: raised limit in use after {took:.3f}s (polling interval {poll}s); "
          f"workflows per executor {dict(ran_on)}")


def _pending_of(fleet: Fleet, holds: list[str]) -> int:
    return sum(1 for status, _ in fleet.statuses(holds).values() if status == "PENDING")
