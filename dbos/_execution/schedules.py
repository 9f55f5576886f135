"""Schedule rules: declaring, storing and firing cron schedules.

A tick of a schedule runs as the workflow ``sched-<schedule name>-<tick, ISO 8601>``,
enqueued on the internal queue (or the schedule's queue) pinned to the firing
executor's app version. Every executor that can run the schedule fires every
tick; the ID makes all but the first attempt a no-op, so each tick runs once
fleet-wide whichever executors are alive, and a crash after the enqueue leaves
an ordinary queued (or PENDING, handed over) workflow.

Missed ticks: when an executor starts firing a schedule it runs only the
latest tick it missed (one newer than the schedule's ``last_fired_at`` and its
creation), never the whole gap; ``backfill`` runs the rest, each once. A
schedule with ``automatic_backfill`` runs every tick of the gap instead.

A schedule's ``cron_timezone`` (an IANA zone) is the wall clock its crontab
reads (``cron.py``); its ticks, their workflow IDs and ``scheduled_time`` carry
that zone's offset, as in DBOS. Each tick's workflow records the schedule's
name (``list_workflows(schedule_name=...)``).

Decorated schedules (``@DBOS.scheduled``) run only where their decorator ran
(the executors of the version that declares them) and get ``(scheduled_time,
actual_time)``; dynamic ones (``DBOS.create_schedule``) run on any executor
that registers their workflow and get ``(scheduled_time, context)``.
"""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, TypedDict, Union

from dbos._execution import checks, context, cron, versions
from dbos._execution import workflow as wf
from dbos._execution.context import IdBox
from dbos._execution.ids import new_id
from dbos._execution.queues import INTERNAL_QUEUE, QueueSpec, enqueue_fields
from dbos._execution.registry import WorkflowInfo
from dbos._execution.runtime import Runtime, now_ms
from dbos._execution.serialization import deserialize, serialize
from dbos._execution.step import Reserved, tx_step
from dbos._storage import schedules as store
from dbos._storage.schedules import ScheduleRow
from dbos._wakeups.local import queue_ready
from dbos.error import DBOSException

ACTIVE, PAUSED = "ACTIVE", "PAUSED"
CHANGED = "schedules:changed"  # local wakeup: this process's scheduler re-reads at once
DECORATOR, DYNAMIC = "decorator", "dynamic"
UTC = datetime.timezone.utc


class WorkflowSchedule(TypedDict):
    """A schedule as ``list_schedules`` / ``get_schedule`` return it (DBOS 2.x's fields,
    then ``created_at`` and ``kind``)."""

    schedule_id: str
    schedule_name: str
    workflow_name: str
    workflow_class_name: Optional[str]
    schedule: str
    status: str  # ACTIVE | PAUSED
    context: Any
    last_fired_at: Optional[str]  # the newest tick fired, ISO 8601 in the schedule's zone (as DBOS)
    automatic_backfill: bool
    cron_timezone: Optional[str]  # IANA zone name; None: UTC
    queue_name: Optional[str]
    created_at: datetime.datetime
    kind: str  # decorator | dynamic


class ScheduleInput(TypedDict, total=False):
    """One schedule of ``apply_schedules``."""

    schedule_name: str  # required
    workflow_fn: Any  # required: a @DBOS.workflow function
    schedule: str  # required: a crontab
    context: Any
    automatic_backfill: bool
    cron_timezone: Optional[str]
    queue_name: Optional[str]


class ClientScheduleInput(TypedDict, total=False):
    """One schedule of ``DBOSClient.apply_schedules``: by workflow name (a client has no code)."""

    schedule_name: str  # required
    workflow_name: str  # required
    workflow_class_name: Optional[str]
    schedule: str  # required
    context: Any
    automatic_backfill: bool
    cron_timezone: Optional[str]
    queue_name: Optional[str]


@dataclass
class DecoratedTable:
    """Process-wide: the ``@DBOS.scheduled`` declarations made by imports (workflow name ->
    crontab). Beside the registry, not in it: a schedule only fires while its workflow is
    registered, so a cleared registry (destroy_registry) fires nothing."""

    entries: dict[str, cron.Crontab] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, workflow_name: str, crontab: cron.Crontab) -> None:
        with self.lock:
            self.entries[workflow_name] = crontab

    def items(self) -> list[tuple[str, cron.Crontab]]:
        with self.lock:
            return list(self.entries.items())


DECORATED = DecoratedTable()


def check_schedulable(info: WorkflowInfo, what: str) -> None:
    if info.takes_self:
        raise DBOSException(f"{what}: {info.name} takes self or cls; a scheduled workflow must be a plain function")


def tick_workflow_id(schedule_name: str, tick: datetime.datetime, zone: Optional[str] = None) -> str:
    """``sched-<name>-<tick, ISO 8601 in the schedule's zone>``: the same instant always
    gives the same ID, whichever executor (or backfill) enqueues it."""
    return f"sched-{schedule_name}-{tick.astimezone(cron.zone(zone) or UTC).isoformat()}"


def _ms(t: datetime.datetime) -> int:
    return int(t.timestamp() * 1000)


