"""Slot generation: weekly opening hours plus dated exceptions, in the community's time zone.

Slots are laid out on the local wall clock (every `interval` minutes from each opening, as long
as the whole slot fits before closing) and stored as aware UTC. A wall-clock time that does not
exist on a DST spring-forward day is skipped; one that happens twice on a fall-back day gives one
slot (the first). Nothing here touches the database: `rules_for` takes rows already loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from app.errors import ValidationFailed

Range = tuple[int, int]  # minutes from local midnight: [opens, closes)
MAX_RANGE_DAYS = 31


@dataclass(frozen=True)
class SlotRules:
    """Everything slot generation needs to know about one service."""

    tz: ZoneInfo
    duration: int
    interval: int
    min_notice: timedelta
    horizon_days: int
    weekly: dict[int, tuple[Range, ...]]
    closed_days: frozenset[date] = frozenset()
    closed_ranges: dict[date, tuple[Range, ...]] = field(default_factory=dict)
    extra_ranges: dict[date, tuple[Range, ...]] = field(default_factory=dict)


def rules_for(service, hours: Iterable, exceptions: Iterable) -> SlotRules:
    """Build the rules of a service from its hours and exception rows."""
    weekly: dict[int, list[Range]] = {}
    for row in hours:
        weekly.setdefault(row.weekday, []).append((row.opens_minute, row.closes_minute))
    closed_days, closed, extra = set(), {}, {}
    for row in exceptions:
        if row.opens_minute is None:
            closed_days.add(row.day)
        else:
            target = extra if str(row.kind) == "open" else closed
            target.setdefault(row.day, []).append((row.opens_minute, row.closes_minute))
    return SlotRules(
        tz=service.tz, duration=service.duration_minutes, interval=service.slot_interval_minutes,
        min_notice=timedelta(minutes=service.min_notice_minutes),
        horizon_days=service.horizon_days,
        weekly={k: tuple(v) for k, v in weekly.items()}, closed_days=frozenset(closed_days),
        closed_ranges={k: tuple(v) for k, v in closed.items()},
        extra_ranges={k: tuple(v) for k, v in extra.items()},
    )


def open_ranges(rules: SlotRules, day: date) -> list[Range]:
    """The opening ranges of a local day: weekly hours plus extra hours, none if closed."""
    if day in rules.closed_days:
        return []
    return sorted({*rules.weekly.get(day.weekday(), ()), *rules.extra_ranges.get(day, ())})


def _closed_at(rules: SlotRules, day: date, start: int) -> bool:
    """Whether a slot starting at minute `start` overlaps a closed range of the day."""
    end = start + rules.duration
    return any(start < closes and opens < end for opens, closes in rules.closed_ranges.get(day, ()))


def wall_clock(rules: SlotRules, day: date, minute: int) -> datetime | None:
    """The aware UTC instant of a local wall-clock minute; None if it does not exist (DST gap)."""
    local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=rules.tz)
    instant = local.astimezone(UTC)
    if instant.astimezone(rules.tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None
    return instant


def wall_clock_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which a local day begins."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def day_starts(rules: SlotRules, day: date) -> list[datetime]:
    """Every slot start of a local day (UTC), ignoring notice and horizon."""
    starts: set[datetime] = set()
    for opens, closes in open_ranges(rules, day):
        minute = opens
        while minute + rules.duration <= closes:
            if not _closed_at(rules, day, minute):
                instant = wall_clock(rules, day, minute)
                if instant is not None:
                    starts.add(instant)
            minute += rules.interval
    return sorted(starts)


def today(rules: SlotRules, now: datetime) -> date:
    """The community's local date at `now`."""
    return now.astimezone(rules.tz).date()


def last_bookable_day(rules: SlotRules, now: datetime) -> date:
    """The horizon: today plus horizon_days - 1 (14 days means today and the next 13)."""
    return today(rules, now) + timedelta(days=rules.horizon_days - 1)


def available_starts(rules: SlotRules, first: date, last: date, now: datetime) -> list[datetime]:
    """Bookable starts from local day `first` to `last`: not past, not inside the notice,
    not beyond the horizon, not on a closed day."""
    first = max(first, today(rules, now))
    last = min(last, last_bookable_day(rules, now))
    earliest = now + rules.min_notice
    starts: list[datetime] = []
    day = first
    while day <= last:
        starts.extend(s for s in day_starts(rules, day) if s >= earliest)
        day += timedelta(days=1)
    return starts


def check_range(first: date, last: date) -> None:
    """422 unless `first` <= `last` and the range spans at most 31 days."""
    if last < first:
        raise _bad("to", "invalid_range", "结束日期不能早于开始日期")
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise _bad("to", "range_too_long", f"一次最多查询 {MAX_RANGE_DAYS} 天")


def check_start(rules: SlotRules, start: datetime, now: datetime) -> None:
    """422 with a precise code unless `start` is a bookable slot start right now."""
    local = start.astimezone(rules.tz)
    day, minute = local.date(), local.hour * 60 + local.minute
    if start < now:
        raise _bad("start", "slot_in_past", "该时段已过")
    if day > last_bookable_day(rules, now):
        raise _bad("start", "beyond_horizon",
                   f"只能预约 {rules.horizon_days} 天内的时段",
                   last_day=last_bookable_day(rules, now).isoformat())
    if not _fits_opening(rules, day, minute):
        raise _bad("start", "outside_opening_hours", "该时间不在服务时间内")
    if start not in day_starts(rules, day):
        raise _bad("start", "not_on_grid", "请选择列表中的时段")
    if start < now + rules.min_notice:
        minutes = int(rules.min_notice.total_seconds() // 60)
        raise _bad("start", "inside_minimum_notice", f"请至少提前 {_duration_label(minutes)} 预约",
                   min_notice_minutes=minutes)


def _fits_opening(rules: SlotRules, day: date, minute: int) -> bool:
    """Whether a whole slot starting at `minute` fits an open, not-closed range of the day."""
    return not _closed_at(rules, day, minute) and any(
        opens <= minute and minute + rules.duration <= closes
        for opens, closes in open_ranges(rules, day))


def _duration_label(minutes: int) -> str:
    return f"{minutes // 60} 小时" if minutes % 60 == 0 else f"{minutes} 分钟"


def _bad(field_name: str, code: str, message: str, **details) -> ValidationFailed:
    return ValidationFailed(message, code=code,
                            details={"fields": {field_name: [message]}, **details})


def minute_label(minute: int) -> str:
    """08:30 for 510; 24:00 for 1440."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_minute(value: str) -> int:
    """510 for "08:30"; "24:00" is 1440. ValueError for anything else."""
    hours, _, minutes = value.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"not a HH:MM time: {value!r}")
    total = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or total > 24 * 60:
        raise ValueError(f"not a time of day: {value!r}")
    return total
