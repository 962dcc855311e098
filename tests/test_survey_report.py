"""``ivr report survey`` on a generated history: every figure checked against a hand count."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ivr.cli.main import main
from ivr.db import Agent, Contact
from ivr.db.models import Survey

DAY = dt.datetime(2026, 11, 10, 3, 0, tzinfo=dt.UTC)  # 11:00 in Shanghai

#: (agent, queue, score, buy again, recommend, days after DAY)
SURVEYS = [
    ("1001", "sales", 1, True, True, 0),
    ("1001", "sales", 2, True, False, 0),
    ("1001", "after-sales", 2, False, True, 1),
    ("1001", "sales", 5, None, None, 1),        # hung up after question 1
    ("1001", "sales", None, None, None, 2),     # offered, never answered
    ("1002", "after-sales", 3, True, True, 0),
    ("1002", "after-sales", 4, False, False, 2),
    ("1002", "sales", 1, True, None, 40),      # outside the period
]


@pytest.fixture
def history(engine: Engine) -> Engine:
    with Session(engine) as session:
        agents = {code: Agent(code=code, name=code) for code in ("1001", "1002")}
        session.add_all(agents.values())
        for n, (code, queue, score, buy, recommend, days) in enumerate(SURVEYS):
            when = DAY + dt.timedelta(days=days)
            rated = Contact(uniqueid=f"1762700000.{n}", started_at=when)
            session.add(rated)
            session.flush()
            session.add(Survey(rated_contact_id=rated.id, agent_id=agents[code].id, queue=queue,
                               started_at=when, score=score, buy_again=buy, recommend=recommend))
        session.commit()
    return engine


def _report(engine: Engine, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    url = engine.url.render_as_string(hide_password=False)
    assert main(["report", "survey", "--since", "2026-11-10", "--until", "2026-11-30", *args,
                 "--url", url]) == 0
    return capsys.readouterr().out


def test_per_agent_figures_match_a_hand_count(history: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    rows = {row["agent"]: row for row in json.loads(_report(history, capsys, "--format", "json"))["rows"]}
    # 1001: five offered, four scores (1, 2, 2, 5): mean 10/4; 3 of 4 satisfied, 1 dissatisfied;
    # buy again 2 yes of 3 answers, recommend 2 yes of 3.
    assert rows["1001"] == {
        "agent": "1001", "offered": 5, "responses": 4, "response_rate": 80.0,
        "very_satisfied": 1, "satisfied": 2, "no_opinion": 0, "somewhat_dissatisfied": 0,
        "very_dissatisfied": 1, "mean": 2.5, "pct_satisfied": 75.0, "pct_dissatisfied": 25.0,
        "buy_again_rate": 66.7, "recommend_rate": 66.7}
    # 1002 in the period: scores 3 and 4; buy again 1 of 2, recommend 1 of 2 (the survey 40 days on is out).
    assert rows["1002"] == {
        "agent": "1002", "offered": 2, "responses": 2, "response_rate": 100.0,
        "very_satisfied": 0, "satisfied": 0, "no_opinion": 1, "somewhat_dissatisfied": 1,
        "very_dissatisfied": 0, "mean": 3.5, "pct_satisfied": 0.0, "pct_dissatisfied": 50.0,
        "buy_again_rate": 50.0, "recommend_rate": 50.0}
    # All: 7 offered, 6 scores (1, 2, 2, 5, 3, 4) = 17/6.
    assert (rows["(all)"]["offered"], rows["(all)"]["responses"], rows["(all)"]["mean"]) == (7, 6, 2.83)
    assert list(rows) == ["1001", "1002", "(all)"]


def test_by_queue_and_as_a_table(history: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    table = _report(history, capsys, "--by", "queue").splitlines()
    assert table[0].startswith("Surveys by queue")
    header = table[1].split()
    assert header[:4] == ["queue", "offered", "responses", "response_rate"]
    cells = {line.split()[0]: line.split() for line in table[3:]}
    # after-sales: scores 2, 3, 4 (mean 3.00); sales: 1, 2, 5 and one unanswered (mean 2.67).
    assert cells["after-sales"][1:3] == ["3", "3"] and cells["after-sales"][header.index("mean")] == "3.00"
    assert cells["sales"][1:3] == ["4", "3"] and cells["sales"][header.index("mean")] == "2.67"


def test_an_empty_period(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    assert _report(engine, capsys).rstrip().endswith("(nothing in this period)")
