"""Slot math (app/scheduling/slots.py), pure: wall-clock rules and overrides in IANA zones
to exact UTC windows and start times, across DST changes."""

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from app.infra.errors import ValidationFailed
from app.scheduling.slots import (
    END_OF_DAY,
    DateOverride,
    WeeklyHours,
    check_range,
    is_known_zone,
    slot_starts,
    windows,
)

MON, SAT, SUN = 0, 5, 6
NY, BERLIN, SYDNEY = "America/New_York", "Europe/Berlin", "Australia/Sydney"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


def starts(rules, overrides, start, end, *, duration=60, step=60):
    return slot_starts(rules, overrides, start, end, duration=minutes(duration), step=minutes(step))


def day_of(d: date) -> tuple[datetime, datetime]:
    """A UTC range comfortably around local date `d` in any zone."""
    first = datetime.combine(d, time(), UTC) - timedelta(hours=15)
    return first, first + timedelta(hours=54)


def every_day(start: time, end: time, zone: str, **kw) -> list[WeeklyHours]:
    return [WeeklyHours(wd, start, end, zone, **kw) for wd in range(7)]


# America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z); 2026-11-01 02:00 EDT ->
# 01:00 EST (06:00Z).


def test_new_york_spring_forward_window_is_one_real_hour():
    rules = [WeeklyHours(SUN, time(1, 30), time(3, 30), NY)]
    assert windows(rules, [], *day_of(date(2026, 3, 8))) == [
        (utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7, 30))
    ]


def test_new_york_spring_forward_skips_the_nonexistent_hour():
    rules = [WeeklyHours(SUN, time(0), time(6), NY)]
    assert starts(rules, [], *day_of(date(2026, 3, 8))) == [
        utc(2026, 3, 8, 5),  # 00:00 EST
        utc(2026, 3, 8, 6),  # 01:00 EST
        utc(2026, 3, 8, 7),  # 03:00 EDT (02:00 does not exist)
        utc(2026, 3, 8, 8),  # 04:00 EDT
        utc(2026, 3, 8, 9),  # 05:00 EDT
    ]


def test_new_york_spring_forward_quarter_hours_around_the_gap():
    rules = [WeeklyHours(SUN, time(1, 30), time(3, 30), NY)]
    assert starts(rules, [], *day_of(date(2026, 3, 8)), duration=15, step=15) == [
        utc(2026, 3, 8, 6, 30),  # 01:30 EST
        utc(2026, 3, 8, 6, 45),  # 01:45 EST
        utc(2026, 3, 8, 7, 0),  # 03:00 EDT
        utc(2026, 3, 8, 7, 15),  # 03:15 EDT
    ]


def test_new_york_spring_forward_session_may_span_the_gap():
    # 01:30 EST + 60 real minutes = 03:30 EDT: inside the 1-hour window.
    rules = [WeeklyHours(SUN, time(1, 30), time(3, 30), NY)]
    assert starts(rules, [], *day_of(date(2026, 3, 8)), duration=60, step=15) == [
        utc(2026, 3, 8, 6, 30)
    ]


def test_new_york_fall_back_offers_both_passes_of_the_repeated_hour_once():
    rules = [WeeklyHours(SUN, time(0), time(3), NY)]
    assert windows(rules, [], *day_of(date(2026, 11, 1))) == [
        (utc(2026, 11, 1, 4), utc(2026, 11, 1, 8))  # 00:00 EDT to 03:00 EST: four hours
    ]
    assert starts(rules, [], *day_of(date(2026, 11, 1))) == [
        utc(2026, 11, 1, 4),  # 00:00 EDT
        utc(2026, 11, 1, 5),  # 01:00 EDT
        utc(2026, 11, 1, 6),  # 01:00 EST
        utc(2026, 11, 1, 7),  # 02:00 EST
    ]


def test_new_york_fall_back_quarter_hours_have_no_duplicates():
    rules = [WeeklyHours(SUN, time(0, 30), time(2, 30), NY)]
    found = starts(rules, [], *day_of(date(2026, 11, 1)), duration=30, step=15)
    assert found == [utc(2026, 11, 1, 4, 30) + minutes(15 * i) for i in range(11)]
    local = [t.astimezone(ZoneInfo(NY)).strftime("%H:%M") for t in found]
    assert local == [
        "00:30", "00:45",
        "01:00", "01:15", "01:30", "01:45",  # EDT
        "01:00", "01:15", "01:30", "01:45",  # EST
        "02:00",
    ]  # fmt: skip


