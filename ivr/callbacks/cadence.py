"""A follow-up's cadence: the planned contacts of its origin, each a window in business or wall time.

A cadence is written per origin as steps, e.g. for a web lead
``"2bh 24h-48h 6d-7d 29d-30d 89d-90d"``: the first contact within 2 business
hours, the second from 24 to 48 hours after the lead came in, then around 7,
30 and 90 days. A step ``FROM-TO`` may be dialled from ``FROM`` and is due by
``TO``, both counted from the follow-up's start (when it was asked for, or
the date an agent set); a bare ``TO`` starts where the previous step was due
(the first: at once). ``bh`` counts only the desk's open time (lunch, nights,
weekends and holidays do not count); ``m``, ``h`` and ``d`` are wall time. A
dial window always starts at an opening: nobody is called while the desk is
closed.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ivr.plugins.requests import FollowUpOrigin
from ivr.routing.hours import BusinessHours

__all__ = ["DEFAULT_CADENCES", "Cadence", "Span", "Step", "StepTimes", "parse_cadence", "parse_cadences"]

#: What ships: fast first contact for everything; leads are followed for 90 days.
DEFAULT_CADENCES: dict[str, str] = {
    FollowUpOrigin.LEAD: "2bh 24h-48h 6d-7d 29d-30d 89d-90d",
    FollowUpOrigin.SMS: "2bh 24h-48h",
    FollowUpOrigin.IVR: "2bh 24h-48h",
    FollowUpOrigin.API: "2bh 24h-48h",
    FollowUpOrigin.DISPOSITION: "2bh 24h-48h",
    FollowUpOrigin.SURVEY: "2bh 24h-48h",
    FollowUpOrigin.COMPLAINT: "2bh 24h-48h",
}

_SPAN = re.compile(r"(\d+(?:\.\d+)?)(bh|m|h|d)\Z")
_UNITS = {"m": 60.0, "h": 3600.0, "bh": 3600.0, "d": 86400.0}


@dataclass(frozen=True, slots=True)
class Span:
    """An amount of time from the start: wall time, or the desk's open time (``business``)."""

    seconds: float
    business: bool = False

    @classmethod
    def parse(cls, text: str) -> Span:
        match = _SPAN.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a time such as 30m, 2bh, 48h or 7d")
        number, unit = match.groups()
        return cls(float(number) * _UNITS[unit], unit == "bh")

    def after(self, hours: BusinessHours, start: dt.datetime) -> dt.datetime:
        """``start`` plus this span (business time skips closed hours; never open: wall time)."""
        amount = dt.timedelta(seconds=self.seconds)
        if self.business:
            moment = hours.after_open_time(start, amount)
            if moment is not None:
                return moment
        return start + amount

    def __str__(self) -> str:
        value = self.seconds / 3600 if self.business else self.seconds
        unit = "bh" if self.business else "s"
        return f"{value:g}{unit}"


@dataclass(frozen=True, slots=True)
class Step:
    """One planned contact: dialled from ``start`` (None: where the previous step was due), due by ``due``."""

    due: Span
    start: Span | None = None


@dataclass(frozen=True, slots=True)
class StepTimes:
    """A step placed in time (UTC): dialled from ``start``, due by ``due``."""

    start: dt.datetime
    due: dt.datetime


@dataclass(frozen=True, slots=True)
class Cadence:
    """The steps of one origin, in order."""

    steps: tuple[Step, ...]

    def times(self, hours: BusinessHours, origin_at: dt.datetime, step: int) -> StepTimes:
        """When step number ``step`` (0-based) may be dialled and is due, for a follow-up started at
        ``origin_at``."""
        previous_due = origin_at
        for index, planned in enumerate(self.steps[:step + 1]):
            start = previous_due if planned.start is None else planned.start.after(hours, origin_at)
            due = planned.due.after(hours, origin_at)
            opening = hours.next_opening(start) or start
            if index == step:
                return StepTimes(opening, max(due, opening))
            previous_due = due
        raise IndexError(f"step {step} is past the cadence's {len(self.steps)} steps")

    def plan(self, hours: BusinessHours, origin_at: dt.datetime, from_step: int = 0) -> list[StepTimes]:
        """Every step from ``from_step`` on: what is planned, visible before it is due."""
        return [self.times(hours, origin_at, n) for n in range(from_step, len(self.steps))]


def parse_cadence(text: str) -> Cadence:
    """``"2bh 24h-48h 6d-7d"`` as a :class:`Cadence`; ValueError says what is wrong."""
    steps = []
    for part in text.replace(",", " ").split():
        begin, _, end = part.rpartition("-")
        step = Step(Span.parse(end), Span.parse(begin) if begin else None)
        if step.start is not None and step.start.seconds > step.due.seconds and \
                step.start.business == step.due.business:
            raise ValueError(f"{part!r} is due before it starts")
        steps.append(step)
    if not steps:
        raise ValueError("no steps (write at least one, e.g. \"2bh\")")
    return Cadence(tuple(steps))


def parse_cadences(texts: Mapping[str, str],
                   origins: Sequence[str] = tuple(FollowUpOrigin)) -> dict[str, Cadence]:
    """Every origin's cadence: the defaults, overridden by ``texts``; ValueError names a wrong origin."""
    unknown = sorted(set(texts) - set(origins))
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not an origin (use {', '.join(origins)})")
    merged = {**DEFAULT_CADENCES, **texts}
    return {origin: parse_cadence(merged[origin]) for origin in origins}
