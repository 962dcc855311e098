"""The post-call survey through the real Asterisk: a queue call, the agent hangs up, the caller answers.

A known customer rings the survey tests' hotline (tests/e2e_aftersales) and presses 1
for their own queue; the simulated agent Local/1401@test-agent answers, talks a few
seconds and hangs up first. With ``[survey] rate = 1`` the caller continues (app_queue's ``c`` option) into
[ivr-survey] and answers by key. What a supervisor checks: one survey linked
to that call, agent and queue, the score on the call itself, the answers in
the customer's timeline, a recovery follow-up for a 5, and no survey at all
when the rate is 0 or the customer was surveyed yesterday.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asterisk_harness import AMI, Sandbox
from conftest import ROOT, TESTS, ServeProcess, free_port
from speech_audio import phone_line
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import Agent, Contact, Customer, CustomerPhone, make_engine
from ivr.db.models import Survey

pytestmark = pytest.mark.asterisk

INTERFACE = "Local/1401@test-agent"
AGENT = "1401"
QUEUE = "survey-test"
#: Queues the servers know: the defaults and the survey tests' own.
QUEUES = "sales,after-sales,vip,ivr-fallback,complaints,survey-test"
#: The caller presses 1 (sales) during the greeting, waits through the queue and the agent's
#: 3 s of talk, then answers during the survey's prompts (a key cuts a prompt short).
TO_SURVEY = "1" + "W" * 16


@pytest.fixture(autouse=True)
def survey_dialplan(sandbox: Sandbox) -> None:
    """The sandbox is shared (another tree may have loaded its own dialplan since the last test):
    load this tree's if the running one has no [ivr-survey] or no survey-test queue."""
    sandbox.ensure_loaded(("dialplan show ivr-survey-outbound", "/survey)"),
                          ("dialplan show ivr-survey", "/survey)"),
                          ("queue show survey-test", "survey-test has"))
    assert "AGI(${IVR_AGI_BASE}/survey)" in sandbox.rx("dialplan show ivr-survey")


def _serve(tmp: Path, rate: str, **more: str) -> ServeProcess:
    return ServeProcess(free_port(), {"IVR_SERVER_INSTANCE": "survey-test", "IVR_SURVEY_RATE": rate,
                                      "IVR_PLUGINS_FOLDER": str(TESTS / "e2e_aftersales"),
                                      "IVR_TEST_FOLLOWUPS": str(tmp / "followups.jsonl"),
                                      "IVR_ROUTING_QUEUES": QUEUES, **more})


@pytest.fixture
def server(ami: AMI, tmp_path: Path) -> Iterator[ServeProcess]:
    served = _serve(tmp_path, "1")
    ami.forget_events()
    _member(ami, True)
    ami.agent_behaves(AGENT, ring="1", talk="3")
    yield served
    _member(ami, False)
    ami.agent_behaves(AGENT)
    served.stop()


def _member(ami: AMI, present: bool) -> None:
    ami.manager.send_action({"Action": "QueueRemove", "Queue": QUEUE, "Interface": INTERFACE})
    if present:
        response = ami.manager.send_action({"Action": "QueueAdd", "Queue": QUEUE, "Interface": INTERFACE,
                                            "MemberName": AGENT})
        assert response.get_header("Response") == "Success", response.headers


def _seed(server: ServeProcess, number: str, surveyed_days_ago: float | None = None,
          language: str = "zh") -> dict[str, int]:
    """Agent 1401, the account owner 1409 (no phone) and a customer calling from ``number``; their ids."""
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        agent = Agent(code=AGENT, name="Ana", device=INTERFACE, skills=["sales"])
        owner = Agent(code="1409", name="Owen")  # no phone: the call goes to the queue
        customer = Customer(name="Wang Fang", language=language, owner=owner,
                            phones=[CustomerPhone(e164=f"+86{number}")])
        session.add_all([agent, owner, customer])
        session.flush()
        if surveyed_days_ago is not None:
            then = dt.datetime.now(dt.UTC) - dt.timedelta(days=surveyed_days_ago)
            old = Contact(uniqueid=f"old-{number}", caller_e164=f"+86{number}", customer_id=customer.id,
                          started_at=then, status="final")
            session.add(old)
            session.flush()
            session.add(Survey(rated_contact_id=old.id, customer_id=customer.id, e164=f"+86{number}",
                               started_at=then, score=1, status="complete"))
        session.commit()
        ids = {"agent": agent.id, "owner": owner.id, "customer": customer.id}
    engine.dispose()
    return ids