def test_new_york_slots_keep_their_wall_clock_time_across_the_change():
    rules = every_day(time(9), time(10), NY)
    assert starts(rules, [], utc(2026, 3, 6), utc(2026, 3, 11)) == [
        utc(2026, 3, 6, 14),  # 09:00 EST
        utc(2026, 3, 7, 14),
        utc(2026, 3, 8, 13),  # 09:00 EDT
        utc(2026, 3, 9, 13),
        utc(2026, 3, 10, 13),
    ]
    assert starts(rules, [], utc(2026, 10, 30), utc(2026, 11, 3)) == [
        utc(2026, 10, 30, 13),  # 09:00 EDT
        utc(2026, 10, 31, 13),
        utc(2026, 11, 1, 14),  # 09:00 EST
        utc(2026, 11, 2, 14),
    ]


# Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z); 2026-10-25 03:00 CEST ->
# 02:00 CET (01:00Z).


def test_berlin_spring_forward():
    rules = [WeeklyHours(SUN, time(1), time(4), BERLIN)]
    assert windows(rules, [], *day_of(date(2026, 3, 29))) == [
        (utc(2026, 3, 29, 0), utc(2026, 3, 29, 2))
    ]
    assert starts(rules, [], *day_of(date(2026, 3, 29)), duration=30, step=30) == [
        utc(2026, 3, 29, 0, 0),  # 01:00 CET
        utc(2026, 3, 29, 0, 30),  # 01:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST
        utc(2026, 3, 29, 1, 30),  # 03:30 CEST
    ]


def test_berlin_fall_back():
    rules = [WeeklyHours(SUN, time(1, 30), time(3, 30), BERLIN)]
    assert windows(rules, [], *day_of(date(2026, 10, 25))) == [
        (utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 2, 30))
    ]
    assert starts(rules, [], *day_of(date(2026, 10, 25)), duration=30, step=30) == [
        utc(2026, 10, 24, 23, 30),  # 01:30 CEST
        utc(2026, 10, 25, 0, 0),  # 02:00 CEST
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 1, 0),  # 02:00 CET
        utc(2026, 10, 25, 1, 30),  # 02:30 CET
        utc(2026, 10, 25, 2, 0),  # 03:00 CET
    ]


def test_berlin_slots_keep_their_wall_clock_time_across_the_change():
    rules = every_day(time(8), time(9), BERLIN)
    assert starts(rules, [], utc(2026, 3, 28), utc(2026, 3, 31)) == [
        utc(2026, 3, 28, 7),  # 08:00 CET
        utc(2026, 3, 29, 6),  # 08:00 CEST
        utc(2026, 3, 30, 6),
    ]


# Australia/Sydney: 2026-04-05 03:00 AEDT -> 02:00 AEST (2026-04-04 16:00Z); 2026-10-04
# 02:00 AEST -> 03:00 AEDT (2026-10-03 16:00Z).


def test_sydney_fall_back():
    rules = [WeeklyHours(SUN, time(1), time(4), SYDNEY)]
    assert windows(rules, [], *day_of(date(2026, 4, 5))) == [
        (utc(2026, 4, 4, 14), utc(2026, 4, 4, 18))
    ]
    assert starts(rules, [], *day_of(date(2026, 4, 5))) == [
        utc(2026, 4, 4, 14),  # 01:00 AEDT
        utc(2026, 4, 4, 15),  # 02:00 AEDT
        utc(2026, 4, 4, 16),  # 02:00 AEST
        utc(2026, 4, 4, 17),  # 03:00 AEST
    ]


def test_sydney_spring_forward():
    rules = [WeeklyHours(SUN, time(1), time(4), SYDNEY)]
    assert windows(rules, [], *day_of(date(2026, 10, 4))) == [
        (utc(2026, 10, 3, 15), utc(2026, 10, 3, 17))
    ]
    assert starts(rules, [], *day_of(date(2026, 10, 4))) == [
        utc(2026, 10, 3, 15),  # 01:00 AEST
        utc(2026, 10, 3, 16),  # 03:00 AEDT
    ]


