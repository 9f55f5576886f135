"""Schedules on DBOS and DBOSClient: ``@DBOS.scheduled`` and the DBOS 2.x schedule methods.

Thin shells over ``_execution/schedules.py``; ``_SchedulesMixin`` is a base of
``DBOS`` (class methods on this process's runtime), ``ClientSchedulesMixin`` of
``DBOSClient`` (the same methods on the client's runtime). Called from a workflow,
create/list/get/pause/resume/delete are recorded steps (``DBOS.createSchedule``, ...),
as in DBOS Transact 2.x; a change commits with its step's record (``step.tx_step``).
"""

from __future__ import annotations

import datetime
from typing import Any, Callable, List, Mapping, Optional, Sequence, TypeVar, Union

from dbos._api.decorators import info_of
from dbos._api.handles import WorkflowHandle, _as_step, as_step_async
from dbos._api.instance import runtime
from dbos._api.management import plain
from dbos._execution import cron as crontabs
from dbos._execution import schedules as rules
from dbos._execution import step as steps
from dbos._execution.runtime import Runtime
from dbos._execution.schedules import ClientScheduleInput, ScheduleInput, WorkflowSchedule
from dbos._storage.schedules import ScheduleRow
from dbos.error import DBOSException

F = TypeVar("F", bound=Callable[..., Any])


def scheduled(cron: str) -> Callable[[F], F]:
    """``@DBOS.scheduled(cron)`` above ``@DBOS.workflow()``: run the workflow at every
    tick, as ``fn(scheduled_time, actual_time)`` (UTC), once per tick fleet-wide, on the
    executors of the version that declares it. A bad crontab raises here."""
    parsed = crontabs.parse(cron)

    def decorate(func: F) -> F:
        info, _ = info_of(func)  # @DBOS.workflow() must be applied first (below this one)
        rules.check_schedulable(info, "@DBOS.scheduled")
        rules.DECORATED.add(info.name, parsed)
        return func

    return decorate


def _options(spec: Mapping[str, Any], class_name: Optional[str]) -> rules.Options:
    return rules.Options(
        context=spec.get("context"), queue_name=spec.get("queue_name"),
        automatic_backfill=spec.get("automatic_backfill", False), cron_timezone=spec.get("cron_timezone"),
        class_name=class_name,
    )


def _row(spec: ScheduleInput) -> ScheduleRow:
    for key in ("schedule_name", "workflow_fn", "schedule"):
        if key not in spec:
            raise DBOSException(f"a schedule needs {key!r}, got {sorted(spec)}")
    info, _ = info_of(spec["workflow_fn"])
    rules.check_schedulable(info, f"schedule {spec['schedule_name']!r}")
    return rules.new_row(spec["schedule_name"], info.name, spec["schedule"], rules.DYNAMIC,
                         _options(spec, info.class_name))


def _client_row(spec: ClientScheduleInput) -> ScheduleRow:
    """A client names the workflow (it has no code), and its class for a class's method."""
    if not {"schedule_name", "workflow_name", "schedule"} <= set(spec):
        raise DBOSException(f"a schedule needs schedule_name, workflow_name and schedule, got {sorted(spec)}")
    return rules.new_row(spec["schedule_name"], spec["workflow_name"], spec["schedule"], rules.DYNAMIC,
                         _options(spec, spec.get("workflow_class_name")))


def _utc(t: datetime.datetime) -> datetime.datetime:
    return t.replace(tzinfo=datetime.timezone.utc) if t.tzinfo is None else t


