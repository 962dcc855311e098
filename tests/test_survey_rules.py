"""Who may be surveyed and which questions may be asked: the rules behind the survey route."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ivr.db import Agent, Contact, Customer, CustomerPhone
from ivr.db.models import OptOut, Survey
from ivr.errors import ConfigError
from ivr.plugins.feedback import SurveyQuestion
from ivr.survey import store
from ivr.survey.questions import BUILTIN_QUESTIONS, choose_questions, load_questions_file, validate

NOW = dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC)
NUMBER = "+8613800138000"


def _call(session: Session, uniqueid: str, agent: Agent | None, customer: Customer | None,
          e164: str | None = NUMBER, **more: object) -> None:
    session.add(Contact(uniqueid=uniqueid, caller_e164=e164, customer_id=customer.id if customer else None,
                        agent_id=agent.id if agent else None, queue="sales", queue_outcome="answered",
                        started_at=NOW - dt.timedelta(minutes=3), status="final", **more))


@pytest.fixture
def calls(engine: Engine) -> Engine:
    with Session(engine) as session:
        agent = Agent(code="1001")
        customer = Customer(name="Wang", phones=[CustomerPhone(e164=NUMBER)])
        session.add_all([agent, customer])
        session.flush()
        _call(session, "a.1", agent, customer)
        _call(session, "a.2", None, customer)  # nobody answered
        _call(session, "a.3", agent, None, e164=None)  # no caller ID
        session.commit()
    return engine


def _why(engine: Engine, uniqueid: str, min_days: float = 30, cap: int = 3) -> str | None:
    rated = store.rated_call(engine, uniqueid)
    assert rated is not None
    return store.ineligible(engine, rated, NOW, min_days, cap)


def test_an_answered_call_of_a_reachable_customer_may_be_surveyed(calls: Engine) -> None:
    assert _why(calls, "a.1") is None
    assert _why(calls, "a.2") == "no-agent"
    assert _why(calls, "a.3") == "no-number"
    assert store.rated_call(calls, "nope") is None


def test_opted_out_and_do_not_call_customers_are_never_asked(calls: Engine) -> None:
    with Session(calls) as session:
        session.add(OptOut(e164=NUMBER))
        session.commit()
    assert _why(calls, "a.1") == "opted-out"
    with Session(calls) as session:
        session.query(OptOut).delete()
        session.scalars(select(Customer)).one().do_not_call = True
        session.commit()
    assert _why(calls, "a.1") == "opted-out"


def test_not_twice_within_min_days_and_not_over_the_daily_contacts(calls: Engine) -> None:
    rated = store.rated_call(calls, "a.1")
    assert rated is not None
    with Session(calls) as session:
        old = Contact(uniqueid="old", caller_e164="+8613900000000", customer_id=rated.customer_id,
                      started_at=NOW - dt.timedelta(days=29))
        session.add(old)
        session.flush()
        session.add(Survey(rated_contact_id=old.id, customer_id=rated.customer_id, e164="+8613900000000",
                           started_at=NOW - dt.timedelta(days=29)))
        session.commit()
    assert _why(calls, "a.1", min_days=30) == "surveyed-recently"  # the same customer, another number
    assert _why(calls, "a.1", min_days=28) is None
    with Session(calls) as session:
        for n in range(2):
            session.add(Contact(uniqueid=f"out.{n}", caller_e164=NUMBER, direction="outbound",
                                kind="callback", started_at=NOW - dt.timedelta(hours=n + 1)))
        session.commit()
    assert _why(calls, "a.1", min_days=28, cap=3) is None
    assert _why(calls, "a.1", min_days=28, cap=2) == "frequency-cap"


def test_answers_are_kept_one_by_one_and_the_call_gets_the_score(calls: Engine) -> None:
    rated = store.rated_call(calls, "a.1")
    assert rated is not None
    ids = store.open_survey(calls, rated, "zh", "test", NOW)
    assert ids is not None and store.open_survey(calls, rated, "zh", "test", NOW) is None  # once per call
    store.save_answer(calls, ids.survey_id, "score", "4", False, NOW)
    with Session(calls) as session:
        survey = session.get(Survey, ids.survey_id)
        assert survey is not None and (survey.score, survey.status, survey.agent_id) == (4, "partial",
                                                                                        rated.agent_id)
        assert session.get(Contact, rated.contact_id).survey_score == 4  # type: ignore[union-attr]
    store.save_answer(calls, ids.survey_id, "buy_again", "no", False, NOW)
    store.save_answer(calls, ids.survey_id, "recommend", "yes", True, NOW)
    store.finish(calls, ids.survey_id, "complete", NOW + dt.timedelta(seconds=40))
    with Session(calls) as session:
        own = session.get(Contact, ids.contact_id)
        assert own is not None
        assert (own.kind, own.status, own.outcome) == ("survey", "final", "complete")
        assert own.duration_seconds == 40
        assert own.notes == "score 4 (somewhat dissatisfied), buy again no, recommend yes"
        assert own.survey_score is None  # the score belongs to the rated call, counted once
        assert own.outcome_reason == "rates agent 1001, queue sales"


def test_the_built_in_questions_are_valid_and_bad_ones_are_refused(tmp_path: Path) -> None:
    validate(BUILTIN_QUESTIONS, "built-in", lambda prompt: True)
    yes_no = {"1": "yes", "2": "no"}
    cases = [
        ([SurveyQuestion("buy_again", "p", yes_no)], "first question must be"),
        ([BUILTIN_QUESTIONS[0], SurveyQuestion("mood", "p", yes_no)], "unknown question"),
        ([SurveyQuestion("score", "p", {"1": "1", "2": "2", "3": "3", "4": "4"})], "must give each of"),
        ([SurveyQuestion("score", "p", {"1": "1", "2": "2", "3": "3", "4": "4", "x": "5"})],
         "not one phone key"),
        ([BUILTIN_QUESTIONS[0], BUILTIN_QUESTIONS[0]], "asked twice"),
        ([BUILTIN_QUESTIONS[0], SurveyQuestion("recommend", "p", yes_no, {"ko": {"3": ("예",)}})],
         "keys of answers"),
    ]
    for questions, problem in cases:
        with pytest.raises(ConfigError, match=problem):
            validate(questions, "test", None)
    with pytest.raises(ConfigError, match="no such prompt file") as missing:
        validate(BUILTIN_QUESTIONS, "built-in", lambda prompt: prompt != "ivr-survey-recommend")
    assert "ivr-survey-recommend" in str(missing.value)


def test_questions_from_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "survey.toml"
    path.write_text('[[questions]]\nname = "score"\nprompt = "ivr-survey-satisfaction"\n'
                    'answers = { "1" = "1", "2" = "2", "3" = "3", "4" = "4", "5" = "5" }\n'
                    'speech = { ko = { "1" = ["매우 만족"], "5" = "매우 불만" } }\n'
                    '[[questions]]\nname = "recommend"\nprompt = "ivr-survey-recommend"\n'
                    'answers = { "1" = "yes", "2" = "no" }\n')
    questions = choose_questions(None, str(path), "test", lambda prompt: True)
    assert [q.name for q in questions] == ["score", "recommend"]
    assert questions[0].speech == {"ko": {"1": ("매우 만족",), "5": ("매우 불만",)}}
    path.write_text('[[questions]]\nname = "score"\n')
    with pytest.raises(ConfigError, match=r"questions\[0\]") as bad:
        load_questions_file(path)
    assert str(path) in str(bad.value)
    offered = [BUILTIN_QUESTIONS[0]]
    assert choose_questions(offered, str(path), "test", None) == tuple(offered)  # a plugin's win
