"""Queues stored in the database (``DBOS.register_queue``): their rules.

A stored queue's settings live in one row of the ``queues`` table; any process
(an executor, a client) may change them at run time. Each claim of the queue
takes its claim lock and reads the row in the same transaction, so every
executor claims under the limits in force at that moment, and a change is
ordered with the claims: none that commits after it used the old limits.
After a change a wakeup tells every executor (at once with Redis), otherwise
they see it at their next poll.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from dbos._execution import checks, versions
from dbos._execution.queues import QueueSpec, start_claimed
from dbos._execution.runtime import Runtime, now_ms
from dbos._storage import queues, stored_queues
from dbos._storage.queues import ClaimResult
from dbos._storage.stored_queues import QueueRow
from dbos._wakeups.local import queue_ready
from dbos.error import DBOSException

_MAX_INT = 2_147_483_647  # what the database's integer comparisons take
ON_CONFLICT_DEFAULT = "update_if_latest_version"
ON_CONFLICT = ("update_if_latest_version", "always_update", "never_update")


def spec_of(row: QueueRow) -> QueueSpec:
    return QueueSpec(
        row.name, row.concurrency, row.rate_limit_max, row.rate_limit_period_sec, row.worker_concurrency,
        row.priority_enabled, row.partition_queue, row.polling_interval_sec,
        partition_concurrency=row.partition_concurrency,
        partition_worker_concurrency=row.partition_worker_concurrency,
        partition_limit=row.partition_rate_limit_max, partition_period_sec=row.partition_rate_limit_period_sec,
        stored=True,
    )


def settings_of(spec: QueueSpec) -> dict[str, Any]:
    """The ``queues`` columns a spec sets (all but the name and times)."""
    return dict(
        concurrency=spec.concurrency, worker_concurrency=spec.worker_concurrency, rate_limit_max=spec.limit,
        rate_limit_period_sec=spec.period_sec, priority_enabled=spec.priority_enabled,
        partition_queue=spec.partition_queue, partition_concurrency=spec.partition_concurrency,
        partition_worker_concurrency=spec.partition_worker_concurrency,
        partition_rate_limit_max=spec.partition_limit, partition_rate_limit_period_sec=spec.partition_period_sec,
        polling_interval_sec=spec.polling_interval_sec,
    )


def published(row: QueueRow) -> dict[str, Any]:
    """A stored queue's limits in the shape executors publish theirs (``executors.queue_specs``),
    for the console and the autoscaling signal; worker_concurrency None: the default."""
    return {
        "name": row.name, "concurrency": row.concurrency, "worker_concurrency": row.worker_concurrency,
        "limit": row.rate_limit_max, "period_sec": row.rate_limit_period_sec,
        "partitioned": spec_of(row).partitioned, "stored": True,
    }


# -- validation ---------------------------------------------------------------------------
class QueueArgumentError(DBOSException, ValueError):
    """An invalid queue setting: a ValueError, as DBOS Transact 2.x raises."""


def check_count(queue: str, name: str, value: Any, *, zero: bool = False) -> None:
    low = 0 if zero else 1
    if not zero and isinstance(value, int) and not isinstance(value, bool) and value < 1:
        raise QueueArgumentError(f"Queue {queue!r}: {name} must be at least 1 (or None), got {value}")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _MAX_INT):
        raise QueueArgumentError(
            f"Queue {queue!r}: {name} must be an integer in {low}..{_MAX_INT} or None, got {checks.short(value)}"
        )


def check_limiter(queue: str, name: str, limiter: Any) -> tuple[Optional[int], Optional[float]]:
    """A ``{'limit': n, 'period': seconds}`` rate limit, as (limit, period); (None, None) for None."""
    if limiter is None:
        return None, None
    if not isinstance(limiter, dict) or set(limiter) != {"limit", "period"}:
        raise QueueArgumentError(
            f"Queue {queue}: {name} must specify both 'limit' and 'period' ({{'limit': int, 'period': seconds}}), "
            f"got {limiter!r}"
        )
    check_count(queue, f"{name} limit", limiter["limit"])
    period = limiter["period"]
    try:  # NaN, infinity and periods beyond ten years would break every claim of the queue
        checks.duration(f"{name} period", period, positive=True)
    except DBOSException as e:
        raise QueueArgumentError(f"Queue {queue}: {e}") from None
    if period < 0.001:
        raise QueueArgumentError(f"Queue {queue}: {name} period must be at least 0.001 seconds, got {period}")
    return int(limiter["limit"]), float(period)


def check_interval(queue: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
            or not 0.001 <= value <= 3600:
        raise QueueArgumentError(f"Queue {queue}: polling_interval_sec must be 0.001..3600, got {value!r}")
    return float(value)


def check_spec(spec: QueueSpec) -> None:
    """The limits together: none may exceed one that contains it."""
    name = spec.name
    check_count(name, "concurrency", spec.concurrency)
    check_count(name, "worker_concurrency", spec.worker_concurrency, zero=True)  # 0: paused on every executor
    check_count(name, "partition_concurrency", spec.partition_concurrency)
    check_count(name, "partition_worker_concurrency", spec.partition_worker_concurrency)
    pairs = [
        ("worker_concurrency", spec.worker_concurrency, "concurrency", spec.concurrency),
        ("partition_concurrency", spec.partition_concurrency, "concurrency", spec.concurrency),
        ("partition_worker_concurrency", spec.partition_worker_concurrency, "concurrency", spec.concurrency),
        ("partition_worker_concurrency", spec.partition_worker_concurrency,
         "partition_concurrency", spec.partition_concurrency),
        ("partition_worker_concurrency", spec.partition_worker_concurrency,
         "worker_concurrency", spec.worker_concurrency),
    ]
    for small, a, big, b in pairs:
        if a is not None and b is not None and a > b and not (small == "partition_worker_concurrency" and b == 0):
            raise QueueArgumentError(f"Queue {name}: {big} must be greater than or equal to {small} ({b} < {a})")


# -- the table ------------------------------------------------------------------------------
def register(rt: Runtime, spec: QueueSpec, on_conflict: str) -> QueueSpec:
    """Create the queue, or per ``on_conflict`` update the stored one (or keep it); return
    it as stored. ``update_if_latest_version``: only an executor of the latest registered
    version (or of any, before one is) overwrites settings; a client always does."""
    if on_conflict not in ON_CONFLICT:
        raise QueueArgumentError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, got {on_conflict!r}")
    if spec.name in rt.registry.queues:
        raise DBOSException(
            f"queue {spec.name!r} is declared in code (Queue(...)) in this process; a stored queue needs "
            "another name"
        )
    check_spec(spec)
    now = now_ms()
    row = QueueRow(spec.name, **settings_of(spec), created_at=now, updated_at=now)
    db = rt.sys_db

    def write(c: Any) -> QueueRow:
        if stored_queues.insert(c, db.dialect, row):
            return row
        current = stored_queues.get(c, spec.name)
        if on_conflict == "never_update" or (on_conflict == "update_if_latest_version" and not latest):
            assert current is not None
            return current
        new = stored_queues.update(c, db.dialect, spec.name, settings_of(spec), now)
        return new if new is not None else row

    latest = True
    if on_conflict == "update_if_latest_version" and rt.app_version:
        info = versions.latest(db)
        latest = info is None or info.version_name == rt.app_version
    stored = spec_of(db.run(write, tx=True))
    rt.wakeups.notify(queue_ready(spec.name))  # every executor's poller reads it (at once with Redis)
    return stored


def get(rt: Runtime, name: str) -> Optional[QueueSpec]:
    row = rt.sys_db.query(lambda c: stored_queues.get(c, name))
    return spec_of(row) if row is not None else None


def get_existing(rt: Runtime, name: str) -> QueueSpec:
    spec = get(rt, name)
    if spec is None:
        raise DBOSException(f"Queue {name} not found in the database (DBOS.register_queue creates it)")
    return spec


def list_all(rt: Runtime) -> list[QueueSpec]:
    return [spec_of(r) for r in rt.sys_db.query(stored_queues.list_all)]


def delete(rt: Runtime, name: str) -> None:
    """Forget the queue (nothing if there is none). Its workflows stay: the running ones
    finish, the waiting ones wait until a queue of that name is registered or declared."""
    if rt.sys_db.run(lambda c: stored_queues.delete(c, rt.sys_db.dialect, name), tx=True):
        rt.wakeups.notify(queue_ready(name))  # pollers find it gone at their next claim


def update(rt: Runtime, name: str, **changes: Any) -> QueueSpec:
    """Change settings of a stored queue for the whole fleet; return it as it is now."""
    db = rt.sys_db
    row = db.run(
        lambda c: stored_queues.update(
            c, db.dialect, name, changes, now_ms(), check=lambda new: check_spec(spec_of(new))
        ),
        tx=True,
    )
    if row is None:
        raise DBOSException(f"Queue {name} not found in the database (DBOS.register_queue creates it)")
    spec = spec_of(row)
    rt.wakeups.notify(queue_ready(name))  # every executor claims under the new limits now
    return spec


# -- claiming ---------------------------------------------------------------------------------
def claim_and_start(rt: Runtime, name: str, default_worker_concurrency: int) -> tuple[ClaimResult, Optional[QueueSpec]]:
    """One claim of a stored queue, under the limits its row holds now (read under the
    queue's claim lock, in the claim's transaction); start what it claimed here.
    Returns the claim and the queue as read (None: it was deleted)."""
    dialect = rt.sys_db.dialect

    def claim(c: Any) -> tuple[ClaimResult, Optional[QueueSpec]]:
        queues.lock_queue(c, dialect, name)
        row = stored_queues.get(c, name)
        if row is None:
            return ClaimResult([]), None
        spec = spec_of(row)
        limits = spec.limits(default_worker_concurrency)
        local_running = rt.local_count(name)
        if local_running >= limits.worker_concurrency:
            return ClaimResult([]), spec
        return queues.claim(
            c, dialect, limits, rt.executor_id, rt.app_version, now_ms(), local_running, locked=True
        ), spec

    try:
        result, spec = rt.sys_db.run(claim, tx=True)
    except Exception as e:
        if not queues.lock_timed_out(e):
            raise
        return ClaimResult([], locked_out=True), None
    start_claimed(rt, name, result)
    return result, spec
