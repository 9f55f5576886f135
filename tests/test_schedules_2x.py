"""Schedules with the names and keywords of DBOS 2.31 (issue 18), on PostgreSQL and SQLite.

``name`` for get/pause/resume/delete_schedule, ``schedule_name`` for trigger and
backfill, ``@DBOS.scheduled(cron=)``; ``cron_timezone`` (ticks on an IANA zone's
wall clock, across DST changes), ``automatic_backfill`` (every missed tick when
firing starts), ``workflow_class_name`` on DBOSClient, ``list_workflows(schedule_name=)``.
Ticks are fired deterministically: backfills over fixed windows, and
``Scheduler.fire_due`` at chosen times with this process's own scheduler stopped.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
from typing import Any, Iterator

import pytest
from conftest import Backend, Harness

from dbos import DBOS, DBOSClient, DBOSException, WorkflowSchedule
from dbos._api.instance import runtime
from dbos._execution import cron
from dbos._execution import schedules as rules
from dbos._services.scheduler import Scheduler

UTC = datetime.timezone.utc
NY = "America/New_York"


@DBOS.workflow(name="sched2x_job")
def job(scheduled_time: datetime.datetime, context: Any) -> str:
    return scheduled_time.isoformat()


def _at(second: int) -> datetime.datetime:
    return datetime.datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)


def _ms(t: datetime.datetime) -> int:
    return int(t.timestamp() * 1000)


@pytest.fixture
def quiet(dbos: Harness) -> Iterator[Harness]:
    """A launched DBOS whose own scheduler is stopped: only the test fires ticks."""
    assert dbos.dbos is not None
    for service in dbos.dbos._services:
        if isinstance(service, Scheduler):
            service.stop()
    yield dbos


def _params(fn: Any, drop_self: bool = False) -> list[str]:
    names = list(inspect.signature(fn).parameters)
    return names[1:] if drop_self else names


# -- names and keywords --------------------------------------------------------------

_CREATE = ["schedule_name", "workflow_fn", "schedule", "context", "automatic_backfill", "cron_timezone", "queue_name"]
_CLIENT_CREATE = ["schedule_name", "workflow_name", "schedule", "context", "workflow_class_name",
                  "automatic_backfill", "cron_timezone", "queue_name"]  # DBOS's application_name is left out
_BY_NAME = {
    "get_schedule": ["name"], "get_schedule_async": ["name"], "pause_schedule": ["name"],
    "resume_schedule": ["name"], "delete_schedule": ["name"], "delete_schedule_async": ["name"],
    "trigger_schedule": ["schedule_name"], "backfill_schedule": ["schedule_name", "start", "end"],
}


def test_parameters_are_those_of_dbos_2_31() -> None:
    for method, expected in _BY_NAME.items():
        assert _params(getattr(DBOS, method)) == expected, method
        assert _params(getattr(DBOSClient, method), drop_self=True) == expected, method
    for method in ("create_schedule", "create_schedule_async"):
        assert _params(getattr(DBOS, method)) == _CREATE, method
        assert _params(getattr(DBOSClient, method), drop_self=True) == _CLIENT_CREATE, method
    assert _params(DBOS.scheduled) == ["cron"]
    dbos_fields = {"schedule_id", "schedule_name", "workflow_name", "workflow_class_name", "schedule", "status",
                   "context", "last_fired_at", "automatic_backfill", "cron_timezone", "queue_name"}
    assert dbos_fields <= set(WorkflowSchedule.__annotations__)


def test_scheduled_takes_cron_as_a_keyword() -> None:
    @DBOS.scheduled(cron="0 3 * * *")
    @DBOS.workflow(name="sched2x_decorated")
    def nightly(scheduled_time: datetime.datetime, actual_time: datetime.datetime) -> None:
        pass

    try:
        assert dict(rules.DECORATED.items())["sched2x_decorated"].text == "0 3 * * *"
    finally:
        rules.DECORATED.entries.pop("sched2x_decorated", None)


def test_keyword_names_on_dbos(quiet: Harness) -> None:
    DBOS.create_schedule(schedule_name="kw", workflow_fn=job, schedule="0 0 * * *", context=None,
                         automatic_backfill=False, cron_timezone=None, queue_name=None)
    got = DBOS.get_schedule(name="kw")
    assert got is not None and got["schedule_name"] == "kw" and got["schedule_id"]
    assert [s["schedule_name"] for s in DBOS.list_schedules(schedule_name_prefix=["zz", "k"])] == ["kw"]
    DBOS.pause_schedule(name="kw")
    assert (DBOS.get_schedule(name="kw") or {}).get("status") == "PAUSED"
    DBOS.resume_schedule(name="kw")
    assert (DBOS.get_schedule(name="kw") or {}).get("status") == "ACTIVE"
    assert DBOS.trigger_schedule(schedule_name="kw").get_result()
    handles = DBOS.backfill_schedule(schedule_name="kw", start=_at(0), end=_at(1))
    assert [h.get_result() for h in handles] == ["2026-01-01T00:00:00+00:00"]

    async def run_async() -> None:
        await DBOS.create_schedule_async(schedule_name="kw2", workflow_fn=job, schedule="0 0 * * *",
                                         cron_timezone=NY, automatic_backfill=True)
        got2 = await DBOS.get_schedule_async(name="kw2")
        assert got2 is not None and got2["cron_timezone"] == NY and got2["automatic_backfill"] is True
        await DBOS.delete_schedule_async(name="kw2")

    asyncio.run(run_async())
    DBOS.delete_schedule(name="kw")
    assert DBOS.list_schedules() == []


def test_keyword_names_on_the_client(quiet: Harness, backend: Backend) -> None:
    client = DBOSClient(backend.url)
    try:
        client.create_schedule(schedule_name="ckw", workflow_name="sched2x_job", schedule="0 0 * * *",
                               workflow_class_name=None, automatic_backfill=True, cron_timezone=NY)
        got = client.get_schedule(name="ckw")
        assert got is not None and got["cron_timezone"] == NY and got["automatic_backfill"] is True
        client.pause_schedule(name="ckw")
        client.resume_schedule(name="ckw")
        assert client.trigger_schedule(schedule_name="ckw").get_result()
        start = datetime.datetime(2026, 7, 1, 4, tzinfo=UTC)  # midnight EDT
        [handle] = client.backfill_schedule(schedule_name="ckw", start=start, end=start + datetime.timedelta(hours=1))
        assert handle.get_result() == "2026-07-01T00:00:00-04:00"
        client.apply_schedules([{"schedule_name": "ckw2", "workflow_name": "sched2x_job", "schedule": "0 0 * * *",
                                 "workflow_class_name": "Cls", "cron_timezone": "Europe/Paris"}])
        got2 = asyncio.run(client.get_schedule_async(name="ckw2"))
        assert got2 is not None and got2["workflow_class_name"] == "Cls" and got2["cron_timezone"] == "Europe/Paris"
        assert got2["automatic_backfill"] is False
        client.delete_schedule(name="ckw")
        asyncio.run(client.delete_schedule_async(name="ckw2"))
        assert client.list_schedules() == []
    finally:
        client.destroy()


# -- cron_timezone ---------------------------------------------------------------------


def test_backfill_reads_the_crontab_in_its_zone_across_dst(quiet: Harness) -> None:
    DBOS.create_schedule(schedule_name="ny", workflow_fn=job, schedule="30 2 * * *", cron_timezone=NY)
    # 2026-03-08: New York's clocks jump from 02:00 EST to 03:00 EDT; 02:30 does not exist
    # that day, and its tick runs at the jump.
    handles = DBOS.backfill_schedule("ny", datetime.datetime(2026, 3, 6, tzinfo=UTC),
                                     datetime.datetime(2026, 3, 10, tzinfo=UTC))
    expected = ["2026-03-06T02:30:00-05:00", "2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00",
                "2026-03-09T02:30:00-04:00"]
    assert [h.get_result() for h in handles] == expected
    assert [h.workflow_id for h in handles] == [f"sched-ny-{t}" for t in expected]
    # 2026-11-01: clocks fall back from 02:00 EDT to 01:00 EST; the repeated 01:00 runs once.
    DBOS.create_schedule(schedule_name="ny_hourly", workflow_fn=job, schedule="0 * * * *", cron_timezone=NY)
    start = datetime.datetime(2026, 11, 1, 4, tzinfo=UTC)  # 00:00 EDT
    handles = DBOS.backfill_schedule("ny_hourly", start, start + datetime.timedelta(hours=5))
    assert [h.get_result() for h in handles] == [
        "2026-11-01T00:00:00-04:00", "2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00",
        "2026-11-01T03:00:00-05:00",
    ]
    assert (DBOS.get_schedule("ny") or {}).get("cron_timezone") == NY


def test_the_scheduler_fires_on_the_zone_clock(quiet: Harness, backend: Backend) -> None:
    rt = runtime()
    DBOS.create_schedule(schedule_name="nine", workflow_fn=job, schedule="0 9 * * *", cron_timezone=NY)
    fired_at = datetime.datetime(2026, 3, 7, 14, tzinfo=UTC)  # 09:00 EST, the day before the change
    backend.execute(f"UPDATE {backend.table('schedules')} SET last_fired_at = :t, created_at = :t", t=_ms(fired_at))
    now = datetime.datetime(2026, 3, 8, 13, 0, 0, 400000, tzinfo=UTC)  # 09:00:00.4 EDT
    assert Scheduler(rt, rt.logger).fire_due(now=now) == ["sched-nine-2026-03-08T09:00:00-04:00"]
    got = DBOS.get_schedule("nine")
    assert got is not None and got["last_fired_at"] == "2026-03-08T09:00:00-04:00"


def test_cron_in_a_zone_runs_each_wall_time_once() -> None:
    hourly = cron.parse("0 * * * *", NY)
    fall = list(hourly.ticks(datetime.datetime(2026, 11, 1, 3, 30, tzinfo=UTC),
                             datetime.datetime(2026, 11, 1, 8, tzinfo=UTC)))
    assert [t.isoformat() for t in fall] == [
        "2026-11-01T00:00:00-04:00", "2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00",
        "2026-11-01T03:00:00-05:00",
    ]
    # From within the repeated hour (01:30 EST), the next tick is 02:00 EST and the latest 01:00 EDT.
    inside = datetime.datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert hourly.next_after(inside).isoformat() == "2026-11-01T02:00:00-05:00"
    assert hourly.latest_at_or_before(inside).isoformat() == "2026-11-01T01:00:00-04:00"
    daily = cron.parse("30 1 * * *", NY)
    assert [t.isoformat() for t in daily.ticks(datetime.datetime(2026, 10, 31, tzinfo=UTC),
                                               datetime.datetime(2026, 11, 2, 12, tzinfo=UTC))] == [
        "2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
    assert daily.latest_at_or_before(datetime.datetime(2026, 11, 1, 6, 45, tzinfo=UTC)).isoformat() == (
        "2026-11-01T01:30:00-04:00")
    skipped = cron.parse("30 2 * * *", NY)
    assert skipped.latest_at_or_before(datetime.datetime(2026, 3, 8, 12, tzinfo=UTC)).isoformat() == (
        "2026-03-08T03:00:00-04:00")
    kolkata = cron.parse("0 9 * * *", "Asia/Kolkata")  # +05:30, no DST
    assert kolkata.next_after(_at(0)).isoformat() == "2026-01-01T09:00:00+05:30"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../etc/passwd", "EST5EDTX"])
def test_a_bad_timezone_is_refused_naming_it(quiet: Harness, backend: Backend, zone: str) -> None:
    with pytest.raises(DBOSException, match=f"invalid cron_timezone {zone!r}"):
        DBOS.create_schedule(schedule_name="tz", workflow_fn=job, schedule="0 0 * * *", cron_timezone=zone)
    with pytest.raises(DBOSException, match=f"invalid cron_timezone {zone!r}"):
        DBOS.apply_schedules([{"schedule_name": "tz", "workflow_fn": job, "schedule": "0 0 * * *",
                               "cron_timezone": zone}])
    client = DBOSClient(backend.url)
    try:
        with pytest.raises(DBOSException, match=f"invalid cron_timezone {zone!r}"):
            client.create_schedule(schedule_name="tz", workflow_name="sched2x_job", schedule="0 0 * * *",
                                   cron_timezone=zone)
    finally:
        client.destroy()
    assert DBOS.list_schedules() == []


# -- automatic_backfill ------------------------------------------------------------------


def test_automatic_backfill_runs_every_missed_tick_when_firing_starts(quiet: Harness, backend: Backend) -> None:
    rt = runtime()
    DBOS.create_schedule(schedule_name="ab_on", workflow_fn=job, schedule="* * * * * *", automatic_backfill=True)
    DBOS.create_schedule(schedule_name="ab_off", workflow_fn=job, schedule="* * * * * *")
    assert [(s["schedule_name"], s["automatic_backfill"]) for s in DBOS.list_schedules()] == [
        ("ab_off", False), ("ab_on", True)]
    # Both last fired at 00:00:00; no executor ran until 00:00:05.
    backend.execute(f"UPDATE {backend.table('schedules')} SET last_fired_at = :t, created_at = :t", t=_ms(_at(0)))
    scheduler = Scheduler(rt, rt.logger)
    fired = scheduler.fire_due(now=_at(5) + datetime.timedelta(milliseconds=400))
    on = [rules.tick_workflow_id("ab_on", _at(s)) for s in range(1, 6)]
    assert sorted(fired) == sorted([*on, rules.tick_workflow_id("ab_off", _at(5))])
    # A restart at 00:00:09: again every missed tick with it, only the latest without.
    fired = Scheduler(rt, rt.logger).fire_due(now=_at(9))
    assert sorted(fired) == sorted([*(rules.tick_workflow_id("ab_on", _at(s)) for s in range(6, 10)),
                                    rules.tick_workflow_id("ab_off", _at(9))])
    for h in [DBOS.retrieve_workflow(w) for w in fired]:
        h.get_result()
    # Each tick's workflow records its schedule's name (DBOS 2.x's list_workflows filter).
    listed = DBOS.list_workflows(schedule_name="ab_on")
    assert sorted(w.workflow_id for w in listed) == sorted(rules.tick_workflow_id("ab_on", _at(s)) for s in range(1, 10))
    assert {w.schedule_name for w in listed} == {"ab_on"}
    assert len(DBOS.list_workflows(schedule_name=["ab_on", "ab_off"])) == 11
    assert DBOS.list_queued_workflows(schedule_name="ab_off") == []  # all finished


def test_list_workflows_by_schedule_name(quiet: Harness, backend: Backend) -> None:
    DBOS.create_schedule(schedule_name="lw", workflow_fn=job, schedule="0 0 * * *")
    DBOS.create_schedule(schedule_name="lw-2", workflow_fn=job, schedule="0 0 * * *")  # "lw-" prefixes its IDs
    handles = DBOS.backfill_schedule("lw", _at(0), datetime.datetime(2026, 1, 3, tzinfo=UTC))
    handles.append(DBOS.trigger_schedule("lw"))
    other = DBOS.backfill_schedule("lw-2", _at(0), _at(1))
    for h in handles + other:
        h.get_result()
    job(_at(0), None)  # not a tick
    ids = sorted(h.workflow_id for h in handles)
    assert sorted(w.workflow_id for w in DBOS.list_workflows(schedule_name="lw")) == ids
    client = DBOSClient(backend.url)
    try:
        assert sorted(w.workflow_id for w in client.list_workflows(schedule_name="lw")) == ids
    finally:
        client.destroy()
    fork = DBOS.fork_workflow(handles[0].workflow_id, 1)
    fork.get_result()
    assert fork.get_status().schedule_name is None  # a fork is not a tick (as in DBOS)
    assert len(DBOS.list_workflows(schedule_name="lw")) == len(ids)
    assert DBOS.list_workflows(schedule_name="nothing") == []