def _call(ami: AMI, server: ServeProcess, number: str, digits: str, post_wait: str, **more: str) -> None:
    ami.originate("Local/survey-hotline@test-route", "test-caller", "dtmf",
                  {"IVR_AGI_PORT": str(server.port), "DIGITS": digits, "PRE_WAIT": "2",
                   "POST_WAIT": post_wait, **more}, caller_id=f'"Wang Fang" <{number}>')


def _entered_survey(ami: AMI, number: str) -> bool:
    """Whether the caller's channel ran the dialplan's [ivr-survey] (AMI Newexten events)."""
    return any(e.get("Event") == "Newexten" and e.get("Context") == "ivr-survey"
               and e.get("CallerIDNum") == number for e in ami.events)


def _caller_gone(ami: AMI, number: str) -> None:
    """Wait until the caller's channel into the hotline hung up (the dialplan's IvrHangup)."""
    ami.wait_for(lambda e: e.get("UserEvent") == "IvrHangup" and e.get("CallerIDNum") == number, timeout=120)


def _rows(server: ServeProcess, number: str) -> tuple[Contact, list[Survey], list[Contact]]:
    """The hotline contact (final, answered), its surveys and the survey contacts of ``number``."""
    engine = make_engine(f"sqlite:///{server.database}")
    deadline = time.monotonic() + 30
    try:
        while True:
            with Session(engine) as session:
                call = session.scalars(select(Contact).where(Contact.caller_number == number,
                                                             Contact.kind == "hotline")).first()
                if call is not None and call.status == "final" and call.queue_outcome == "answered":
                    surveys = list(session.scalars(select(Survey).where(Survey.rated_contact_id == call.id)))
                    own = list(session.scalars(select(Contact).where(Contact.kind == "survey",
                                                                     Contact.caller_e164 == f"+86{number}")))
                    session.expunge_all()
                    if all(c.status == "final" for c in own):
                        return call, surveys, own
            assert time.monotonic() < deadline, server.output()[-3000:]
            time.sleep(0.2)
    finally:
        engine.dispose()


