"""After-sales figures for the wallboard and the charts: satisfaction from the surveys, complaints open.

Satisfied means a score of 1 or 2 (very satisfied, satisfied) among the
surveys answered in the period (``surveys.score`` set); the per-agent series
is by the desk's local day, for the agents who were rated. The survey report
kind (``ivr report survey``) is :mod:`ivr.reports.survey`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, func, select

from ivr.db.models import Agent, ComplaintCase, Survey
from ivr.db.sql import utc
from ivr.reports.calls import bucket_seconds, bucket_start, local_buckets, local_key, utc_bucket
from ivr.reports.table import Period

__all__ = ["Satisfaction", "complaints_open", "satisfaction", "satisfaction_by_agent", "survey_scores"]


@dataclass(frozen=True, slots=True)
class Satisfaction:
    """Survey answers in a period and the share that were 1 or 2 (very satisfied, satisfied)."""

    answers: int
    satisfied_pct: float | None


def _answered(period: Period) -> list[ColumnElement[bool]]:
    s = Survey.__table__.c
    return [s.score.is_not(None), s.started_at >= utc(period.since), s.started_at < utc(period.until)]


def _satisfied() -> ColumnElement[Any]:
    s = Survey.__table__.c
    return func.sum(case((s.score <= 2, 1), else_=0))


def satisfaction(connection: Connection, period: Period) -> Satisfaction:
    """How many surveys were answered in ``period``, and the satisfied share of them (None if none)."""
    answers, satisfied = connection.execute(select(func.count(), _satisfied())
                                            .where(*_answered(period))).one()
    answers = int(answers or 0)
    return Satisfaction(answers, round(100.0 * int(satisfied or 0) / answers, 1) if answers else None)


def survey_scores(connection: Connection, period: Period) -> list[int]:
    """How many answers gave each score, 1 to 5 (the score distribution chart)."""
    s = Survey.__table__.c
    counts: dict[int, int] = dict(connection.execute(select(s.score, func.count()).where(*_answered(period))
                                     .group_by(s.score)).all())
    return [int(counts.get(score, 0)) for score in range(1, 6)]


def satisfaction_by_agent(connection: Connection, period: Period) -> dict[str, Any]:
    """The satisfied share per rated agent per local day:
    ``{"days": [...], "agents": {code: [pct or None per day]}}``."""
    s, a = Survey.__table__.c, Agent.__table__.c
    size = bucket_seconds(period)
    bucket = utc_bucket(connection, s.started_at, size).label("bucket")
    rows = connection.execute(select(a.code, bucket, func.count(), _satisfied())
                              .join_from(Survey, Agent, a.id == s.agent_id)
                              .where(*_answered(period)).group_by(a.code, bucket)).all()
    days = local_buckets(period, "day")
    totals: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for code, value, answers, satisfied in rows:
        kept = totals[str(code)][local_key(bucket_start(value, size), period.zone, "day")]
        kept[0] += int(answers or 0)
        kept[1] += int(satisfied or 0)
    return {"days": days, "agents": {
        code: [round(100.0 * per_day[day][1] / per_day[day][0], 1) if per_day[day][0] else None
               for day in days] for code, per_day in sorted(totals.items())}}


def complaints_open(connection: Connection) -> int:
    """Complaint cases not yet resolved (open or answered)."""
    c = ComplaintCase.__table__.c
    return int(connection.execute(select(func.count()).where(c.status != "resolved")).scalar() or 0)
