"""Business time: open periods, the next opening, and "within N business hours" across nights and holidays."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.routing.hours import BusinessHours

SHANGHAI = ZoneInfo("Asia/Shanghai")
#: Mon-Fri 09:00-12:00 and 13:00-18:00, Sat 10:00-14:00; 2026-10-01 (a Thursday) a holiday.
WEEKDAY = "09:00-12:00 13:00-18:00"
HOURS = BusinessHours.parse("Asia/Shanghai", {"mon": WEEKDAY, "tue": WEEKDAY, "wed": WEEKDAY, "thu": WEEKDAY,
                                              "fri": WEEKDAY, "sat": "10:00-14:00"}, ["2026-10-01"], "test")


def at(day: int, hour: int, minute: int = 0, month: int = 9) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI)


@pytest.mark.parametrize(("asked", "due"), [
    (at(28, 10), at(28, 12)),  # Monday 10:00: two hours in the morning
    (at(28, 11), at(28, 14)),  # one hour before lunch, one after
    (at(28, 17, 30), at(29, 10, 30)),  # 30 minutes tonight, 90 tomorrow morning
    (at(28, 20), at(29, 11)),  # after closing: from tomorrow's opening
    (at(30, 17), (at(2, 10, month=10))),  # Wed 17:00: 1 h, Thu holiday, Fri 09:00 + 1 h
    (at(3, 13, month=10), at(5, 10, month=10)),  # Sat 13:00: 1 h, Sunday closed, Monday 09:00 + 1 h
])
def test_two_business_hours_skip_nights_lunch_weekends_and_holidays(asked: dt.datetime,
                                                                    due: dt.datetime) -> None:
    assert HOURS.after_open_time(asked, dt.timedelta(hours=2)) == due.astimezone(dt.UTC)


def test_next_opening_is_now_when_open_else_the_next_start() -> None:
    assert HOURS.next_opening(at(28, 10)) == at(28, 10).astimezone(dt.UTC)
    assert HOURS.next_opening(at(28, 12, 30)) == at(28, 13).astimezone(dt.UTC)
    assert HOURS.next_opening(at(30, 19)) == at(2, 9, month=10).astimezone(dt.UTC)


def test_a_desk_that_never_opens_has_no_due_time() -> None:
    closed = BusinessHours.parse("UTC", {}, [], "test")
    assert closed.next_opening(at(28, 10)) is None
    assert closed.after_open_time(at(28, 10), dt.timedelta(hours=2)) is None


def test_a_desk_open_round_the_clock_is_one_period() -> None:
    always = BusinessHours.parse("UTC", {day: "00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri",
                                                                         "sat", "sun")}, [], "test")
    start = dt.datetime(2026, 9, 28, 23, 0, tzinfo=dt.UTC)
    first = next(always.open_periods(start))
    assert first[0] == start and first[1] - start > dt.timedelta(days=300)
    assert always.after_open_time(start, dt.timedelta(hours=48)) == start + dt.timedelta(hours=48)


@given(st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2027, 1, 1),
                    timezones=st.just(dt.UTC)),
       st.integers(min_value=0, max_value=60 * 40))
def test_the_due_time_is_open_and_exactly_that_much_open_time_later(start: dt.datetime, minutes: int) -> None:
    due = HOURS.after_open_time(start, dt.timedelta(minutes=minutes))
    assert due is not None and due >= start
    open_between = sum(((min(e, due) - s) for s, e in HOURS.open_periods(start) if s < due), dt.timedelta())
    assert open_between == dt.timedelta(minutes=minutes)
