"""Scheduled workflows (issue 16), in one process, on PostgreSQL and SQLite.

The crontab parser; ``@DBOS.scheduled`` (a bad crontab fails at declaration, every
tick runs once with its scheduled time); dynamic schedules (create, list, get,
pause, resume, delete, trigger, backfill, apply) on DBOS and DBOSClient; the
missed-tick rule through ``Scheduler.run_once`` at chosen times. The fleet test
(three worker processes, a SIGKILL) is tests/test_schedules_fleet.py.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections import Counter
from typing import Any, Iterator, Optional

import pytest
from conftest import Backend, Harness, eventually

from dbos import DBOS, DBOSClient, DBOSException, ScheduleInput, WorkflowSchedule
from dbos._api.instance import runtime
from dbos._execution import cron
from dbos._execution import schedules as rules
from dbos._services.scheduler import Scheduler

UTC = datetime.timezone.utc
_lock = threading.Lock()
RUNS: list[tuple[str, datetime.datetime, Any]] = []  # (schedule kind, scheduled time, second argument)


@DBOS.workflow(name="sched_test_dynamic")
def dynamic_job(scheduled_time: datetime.datetime, context: Any) -> str:
    with _lock:
        RUNS.append(("dynamic", scheduled_time, context))
    return f"ran {scheduled_time.isoformat()}"


@pytest.fixture(autouse=True)
def _runs() -> Iterator[None]:
    with _lock:
        RUNS.clear()
    yield


def _times(kind: str = "dynamic") -> list[datetime.datetime]:
    with _lock:
        return [t for k, t, _ in RUNS if k == kind]


def _status(schedule: Optional[WorkflowSchedule]) -> Optional[str]:
    return schedule["status"] if schedule is not None else None


def _at(second: int) -> datetime.datetime:
    return datetime.datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC)


# -- the parser --------------------------------------------------------------------


@pytest.mark.parametrize("text,after,expected", [
    ("*/5 * * * * *", _at(3), _at(5)),
    ("* * * * *", _at(3), datetime.datetime(2026, 1, 1, 0, 1, tzinfo=UTC)),
    ("0 0 1 1 *", _at(0), datetime.datetime(2027, 1, 1, tzinfo=UTC)),
    ("0 12 * * sun", _at(0), datetime.datetime(2026, 1, 4, 12, tzinfo=UTC)),  # 2026-01-01 is a Thursday
    ("30 9 15 * mon", _at(0), datetime.datetime(2026, 1, 5, 9, 30, tzinfo=UTC)),  # day OR weekday (Vixie)
    ("0 0 29 feb *", _at(0), datetime.datetime(2028, 2, 29, tzinfo=UTC)),
    ("10-20/5 * * * * *", _at(12), _at(15)),
    ("1,2,59 * * * * *", _at(2), _at(59)),
])
def test_next_tick(text: str, after: datetime.datetime, expected: datetime.datetime) -> None:
    assert cron.parse(text).next_after(after) == expected


def test_latest_tick_and_window() -> None:
    c = cron.parse("*/5 * * * * *")
    assert c.latest_at_or_before(_at(14)) == _at(10)
    assert c.latest_at_or_before(_at(15)) == _at(15)
    assert list(c.ticks(_at(0), _at(20))) == [_at(5), _at(10), _at(15), _at(20)]


@pytest.mark.parametrize("text,needle", [
    ("* * *", "expected 5 fields"),
    ("61 * * * *", "61 is outside 0-59"),
    ("* 24 * * *", "24 is outside 0-23"),
    ("*/0 * * * *", "step"),
    ("0 0 30 2 *", "no tick"),
    ("x * * * *", "'x' is not a number"),
    ("5-1 * * * *", "backwards"),
    ("1,,2 * * * *", "empty"),
])
def test_bad_crontab_is_a_clear_error(text: str, needle: str) -> None:
    with pytest.raises(cron.CrontabError) as e:
        cron.parse(text)
    assert needle in str(e.value) and repr(text) in str(e.value)


def test_bad_crontab_fails_at_declaration() -> None:
    with pytest.raises(DBOSException, match="'61 \\* \\* \\* \\*'"):
        @DBOS.scheduled("61 * * * *")
        @DBOS.workflow(name="sched_test_never")
        def never(scheduled_time: datetime.datetime, actual_time: datetime.datetime) -> None:
            pass


def test_scheduled_needs_a_workflow() -> None:
    with pytest.raises(DBOSException, match="not a @DBOS.workflow"):
        @DBOS.scheduled("* * * * * *")
        def plain(scheduled_time: datetime.datetime, actual_time: datetime.datetime) -> None:
            pass


# -- @DBOS.scheduled ---------------------------------------------------------------


def test_decorated_schedule_runs_every_tick_once(harness: Harness) -> None:
    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow(name="sched_test_every_second")
    def every_second(scheduled_time: datetime.datetime, actual_time: datetime.datetime) -> None:
        with _lock:
            RUNS.append(("decorated", scheduled_time, actual_time))

    try:
        harness.launch()
        eventually(lambda: len(_times("decorated")) >= 3, timeout=10)
        times = _times("decorated")
        assert len(times) == len(set(times))
        assert all(t.microsecond == 0 and t.tzinfo is not None for t in times)
        with _lock:
            assert all(actual >= t for k, t, actual in RUNS if k == "decorated")
        listed = DBOS.get_schedule("sched_test_every_second")
        assert listed is not None and listed["kind"] == "decorator" and listed["status"] == "ACTIVE"
        ids = {s.workflow_id for s in DBOS.list_workflows(name="sched_test_every_second")}
        assert f"sched-sched_test_every_second-{times[0].isoformat()}" in ids
        # A second launch of the same version (a restart) keeps firing; nothing runs twice.
        harness.restart()
        n = len(_times("decorated"))
        eventually(lambda: len(_times("decorated")) >= n + 2, timeout=10)
        times = _times("decorated")
        assert len(times) == len(set(times))
    finally:
        rules.DECORATED.entries.pop("sched_test_every_second", None)


# -- dynamic schedules -------------------------------------------------------------


def test_dynamic_schedule_lifecycle(dbos: Harness) -> None:
    DBOS.create_schedule(schedule_name="dyn", workflow_fn=dynamic_job, schedule="* * * * * *", context={"k": 1})
    with pytest.raises(DBOSException, match="already exists"):
        DBOS.create_schedule(schedule_name="dyn", workflow_fn=dynamic_job, schedule="* * * * * *")
    with pytest.raises(DBOSException, match="invalid crontab"):
        DBOS.create_schedule(schedule_name="bad", workflow_fn=dynamic_job, schedule="* * * *")
    got = DBOS.get_schedule("dyn")
    assert got is not None and got["workflow_name"] == "sched_test_dynamic" and got["context"] == {"k": 1}
    assert [s["schedule_name"] for s in DBOS.list_schedules(status="ACTIVE")] == ["dyn"]
    assert DBOS.list_schedules(workflow_name="nothing") == []
    assert [s["schedule_name"] for s in DBOS.list_schedules(schedule_name_prefix="dy")] == ["dyn"]
    eventually(lambda: len(_times()) >= 2, timeout=10)
    with _lock:
        assert all(ctx == {"k": 1} for _, _, ctx in RUNS)

    DBOS.pause_schedule("dyn")
    assert _status(DBOS.get_schedule("dyn")) == "PAUSED"
    time.sleep(1.2)  # a run in flight at the pause may still finish
    paused_at = len(_times())
    time.sleep(2.5)
    assert len(_times()) == paused_at, "a paused schedule ran"

    DBOS.resume_schedule("dyn")
    eventually(lambda: len(_times()) >= paused_at + 2, timeout=10)
    times = _times()
    assert len(times) == len(set(times))
    DBOS.delete_schedule("dyn")
    assert DBOS.get_schedule("dyn") is None
    with pytest.raises(DBOSException, match="no schedule named"):
        DBOS.pause_schedule("dyn")


def test_paused_schedule_runs_nothing(dbos: Harness) -> None:
    DBOS.create_schedule(schedule_name="quiet", workflow_fn=dynamic_job, schedule="* * * * * *")
    DBOS.pause_schedule("quiet")
    # A live tick may fire between create_schedule and pause_schedule (on a loaded machine
    # that moment can span a second): such a tick is for a time before the pause returned.
    paused_at = datetime.datetime.now(UTC)
    time.sleep(3)
    ticks = [w.workflow_id for w in DBOS.list_workflows(name="sched_test_dynamic")]
    assert len(ticks) <= 2, ticks
    assert all(t <= paused_at for t in _times()), (_times(), paused_at)


def test_backfill_runs_each_missing_tick_once(dbos: Harness, backend: Backend) -> None:
    DBOS.create_schedule(schedule_name="bf", workflow_fn=dynamic_job, schedule="* * * * * *", context="bf")
    DBOS.pause_schedule("bf")  # only the backfill runs
    end = datetime.datetime.now(UTC).replace(microsecond=0) - datetime.timedelta(seconds=30)
    start = end - datetime.timedelta(seconds=10)
    # Three ticks of the window already ran (as if before an outage).
    first = DBOS.backfill_schedule("bf", start, start + datetime.timedelta(seconds=3))
    assert len(first) == 3
    for h in first:
        h.get_result()
    handles = DBOS.backfill_schedule("bf", start, end)
    assert len(handles) == 10
    for h in handles:
        h.get_result()
    again = DBOS.backfill_schedule("bf", start, end)  # nothing new: every tick exists
    for h in again:
        h.get_result()
    # A live tick may fire between create_schedule and pause_schedule (the schedule is
    # active for that moment): it is at the present time, after the window; leave it out.
    counts = Counter(t for t in _times() if t < end)
    expected = [start + datetime.timedelta(seconds=i) for i in range(10)]
    assert sorted(counts) == expected
    assert set(counts.values()) == {1}, counts
    assert 10 <= len(DBOS.list_workflows(name="sched_test_dynamic")) <= 11  # the ten, and that live tick


def test_trigger_and_apply(dbos: Harness) -> None:
    spec = ScheduleInput(schedule_name="nightly", workflow_fn=dynamic_job, schedule="0 0 * * *", context="a")
    DBOS.apply_schedules([spec])
    DBOS.apply_schedules([ScheduleInput(**{**spec, "context": "b"})])
    got = DBOS.get_schedule("nightly")
    assert got is not None and got["context"] == "b" and got["schedule"] == "0 0 * * *"
    DBOS.pause_schedule("nightly")
    DBOS.apply_schedules([ScheduleInput(**{**spec, "schedule": "0 1 * * *"})])
    got = DBOS.get_schedule("nightly")
    assert got is not None and got["status"] == "PAUSED" and got["schedule"] == "0 1 * * *"
    handle = DBOS.trigger_schedule("nightly")
    assert handle.get_result().startswith("ran ")
    assert handle.workflow_id.startswith("sched-nightly-")
    with pytest.raises(DBOSException, match="twice"):
        DBOS.apply_schedules([spec, spec])


def test_client_schedules(dbos: Harness, backend: Backend) -> None:
    client = DBOSClient(backend.url)
    try:
        client.create_schedule(schedule_name="cl", workflow_name="sched_test_dynamic", schedule="* * * * * *",
                               context="from-client")
        assert [s["schedule_name"] for s in client.list_schedules()] == ["cl"]
        eventually(lambda: len(_times()) >= 1, timeout=10)
        client.pause_schedule("cl")
        assert _status(client.get_schedule("cl")) == "PAUSED"
        end = datetime.datetime.now(UTC).replace(microsecond=0) - datetime.timedelta(seconds=60)
        handles = client.backfill_schedule("cl", end - datetime.timedelta(seconds=3), end)
        assert [h.get_result() for h in handles] == [
            f"ran {(end - datetime.timedelta(seconds=i)).isoformat()}" for i in (3, 2, 1)]
        assert client.trigger_schedule("cl").get_result().startswith("ran ")
        client.apply_schedules([{"schedule_name": "cl2", "workflow_name": "sched_test_dynamic", "schedule": "0 * * * *"}])
        client.delete_schedule("cl")
        assert [s["schedule_name"] for s in client.list_schedules()] == ["cl2"]
    finally:
        client.destroy()


# -- the missed-tick rule ------------------------------------------------------------


def test_only_the_latest_missed_tick_runs(dbos: Harness, backend: Backend) -> None:
    rt = runtime()
    assert dbos.dbos is not None
    for service in dbos.dbos._services:  # the service of this process stays out of the way
        if isinstance(service, Scheduler):
            service.stop()  # pausing, then flipping ACTIVE in SQL, raced: the pause wakes it
    DBOS.create_schedule(schedule_name="gap", workflow_fn=dynamic_job, schedule="* * * * * *")
    # The schedule last fired at 00:00:00; no executor ran until 00:00:30.
    t0 = _at(0)
    backend.execute(
        f"UPDATE {backend.table('schedules')} SET last_fired_at = :t, created_at = :t",
        t=int(t0.timestamp() * 1000),
    )
    scheduler = Scheduler(rt, rt.logger)
    fired = scheduler.fire_due(now=_at(30) + datetime.timedelta(milliseconds=400))
    assert fired == [rules.tick_workflow_id("gap", _at(30))]  # only the latest, not 30 of them
    assert scheduler.fire_due(now=_at(31)) == [rules.tick_workflow_id("gap", _at(31))]
    assert scheduler.fire_due(now=_at(31)) == []
    # A new scheduler (a restart) at 00:00:33 runs 00:00:33 only; 32 is left to a backfill.
    assert Scheduler(rt, rt.logger).fire_due(now=_at(33)) == [rules.tick_workflow_id("gap", _at(33))]
    # A schedule created after a tick does not run that tick.
    backend.execute(f"UPDATE {backend.table('schedules')} SET last_fired_at = NULL, created_at = :t",
                    t=int(_at(40).timestamp() * 1000) + 500)
    assert Scheduler(rt, rt.logger).fire_due(now=_at(40) + datetime.timedelta(milliseconds=900)) == []
