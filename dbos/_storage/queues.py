"""SQL for queues: the claim (dequeue), re-enqueue, and the queued listing.

The claim is one short transaction per queue (and per partition key on a
partitioned queue):

1. where a limit is fleet-wide (global concurrency, rate limit, partitions),
   take a transaction-scoped advisory lock on the queue, so counting and
   claiming never race between executors (they take turns; a wait is bounded);
2. count what limits the claim: started in the rate window, running
   fleet-wide (on PostgreSQL inside the claim statement's LIMIT, for a queue
   without partitions), running on this executor (known in memory);
3. select up to the free capacity of ENQUEUED rows this executor may run,
   by priority then enqueue time, ``FOR UPDATE SKIP LOCKED``;
4. mark them PENDING with this executor, starting the timeout clock.

Every count and select is served by a partial index over live rows only
(status ENQUEUED or PENDING), so history never slows the claim.
SQLite runs the same statements; BEGIN IMMEDIATE serializes claims.
"""

from __future__ import annotations

import functools
import random
import zlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import sqlalchemy as sa

from dbos._storage.database import Database
from dbos._storage.dialect import POSTGRES, Dialect
from dbos._storage.schema import status_in
from dbos._storage.schema import workflow_status as ws
from dbos._storage.workflows import _COLUMNS, WorkflowRow


@dataclass(frozen=True)
class QueueLimits:
    name: str
    concurrency: Optional[int]
    worker_concurrency: int  # per executor; a default applies when the queue sets none
    limit: Optional[int]  # rate limit: at most `limit` starts per `period` seconds
    period_sec: Optional[float]
    partitioned: bool
    # Each partition's limits (a partitioned queue): fleet-wide, on this executor, rate.
    partition_concurrency: Optional[int] = None
    partition_worker_concurrency: Optional[int] = None
    partition_limit: Optional[int] = None
    partition_period_sec: Optional[float] = None
    stored: bool = False  # the caller read these limits under the queue's claim lock

    @property
    def fleet_wide(self) -> bool:
        return self.concurrency is not None or self.limit is not None or self.partitioned or self.stored


@dataclass(frozen=True)
class ClaimResult:
    rows: list[WorkflowRow]
    fresh: frozenset[str] = frozenset()  # claimed IDs that never started: no recorded steps
    locked_out: bool = False  # another executor holds the queue's claim lock: retry soon
    rate_limited_until_ms: Optional[int] = None  # no start allowed before this time


# The claim reads a queue's ENQUEUED rows in claim order, which only ws_queue_ready
# gives without a sort. Statistics are often stale for live rows (a burst enqueued
# since the last ANALYZE looks like one row), and then any index whose predicate the
# claim implies looks as cheap, followed by a sort of the whole backlog. Within
# the claim's transaction the planner is told to avoid sorts, so it takes the
# ordered index whatever the statistics say.
_ORDERED_PLAN = "SET LOCAL enable_sort = off"
_LOCK = sa.text("SELECT set_config('lock_timeout', :wait, true), pg_advisory_xact_lock(:k)")
_LOCK_WAIT = "250ms"
_LOCK_NOT_AVAILABLE = "55P03"