def test_sydney_rule_applies_on_its_local_date_not_the_utc_one():
    # Monday 2026-06-01 09:00 AEST is Sunday 2026-05-31 23:00 UTC.
    rules = [WeeklyHours(MON, time(9), time(10), SYDNEY, effective_from=date(2026, 6, 1))]
    assert starts(rules, [], utc(2026, 5, 20), utc(2026, 6, 10)) == [
        utc(2026, 5, 31, 23),
        utc(2026, 6, 7, 23),
    ]


# Overrides


def test_day_off_removes_that_local_date_only():
    rules = every_day(time(9), time(10), BERLIN)
    day_off = DateOverride(date(2026, 6, 3), "unavailable", BERLIN)
    assert starts(rules, [day_off], utc(2026, 6, 2), utc(2026, 6, 5)) == [
        utc(2026, 6, 2, 7),
        utc(2026, 6, 4, 7),
    ]


def test_day_off_on_a_dst_day_covers_its_23_hours():
    rules = [WeeklyHours(SUN, time(0), END_OF_DAY, NY)]
    day = date(2026, 3, 8)
    assert windows(rules, [], *day_of(day)) == [(utc(2026, 3, 8, 5), utc(2026, 3, 9, 4))]
    day_off = DateOverride(day, "unavailable", NY)
    assert windows(rules, [day_off], *day_of(day)) == []


def test_unavailable_hours_cut_a_hole():
    rules = [WeeklyHours(MON, time(9), time(13), BERLIN)]
    lunch = DateOverride(date(2026, 6, 1), "unavailable", BERLIN, time(10), time(11, 30))
    assert windows(rules, [lunch], *day_of(date(2026, 6, 1))) == [
        (utc(2026, 6, 1, 7), utc(2026, 6, 1, 8)),
        (utc(2026, 6, 1, 9, 30), utc(2026, 6, 1, 11)),
    ]
    assert starts(rules, [lunch], *day_of(date(2026, 6, 1)), step=30) == [
        utc(2026, 6, 1, 7),
        utc(2026, 6, 1, 9, 30),
        utc(2026, 6, 1, 10),
    ]


def test_extra_hours_add_to_the_weekly_hours():
    rules = [WeeklyHours(MON, time(9), time(10), BERLIN)]
    extra = DateOverride(date(2026, 6, 1), "available", BERLIN, time(18), time(20))
    assert windows(rules, [extra], *day_of(date(2026, 6, 1))) == [
        (utc(2026, 6, 1, 7), utc(2026, 6, 1, 8)),
        (utc(2026, 6, 1, 16), utc(2026, 6, 1, 18)),
    ]


def test_extra_hours_on_a_day_without_rules():
    extra = DateOverride(date(2026, 6, 6), "available", NY, time(10), time(12))
    assert starts([], [extra], *day_of(date(2026, 6, 6))) == [
        utc(2026, 6, 6, 14),
        utc(2026, 6, 6, 15),
    ]


def test_day_off_plus_extra_hours_replaces_the_days_hours():
    rules = [WeeklyHours(MON, time(9), time(17), BERLIN)]
    overrides = [
        DateOverride(date(2026, 6, 1), "unavailable", BERLIN),
        DateOverride(date(2026, 6, 1), "available", BERLIN, time(14), time(15)),
    ]
    assert windows(rules, overrides, *day_of(date(2026, 6, 1))) == [
        (utc(2026, 6, 1, 12), utc(2026, 6, 1, 13))
    ]


# Effective dates, grid, fit


def test_effective_dates_are_inclusive_local_dates():
    rules = every_day(
        time(9), time(10), NY, effective_from=date(2026, 6, 2), effective_until=date(2026, 6, 3)
    )
    assert starts(rules, [], utc(2026, 6, 1), utc(2026, 6, 6)) == [
        utc(2026, 6, 2, 13),
        utc(2026, 6, 3, 13),
    ]


