"""Queue rules: validate and write an enqueue; start what a claim returned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from dbos._execution import context, recovery
from dbos._execution import workflow as wf
from dbos._execution.context import EnqueueOptions
from dbos._execution.runtime import Runtime, now_ms
from dbos._execution.step import Reserved
from dbos._storage import queues
from dbos._storage.queues import ClaimResult, QueueLimits
from dbos._wakeups.local import queue_ready
from dbos.error import DBOSException

_UNBOUNDED = 2_147_483_647  # "no per-executor limit" where the claim wants a number


@dataclass(frozen=True)
class QueueSpec:
    name: str
    concurrency: Optional[int]
    limit: Optional[int]
    period_sec: Optional[float]
    worker_concurrency: Optional[int]
    priority_enabled: bool
    partition_queue: bool
    polling_interval_sec: float
    # Limits on each partition (a queue with any of them is partitioned), beside the
    # queue-wide ones above, which then apply across all partitions.
    partition_concurrency: Optional[int] = None
    partition_worker_concurrency: Optional[int] = None
    partition_limit: Optional[int] = None
    partition_period_sec: Optional[float] = None
    stored: bool = False  # a queue of the ``queues`` table: its limits are read at every claim

    @property
    def partitioned(self) -> bool:
        return self.partition_queue or self.partition_concurrency is not None \
            or self.partition_worker_concurrency is not None or self.partition_limit is not None

    @property
    def shares_slots_fleet_wide(self) -> bool:
        """A slot freed here is one every executor competes for (global concurrency, or
        a partition's); a rate limit's window frees nothing when a workflow ends."""
        return self.concurrency is not None or self.partitioned

    def limits(self, default_worker_concurrency: int) -> QueueLimits:
        legacy = self.partition_queue and not (
            self.partition_concurrency is not None or self.partition_worker_concurrency is not None
            or self.partition_limit is not None
        )
        worker = self.worker_concurrency
        if worker is None:
            worker = default_worker_concurrency
            if self.concurrency is not None:
                worker = min(worker, self.concurrency)
        if legacy:
            # partition_queue=True alone (DBOS's first partitioned queues): the concurrency
            # and the worker concurrency are each partition's, the rate limit the queue's.
            return QueueLimits(
                self.name, None, _UNBOUNDED, self.limit, self.period_sec, True,
                partition_concurrency=self.concurrency, partition_worker_concurrency=worker, stored=self.stored,
            )
        return QueueLimits(
            self.name, self.concurrency, worker, self.limit, self.period_sec, self.partitioned,
            partition_concurrency=self.partition_concurrency,
            partition_worker_concurrency=self.partition_worker_concurrency,
            partition_limit=self.partition_limit, partition_period_sec=self.partition_period_sec,
            stored=self.stored,
        )


# Where resumed and forked workflows wait for an executor of their app version.
# Every executor polls it; it has no limits beyond the per-executor default.
INTERNAL_QUEUE = QueueSpec("_dbos_internal_queue", None, None, None, None, False, False, 1.0)


def enqueue_fields(spec: QueueSpec, options: Optional[EnqueueOptions], app_version: Optional[str]) -> dict[str, Any]:
    """Validate enqueue options against the queue; return the status-row fields they set."""
    opts = options or EnqueueOptions()
    # A priority works on any queue (DBOS 2.x deprecated the priority_enabled opt-in):
    # every claim orders by priority, then enqueue time.
    if opts.queue_partition_key is not None and not spec.partitioned:
        raise DBOSException(
            f"queue {spec.name!r} is not partitioned (partition_queue=True or a partition_* limit); "
            "cannot enqueue with a partition key"
        )
    if spec.partitioned and opts.queue_partition_key is None:
        raise DBOSException(
            f"queue {spec.name!r} is partitioned: enqueue needs SetEnqueueOptions(queue_partition_key=...)"
        )
    if opts.duplication_policy == "return-existing" and opts.deduplication_id is None:
        raise DBOSException("duplication_policy 'return-existing' requires a deduplication_id")
    fields: dict[str, Any] = {
        "priority": opts.priority or 0,
        "deduplication_id": opts.deduplication_id,
        "queue_partition_key": opts.queue_partition_key,
        "application_version": opts.app_version or app_version,
    }
    if opts.delay_seconds:
        # Not claimable before then, by any executor: the poller's promote_delayed makes it ENQUEUED.
        fields["status"] = "DELAYED"
        fields["delay_until_epoch_ms"] = now_ms() + int(opts.delay_seconds * 1000)
    return fields


def enqueue(
    rt: Runtime, spec: QueueSpec, call: wf.Call, *, reserved: Optional[Reserved] = None
) -> str:
    """Write the ENQUEUED row (or find it, for a replayed enqueue); return the workflow ID.
    ``reserved``: from a workflow, the step ID an async caller took on its task
    (``step.reserve``)."""
    options = context.current().enqueue
    fields = enqueue_fields(spec, options, rt.app_version)
    # A deduplication ID already queued raises DBOSQueueDeduplicatedError (recorded, in a
    # workflow), or under "return-existing" gives the workflow holding it.
    return_existing = options is not None and options.duplication_policy == "return-existing"
    created = wf.create(rt, call, queue_name=spec.name, enqueue_fields=fields, reserved=reserved,
                        return_existing=return_existing)
    if created.fresh:
        rt.wakeups.notify(queue_ready(spec.name))
    return created.workflow_id


def claim_and_start(rt: Runtime, limits: QueueLimits) -> ClaimResult:
    """One claim for one queue; start every claimed workflow here."""
    dialect = rt.sys_db.dialect
    local_running = rt.local_count(limits.name)
    if local_running >= limits.worker_concurrency:
        return ClaimResult([])  # no free capacity here: no query at all
    # On PostgreSQL a queue without partitions or a rate limit is claimed in one
    # pipelined transaction (one round trip); the others in a transaction of a few.
    pipelined = not dialect.is_sqlite and limits.limit is None and not limits.partitioned and not limits.stored
    try:
        if pipelined:
            free = limits.worker_concurrency - local_running
            result = queues.claim_pipelined(rt.sys_db, limits, rt.executor_id, rt.app_version, now_ms(), free)
        else:
            result = rt.sys_db.run(
                lambda c: queues.claim(c, dialect, limits, rt.executor_id, rt.app_version, now_ms(), local_running),
                tx=True,
            )
    except Exception as e:
        if not queues.lock_timed_out(e):
            raise
        return ClaimResult([], locked_out=True)
    start_claimed(rt, limits.name, result)
    return result


def start_claimed(rt: Runtime, queue_name: str, result: ClaimResult) -> None:
    """Start here every workflow a claim of this queue returned."""
    if result.rows:
        rt.stats.claimed(queue_name, len(result.rows))
    for row in result.rows:
        local, is_new = rt.claim_local(row.workflow_uuid, queue_name=queue_name, claimed=True)
        if is_new:
            recovery.launch(rt, row, local, fresh=row.workflow_uuid in result.fresh)


def promote_delayed(rt: Runtime) -> list[str]:
    """DELAYED workflows whose delay has passed become ENQUEUED; return their queues."""
    return rt.sys_db.run(lambda c: queues.promote_delayed(c, now_ms()), tx=True)


def set_delay(rt: Runtime, workflow_id: str, delay_seconds: Optional[float], until_ms: Optional[int]) -> None:
    """Move the due time of a DELAYED workflow (``DBOS.set_workflow_delay``)."""
    if (delay_seconds is None) == (until_ms is None):
        raise DBOSException("set_workflow_delay needs exactly one of delay_seconds and delay_until_epoch_ms")
    if until_ms is None:
        assert delay_seconds is not None
        if isinstance(delay_seconds, bool) or not isinstance(delay_seconds, (int, float)) \
                or not 0 <= delay_seconds <= 315_360_000:
            raise DBOSException(f"delay_seconds must be a number of seconds in 0..315360000, got {delay_seconds!r}")
        until_ms = now_ms() + int(delay_seconds * 1000)
    elif isinstance(until_ms, bool) or not isinstance(until_ms, int) or until_ms < 0:
        raise DBOSException(f"delay_until_epoch_ms must be an integer >= 0, got {until_ms!r}")
    at = until_ms
    if not rt.sys_db.run(lambda c: queues.set_delay(c, workflow_id, at, now_ms()), tx=True):
        raise DBOSException(f"workflow {workflow_id} is not DELAYED: only a delayed workflow's delay can change")


def requeue_orphans(rt: Runtime) -> list[str]:
    """Put back on their queues the rows this executor holds as PENDING but does not
    run (a claim that committed while its connection was lost); return those queues.

    Called by the poller's own thread, between claims, so every row it claimed
    and received is registered here by then; a finishing workflow handing its
    slot on registers its claim inside ``rt.claim_gate``, which the sweep holds.
    """
    with rt.claim_gate.exclusive():  # no slot handover is between its claim and its registration
        running = rt.running_ids()
        back = rt.sys_db.run(
            lambda c: queues.requeue_pending(c, rt.executor_id, now_ms(), except_ids=running), tx=True
        )
    if back:
        rt.logger.warning("claimed workflows that never started here went back to queues %s", back)
    return back
