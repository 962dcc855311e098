"""Calls handed to people: offered, answered, abandoned, service level, mean wait and talk.

The one query of the wallboard's "today", the charts and ``ivr report calls``.
A call counts once it was handed to a person (its ``queue_outcome`` is set by
the human part, :mod:`ivr.history.human_part`): inbound voice contacts only.

* offered: every such call in the period (by ``started_at``), still waiting included;
* answered: ``answered`` or ``talking`` (someone picked up);
* abandoned: the caller hung up while waiting;
* other: ``timeout`` (no one answered in time), ``callback`` (left for a call back)
  and ``lost`` (ended while no ivr listened);
* service level: answered within ``Period.service_level`` seconds of waiting, as a
  percentage of the calls that are over waiting (offered less those still waiting);
* mean wait: over every call with a known wait; mean talk: over answered calls.

Hours and days are the desk's (``Period.zone``). The database groups by UTC
buckets (an hour, or 15 minutes in a zone whose offset is not whole hours, e.g. India);
Python folds the buckets into local hours or days, so the same code is right
on SQLite and PostgreSQL and in every time zone, DST changes included.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Connection, Integer, String, and_, case, cast, func, select

from ivr.db.models import Agent, Contact
from ivr.db.sql import utc
from ivr.reports.table import Period, Report

__all__ = ["ANSWERED", "CALL_GROUPINGS", "CallFigures", "Scope", "WAIT_BANDS", "WaitBands", "bucket_seconds",
           "bucket_start",
           "call_figures", "calls_report", "local_buckets", "local_key", "offered_calls", "utc_bucket",
           "wait_distribution"]

#: Outcomes where a person picked up.
ANSWERED = ("answered", "talking")
#: ``ivr report calls --by``: the first is the default.
CALL_GROUPINGS = ("queue", "agent", "hour", "day", "total")
#: Upper bounds (seconds) of the wait-time distribution's bands; the last band is open.
WAIT_BANDS = (10, 20, 30, 60, 120, 300)


@dataclass(frozen=True, slots=True)
class Scope:
    """Only one queue's or one agent's (by code) calls; None: all."""

    queue: str | None = None
    agent: str | None = None


@dataclass(slots=True)
class CallFigures:
    """Counts and sums of one group; the means and the service level are derived."""

    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    other: int = 0
    waiting: int = 0
    answered_in_time: int = 0
    wait_total: float = 0.0
    waits: int = 0
    talk_total: float = 0.0
    talks: int = 0

    def add(self, other: CallFigures) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def service_level(self) -> float | None:
        """Percent answered in time of the calls no longer waiting; None with none."""
        over = self.offered - self.waiting
        return round(100.0 * self.answered_in_time / over, 1) if over else None

    @property
    def mean_wait(self) -> float | None:
        return round(self.wait_total / self.waits, 1) if self.waits else None

    @property
    def mean_talk(self) -> float | None:
        return round(self.talk_total / self.talks, 1) if self.talks else None

    def as_dict(self) -> dict[str, Any]:
        return {"offered": self.offered, "answered": self.answered, "abandoned": self.abandoned,
                "other": self.other, "waiting": self.waiting, "service_level": self.service_level,
                "mean_wait": self.mean_wait, "mean_talk": self.mean_talk}


def offered_calls(period: Period, scope: Scope = Scope()) -> list[ColumnElement[bool]]:
    """The WHERE of every call figure: inbound voice calls handed to a person in ``period``."""
    c = Contact.__table__.c
    where = [c.started_at >= utc(period.since), c.started_at < utc(period.until),
             c.queue_outcome != "", c.direction == "inbound", c.channel == "voice"]
    if scope.queue is not None:
        where.append(c.queue == scope.queue)
    if scope.agent is not None:
        where.append(c.agent_id == select(Agent.id).where(Agent.code == scope.agent).scalar_subquery())
    return where


def _sums(period: Period) -> list[Any]:
    c = Contact.__table__.c
    answered = c.queue_outcome.in_(ANSWERED)

    def count(condition: ColumnElement[bool]) -> Any:
        return func.sum(case((condition, 1), else_=0))

    return [
        func.count(),
        count(answered),
        count(c.queue_outcome == "abandoned"),
        count(c.queue_outcome.in_(("timeout", "callback", "lost"))),
        count(c.queue_outcome == "waiting"),
        count(and_(answered, c.wait_seconds <= period.service_level)),
        func.coalesce(func.sum(c.wait_seconds), 0.0),
        func.count(c.wait_seconds),
        func.coalesce(func.sum(case((answered, c.talk_seconds), else_=None)), 0.0),
        func.count(case((answered, c.talk_seconds), else_=None)),
    ]


def _figures(row: Iterable[Any]) -> CallFigures:
    offered, answered, abandoned, other, waiting, in_time, wait, waits, talk, talks = row
    return CallFigures(int(offered or 0), int(answered or 0), int(abandoned or 0), int(other or 0),
                       int(waiting or 0), int(in_time or 0), float(wait or 0), int(waits or 0),
                       float(talk or 0), int(talks or 0))


def bucket_seconds(period: Period) -> int:
    """An hour, unless the desk's zone is off whole hours in the period (then 15 minutes)."""
    for moment in (period.since, period.until):
        offset = period.zone.utcoffset(moment.astimezone(period.zone))
        if offset is not None and offset.total_seconds() % 3600:
            return 900
    return 3600