def _timeline(server: ServeProcess, number: str) -> str:
    result = subprocess.run([sys.executable, "-m", "ivr.cli", "history", f"+86{number}",
                             "--url", f"sqlite:///{server.database}"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, check=True)
    return result.stdout


def test_the_caller_answers_by_key_after_the_agent_hangs_up(server: ServeProcess, ami: AMI) -> None:
    number = "13900000141"
    ids = _seed(server, number)
    _call(ami, server, number, TO_SURVEY + "2" + "WWW" + "1" + "WWW" + "1", post_wait="15")
    _caller_gone(ami, number)
    call, surveys, own = _rows(server, number)
    # The call itself is as the contact history ended it, and now carries the score.
    assert (call.agent_id, call.queue, call.hangup_by, call.outcome) == (ids["agent"], QUEUE, "agent",
                                                                         "completed")
    assert call.survey_score == 2
    (survey,) = surveys
    assert (survey.score, survey.buy_again, survey.recommend, survey.status) == (2, True, True, "complete")
    assert (survey.agent_id, survey.queue, survey.customer_id, survey.rated_kind) == (
        ids["agent"], QUEUE, ids["customer"], "hotline")
    assert survey.followup_id is None  # a 2 needs no recovery
    (contact,) = own
    assert contact.id == survey.contact_id and contact.outcome == "complete"
    timeline = _timeline(server, number)
    assert "inbound survey" in timeline
    assert "score 2 (satisfied), buy again yes, recommend yes" in timeline
    assert f"rates agent {AGENT}, queue {QUEUE}" in timeline
    assert _entered_survey(ami, number)


def test_a_caller_who_hangs_up_after_question_one_keeps_the_score_and_a_5_opens_a_recovery(
        server: ServeProcess, ami: AMI, tmp_path: Path) -> None:
    number = "13900000142"
    ids = _seed(server, number)
    _call(ami, server, number, TO_SURVEY + "5", post_wait="2")  # hangs up during question 2
    _caller_gone(ami, number)
    call, (survey,), (contact,) = _rows(server, number)
    assert call.survey_score == 5
    assert (survey.score, survey.buy_again, survey.recommend, survey.status) == (5, None, None, "partial")
    assert contact.outcome == "partial-hangup"
    (request,) = [json.loads(line) for line in (tmp_path / "followups.jsonl").read_text().splitlines()]
    assert (request["origin"], request["e164"], request["customer_id"], request["owner_agent_id"],
            request["contact_id"]) == ("survey", f"+86{number}", ids["customer"], ids["owner"], call.id)
    # The desk is open around the clock here: due exactly 2 hours after the answer.
    due = dt.datetime.fromisoformat(request["due_at"])
    answered = survey.updated_at.replace(tzinfo=dt.UTC)
    assert answered <= due <= answered + dt.timedelta(hours=2, seconds=5)
    assert due >= survey.started_at.replace(tzinfo=dt.UTC) + dt.timedelta(hours=2)
    assert survey.followup_id == 4001


def test_no_survey_for_a_customer_surveyed_yesterday(server: ServeProcess, ami: AMI) -> None:
    number = "13900000143"
    _seed(server, number, surveyed_days_ago=1)
    _call(ami, server, number, TO_SURVEY + "1", post_wait="15")
    _caller_gone(ami, number)
    call, surveys, own = _rows(server, number)
    assert call.queue_outcome == "answered" and surveys == [] and own == []
    assert call.survey_score is None
    assert _entered_survey(ami, number)  # sampled, then refused by the survey route
    assert "surveyed-recently" in server.output()


def test_no_survey_at_rate_0(ami: AMI, tmp_path: Path) -> None:
    served = _serve(tmp_path, "0")
    try:
        _member(ami, True)
        ami.agent_behaves(AGENT, ring="1", talk="3")
        number = "13900000144"
        _seed(served, number)
        ami.forget_events()
        _call(ami, served, number, TO_SURVEY + "1", post_wait="15")
        agent_gone = ami.wait_for(
            lambda e: e.get("Event") == "AgentComplete" and e.get("MemberName") == AGENT, timeout=90)
        _caller_gone(ami, number)
        call, surveys, own = _rows(served, number)
        assert agent_gone["Reason"] == "agent" and surveys == [] and own == []
        assert not _entered_survey(ami, number)  # not even asked for: the call was not sampled
    finally:
        _member(ami, False)
        ami.agent_behaves(AGENT)
        served.stop()


def test_a_korean_caller_answers_by_key_then_by_speech(sandbox: Sandbox, ami: AMI, tmp_path: Path) -> None:
    """A speech survey (vosk's Korean model, phrases from a questions file) still takes keys."""
    served = _serve(tmp_path, "1", IVR_SPEECH_MODELS="ko=package", IVR_SPEECH_PORT=str(free_port()),
                    IVR_SURVEY_QUESTIONS=str(TESTS / "survey_questions_ko.toml"))
    try:
        _member(ami, True)
        ami.agent_behaves(AGENT, ring="1", talk="3")
        number = "13900000145"
        _seed(served, number, language="ko")
        ami.forget_events()
        yes = phone_line("좋아요", sandbox.host_path("/tmp"), "ko", 150)
        # Key 2 for question 1 ("satisfied"), then "좋아요" (yes) said to question 2; question 3 gets silence.
        _call(ami, served, number, TO_SURVEY + "2WWW", post_wait="45", THEN_FILE=f"/tmp/{yes.stem}")
        _caller_gone(ami, number)
        call, (survey,), (contact,) = _rows(served, number)
        assert (survey.score, survey.buy_again, survey.recommend, survey.language) == (2, True, None, "ko")
        assert call.survey_score == 2 and contact.outcome in ("partial", "partial-hangup")
        assert contact.transcript in ("좋아요", "예", "네")  # what was said, as the recogniser heard it
    finally:
        _member(ami, False)
        ami.agent_behaves(AGENT)
        served.stop()


OUTBOUND = {"IVR_DIALING_TRUNK": "loop", "IVR_DIALING_CUSTOMER_RING_SECONDS": "10",
            "IVR_AMI_ORIGINATE_TIMEOUT": "10", "IVR_DIALING_MAX_ATTEMPTS_PER_DAY": "50"}


def test_after_a_click_to_call_the_customer_answers_once_the_agent_hangs_up(
        sandbox: Sandbox, ami: AMI, tmp_path: Path) -> None:
    """The agent hangs up first: the customer's leg (Dial's F option) runs the survey on its own channel."""
    served = _serve(tmp_path, "1", **OUTBOUND)
    number, agent = "13900000146", "1402"
    digits = f"86{number}"
    try:
        engine = make_engine(f"sqlite:///{served.database}")
        with Session(engine) as session:
            owner = Agent(code="1409", name="Owen")
            session.add_all([Agent(code=agent, name="Bo", device=f"Local/{agent}@test-agent"),
                             Customer(name="Wang Fang", language="zh", owner=owner,
                                      phones=[CustomerPhone(e164=f"+{digits}")])])
            session.commit()
            owner_id = owner.id
        engine.dispose()
        ami.agent_behaves(agent, ring="1", talk="8")  # from the agent's answer: whisper, ring, ~4 s of talk
        ami.set_global(f"TEST_CUSTOMER_{digits}", "answer")
        ami.set_global(f"TEST_CUSTOMER_{digits}_PRE_WAIT", "1")
        ami.set_global(f"TEST_CUSTOMER_{digits}_DIGITS", "W" * 10 + "4" + "WWW" + "2" + "WWW" + "2")
        ami.set_global(f"TEST_CUSTOMER_{digits}_POST_WAIT", "30")
        env = {**os.environ, **OUTBOUND, "IVR_AGI_PORT": str(served.port),
               "IVR_DATABASE_URL": f"sqlite:///{served.database}",
               "IVR_DATABASE_JOURNAL": str(served.journal)}
        placed = subprocess.run([sys.executable, "-m", "ivr.cli", "call", agent, f"+{digits}"], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=60, check=False)
        assert placed.returncode == 0, placed.stdout + placed.stderr
        engine = make_engine(f"sqlite:///{served.database}")
        deadline = time.monotonic() + 90
        try:
            while True:
                with Session(engine) as session:
                    survey = session.scalars(select(Survey)).first()
                    if survey is not None and survey.status == "complete":
                        rated = session.get(Contact, survey.rated_contact_id)
                        agent_id = session.scalars(select(Agent.id).where(Agent.code == agent)).one()
                        break
                assert time.monotonic() < deadline, served.output()[-3000:]
                time.sleep(0.3)
        finally:
            engine.dispose()
        assert rated is not None and (rated.kind, rated.direction, rated.survey_score) == (
            "click-to-call", "outbound", 4)
        assert (survey.score, survey.buy_again, survey.recommend) == (4, False, False)
        assert (survey.agent_id, survey.queue, survey.rated_kind, survey.language) == (
            agent_id, "", "click-to-call", "zh")
        (request,) = [json.loads(line) for line in (tmp_path / "followups.jsonl").read_text().splitlines()]
        assert (request["origin"], request["owner_agent_id"], request["contact_id"]) == (
            "survey", owner_id, rated.id)
    finally:
        ami.agent_behaves(agent)
        ami.set_global(f"TEST_CUSTOMER_{digits}_DIGITS", "")
        served.stop()
