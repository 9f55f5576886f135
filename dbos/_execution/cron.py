"""Crontab expressions: parse once, then walk ticks forward and backward.

Five fields (minute hour day-of-month month day-of-week) or six with seconds
first, as DBOS reads them (croniter's ``second_at_beginning``). Each field is
``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n`` or ``a/n``, or a
comma list of those; months and weekdays also take names (``jan``, ``mon``);
weekday 7 is Sunday like 0; ``?`` is ``*``. As in Vixie cron, when both
day-of-month and day-of-week are restricted a day matching either one fires.

Ticks are read on UTC's clock, or on an IANA zone's wall clock (a schedule's
``cron_timezone``). Across a DST change each matching wall-clock time runs once:
a time a fall-back repeats runs at its first pass, a time a spring-forward skips
runs at the jump (``0 2 * * *`` in America/New_York runs at 03:00 EDT that day).

Written here rather than taken from croniter: about 150 lines cover what DBOS
accepts, and a schedule's next tick is on every executor's hot loop, where a
dependency's slow paths and changing maintenance would be ours to carry
(docs/decisions.md, "Scheduled workflows").
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Iterator, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dbos.error import DBOSException

UTC = datetime.timezone.utc
_ZERO = datetime.timedelta(0)
_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, low, high, names) of each of the six fields, seconds first
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_HORIZON_DAYS = 366 * 5  # no tick within five years (e.g. "0 0 30 2 *"): the expression never fires


class CrontabError(DBOSException):
    """A crontab string that does not parse (or never fires)."""


@dataclass(frozen=True)
class Crontab:
    text: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day of month is '*'
    any_weekday: bool  # day of week is '*'
    zone: Optional[ZoneInfo] = None  # the IANA zone whose wall clock the fields read; None: UTC

    def _day_matches(self, d: datetime.datetime) -> bool:
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow

    def _next_wall(self, t: datetime.datetime) -> datetime.datetime:
        """The first matching wall-clock time strictly after ``t`` (naive)."""
        t = t.replace(microsecond=0) + datetime.timedelta(seconds=1)
        limit = t + datetime.timedelta(days=_HORIZON_DAYS)
        while t < limit:
            if not self._day_matches(t):
                t = (t + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif t.hour not in self.hours:
                t = (t + datetime.timedelta(hours=1)).replace(minute=0, second=0)
            elif t.minute not in self.minutes:
                t = (t + datetime.timedelta(minutes=1)).replace(second=0)
            elif t.second not in self.seconds:
                t = t + datetime.timedelta(seconds=1)
            else:
                return t
        raise CrontabError(f"crontab {self.text!r} has no tick within five years")

    def _prev_wall(self, t: datetime.datetime) -> datetime.datetime:
        """The last matching wall-clock time at or before ``t`` (naive)."""
        t = t.replace(microsecond=0)
        limit = t - datetime.timedelta(days=_HORIZON_DAYS)
        while t > limit:
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0, second=0) - datetime.timedelta(seconds=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0, second=0) - datetime.timedelta(seconds=1)
            elif t.minute not in self.minutes:
                t = t.replace(second=0) - datetime.timedelta(seconds=1)
            elif t.second not in self.seconds:
                t = t - datetime.timedelta(seconds=1)
            else:
                return t
        raise CrontabError(f"crontab {self.text!r} has no tick within five years")

    def next_after(self, t: datetime.datetime) -> datetime.datetime:
        """The first tick strictly after ``t``, in the crontab's zone (UTC by default)."""
        t = _utc(t).replace(microsecond=0)
        zone = self.zone
        if zone is None:
            return self._next_wall(t.replace(tzinfo=None)).replace(tzinfo=UTC)
        wall = t.astimezone(zone).replace(tzinfo=None)
        while True:  # past walls of a repeated hour map to their first pass, before t: skipped
            wall = self._next_wall(wall)
            tick = _instant(wall, zone)
            if tick > t:
                return tick

    def latest_at_or_before(self, t: datetime.datetime) -> datetime.datetime:
        """The last tick at or before ``t`` (the missed tick that still runs), in the zone."""
        t = _utc(t).replace(microsecond=0)
        zone = self.zone
        if zone is None:
            return self._prev_wall(t.replace(tzinfo=None)).replace(tzinfo=UTC)
        # The latest wall clock shown at or before t: the zone's offset now or a day ago
        # (the first pass through an hour that a fall-back repeats reads later than now).
        offset = max(t.astimezone(zone).utcoffset() or _ZERO,
                     (t - datetime.timedelta(days=1)).astimezone(zone).utcoffset() or _ZERO)
        wall = (t + offset).replace(tzinfo=None)
        while True:
            wall = self._prev_wall(wall)
            tick = _instant(wall, zone)
            if tick <= t:
                return tick
            wall -= datetime.timedelta(seconds=1)

    def ticks(self, after: datetime.datetime, until: datetime.datetime) -> Iterator[datetime.datetime]:
        """Every tick in ``(after, until]``, oldest first."""
        t = _utc(after)
        end = _utc(until)
        while True:
            t = self.next_after(t)
            if t > end:
                return
            yield t


