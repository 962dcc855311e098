"""Business hours and holidays: when the service desk is open, in its own time zone."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
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
