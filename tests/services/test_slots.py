"""Slot generation: opening hours, exceptions, minimum notice, horizon, time zones and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from app.errors import ValidationFailed
from app.services import slots

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
MONDAY = date(2027, 3, 1)  # a Monday
NOW = datetime(2027, 2, 28, 9, 0, tzinfo=SHANGHAI).astimezone(UTC)  # Sunday 09:00 local


def rules(*, tz=SHANGHAI, duration=60, interval=60, notice=120, horizon=14,
          weekly=None, exceptions=()) -> slots.SlotRules:
    """Rules built the way the booking service builds them, from hour and exception rows."""
    weekly = weekly if weekly is not None else {d: [(8 * 60, 12 * 60), (13 * 60, 17 * 60)]
                                                for d in range(5)}
    hours = [SimpleNamespace(weekday=d, opens_minute=o, closes_minute=c)
             for d, ranges in weekly.items() for o, c in ranges]
    service = SimpleNamespace(tz=tz, duration_minutes=duration, slot_interval_minutes=interval,
                              min_notice_minutes=notice, horizon_days=horizon)
    rows = [SimpleNamespace(day=day, kind=kind, opens_minute=o, closes_minute=c)
            for day, kind, o, c in exceptions]
    return slots.rules_for(service, hours, rows)


def wall(starts, tz=SHANGHAI) -> list[str]:
    return [s.astimezone(tz).strftime("%H:%M") for s in starts]


def code_of(excinfo) -> str:
    return excinfo.value.code


# ---- opening hours ---------------------------------------------------------------------------

def test_weekly_hours_give_slots_on_the_grid_that_fit_before_closing():
    starts = slots.day_starts(rules(duration=60, interval=30), MONDAY)
    assert wall(starts) == ["08:00", "08:30", "09:00", "09:30", "10:00", "10:30", "11:00",
                            "13:00", "13:30", "14:00", "14:30", "15:00", "15:30", "16:00"]


def test_a_day_without_hours_has_no_slots():
    saturday = MONDAY + timedelta(days=5)
    assert slots.day_starts(rules(), saturday) == []


def test_slots_are_stored_in_utc_from_the_community_wall_clock():
    first = slots.day_starts(rules(), MONDAY)[0]
    assert first == datetime(2027, 3, 1, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
    assert first.tzinfo is UTC


def test_a_range_until_midnight_is_written_24_00():
    everyday = rules(duration=15, interval=15, weekly={0: [(0, 24 * 60)]})
    starts = slots.day_starts(everyday, MONDAY)
    assert len(starts) == 96 and wall(starts)[-1] == "23:45"


# ---- dated exceptions ------------------------------------------------------------------------

def test_a_closed_day_has_no_slots():
    closed = rules(exceptions=[(MONDAY, "closed", None, None)])
    assert slots.day_starts(closed, MONDAY) == []
    assert slots.day_starts(closed, MONDAY + timedelta(days=1)) != []


def test_a_closed_range_removes_only_the_slots_it_overlaps():
    afternoon_off = rules(duration=60, interval=30,
                          exceptions=[(MONDAY, "closed", 14 * 60 + 30, 17 * 60)])
    starts = wall(slots.day_starts(afternoon_off, MONDAY))
    assert starts[-3:] == ["11:00", "13:00", "13:30"]  # 13:30–14:30 ends as the closure begins
    assert len(starts) == 9


def test_extra_hours_open_a_closed_weekday_and_extend_a_day():
    saturday = MONDAY + timedelta(days=5)
    extra = rules(exceptions=[(saturday, "open", 9 * 60, 11 * 60),
                              (MONDAY, "open", 17 * 60, 19 * 60)])
    assert wall(slots.day_starts(extra, saturday)) == ["09:00", "10:00"]
    assert wall(slots.day_starts(extra, MONDAY))[-2:] == ["17:00", "18:00"]


# ---- now: past, minimum notice, horizon ------------------------------------------------------

def test_past_slots_and_slots_inside_the_minimum_notice_never_appear():
    now = datetime(2027, 3, 1, 9, 30, tzinfo=SHANGHAI).astimezone(UTC)
    starts = slots.available_starts(rules(notice=120), MONDAY, MONDAY, now)
    assert wall(starts) == ["13:00", "14:00", "15:00", "16:00"]  # 11:00 is inside 2 h


def test_days_beyond_the_horizon_and_before_today_never_appear():
    starts = slots.available_starts(rules(horizon=3), MONDAY - timedelta(days=7),
                                    MONDAY + timedelta(days=10), NOW)
    days = sorted({s.astimezone(SHANGHAI).date() for s in starts})
    # today is Sunday 28 Feb (closed); the horizon ends Tuesday 2 March
    assert days == [MONDAY, MONDAY + timedelta(days=1)]
    assert slots.last_bookable_day(rules(horizon=3), NOW) == date(2027, 3, 2)


# ---- checking one start ----------------------------------------------------------------------

def test_a_start_on_the_grid_inside_the_window_passes():
    slots.check_start(rules(), datetime(2027, 3, 1, 10, 0, tzinfo=SHANGHAI), NOW)


@pytest.mark.parametrize(("moment", "code"), [
    (datetime(2027, 2, 27, 10, 0, tzinfo=SHANGHAI), "slot_in_past"),
    (datetime(2027, 3, 20, 10, 0, tzinfo=SHANGHAI), "beyond_horizon"),
    (datetime(2027, 3, 1, 12, 0, tzinfo=SHANGHAI), "outside_opening_hours"),   # lunch
    (datetime(2027, 3, 1, 16, 30, tzinfo=SHANGHAI), "outside_opening_hours"),  # ends after 17:00
    (datetime(2027, 3, 6, 10, 0, tzinfo=SHANGHAI), "outside_opening_hours"),   # Saturday
    (datetime(2027, 3, 1, 10, 15, tzinfo=SHANGHAI), "not_on_grid"),
    (datetime(2027, 3, 1, 10, 0, 30, tzinfo=SHANGHAI), "not_on_grid"),
    (datetime(2027, 2, 28, 10, 0, tzinfo=SHANGHAI), "outside_opening_hours"),  # Sunday
])
def test_a_bad_start_gets_a_precise_code(moment, code):
    with pytest.raises(ValidationFailed) as excinfo:
        slots.check_start(rules(), moment, NOW)
    assert code_of(excinfo) == code
    assert excinfo.value.details["fields"]["start"]


def test_a_start_inside_the_minimum_notice_is_refused_with_the_notice():
    now = datetime(2027, 3, 1, 9, 30, tzinfo=SHANGHAI).astimezone(UTC)
    with pytest.raises(ValidationFailed) as excinfo:
        slots.check_start(rules(notice=120), datetime(2027, 3, 1, 11, 0, tzinfo=SHANGHAI), now)
    assert code_of(excinfo) == "inside_minimum_notice"
    assert excinfo.value.details["min_notice_minutes"] == 120
    assert "2 小时" in excinfo.value.message


def test_a_start_in_a_closed_range_is_outside_opening_hours():
    closed = rules(exceptions=[(MONDAY, "closed", 9 * 60, 11 * 60)])
    with pytest.raises(ValidationFailed) as excinfo:
        slots.check_start(closed, datetime(2027, 3, 1, 10, 0, tzinfo=SHANGHAI), NOW)
    assert code_of(excinfo) == "outside_opening_hours"


@pytest.mark.parametrize(("first", "last", "code"), [
    (date(2027, 3, 1), date(2027, 3, 31), None),
    (date(2027, 3, 1), date(2027, 4, 1), "range_too_long"),
    (date(2027, 3, 2), date(2027, 3, 1), "invalid_range"),
])
def test_a_slot_query_spans_at_most_31_days(first, last, code):
    if code is None:
        slots.check_range(first, last)
        return
    with pytest.raises(ValidationFailed) as excinfo:
        slots.check_range(first, last)
    assert code_of(excinfo) == code


# ---- DST -------------------------------------------------------------------------------------

def test_the_missing_hour_of_spring_forward_gives_no_slot():
    spring = date(2027, 3, 14)  # New York skips 02:00–03:00
    ny = rules(tz=NEW_YORK, duration=30, interval=30, weekly={6: [(60, 4 * 60)]})
    starts = slots.day_starts(ny, spring)
    assert wall(starts, NEW_YORK) == ["01:00", "01:30", "03:00", "03:30"]
    assert starts[2] - starts[1] == timedelta(minutes=30)  # 01:30 EST → 03:00 EDT


def test_the_repeated_hour_of_fall_back_gives_one_slot():
    autumn = date(2027, 11, 7)  # New York repeats 01:00–02:00
    ny = rules(tz=NEW_YORK, weekly={6: [(0, 3 * 60)]})
    starts = slots.day_starts(ny, autumn)
    assert [s.strftime("%H:%M") for s in starts] == ["04:00", "05:00", "07:00"]  # UTC
    assert wall(starts, NEW_YORK) == ["00:00", "01:00", "02:00"]
    assert len(set(starts)) == 3


def test_a_week_of_slots_across_a_dst_change_keeps_the_wall_clock():
    ny = rules(tz=NEW_YORK, notice=0, horizon=30, weekly={d: [(9 * 60, 10 * 60)]
                                                          for d in range(7)})
    now = datetime(2027, 3, 10, 0, 0, tzinfo=NEW_YORK).astimezone(UTC)
    starts = slots.available_starts(ny, date(2027, 3, 11), date(2027, 3, 17), now)
    assert wall(starts, NEW_YORK) == ["09:00"] * 7
    assert {s.hour for s in starts} == {14, 13}  # EST, then EDT


def test_hours_are_parsed_and_labelled_as_hh_mm():
    assert slots.parse_minute("08:30") == 510 and slots.parse_minute("24:00") == 1440
    assert slots.minute_label(1440) == "24:00" and slots.minute_label(5) == "00:05"
    for bad in ("8:3", "25:00", "24:01", "10:60", "ab:cd", ""):
        with pytest.raises(ValueError):
            slots.parse_minute(bad)