class _SchedulesMixin:
    """The names and keywords of DBOS 2.31: ``get``/``pause``/``resume``/``delete_schedule``
    take ``name``; ``trigger``/``backfill_schedule`` take ``schedule_name``."""

    scheduled = staticmethod(scheduled)

    @classmethod
    def create_schedule(
        cls, *, schedule_name: str, workflow_fn: Callable[..., Any], schedule: str, context: Any = None,
        automatic_backfill: bool = False, cron_timezone: Optional[str] = None, queue_name: Optional[str] = None,
    ) -> None:
        """A schedule stored in the system database (every executor sees it); the workflow
        runs as ``workflow_fn(scheduled_time, context)``. ``cron_timezone``: the IANA zone
        whose wall clock the crontab reads (None: UTC); ``automatic_backfill``: when firing
        starts, every tick missed since the last one fired runs (else only the latest).
        Fails if the name is taken."""
        spec = ScheduleInput(schedule_name=schedule_name, workflow_fn=workflow_fn, schedule=schedule,
                             context=context, automatic_backfill=automatic_backfill,
                             cron_timezone=cron_timezone, queue_name=queue_name)
        rules.create(runtime(), _row(spec), "DBOS.createSchedule")

    @classmethod
    async def create_schedule_async(
        cls, *, schedule_name: str, workflow_fn: Callable[..., Any], schedule: str, context: Any = None,
        automatic_backfill: bool = False, cron_timezone: Optional[str] = None, queue_name: Optional[str] = None,
    ) -> None:
        spec = ScheduleInput(schedule_name=schedule_name, workflow_fn=workflow_fn, schedule=schedule,
                             context=context, automatic_backfill=automatic_backfill,
                             cron_timezone=cron_timezone, queue_name=queue_name)
        rt, reserved = runtime(), steps.reserve()  # the step's ID, on this task
        await rt.to_thread(lambda: rules.create(rt, _row(spec), "DBOS.createSchedule", reserved))

    @classmethod
    def apply_schedules(cls, schedules: List[ScheduleInput]) -> None:
        """Create or update these schedules atomically (idempotent: call it at every start)."""
        rules.apply(runtime(), [_row(s) for s in schedules])

    @classmethod
    async def apply_schedules_async(cls, schedules: List[ScheduleInput]) -> None:
        await runtime().to_thread(lambda: cls.apply_schedules(schedules))

    @classmethod
    def list_schedules(
        cls, *, status: Union[str, List[str], None] = None, workflow_name: Union[str, List[str], None] = None,
        schedule_name_prefix: Union[str, List[str], None] = None,
    ) -> List[WorkflowSchedule]:
        rt = runtime()
        return _as_step(rt, "DBOS.listSchedules", None, lambda: rules.list_schedules(  # type: ignore[no-any-return]
            rt, status=status, workflow_name=workflow_name, schedule_name_prefix=schedule_name_prefix))

    @classmethod
    async def list_schedules_async(cls, **kwargs: Any) -> List[WorkflowSchedule]:
        return await as_step_async(  # type: ignore[no-any-return]
            runtime(), "DBOS.listSchedules", None, lambda: plain(lambda: cls.list_schedules(**kwargs)))

    @classmethod
    def get_schedule(cls, name: str) -> Optional[WorkflowSchedule]:
        rt = runtime()
        return _as_step(rt, "DBOS.getSchedule", None, lambda: rules.get(rt, name))  # type: ignore[no-any-return]

    @classmethod
    async def get_schedule_async(cls, name: str) -> Optional[WorkflowSchedule]:
        rt = runtime()
        return await as_step_async(rt, "DBOS.getSchedule", None,  # type: ignore[no-any-return]
                                   lambda: rules.get(rt, name))

    @classmethod
    def pause_schedule(cls, name: str) -> None:
        rules.set_status(runtime(), name, rules.PAUSED, "DBOS.pauseSchedule")

    @classmethod
    def resume_schedule(cls, name: str) -> None:
        """Active again from the next tick (ticks of the pause run only if backfilled)."""
        rules.set_status(runtime(), name, rules.ACTIVE, "DBOS.resumeSchedule")

    @classmethod
    def delete_schedule(cls, name: str) -> None:
        rules.delete(runtime(), name, "DBOS.deleteSchedule")

    @classmethod
    async def delete_schedule_async(cls, name: str) -> None:
        rt, reserved = runtime(), steps.reserve()
        await rt.to_thread(rules.delete, rt, name, "DBOS.deleteSchedule", reserved)

    @classmethod
    def trigger_schedule(cls, schedule_name: str) -> WorkflowHandle[Any]:
        """Run the schedule's workflow once now."""
        rt = runtime()
        return WorkflowHandle(rt, rules.trigger(rt, schedule_name))

    @classmethod
    def backfill_schedule(
        cls, schedule_name: str, start: datetime.datetime, end: datetime.datetime
    ) -> List[WorkflowHandle[Any]]:
        """Run every tick in ``[start, end)`` that has not run yet (each once)."""
        rt = runtime()
        return [WorkflowHandle(rt, w) for w in rules.backfill(rt, schedule_name, _utc(start), _utc(end))]