def _dt(ms: Optional[int]) -> Optional[datetime.datetime]:
    return datetime.datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else None


def _fired_at(row: ScheduleRow) -> Optional[str]:
    fired = _dt(row.last_fired_at)
    if fired is None:
        return None
    try:
        zone = cron.zone(row.cron_timezone)
    except DBOSException:  # a zone this machine's time zone database lacks: shown in UTC
        zone = None
    return fired.astimezone(zone or UTC).isoformat()


def to_public(row: ScheduleRow) -> WorkflowSchedule:
    return WorkflowSchedule(
        schedule_id=row.schedule_id or "", schedule_name=row.schedule_name, workflow_name=row.workflow_name,
        workflow_class_name=row.workflow_class_name, schedule=row.schedule, status=row.status,
        context=deserialize(row.context, f"the context of schedule {row.schedule_name}"),
        last_fired_at=_fired_at(row), automatic_backfill=row.automatic_backfill,
        cron_timezone=row.cron_timezone, queue_name=row.queue_name,
        created_at=_dt(row.created_at) or datetime.datetime.now(UTC), kind=row.kind,
    )


@dataclass(frozen=True)
class Options:
    """What a schedule may set beyond its crontab (DBOS 2.x's keywords)."""

    context: Any = None
    queue_name: Optional[str] = None
    automatic_backfill: bool = False
    cron_timezone: Optional[str] = None
    class_name: Optional[str] = None


def new_row(name: str, workflow_name: str, crontab: str, kind: str, options: Optional[Options] = None) -> ScheduleRow:
    options = options or Options()
    checks.identifier("schedule_name", name)
    checks.optional_identifier("queue_name", options.queue_name)
    if not isinstance(options.automatic_backfill, bool):
        raise DBOSException(f"automatic_backfill must be True or False, got {options.automatic_backfill!r}")
    cron.parse(crontab, options.cron_timezone)  # a clear error naming the string, or the zone
    now = now_ms()
    return ScheduleRow(
        name, workflow_name, options.class_name, crontab, serialize(options.context, "the schedule's context"),
        ACTIVE, kind, options.queue_name, None, now, now, schedule_id=new_id(),
        automatic_backfill=options.automatic_backfill, cron_timezone=options.cron_timezone,
    )


def crontab_of(row: ScheduleRow) -> cron.Crontab:
    return cron.parse(row.schedule, row.cron_timezone)


# -- management (DBOS and DBOSClient) -------------------------------------------------


def _write(rt: Runtime, in_tx: Callable[[Any], None], step: Optional[str], reserved: Optional[Reserved]) -> None:
    """One transaction; ``step``: from a workflow, that step recorded in it (DBOS 2.x)."""
    if step is None:
        rt.sys_db.run(in_tx, tx=True)
    else:
        tx_step(rt, step, in_tx, reserved)
    rt.wakeups.notify(CHANGED, remote=False)


def create(rt: Runtime, row: ScheduleRow, step: Optional[str] = None, reserved: Optional[Reserved] = None) -> None:
    def in_tx(conn: Any) -> None:
        if not store.insert(conn, rt.sys_db.dialect, row):
            raise DBOSException(f"a schedule named {row.schedule_name!r} already exists")

    _write(rt, in_tx, step, reserved)


def apply(rt: Runtime, rows: Sequence[ScheduleRow]) -> None:
    """Create or redefine every schedule in one transaction (idempotent at start-up)."""
    names = [r.schedule_name for r in rows]
    if len(set(names)) != len(names):
        raise DBOSException(f"apply_schedules: a schedule name appears twice in {names}")

    def in_tx(conn: Any) -> None:
        for row in rows:
            store.upsert(conn, rt.sys_db.dialect, row, keep_status=True)

    rt.sys_db.run(in_tx, tx=True)
    rt.wakeups.notify(CHANGED, remote=False)


def register_decorated(rt: Runtime) -> list[str]:
    """At launch: this process's ``@DBOS.scheduled`` declarations, as rows every executor
    and client can list (a PAUSED one stays paused)."""
    rows = [new_row(name, name, c.text, DECORATOR) for name, c in DECORATED.items() if rt.registry.workflow(name) is not None]
    if rows:
        apply(rt, rows)
    return [r.schedule_name for r in rows]


def get(rt: Runtime, name: str) -> Optional[WorkflowSchedule]:
    row = rt.sys_db.query(lambda c: store.get(c, name))
    return to_public(row) if row is not None else None


def _list_arg(value: Union[str, Sequence[str], None]) -> Optional[List[str]]:
    return None if value is None else [value] if isinstance(value, str) else list(value)


def list_schedules(
    rt: Runtime, *, status: Union[str, Sequence[str], None] = None,
    workflow_name: Union[str, Sequence[str], None] = None,
    schedule_name_prefix: Union[str, Sequence[str], None] = None,
) -> List[WorkflowSchedule]:
    """Schedules matching every filter given; a list matches any of its values (DBOS 2.x)."""
    statuses = _list_arg(status)
    for s in statuses or []:
        if s not in (ACTIVE, PAUSED):
            raise DBOSException(f"schedule status must be ACTIVE or PAUSED, got {s!r}")
    rows = rt.sys_db.query(lambda c: store.list_all(
        c, statuses=statuses, workflow_names=_list_arg(workflow_name), name_prefixes=_list_arg(schedule_name_prefix)))
    return [to_public(r) for r in rows]


