"""Agents: calls answered and made, waits before answer, talk, per agent (or per agent and day).

``ivr report agents`` and the wallboard's per-agent chart read this. Calls
answered are the inbound calls an agent picked up (:mod:`ivr.reports.calls`'s
answered); calls made are outbound contacts (click-to-call, callbacks) with
that agent, answered when the customer picked up.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, case, func, select

from ivr.db.models import Agent, Contact
from ivr.db.sql import utc
from ivr.reports.calls import ANSWERED, bucket_seconds, bucket_start, local_buckets, local_key, utc_bucket
from ivr.reports.table import Period, Report

__all__ = ["AGENT_GROUPINGS", "agent_figures", "agents_report"]

#: ``ivr report agents --by``: the first is the default.
AGENT_GROUPINGS = ("agent", "day")

COLUMNS = ("answered", "mean_wait_s", "talk_minutes", "mean_talk_s", "made", "made_answered")


def _sums() -> list[Any]:
    c = Contact.__table__.c
    inbound = (c.direction == "inbound") & c.queue_outcome.in_(ANSWERED)
    outbound = c.direction == "outbound"
    return [
        func.sum(case((inbound, 1), else_=0)),
        func.sum(case((inbound, c.wait_seconds), else_=None)),
        func.count(case((inbound, c.wait_seconds), else_=None)),
        func.sum(case((inbound, c.talk_seconds), else_=None)),
        func.count(case((inbound, c.talk_seconds), else_=None)),
        func.sum(case((outbound, 1), else_=0)),
        func.sum(case((outbound & c.answered_at.is_not(None), 1), else_=0)),
    ]


def _row(values: Any) -> tuple[int, float | None, float, float | None, int, int]:
    answered, wait, waits, talk, talks, made, made_answered = values
    wait_mean = round(float(wait) / waits, 1) if waits else None
    talk_mean = round(float(talk) / talks, 1) if talks else None
    return (int(answered or 0), wait_mean, round(float(talk or 0) / 60, 1), talk_mean, int(made or 0),
            int(made_answered or 0))


def agent_figures(connection: Connection, period: Period, by: str = "agent",
                  agent: str | None = None) -> list[tuple[Any, ...]]:
    """Rows of (agent code[, day], *COLUMNS) for agents with a call in ``period``; one agent's if named."""
    c, a = Contact.__table__.c, Agent.__table__.c
    where = [c.started_at >= utc(period.since), c.started_at < utc(period.until), c.channel == "voice",
             c.agent_id.is_not(None)]
    if agent is not None:
        where.append(a.code == agent)
    source = Contact.__table__.join(Agent.__table__, a.id == c.agent_id)
    if by == "agent":
        query = select(a.code, *_sums()).select_from(source).where(*where).group_by(a.code).order_by(a.code)
        return [(row[0], *_row(row[1:])) for row in connection.execute(query).all()]
    if by != "day":
        raise ValueError(f"agents are grouped by one of {', '.join(AGENT_GROUPINGS)}, not {by!r}")
    size = bucket_seconds(period)
    bucket = utc_bucket(connection, c.started_at, size).label("bucket")
    query = select(a.code, bucket, *_sums()).select_from(source).where(*where).group_by(a.code, bucket)
    sums: dict[tuple[str, str], list[float]] = {}
    for row in connection.execute(query).all():
        day = local_key(bucket_start(row[1], size), period.zone, "day")
        kept = sums.setdefault((row[0], day), [0.0] * 7)
        for index, value in enumerate(row[2:]):
            kept[index] += float(value or 0)
    days = local_buckets(period, "day")
    ordered = sorted(sums, key=lambda key: (key[0], days.index(key[1]) if key[1] in days else 0))
    return [(code, day, *_row([int(v) if i in (0, 2, 4, 5, 6) else v for i, v in enumerate(sums[code, day])]))
            for code, day in ordered]


def agents_report(connection: Connection, period: Period, by: str) -> Report:
    """``ivr report agents``: :func:`agent_figures` as a report."""
    columns = ("agent", "day", *COLUMNS) if by == "day" else ("agent", *COLUMNS)
    return Report(f"Agents by {by}", columns, agent_figures(connection, period, by))
