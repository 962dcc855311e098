"""Business hours and holidays: when the service desk is open, in its own time zone."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ivr.errors import ConfigError

__all__ = ["BusinessHours", "DAYS"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})\Z")


@dataclass(frozen=True)
class BusinessHours:
    """Opening time ranges per weekday, minus holidays (dates in the desk's zone)."""

    zone: ZoneInfo
    weekly: Mapping[int, tuple[tuple[dt.time, dt.time], ...]]
    holidays: frozenset[dt.date]

    @classmethod
    def parse(cls, timezone: str, weekly: Mapping[str, str], holidays: Iterable[str],
              source: str) -> BusinessHours:
        """Build from settings text such as ``mon = "09:00-12:00,13:00-18:00"``."""
        try:
            zone = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(source, "hours.timezone", f"unknown time zone {timezone!r}",
                              "use an IANA name such as Asia/Shanghai") from None
        days: dict[int, tuple[tuple[dt.time, dt.time], ...]] = {}
        for day, text in weekly.items():
            if day not in DAYS:
                raise ConfigError(source, f"hours.weekly.{day}", "not a weekday", "use mon .. sun")
            ranges = []
            for part in re.split(r"[,\s]+", text.strip()):
                if not part:
                    continue
                match = _RANGE.match(part)
                if match is None:
                    raise ConfigError(source, f"hours.weekly.{day}", f"{part!r} is not a time range",
                                      'write "09:00-18:00" (several separated by spaces)')
                h1, m1, h2, m2 = (int(g) for g in match.groups())
                if not (h1 < 24 and h2 <= 24 and m1 < 60 and m2 < 60):
                    raise ConfigError(source, f"hours.weekly.{day}", f"{part!r} is not a time range",
                                      "hours 00-24, minutes 00-59")
                start = dt.time(h1, m1)
                end = dt.time.max if (h2, m2) == (24, 0) else dt.time(h2, m2)
                if end <= start:
                    raise ConfigError(source, f"hours.weekly.{day}", f"{part!r} ends before it starts",
                                      "put the earlier time first")
                ranges.append((start, end))
            days[DAYS.index(day)] = tuple(ranges)
        dates = set()
        for text in holidays:
            try:
                dates.add(dt.date.fromisoformat(text))
            except ValueError:
                raise ConfigError(source, "hours.holidays", f"{text!r} is not a date",
                                  "write dates as YYYY-MM-DD") from None
        return cls(zone, days, frozenset(dates))

    def is_open(self, when: dt.datetime) -> bool:
        """True if the desk is open at ``when`` (an aware datetime)."""
        local = when.astimezone(self.zone)
        if local.date() in self.holidays:
            return False
        now = local.time()
        return any(start <= now < end for start, end in self.weekly.get(local.weekday(), ()))

    def open_periods(self, when: dt.datetime,
                     horizon_days: int = 400) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """The desk's open periods (start, end), UTC, from ``when`` on, for ``horizon_days`` days.

        The first period is cut to start at ``when`` if the desk is open then.
        An opening range that ends at 24:00 is merged with the next day's that
        starts at 00:00, so a 24-hour desk is one period.
        """
        local = when.astimezone(self.zone)
        pending: tuple[dt.datetime, dt.datetime] | None = None
        for offset in range(horizon_days):
            day = local.date() + dt.timedelta(days=offset)
            if day in self.holidays:
                continue
            for start, end in sorted(self.weekly.get(day.weekday(), ())):
                opening = dt.datetime.combine(day, start, tzinfo=self.zone)
                closing = (dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=self.zone)
                           if end == dt.time.max else dt.datetime.combine(day, end, tzinfo=self.zone))
                if closing <= local:
                    continue
                opening = max(opening, local)
                if pending is not None and pending[1] >= opening:
                    pending = (pending[0], closing)
                    continue
                if pending is not None:
                    yield pending[0].astimezone(dt.UTC), pending[1].astimezone(dt.UTC)
                pending = (opening, closing)
        if pending is not None:
            yield pending[0].astimezone(dt.UTC), pending[1].astimezone(dt.UTC)

    def next_opening(self, when: dt.datetime) -> dt.datetime | None:
        """``when`` (UTC) if the desk is open then, else the next moment it opens; None if never."""
        return next((start for start, _ in self.open_periods(when)), None)

    def after_open_time(self, when: dt.datetime, amount: dt.timedelta) -> dt.datetime | None:
        """The moment (UTC) by which the desk has been open for ``amount`` since ``when``.

        "Within 2 business hours" of a lead posted at 17:30 on a desk closing
        at 18:00 is 09:30 the next working day (30 minutes, then 90). None if
        the desk does not open for that long within the horizon.
        """
        left = amount
        for start, end in self.open_periods(when):
            if start + left <= end:
                return start + left
            left -= end - start
        return None
