"""The wallboard's after-sales figures from real survey and complaint rows: satisfaction today, the score
distribution, satisfaction per agent per day, complaints still open (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ivr.db import Contact
from ivr.db.models import Agent, ComplaintCase, Survey
from ivr.reports.aftersales import (
    Satisfaction,
    complaints_open,
    satisfaction,
    satisfaction_by_agent,
    survey_scores,
)
from ivr.reports.table import Period

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 26, 10, 0, tzinfo=SHANGHAI)
DAY = dt.timedelta(days=1)


def seed(engine: Engine) -> None:
    with Session(engine) as session:
        ana, bo = Agent(code="1001"), Agent(code="1002")
        session.add_all([ana, bo])
        session.flush()
        answers = [(ana, 1, NOW - dt.timedelta(hours=1)), (ana, 4, NOW - dt.timedelta(hours=2)),
                   (bo, 2, NOW - dt.timedelta(hours=1)), (bo, 5, NOW - DAY),
                   (ana, None, NOW),  # asked, no answer
                   (bo, 1, NOW - 10 * DAY)]  # outside the week
        for n, (agent, score, at) in enumerate(answers):
            at = at.astimezone(dt.UTC)  # stored in UTC, as ivr stores every time
            call = Contact(uniqueid=f"rated-{n}", started_at=at)  # one survey per rated call
            session.add(call)
            session.flush()
            session.add(Survey(rated_contact_id=call.id, agent_id=agent.id, score=score, started_at=at))
        for n, status in enumerate(["open", "answered", "resolved"]):
            session.add(ComplaintCase(key=f"c{n}", origin="sms", status=status,
                                      response_due_at=NOW.astimezone(dt.UTC)))
        session.commit()


def test_after_sales_figures_count_what_was_answered(engine: Engine) -> None:
    seed(engine)
    week = Period(NOW - 6 * DAY, NOW + dt.timedelta(minutes=1), SHANGHAI)
    today = Period(NOW.replace(hour=0), NOW + dt.timedelta(minutes=1), SHANGHAI)
    with engine.connect() as connection:
        assert satisfaction(connection, today) == Satisfaction(3, 66.7)  # 1, 4, 2: two of three satisfied
        assert satisfaction(connection, week).satisfied_pct == 50.0  # and yesterday's 5
        long_ago = Period(NOW - 40 * DAY, NOW - 30 * DAY, SHANGHAI)
        assert satisfaction(connection, long_ago).satisfied_pct is None
        assert survey_scores(connection, week) == [1, 1, 0, 1, 1]
        by_agent = satisfaction_by_agent(connection, week)
        assert by_agent["days"][-2:] == ["2026-11-25", "2026-11-26"]
        assert by_agent["agents"] == {"1001": [None] * 6 + [50.0], "1002": [None] * 5 + [0.0, 100.0]}
        assert complaints_open(connection) == 2  # open and answered; the resolved one is done
