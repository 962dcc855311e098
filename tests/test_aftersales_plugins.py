"""The survey's recovery and the complaints service as plugins: what they ask of the follow-up hook.

Real database (SQLite), real threads, a real pluggy manager with a stand-in
follow-up service that records each request; business hours with nights, a
lunch break and a weekend, so "within 2 business hours" is not just now + 2 h.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pluggy
from sqlalchemy import select
from sqlalchemy.orm import Session
from twisted.internet import defer, reactor
from twisted.trial import unittest

from ivr.complaints.plugin import Complaints, has_keyword
from ivr.config import ComplaintSettings, SurveySettings
from ivr.db import Agent, Contact, Customer, CustomerPhone, make_engine, upgrade
from ivr.db.models import ComplaintCase
from ivr.plugins import hookspecs
from ivr.plugins.hookspecs import hookimpl
from ivr.plugins.requests import Disposition, FollowUpRequest
from ivr.routing.hours import BusinessHours
from ivr.survey.plugin import SurveyPlugin
from ivr.survey.questions import BUILTIN_QUESTIONS
from ivr.survey.store import rated_call

#: Friday 17:30 in Shanghai: 30 minutes before closing, then the weekend.
FRIDAY_1730 = dt.datetime(2026, 11, 27, 9, 30, tzinfo=dt.UTC)
#: Monday 10:30 in Shanghai: 2 business hours after Friday 17:30 (30 min Friday, 90 min Monday from 09:00).
MONDAY_1030 = dt.datetime(2026, 11, 30, 2, 30, tzinfo=dt.UTC)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
HOURS = BusinessHours.parse("Asia/Shanghai", {d: "09:00-12:00 13:00-18:00" for d in WEEKDAYS}, [], "test")


class FollowUps:
    """The stand-in follow-up service: keeps every request, answers with an id."""

    def __init__(self) -> None:
        self.requests: list[FollowUpRequest] = []

    @hookimpl
    def ivr_open_followup(self, request: FollowUpRequest) -> int:
        self.requests.append(request)
        return 700 + len(self.requests)


class AfterSalesTests(unittest.TestCase):
    def setUp(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="ivr-aftersales-"))
        self.addCleanup(shutil.rmtree, folder, True)
        self.engine = make_engine(f"sqlite:///{folder / 'ivr.db'}")
        upgrade(self.engine)
        self.addCleanup(self.engine.dispose)
        self.pm = pluggy.PluginManager("ivr")
        self.pm.add_hookspecs(hookspecs)
        self.followups = FollowUps()
        self.pm.register(self.followups)
        with Session(self.engine) as session:
            agent, owner = Agent(code="1001"), Agent(code="1009")
            owned = Customer(name="Owned", owner=owner, phones=[CustomerPhone(e164="+8613800000001")])
            orphan = Customer(name="Orphan", phones=[CustomerPhone(e164="+8613800000002")])
            session.add_all([agent, owned, orphan])
            session.flush()
            for n, customer in enumerate((owned, orphan), 1):
                session.add(Contact(uniqueid=f"call.{n}", caller_e164=f"+861380000000{n}",
                                    customer_id=customer.id, agent_id=agent.id, queue="sales"))
            session.commit()
            self.owner = owner.id

    def survey(self) -> SurveyPlugin:
        return SurveyPlugin(self.engine, SurveySettings(), BUILTIN_QUESTIONS, HOURS, self.pm.hook, reactor,
                            "test", 3, now=lambda: FRIDAY_1730)

    @defer.inlineCallbacks
    def test_a_poor_score_asks_the_owner_or_a_supervisor_within_2_business_hours(self) -> Any:
        plugin = self.survey()
        for uniqueid in ("call.1", "call.2"):
            rated = rated_call(self.engine, uniqueid)
            assert rated is not None
            yield defer.Deferred.fromCoroutine(plugin._open_followup(rated, 1, 5))
        owned, orphan = self.followups.requests
        assert (owned.origin, owned.owner_agent_id, owned.due_at, owned.key) == (
            "survey", self.owner, MONDAY_1030, "survey:1")
        assert orphan.owner_agent_id is None  # no account owner: a supervisor picks someone
        assert "very dissatisfied" in owned.reason

    @defer.inlineCallbacks
    def test_an_agents_complaint_disposition_opens_a_case_and_its_follow_up(self) -> Any:
        service = Complaints(self.engine, ComplaintSettings(), HOURS, self.pm.hook, reactor, "CN",
                             now=lambda: FRIDAY_1730)
        with Session(self.engine) as session:
            contact = session.scalars(select(Contact).where(Contact.uniqueid == "call.1")).one()
        disposed = Disposition("call.1", contact.id, "1001", "complaint", note="wants a refund; angry")
        service.ivr_contact_disposed(disposed)
        service.ivr_contact_disposed(disposed)  # the page sent it twice: one case
        service.ivr_contact_disposed(Disposition("call.2", None, "1001", "resolved"))  # not a complaint
        yield defer.DeferredList(list(service.pending))
        with Session(self.engine) as session:
            (case,) = session.scalars(select(ComplaintCase)).all()
        assert (case.origin, case.source_contact_id, case.e164, case.owner_agent_id, case.text) == (
            "disposition", contact.id, "+8613800000001", self.owner, "wants a refund; angry")
        assert case.response_due_at.replace(tzinfo=dt.UTC) == MONDAY_1030
        (request,) = self.followups.requests
        assert (request.origin, request.skill, request.due_at, request.priority, case.followup_id) == (
            "complaint", "complaints", MONDAY_1030, 10, 701)


def test_sms_keywords_match_in_any_case_and_width() -> None:
    words = ComplaintSettings().sms_keywords
    assert has_keyword("我要投诉！", words) and has_keyword("COMPLAINT: broken", words)
    assert has_keyword("ｃｏｍｐｌａｉｎｔ", words)  # full-width letters
    assert not has_keyword("2 please call", words) and not has_keyword("", words)