def _instant(wall: datetime.datetime, zone: ZoneInfo) -> datetime.datetime:
    """The moment a zone's clocks show ``wall``: its first pass when a fall-back repeats it;
    when a spring-forward skips it, the moment of the jump (so the tick still runs, once)."""
    tick = wall.replace(tzinfo=zone).astimezone(UTC)
    local = tick.astimezone(zone)
    if local.replace(tzinfo=None) == wall:
        return local
    # In a gap. fold=1 reads the wall with the offset after the jump (an instant before
    # it), fold=0 with the one before (after it): the jump lies between; find its second.
    lo = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    hi = int(tick.timestamp())
    after = local.utcoffset()
    while lo < hi:
        mid = (lo + hi) // 2
        if datetime.datetime.fromtimestamp(mid, zone).utcoffset() == after:
            hi = mid
        else:
            lo = mid + 1
    return datetime.datetime.fromtimestamp(hi, zone)


def _utc(t: datetime.datetime) -> datetime.datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def zone(name: Optional[str]) -> Optional[ZoneInfo]:
    """A schedule's ``cron_timezone``: None (UTC) or an IANA zone name such as
    ``"America/New_York"``; anything else is a DBOSException naming it."""
    if name is None:
        return None
    if not isinstance(name, str) or not name.strip():
        raise DBOSException(f"invalid cron_timezone {name!r}: expected an IANA time zone name such as 'America/New_York'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise DBOSException(
            f"invalid cron_timezone {name!r}: no such IANA time zone (expected a name such as 'America/New_York')"
        ) from None


def parse(text: str, timezone: Optional[str] = None) -> Crontab:
    """A crontab with 5 or 6 fields, read in ``timezone`` (an IANA name; None: UTC); a
    CrontabError naming the string and the field otherwise."""
    if not isinstance(text, str):
        raise CrontabError(f"a crontab must be a string, got {text!r}")
    parts = text.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    elif len(parts) != 6:
        raise CrontabError(
            f"invalid crontab {text!r}: expected 5 fields (minute hour day month weekday) "
            f"or 6 (with seconds first), got {len(parts)}"
        )
    sets = [_field(text, part, *spec) for part, spec in zip(parts, _FIELDS)]
    weekdays = frozenset(0 if d == 7 else d for d in sets[5])
    c = Crontab(text, sets[0], sets[1], sets[2], sets[3], sets[4], weekdays,
                any_day=parts[3] in ("*", "?"), any_weekday=parts[5] in ("*", "?"), zone=zone(timezone))
    c.next_after(datetime.datetime(2000, 1, 1, tzinfo=UTC))  # never fires (Feb 30): an error now
    return c


def _field(text: str, part: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    def bad(why: str) -> CrontabError:
        return CrontabError(f"invalid crontab {text!r}: {name} field {part!r}: {why}")

    def number(token: str) -> int:
        key = token.lower()
        if key in names:
            return names[key]
        if not token.isdigit():
            raise bad(f"{token!r} is not a number" + (" or a name" if names else ""))
        value = int(token)
        if not low <= value <= high:
            raise bad(f"{value} is outside {low}-{high}")
        return value

    values: set[int] = set()
    for item in part.split(","):
        if not item:
            raise bad("empty list item")
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise bad(f"step {step_text!r} must be a positive number")
            step = int(step_text)
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = number(a), number(b)
            if start > end:
                raise bad(f"range {base!r} runs backwards")
        else:
            start = number(base)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)