def lock_timed_out(e: BaseException) -> bool:
    """The claim gave up waiting for another executor's claim of the same queue."""
    orig = getattr(e, "orig", e)  # SQLAlchemy wraps the driver's error; the pipelined path does not
    return getattr(orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE


def _lock_key(queue_name: str) -> int:
    return zlib.crc32(b"dbos-queue:" + queue_name.encode()) - 2**31


def lock_queue(conn: sa.Connection, dialect: Dialect, queue_name: str) -> None:
    """Take the queue's claim lock for this transaction (PostgreSQL; on SQLite BEGIN
    IMMEDIATE already serializes writers). Raises after a bounded wait (``lock_timed_out``)."""
    if not dialect.is_sqlite:
        conn.execute(_LOCK, {"k": _lock_key(queue_name), "wait": _LOCK_WAIT})


def claim(
    conn: sa.Connection,
    dialect: Dialect,
    q: QueueLimits,
    executor_id: str,
    app_version: str,
    now: int,
    local_running: int,
    *,
    locked: bool = False,
) -> ClaimResult:
    """Claim what this executor may start now. ``local_running``: how many of this
    queue's workflows run here (the caller knows; no query needed). ``locked``: the
    caller took the queue's claim lock in this transaction already."""
    if not dialect.is_sqlite:
        conn.execute(sa.text(_ORDERED_PLAN))
        if q.fleet_wide and not locked:
            # Executors claiming the same queue take turns: each waits for the lock
            # (a claim holds it for a few milliseconds) instead of retrying later.
            # The bounded wait keeps a stuck holder from stalling this poller.
            # A wait that times out raises (see ``lock_timed_out``), rolling the claim back.
            conn.execute(_LOCK, {"k": _lock_key(q.name), "wait": _LOCK_WAIT})
    budget: Optional[int] = None
    retry_at: Optional[int] = None
    if q.limit is not None and q.period_sec is not None:
        window_start = now - int(q.period_sec * 1000)
        starts = conn.execute(
            sa.select(ws.c.started_at)
            .where(ws.c.queue_name == q.name, ws.c.started_at > window_start)
            .order_by(ws.c.started_at)
            .limit(q.limit)
        ).scalars().all()
        budget = q.limit - len(starts)
        if budget <= 0:
            return ClaimResult([], rate_limited_until_ms=int(starts[0]) + int(q.period_sec * 1000) + 1)
    claimed: list[WorkflowRow] = []
    fresh: set[str] = set()
    if q.partitioned:
        keys = list(
            conn.execute(
                sa.select(ws.c.queue_partition_key)
                .where(ws.c.queue_name == q.name, status_in("ENQUEUED"))
                .distinct()
            ).scalars()
        )
        # Visited in a random order, as DBOS 2.x does: when the queue-wide room is smaller
        # than the number of partitions, a fixed order (SQLite's DISTINCT is sorted) would
        # hand every freed slot to the first partitions and starve the rest.
        random.shuffle(keys)
        # Queue-wide room (across partitions), then each partition's own.
        room = q.worker_concurrency - local_running
        if q.concurrency is not None and keys:
            room = min(room, q.concurrency - _running(conn, q, None, None))
        if budget is not None:
            room = min(room, budget)
        for key in keys:
            free = room - len(claimed)
            if free > 0 and q.partition_worker_concurrency is not None:
                free = min(free, q.partition_worker_concurrency - _running(conn, q, key, executor_id))
            if free > 0 and q.partition_concurrency is not None:
                free = min(free, q.partition_concurrency - _running(conn, q, key, None))
            if free > 0 and q.partition_limit is not None and q.partition_period_sec is not None:
                free = min(free, q.partition_limit - _started_since(conn, q, key, now - int(q.partition_period_sec * 1000)))
            if free > 0:
                claimed.extend(_take(conn, dialect, q, key, executor_id, app_version, free, now, fresh))
    else:
        free = q.worker_concurrency - local_running
        if budget is not None:
            free = min(free, budget)
        cap: Optional[int] = None
        if q.concurrency is not None and free > 0:
            if dialect.is_sqlite:
                free = min(free, q.concurrency - _running(conn, q, None, None))
            else:
                # Counted inside the claim statement: one round trip less under the lock.
                cap = q.concurrency
        if free > 0:
            claimed = _take(conn, dialect, q, None, executor_id, app_version, free, now, fresh, cap)
    if budget is not None and len(claimed) >= budget:
        retry_at = now + int((q.period_sec or 0) * 1000)
    return ClaimResult(claimed, frozenset(fresh), rate_limited_until_ms=retry_at)


def _started_since(conn: sa.Connection, q: QueueLimits, key: str, since: int) -> int:
    """Starts in a partition's rate window (``ws_queue_started``, then the partition key)."""
    stmt = sa.select(sa.func.count()).select_from(ws).where(
        ws.c.queue_name == q.name, ws.c.started_at > since, ws.c.queue_partition_key == key
    )
    return int(conn.execute(stmt).scalar() or 0)


def _running(conn: sa.Connection, q: QueueLimits, key: Optional[str], executor_id: Optional[str]) -> int:
    stmt = sa.select(sa.func.count()).select_from(ws).where(ws.c.queue_name == q.name, status_in("PENDING"))
    if key is not None:
        stmt = stmt.where(ws.c.queue_partition_key == key)
    if executor_id is not None:
        stmt = stmt.where(ws.c.executor_id == executor_id)
    return int(conn.execute(stmt).scalar() or 0)


def _pick(partitioned: bool, capped: bool = False, any_version: bool = False) -> sa.Select[Any]:
    """The rows to claim. ``capped``: at most ``cap`` minus what runs fleet-wide now
    (counted in the same statement, after the queue's lock was taken).
    ``any_version``: the next rows whatever their app version (with it, as
    ``version``); the caller claims only those it may run."""
    limit: Any = sa.bindparam("n", type_=sa.Integer)
    if capped:
        running = (
            sa.select(sa.func.count())
            .select_from(ws)
            .where(ws.c.queue_name == sa.bindparam("queue"), status_in("PENDING"))
            .scalar_subquery()
        )
        limit = sa.func.greatest(0, sa.func.least(limit, sa.bindparam("cap", type_=sa.Integer) - running))
    columns = [ws.c.workflow_uuid, ws.c.started_at.label("old_started"), ws.c.forked_from.label("old_forked")]
    conditions = [ws.c.queue_name == sa.bindparam("queue"), status_in("ENQUEUED")]
    if any_version:
        columns.append(ws.c.application_version.label("version"))
    else:
        conditions.append(
            sa.or_(ws.c.application_version == sa.bindparam("version"), ws.c.application_version.is_(None))
        )
    pick = sa.select(*columns).where(*conditions).order_by(ws.c.priority, ws.c.created_at).limit(limit)
    if partitioned:
        pick = pick.where(ws.c.queue_partition_key == sa.bindparam("key"))
    return pick


_NOW = sa.bindparam("now", type_=sa.BigInteger)
_CLAIM_VALUES: dict[str, Any] = dict(
    status="PENDING",
    executor_id=sa.bindparam("executor"),
    application_version=sa.bindparam("version"),  # an unpinned row is pinned to the version that starts it
    started_at=_NOW,
    updated_at=_NOW,
    recovery_attempts=ws.c.recovery_attempts + 1,
    deadline_ms=sa.case((ws.c.timeout_ms.is_not(None), _NOW + ws.c.timeout_ms), else_=ws.c.deadline_ms),
)


@functools.cache
def _claim_stmt(dialect: Dialect, partitioned: bool, capped: bool = False) -> Any:
    """Built once: pick with SKIP LOCKED, mark, and return the rows with their old values.

    SQLite's RETURNING cannot name the FROM side, so there it is the pick alone
    (the update follows; BEGIN IMMEDIATE holds the lock in between).
    """
    pick = _pick(partitioned, capped)
    if dialect.is_sqlite:
        return pick
    sub = dialect.lock_for_claim(pick).subquery("picked")
    return (
        sa.update(ws)
        .where(ws.c.workflow_uuid == sub.c.workflow_uuid)
        .values(**_CLAIM_VALUES)
        .returning(*_COLUMNS, sub.c.old_started, sub.c.old_forked)
    )


_SQLITE_MARK = (
    sa.update(ws)
    .where(ws.c.workflow_uuid.in_(sa.bindparam("ids", expanding=True)))
    .values(**_CLAIM_VALUES)
    .returning(*_COLUMNS)
)


def _take(
    conn: sa.Connection,
    dialect: Dialect,
    q: QueueLimits,
    key: Optional[str],
    executor_id: str,
    app_version: str,
    count: int,
    now: int,
    fresh: set[str],
    cap: Optional[int] = None,
) -> list[WorkflowRow]:
    params = {
        "queue": q.name, "version": app_version, "n": count, "key": key, "executor": executor_id, "now": now,
        "cap": cap,
    }
    stmt = _claim_stmt(dialect, key is not None, cap is not None)
    rows: list[WorkflowRow] = []
    if dialect.is_sqlite:
        picked = conn.execute(stmt, params).all()
        if not picked:
            return []
        fresh.update(r[0] for r in picked if r[1] is None and r[2] is None)
        params["ids"] = [r[0] for r in picked]
        rows = [WorkflowRow.from_row(r) for r in conn.execute(_SQLITE_MARK, params)]
    else:
        for r in conn.execute(stmt, params):
            row = WorkflowRow.from_row(r)
            rows.append(row)
            if r.old_started is None and r.old_forked is None:
                # Never started and not a fork (whose first steps were copied): nothing recorded.
                fresh.add(row.workflow_uuid)
    rows.sort(key=lambda r: (r.priority or 0, r.created_at))
    return rows


def claim_pipelined(
    db: Database, q: QueueLimits, executor_id: str, app_version: str, now: int, free: int
) -> ClaimResult:
    """PostgreSQL, a queue without partitions or a rate limit: the claim above as
    one transaction sent in one network flight (psycopg pipeline mode).

    With a global concurrency the queue's lock is what serializes claims across
    the fleet, so how long it is held bounds the queue's claim rate; pipelined,
    it is released as soon as the server has run the claim and committed, with
    no client round trip in between. Without one it is the claim alone (plus
    the planner setting, which costs no round trip).
    """
    capped = q.concurrency is not None
    claim_sql, defaults = db.compiled(f"queues.claim.{capped}", _claim_stmt(POSTGRES, False, capped))
    params = {
        **defaults, "queue": q.name, "version": app_version, "n": free, "cap": q.concurrency,
        "executor": executor_id, "now": now,
    }
    statements: list[tuple[str, Any]] = [(_ORDERED_PLAN, None)]
    if capped:
        lock_sql, _ = db.compiled("queues.lock", _LOCK)
        statements.append((lock_sql, {"k": _lock_key(q.name), "wait": _LOCK_WAIT}))
    statements.append((claim_sql, params))
    claimed = [_claimed(r) for r in db.pipelined_transaction(statements)]
    rows = sorted((row for row, _ in claimed), key=lambda r: (r.priority or 0, r.created_at))
    return ClaimResult(rows, frozenset(row.workflow_uuid for row, fresh in claimed if fresh))


def _claimed(r: Sequence[Any]) -> tuple[WorkflowRow, bool]:
    """A row a driver-level claim returned (``_COLUMNS``, then ``old_started`` and
    ``old_forked``), and whether it is fresh: never started and not a fork (whose
    first steps were copied), so nothing is recorded for it."""
    width = len(_COLUMNS)
    return WorkflowRow(*r[:width]), r[width] is None and r[width + 1] is None


@functools.cache
def _transfer_claim_stmt() -> Any:
    """The claim of ``finish_and_claim``: the queue's next row, if this executor's app
    version may run it, and only if the finish (CTE ``f``) happened."""
    pick = _pick(False, capped=True, any_version=True).where(sa.text("EXISTS (SELECT 1 FROM f)"))
    sub = POSTGRES.lock_for_claim(pick).subquery("picked")
    return (
        sa.update(ws)
        .where(
            ws.c.workflow_uuid == sub.c.workflow_uuid,
            sa.or_(sub.c.version == sa.bindparam("version"), sub.c.version.is_(None)),
        )
        .values(**_CLAIM_VALUES)
        .returning(*_COLUMNS, sub.c.old_started, sub.c.old_forked)
    )


def finish_and_claim(
    db: Database, workflow_id: str, status: str, output: Optional[bytes], error: Optional[bytes], now: int,
    q: QueueLimits, executor_id: str, app_version: str,
) -> tuple[bool, ClaimResult]:
    """PostgreSQL, a queue with a global concurrency and neither partitions nor a
    rate limit: record a PENDING workflow's outcome and, in the same statement,
    claim the queue's next row for this executor into the slot it frees.

    A slot handed over is exact without the queue's lock: the finish and the
    claim commit together, so every count of what runs fleet-wide, taken before
    or after, is the same, and the worker count here is unchanged too. The
    statement's count still sees the finishing row as running, so ``cap`` is
    one more than the limit: nothing is claimed while the queue is over its
    limit (e.g. lowered by a deploy). The next row in claim order is taken only
    if this executor's version may run it: a row pinned to another version is
    left for the executors of that version, which the freed slot then wakes,
    so a backlog of one version cannot keep the slots from another. Returns
    (the outcome was recorded, the claim); nothing is claimed unless the
    outcome was recorded.
    """
    claim_sql, defaults = db.compiled("queues.transfer_claim", _transfer_claim_stmt())
    sql = db.sql("queues.finish_and_claim", lambda d: (
        f"WITH f AS (UPDATE {d.qualify('workflow_status')} SET status = %(fstatus)s, output = %(foutput)s,"
        " error = %(ferror)s, updated_at = %(now)s WHERE workflow_uuid = %(wid)s AND status = 'PENDING'"
        " AND executor_id = %(executor)s"
        " RETURNING 1),"
        f" c AS ({claim_sql})"
        " SELECT (SELECT count(*) FROM f), c.* FROM (SELECT 1) AS one LEFT JOIN c ON true"
    ))
    assert q.concurrency is not None
    params = {
        **defaults, "queue": q.name, "version": app_version, "n": 1, "cap": q.concurrency + 1,
        "executor": executor_id, "now": now, "wid": workflow_id, "fstatus": status, "foutput": output,
        "ferror": error,
    }
    r = db.pipelined_transaction([(_ORDERED_PLAN, None), (sql, params)])[0]
    recorded = r[0] > 0
    if r[1] is None:
        return recorded, ClaimResult([])
    row, fresh = _claimed(r[1:])
    return recorded, ClaimResult([row], frozenset([row.workflow_uuid]) if fresh else frozenset())


def requeue_pending(
    conn: sa.Connection,
    executor_id: str,
    now: int,
    *,
    app_version: Optional[str] = None,
    except_ids: Sequence[str] = (),
) -> list[str]:
    """Put this executor's PENDING queued workflows back on their queues; return
    the queues that got work back.

    At launch (``app_version``: the rows this version may run) they are what a
    crash left; on a live executor (``except_ids``: what runs here) they are
    what a claim left when its COMMIT went through but its connection was lost.
    """
    conditions = [ws.c.executor_id == executor_id, status_in("PENDING"), ws.c.queue_name.is_not(None)]
    if app_version is not None:
        conditions.append(sa.or_(ws.c.application_version == app_version, ws.c.application_version.is_(None)))
    if except_ids:
        conditions.append(ws.c.workflow_uuid.not_in(list(except_ids)))
    stmt = (
        sa.update(ws)
        .where(*conditions)
        .values(status="ENQUEUED", executor_id=None, updated_at=now)
        .returning(ws.c.queue_name)
    )
    return sorted({str(r[0]) for r in conn.execute(stmt)})


def promote_delayed(conn: sa.Connection, now: int) -> list[str]:
    """DELAYED workflows whose delay has passed become ENQUEUED (claimable, in their
    place by priority and enqueue time); return the queues that got work. Any executor
    may run it: a conditional change, so two at once promote each row once."""
    stmt = (
        sa.update(ws)
        .where(status_in("DELAYED"), ws.c.delay_until_epoch_ms <= now)
        .values(status="ENQUEUED", updated_at=now)
        .returning(ws.c.queue_name)
    )
    return sorted({str(r[0]) for r in conn.execute(stmt)})


def set_delay(conn: sa.Connection, workflow_id: str, until_ms: int, now: int) -> bool:
    """Move the due time of a DELAYED workflow; False if it is not DELAYED (any more)."""
    stmt = (
        sa.update(ws)
        .where(ws.c.workflow_uuid == workflow_id, status_in("DELAYED"))
        .values(delay_until_epoch_ms=until_ms, updated_at=now)
    )
    return bool(conn.execute(stmt).rowcount)


def depth(conn: sa.Connection, queue_names: Sequence[str], app_version: str) -> dict[str, int]:
    """ENQUEUED rows per queue that this version may run (``ws_queue_ready``: waiting rows only,
    so history costs nothing)."""
    if not queue_names:
        return {}
    stmt = (
        sa.select(ws.c.queue_name, sa.func.count())
        .where(
            ws.c.queue_name.in_(list(queue_names)),
            status_in("ENQUEUED"),
            sa.or_(ws.c.application_version == app_version, ws.c.application_version.is_(None)),
        )
        .group_by(ws.c.queue_name)
    )
    found = {str(r[0]): int(r[1]) for r in conn.execute(stmt)}
    return {q: found.get(q, 0) for q in queue_names}


def oldest_waiting_by_version(conn: sa.Connection) -> dict[str, tuple[int, int]]:
    """Per pinned version: (ENQUEUED count, epoch ms the oldest of them became ENQUEUED)."""
    stmt = (
        sa.select(ws.c.application_version, sa.func.count(), sa.func.min(ws.c.updated_at))
        .where(status_in("ENQUEUED"), ws.c.application_version.is_not(None))
        .group_by(ws.c.application_version)
    )
    return {str(r[0]): (int(r[1]), int(r[2] or 0)) for r in conn.execute(stmt)}


def active_by_version_queue(conn: sa.Connection) -> dict[tuple[str, str], int]:
    """ENQUEUED + PENDING workflows per (pinned version, queue; '' for direct work)."""
    stmt = (
        sa.select(ws.c.application_version, ws.c.queue_name, sa.func.count())
        .where(status_in("ENQUEUED", "PENDING"), ws.c.application_version.is_not(None))
        .group_by(ws.c.application_version, ws.c.queue_name)
    )
    return {(str(r[0]), str(r[1] or "")): int(r[2]) for r in conn.execute(stmt)}


def deduplicated_holder(conn: sa.Connection, queue_name: str, deduplication_id: str) -> Optional[str]:
    """The queued workflow (DELAYED, ENQUEUED or PENDING: what ``ws_queue_dedup`` covers)
    holding this deduplication ID on this queue; None once it has left the queue."""
    stmt = sa.select(ws.c.workflow_uuid).where(
        ws.c.queue_name == queue_name, ws.c.deduplication_id == deduplication_id,
        status_in("DELAYED", "ENQUEUED", "PENDING"),
    )
    return conn.execute(stmt).scalar()
