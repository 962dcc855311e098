"""The supervisor's figures from the database, through the one query layer (:mod:`ivr.reports`).

Blocking functions: the wallboard and the chart API run them on worker
threads (``deferToThread``), never on the reactor. ``today`` is the desk's
day (``[hours] timezone``) up to now.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from ivr.reports import Period
from ivr.reports.aftersales import complaints_open, satisfaction, satisfaction_by_agent, survey_scores
from ivr.reports.agents import agent_figures
from ivr.reports.calls import Scope, call_figures, wait_distribution
from ivr.reports.followups import followups_now, followups_report

__all__ = ["CHART_PARTS", "RANGES", "ChartRequest", "agents_chart", "calls_chart", "chart_data", "day_start",
           "followups_chart", "today_figures", "waits_chart"]

#: Chart ranges: today (by hour), or the last 7 or 30 desk days (by day).
RANGES = {"today": 1, "7d": 7, "30d": 30}


def day_start(now: dt.datetime, zone: dt.tzinfo, days_back: int = 0) -> dt.datetime:
    """Midnight of the desk's day ``days_back`` days before ``now``'s, as an aware datetime."""
    local = now.astimezone(zone).date() - dt.timedelta(days=days_back)
    return dt.datetime(local.year, local.month, local.day, tzinfo=zone)


def today_figures(engine: Engine, now: dt.datetime, zone: dt.tzinfo, service_level: float) -> dict[str, Any]:
    """Today so far: per queue and in total; follow-ups due and overdue; satisfaction; complaints."""
    start = day_start(now, zone)
    period = Period(start, now, zone, service_level)
    tomorrow = day_start(now + dt.timedelta(days=1), zone)
    with engine.connect() as connection:
        total = call_figures(connection, period, "total")[0][1]
        by_queue = {queue: figures.as_dict() for queue, figures in call_figures(connection, period, "queue")}
        due = followups_now(connection, now, tomorrow)
        rated = satisfaction(connection, period)
        complaints = complaints_open(connection)
    return {"total": total.as_dict(), "queues": by_queue,
            "followups": {"due_today": due.due_today, "overdue": due.overdue},
            "satisfaction": None if rated is None else {"answers": rated.answers,
                                                        "satisfied_pct": rated.satisfied_pct},
            "complaints_open": complaints}


@dataclass(frozen=True, slots=True)
class ChartRequest:
    """Which charts: a range of :data:`RANGES`, and optionally one queue's or one agent's calls."""

    range: str = "today"
    queue: str | None = None
    agent: str | None = None


def _scope(request: ChartRequest, now: dt.datetime, zone: dt.tzinfo,
           service_level: float) -> tuple[Period, str, Scope]:
    days = RANGES[request.range]
    period = Period(day_start(now, zone, days - 1), now, zone, service_level)
    return period, "hour" if request.range == "today" else "day", Scope(request.queue, request.agent)


def calls_chart(engine: Engine, request: ChartRequest, now: dt.datetime, zone: dt.tzinfo,
                service_level: float) -> dict[str, Any]:
    """Calls answered vs abandoned, and the service level, per local hour (today) or day."""
    period, by, scope = _scope(request, now, zone, service_level)
    with engine.connect() as connection:
        series = call_figures(connection, period, by, scope)
    labels = [key[11:] if by == "hour" else key[5:] for key, _ in series]
    return {"range": request.range, "by": by, "since": period.since.isoformat(),
            "calls": {"labels": labels, "answered": [f.answered for _, f in series],
                      "abandoned": [f.abandoned for _, f in series], "other": [f.other for _, f in series]},
            "service_level": {"labels": labels, "values": [f.service_level for _, f in series],
                              "target_seconds": service_level}}


def waits_chart(engine: Engine, request: ChartRequest, now: dt.datetime, zone: dt.tzinfo,
                service_level: float) -> dict[str, Any]:
    """How long callers waited, answered and not."""
    period, _, scope = _scope(request, now, zone, service_level)
    with engine.connect() as connection:
        bands = wait_distribution(connection, period, scope)
    return {"waits": {"labels": list(bands.labels), "answered": bands.answered,
                      "unanswered": bands.unanswered}}


def agents_chart(engine: Engine, request: ChartRequest, now: dt.datetime, zone: dt.tzinfo,
                 service_level: float) -> dict[str, Any]:
    """Calls per agent; survey scores and the satisfied share per agent."""
    period, _, _ = _scope(request, now, zone, service_level)
    with engine.connect() as connection:
        agents = agent_figures(connection, period, "agent", request.agent)
        scores = survey_scores(connection, period)
        per_agent = satisfaction_by_agent(connection, period)
    return {"agents": [{"agent": row[0], "answered": row[1], "mean_wait": row[2], "talk_minutes": row[3],
                        "mean_talk": row[4], "made": row[5]} for row in agents],
            "survey": None if scores is None else {"scores": scores, "per_agent": per_agent}}


def followups_chart(engine: Engine, request: ChartRequest, now: dt.datetime, zone: dt.tzinfo,
                    service_level: float) -> dict[str, Any]:
    """Follow-ups made each day: done on time, late, still open past due."""
    period, _, _ = _scope(request, now, zone, service_level)
    with engine.connect() as connection:
        followups = followups_report(connection, period, "day", now=now)
    rows = followups.rows
    return {"followups": {"labels": [str(row[0])[5:] for row in rows], "on_time": [row[2] for row in rows],
                          "late": [row[3] for row in rows], "overdue": [row[5] for row in rows]}}


#: The parts of a chart answer: independent reads, so the chart API runs them on separate
#: connections at once (a 30-day answer is four range scans of the contacts).
CHART_PARTS = (calls_chart, waits_chart, agents_chart, followups_chart)


def chart_data(engine: Engine, request: ChartRequest, now: dt.datetime, zone: dt.tzinfo,
               service_level: float) -> dict[str, Any]:
    """Every chart's series for ``request``, its parts read one after another."""
    data: dict[str, Any] = {}
    for part in CHART_PARTS:
        data.update(part(engine, request, now, zone, service_level))
    return data