def set_status(rt: Runtime, name: str, status: str, step: Optional[str] = None) -> None:
    """Pause or resume. A resume marks the ticks of the pause as handled: they never run
    unless a backfill asks for them."""
    def in_tx(conn: Any) -> None:
        now = now_ms()
        if not store.set_status(conn, name, status, now):
            raise DBOSException(f"no schedule named {name!r}")
        if status == ACTIVE:
            store.mark_fired(conn, name, now)

    _write(rt, in_tx, step, None)


def delete(rt: Runtime, name: str, step: Optional[str] = None, reserved: Optional[Reserved] = None) -> None:
    def in_tx(conn: Any) -> None:
        store.delete(conn, [name])

    _write(rt, in_tx, step, reserved)


def _require(rt: Runtime, name: str) -> ScheduleRow:
    row = rt.sys_db.query(lambda c: store.get(c, name))
    if row is None:
        raise DBOSException(f"no schedule named {name!r}")
    return row


def trigger(rt: Runtime, name: str) -> str:
    """Run the schedule once now (its tick is the current second); return the workflow ID."""
    row = _require(rt, name)
    tick = datetime.datetime.now(UTC).replace(microsecond=0)
    return enqueue_tick(rt, row, tick, record=False)


def backfill(rt: Runtime, name: str, start: datetime.datetime, end: datetime.datetime) -> list[str]:
    """Run every tick in ``[start, end)`` that has not run (a tick that ran is not run again)."""
    row = _require(rt, name)
    c = crontab_of(row)
    first = start.astimezone(UTC) if start.tzinfo else start.replace(tzinfo=UTC)
    ticks = [t for t in c.ticks(first - datetime.timedelta(seconds=1), end) if t < end]
    return [enqueue_tick(rt, row, t, record=False) for t in ticks]


# -- firing -----------------------------------------------------------------------------


def enqueue_tick(rt: Runtime, row: ScheduleRow, tick: datetime.datetime, *, record: bool = True) -> str:
    """Enqueue the tick's workflow under its deterministic ID (a no-op if it exists)."""
    info = rt.registry.workflow(row.workflow_name)
    if info is None:  # a client: enqueue by name, as DBOSClient.enqueue does
        info = WorkflowInfo(row.workflow_name, lambda: None, False, 100, False, row.workflow_class_name)
    second: Any = datetime.datetime.now(UTC) if row.kind == DECORATOR else deserialize(row.context)
    tick = tick.astimezone(cron.zone(row.cron_timezone) or UTC)  # the workflow gets its scheduled time on the schedule's clock
    call = wf.Call(info, None, (tick, second), {})
    queue = row.queue_name or INTERNAL_QUEUE.name
    spec = rt.registry.queues.get(queue) or QueueSpec(queue, None, None, None, None, False, False, 1.0)
    version = rt.app_version or _latest_version(rt)  # a client: the latest, as DBOSClient.enqueue
    fields = {**enqueue_fields(spec, None, version), "schedule_name": row.schedule_name}
    workflow_id = tick_workflow_id(row.schedule_name, tick, row.cron_timezone)
    with context.updated(run=None, in_step=False, id_box=IdBox(workflow_id)):
        created = wf.create(rt, call, queue_name=queue, enqueue_fields=fields)
    if created.fresh:
        rt.wakeups.notify(queue_ready(queue))
    if record:
        rt.sys_db.run(lambda c: store.mark_fired(c, row.schedule_name, _ms(tick)), tx=True)
    return workflow_id


def _latest_version(rt: Runtime) -> Optional[str]:
    info = versions.latest(rt.sys_db)
    return info.version_name if info is not None else None


def fires_here(rt: Runtime, row: ScheduleRow) -> bool:
    """Whether this executor fires the schedule: its workflow is registered here and, for a
    decorated schedule, this process declared it (it runs on the declaring version only)."""
    if row.status != ACTIVE or rt.registry.workflow(row.workflow_name) is None:
        return False
    if row.kind == DECORATOR:
        with DECORATED.lock:
            declared = DECORATED.entries.get(row.workflow_name)
        return declared is not None and declared.text == row.schedule
    return True


def missed_ticks(row: ScheduleRow, c: cron.Crontab, now: datetime.datetime) -> list[datetime.datetime]:
    """The missed ticks that run when firing starts, those newer than both the last fired
    tick and the schedule's creation: with ``automatic_backfill`` every one up to now
    (oldest first), otherwise only the latest at or before now."""
    floor = max(row.last_fired_at or 0, row.created_at)
    if row.automatic_backfill:
        return list(c.ticks(_dt(floor) or now, now))
    latest = c.latest_at_or_before(now)
    return [latest] if _ms(latest) > floor else []