class ClientSchedulesMixin:
    """The schedule methods of DBOSClient: by workflow name, as the client has no code."""

    _rt: Runtime

    def create_schedule(
        self, *, schedule_name: str, workflow_name: str, schedule: str, context: Any = None,
        workflow_class_name: Optional[str] = None, automatic_backfill: bool = False,
        cron_timezone: Optional[str] = None, queue_name: Optional[str] = None,
    ) -> None:
        spec = ClientScheduleInput(
            schedule_name=schedule_name, workflow_name=workflow_name, workflow_class_name=workflow_class_name,
            schedule=schedule, context=context, automatic_backfill=automatic_backfill,
            cron_timezone=cron_timezone, queue_name=queue_name)
        rules.create(self._rt, _client_row(spec))

    def apply_schedules(self, schedules: Sequence[ClientScheduleInput]) -> None:
        """Each a dict of schedule_name, workflow_name, schedule, and optional context,
        workflow_class_name, automatic_backfill, cron_timezone, queue_name."""
        rules.apply(self._rt, [_client_row(s) for s in schedules])

    def list_schedules(
        self, *, status: Union[str, List[str], None] = None, workflow_name: Union[str, List[str], None] = None,
        schedule_name_prefix: Union[str, List[str], None] = None,
    ) -> List[WorkflowSchedule]:
        return rules.list_schedules(self._rt, status=status, workflow_name=workflow_name,
                                    schedule_name_prefix=schedule_name_prefix)

    def get_schedule(self, name: str) -> Optional[WorkflowSchedule]:
        return rules.get(self._rt, name)

    def pause_schedule(self, name: str) -> None:
        rules.set_status(self._rt, name, rules.PAUSED)

    def resume_schedule(self, name: str) -> None:
        rules.set_status(self._rt, name, rules.ACTIVE)

    def delete_schedule(self, name: str) -> None:
        rules.delete(self._rt, name)

    def trigger_schedule(self, schedule_name: str) -> WorkflowHandle[Any]:
        return WorkflowHandle(self._rt, rules.trigger(self._rt, schedule_name))

    def backfill_schedule(
        self, schedule_name: str, start: datetime.datetime, end: datetime.datetime
    ) -> List[WorkflowHandle[Any]]:
        return [WorkflowHandle(self._rt, w) for w in rules.backfill(self._rt, schedule_name, _utc(start), _utc(end))]

    async def create_schedule_async(
        self, *, schedule_name: str, workflow_name: str, schedule: str, context: Any = None,
        workflow_class_name: Optional[str] = None, automatic_backfill: bool = False,
        cron_timezone: Optional[str] = None, queue_name: Optional[str] = None,
    ) -> None:
        await self._rt.to_thread(lambda: self.create_schedule(
            schedule_name=schedule_name, workflow_name=workflow_name, schedule=schedule, context=context,
            workflow_class_name=workflow_class_name, automatic_backfill=automatic_backfill,
            cron_timezone=cron_timezone, queue_name=queue_name))

    async def apply_schedules_async(self, schedules: Sequence[ClientScheduleInput]) -> None:
        await self._rt.to_thread(lambda: self.apply_schedules(schedules))

    async def list_schedules_async(self, **kwargs: Any) -> List[WorkflowSchedule]:
        return await self._rt.to_thread(lambda: self.list_schedules(**kwargs))

    async def get_schedule_async(self, name: str) -> Optional[WorkflowSchedule]:
        return await self._rt.to_thread(lambda: self.get_schedule(name))

    async def delete_schedule_async(self, name: str) -> None:
        await self._rt.to_thread(lambda: self.delete_schedule(name))