def utc_bucket(connection: Connection, column: Any, seconds: int) -> Any:
    """``column`` (a UTC timestamp) as an SQL expression naming its ``seconds``-long bucket (an hour or a
    quarter of one); :func:`bucket_start` reads the values back.

    PostgreSQL: whole buckets since the epoch. SQLite keeps UTC as text (``YYYY-MM-DD HH:MM:SS.ffffff``,
    written by SQLAlchemy and the history's writer alike): the hour is its first 13 characters, a
    plain prefix (a date function per row made a 30-day report ten times slower).
    """
    if connection.dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", column) / seconds), BigInteger)
    hour = func.substr(column, 1, 13)
    if seconds == 3600:
        return hour
    quarter = cast(func.substr(column, 15, 2), Integer) // (seconds // 60)
    return hour.concat(":").concat(cast(quarter, String))


def bucket_start(value: Any, seconds: int) -> dt.datetime:
    """The UTC start of a bucket named by :func:`utc_bucket`."""
    if isinstance(value, str):
        hour, _, part = value.partition(":")
        start = dt.datetime.strptime(hour, "%Y-%m-%d %H").replace(tzinfo=dt.UTC)
        return start + dt.timedelta(seconds=int(part or 0) * seconds)
    return dt.datetime.fromtimestamp(int(value) * seconds, dt.UTC)


def local_buckets(period: Period, by: str) -> list[str]:
    """Every local hour (``YYYY-MM-DD HH:00``) or day (``YYYY-MM-DD``) the period touches, in order."""
    step = dt.timedelta(hours=1) if by == "hour" else dt.timedelta(days=1)
    keys: list[str] = []
    moment = utc(period.since)
    while moment < period.until:
        key = local_key(moment, period.zone, by)
        if not keys or keys[-1] != key:
            keys.append(key)
        moment += dt.timedelta(minutes=15) if step.days == 0 else dt.timedelta(hours=1)
    return keys


def local_key(moment: dt.datetime, zone: dt.tzinfo, by: str) -> str:
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:00") if by == "hour" else local.strftime("%Y-%m-%d")


def call_figures(connection: Connection, period: Period, by: str,
                 scope: Scope = Scope()) -> list[tuple[str, CallFigures]]:
    """Figures per queue, agent (code), local hour or day, or one ``total`` row, in order.

    Hours and days include those without calls (zeros), so charts have no gaps.
    """
    c = Contact.__table__.c
    where = offered_calls(period, scope)
    if by in ("hour", "day"):
        size = bucket_seconds(period)
        bucket = utc_bucket(connection, c.started_at, size).label("bucket")
        rows = connection.execute(select(bucket, *_sums(period)).where(*where).group_by(bucket)).all()
        grouped = {key: CallFigures() for key in local_buckets(period, by)}
        for row in rows:
            moment = bucket_start(row[0], size)
            grouped.setdefault(local_key(moment, period.zone, by), CallFigures()).add(_figures(row[1:]))
        return list(grouped.items())
    if by == "total":
        row = connection.execute(select(*_sums(period)).where(*where)).one()
        return [("total", _figures(row))]
    if by == "queue":
        rows = connection.execute(select(c.queue, *_sums(period)).where(*where).group_by(c.queue)
                                  .order_by(c.queue)).all()
        return [(row[0] or "(direct)", _figures(row[1:])) for row in rows]
    if by == "agent":
        a = Agent.__table__.c
        agent = func.coalesce(a.code, "(none)").label("agent")
        query = (select(agent, *_sums(period)).select_from(Contact.__table__.outerjoin(
            Agent.__table__, a.id == c.agent_id)).where(*where).group_by(agent).order_by(agent))
        return [(row[0], _figures(row[1:])) for row in connection.execute(query).all()]
    raise ValueError(f"calls are grouped by one of {', '.join(CALL_GROUPINGS)}, not {by!r}")


def calls_report(connection: Connection, period: Period, by: str) -> Report:
    """``ivr report calls``: :func:`call_figures` as a report."""
    columns = (by, "offered", "answered", "abandoned", "other", "waiting", "service_level_pct",
               "mean_wait_s", "mean_talk_s")
    rows = [(key, f.offered, f.answered, f.abandoned, f.other, f.waiting, f.service_level, f.mean_wait,
             f.mean_talk) for key, f in call_figures(connection, period, by)]
    title = f"Calls by {by}, service level = answered within {period.service_level:g} s"
    return Report(title, columns, rows)


@dataclass(frozen=True, slots=True)
class WaitBands:
    """How long callers waited: counts per band (``labels``), answered and not."""

    labels: tuple[str, ...]
    answered: list[int] = field(default_factory=list)
    unanswered: list[int] = field(default_factory=list)


def wait_distribution(connection: Connection, period: Period, scope: Scope = Scope()) -> WaitBands:
    """Calls per band of seconds waited (``WAIT_BANDS``), answered and not answered."""
    c = Contact.__table__.c
    band = case(*((c.wait_seconds < bound, index) for index, bound in enumerate(WAIT_BANDS)),
                else_=len(WAIT_BANDS)).label("band")
    answered = c.queue_outcome.in_(ANSWERED).label("picked")
    query = (select(band, answered, func.count()).where(*offered_calls(period, scope),
                                                        c.wait_seconds.is_not(None))
             .group_by(band, answered))
    labels = tuple(f"<{bound}s" for bound in WAIT_BANDS) + (f"≥{WAIT_BANDS[-1]}s",)
    bands = WaitBands(labels, [0] * len(labels), [0] * len(labels))
    for index, picked, count in connection.execute(query).all():
        (bands.answered if picked else bands.unanswered)[int(index)] += int(count)
    return bands