def test_a_coach_moving_zones_keeps_each_zones_wall_clock():
    rules = [
        WeeklyHours(MON, time(9), time(10), NY, effective_until=date(2026, 6, 7)),
        WeeklyHours(MON, time(9), time(10), BERLIN, effective_from=date(2026, 6, 8)),
    ]
    assert starts(rules, [], utc(2026, 6, 1), utc(2026, 6, 16)) == [
        utc(2026, 6, 1, 13),  # 09:00 EDT
        utc(2026, 6, 8, 7),  # 09:00 CEST
        utc(2026, 6, 15, 7),
    ]


def test_starts_are_on_the_grid_from_the_windows_start_and_the_session_fits():
    rules = [WeeklyHours(MON, time(9, 10), time(10, 30), BERLIN)]
    found = starts(rules, [], *day_of(date(2026, 6, 1)), duration=30, step=15)
    assert [t.astimezone(ZoneInfo(BERLIN)).strftime("%H:%M") for t in found] == [
        "09:15",
        "09:30",
        "09:45",
        "10:00",
    ]


def test_touching_hours_form_one_window():
    rules = [
        WeeklyHours(MON, time(9), time(12), BERLIN),
        WeeklyHours(MON, time(12), time(15), BERLIN),
    ]
    found = starts(rules, [], *day_of(date(2026, 6, 1)), duration=60, step=30)
    assert utc(2026, 6, 1, 9, 30) in found  # 11:30-12:30 spans both rules
    assert found[-1] == utc(2026, 6, 1, 12)  # 14:00-15:00


def test_grid_restarts_at_local_midnight_when_the_step_does_not_divide_a_day():
    rules = [
        WeeklyHours(MON, time(22), END_OF_DAY, "UTC"),
        WeeklyHours(1, time(0), time(2), "UTC"),
    ]
    found = starts(rules, [], utc(2026, 6, 1), utc(2026, 6, 3), duration=20, step=50)
    assert found == [
        utc(2026, 6, 1, 22, 30),  # 1350 minutes = 27 steps
        utc(2026, 6, 1, 23, 20),
        utc(2026, 6, 2, 0, 0),  # a new day, a new grid
        utc(2026, 6, 2, 0, 50),
        utc(2026, 6, 2, 1, 40),
    ]


def test_starts_only_inside_the_queried_range_and_in_utc():
    rules = every_day(time(9), time(12), BERLIN)
    plus_two = timezone(timedelta(hours=2))
    found = starts(
        rules,
        [],
        datetime(2026, 6, 1, 10, tzinfo=plus_two),
        datetime(2026, 6, 1, 11, tzinfo=plus_two),
        duration=60,
        step=30,
    )
    assert found == [utc(2026, 6, 1, 8), utc(2026, 6, 1, 8, 30)]
    assert all(t.tzinfo is UTC for t in found)


def test_four_weeks_of_slots():
    rules = [WeeklyHours(wd, time(8), time(18), NY) for wd in range(5)]
    found = starts(rules, [], utc(2026, 6, 1), utc(2026, 6, 29), duration=60, step=15)
    assert len(found) == 20 * 37  # 20 weekdays, 08:00 to 17:00 by quarter hours
    assert len(set(found)) == len(found)


# Validation


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (utc(2026, 6, 2), utc(2026, 6, 1)),  # reversed
        (utc(2026, 6, 1), utc(2026, 6, 1)),  # empty
        (utc(2026, 6, 1), utc(2026, 8, 3)),  # 63 days
        (datetime(2026, 6, 1), utc(2026, 6, 2)),  # no offset
    ],
)
def test_range_checks(start, end):
    with pytest.raises(ValidationFailed):
        check_range(start, end, 62)


def test_range_of_the_maximum_width_is_fine():
    check_range(utc(2026, 6, 1), utc(2026, 8, 2), 62)


@pytest.mark.parametrize("key", ["Mars/Olympus", "localtime", "../../etc/passwd", "", "EST5"])
def test_unknown_zones(key):
    assert not is_known_zone(key)


@pytest.mark.parametrize("key", ["America/New_York", "Europe/Berlin", "Australia/Sydney", "UTC"])
def test_known_zones(key):
    assert is_known_zone(key)
