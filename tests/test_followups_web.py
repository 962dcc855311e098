"""Follow-ups over HTTP through a real ``ivr serve``: web leads, "my follow-ups", closing one, what an agent
may change on a customer; who may see and do what on every request."""

from __future__ import annotations

import datetime as dt
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ServeProcess, free_port
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ivr.db import Customer, CustomerPhone, make_engine
from ivr.db.models import Agent, CustomerChange, FollowUp, SmsOutbox
from ivr.db.sql import utc
from ivr.web.sessions import SessionSigner

ADMIN = "admin-key-0123456789abcdef0123456789"
SESSIONS = "session-secret-0123456789abcdef0123"
ALWAYS_OPEN = "00:00-24:00"


class Api:
    def __init__(self, port: int) -> None:
        self.port = port
        self.signer = SessionSigner(SESSIONS)

    def request(self, method: str, path: str, body: object = None, agent: str | None = None,
                admin: bool = False, csrf: bool = True) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if admin:
            headers["X-IVR-Admin-Key"] = ADMIN
        if agent is not None:
            cookie, session = self.signer.make(agent)
            headers["Cookie"] = f"ivr_agent={cookie}"
            if csrf:
                headers["X-CSRF-Token"] = session.csrf
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, json.dumps(body).encode() if body is not None else b"", headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Api, Engine]]:
    http_port = free_port()
    server = ServeProcess(free_port(), {
        "IVR_HTTP_ENABLED": "true", "IVR_HTTP_PORT": str(http_port), "IVR_HTTP_ADMIN_KEY": ADMIN,
        "IVR_HTTP_SESSION_SECRET": SESSIONS, "IVR_AMI_ENABLED": "false",
        "IVR_HOURS_TIMEZONE": "Asia/Shanghai",
        "IVR_HOURS_WEEKLY": ",".join(f"{day}={ALWAYS_OPEN}" for day in ("mon", "tue", "wed", "thu", "fri",
                                                                         "sat", "sun"))})
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        owner = Agent(code="1001", name="Owner")
        session.add_all([owner, Agent(code="2001"), Agent(code="9001", role="supervisor")])
        session.flush()
        session.add_all([Customer(name="Wang", owner_agent_id=owner.id,
                                  phones=[CustomerPhone(e164="+8613800138000")]),
                         Customer(name="Texter", preferred_channel="sms",
                                  phones=[CustomerPhone(e164="+8613800138009")]),
                         Customer(name="Stopped", preferred_channel="sms", do_not_call=True,
                                  phones=[CustomerPhone(e164="+8613800138008")])])
        session.commit()
    yield Api(http_port), engine
    engine.dispose()
    assert server.stop() == 0


def test_a_web_lead_is_due_within_two_business_hours_once_and_goes_to_its_owner(served: tuple[Api, Engine]
                                                                                ) -> None:
    api, engine = served
    lead = {"phone": "138 0013 8000", "name": "ignored: known", "note": "wants a quote", "lead_id": "web-1"}
    assert api.request("POST", "/api/leads", lead)[0] == 401
    assert api.request("POST", "/api/leads", {**lead, "phone": "call me"}, admin=True)[0] == 400
    assert api.request("POST", "/api/leads", {**lead, "note": 7}, admin=True)[0] == 400
    status, made = api.request("POST", "/api/leads", lead, admin=True)
    assert status == 201 and len(made["planned"]) == 4  # 48 h, 7, 30 and 90 days come after
    again = api.request("POST", "/api/leads", lead, admin=True)
    assert again == (200, made)  # the same lead posted twice is one follow-up
    with Session(engine) as session:
        row = session.get(FollowUp, made["followup_id"])
        assert row is not None
        owner = session.scalar(select(Agent.code).where(Agent.id == row.owner_agent_id))
        assert (row.origin, row.text, owner, row.customer_id) == ("lead", "wants a quote", "1001",
                                                                   made["customer_id"])
        assert utc(row.due_at) - utc(row.created_at) == dt.timedelta(hours=2)  # the desk is always open

    assert any(f["id"] == made["followup_id"] for f in api.request("GET", "/api/followups", agent="1001")[1]
               ["followups"])
    assert api.request("GET", "/api/followups", agent="2001")[1]["followups"] == []  # not theirs
    assert api.request("GET", "/api/followups")[0] == 401
    assert api.request("GET", "/api/followups?which=overdue", agent="2001")[0] == 403
    assert api.request("GET", "/api/followups?which=overdue", agent="9001")[0] == 200

    assert api.request("POST", "/api/followups", {"close": made["followup_id"]}, agent="2001")[0] == 404
    assert api.request("POST", "/api/followups", {"close": made["followup_id"]}, agent="1001",
                       csrf=False)[0] == 403
    assert api.request("POST", "/api/followups", {"close": made["followup_id"]}, agent="1001") == (
        200, {"closed": made["followup_id"], "by": "1001"})
    assert api.request("POST", "/api/followups", {"close": made["followup_id"]}, agent="1001")[0] == 409


def test_a_new_lead_makes_a_customer_and_one_who_prefers_sms_is_told_when(served: tuple[Api, Engine]) -> None:
    api, engine = served
    status, made = api.request("POST", "/api/leads", {"phone": "+86 139 0013 9000", "name": "New Li"},
                               admin=True)
    assert status == 201
    with Session(engine) as session:
        customer = session.get(Customer, made["customer_id"])
        assert customer is not None and customer.name == "New Li"
        assert [p.e164 for p in customer.phones] == ["+8613900139000"]
    status, made = api.request("POST", "/api/leads", {"phone": "13800138009"}, admin=True)
    assert status == 201
    with Session(engine) as session:
        texts = session.scalars(select(SmsOutbox.text).where(SmsOutbox.to_number == "+8613800138009")).all()
    assert len(texts) == 1 and texts[0].startswith("Thank you, we will call you back by ")
    assert api.request("POST", "/api/leads", {"phone": "13800138008"}, admin=True)[0] == 201
    with Session(engine) as session:  # who must not be contacted gets no SMS of ours either
        assert session.scalars(select(SmsOutbox).where(SmsOutbox.to_number == "+8613800138008")).all() == []


def test_an_agent_sets_the_preferred_channel_and_do_not_call_only_a_supervisor_clears_it(
        served: tuple[Api, Engine]) -> None:
    api, engine = served
    with Session(engine) as session:
        wang = session.scalar(select(Customer.id).where(Customer.name == "Wang"))
    assert api.request("POST", "/agent/customer", {"customer": wang, "preferred_channel": "sms"},
                       agent="2001", csrf=False)[0] == 403
    assert api.request("POST", "/agent/customer", {"customer": wang, "preferred_channel": "fax"},
                       agent="2001")[0] == 400
    status, state = api.request("POST", "/agent/customer", {"customer": wang, "preferred_channel": "sms"},
                                agent="2001")
    assert (status, state["preferred_channel"]) == (200, "sms")
    assert api.request("POST", "/agent/customer", {"customer": wang, "do_not_call": True},
                       agent="2001")[0] == 400
    status, state = api.request("POST", "/agent/customer", {"customer": wang, "do_not_call": True,
                                                            "reason": "asked on the phone"}, agent="2001")
    assert status == 200 and state["do_not_call"] and state["do_not_call_reason"].startswith(
        "asked on the phone (agent 2001, ")
    assert api.request("POST", "/agent/customer", {"customer": wang, "do_not_call": False},
                       agent="2001")[0] == 403
    assert api.request("POST", "/agent/customer", {"customer": wang, "do_not_call": False},
                       agent="9001")[1]["do_not_call"] is False
    status, state = api.request("POST", "/agent/customer",
                                {"customer": wang, "no_contact_before": "2026-12-01"}, agent="2001")
    assert (status, state["no_contact_before"]) == (200, "2026-11-30T16:00:00+00:00")  # Shanghai midnight
    assert api.request("POST", "/agent/customer", {"customer": wang, "no_contact_before": None},
                       agent="2001")[0] == 403  # only a supervisor lifts it
    assert api.request("POST", "/agent/customer", {"customer": 99999, "preferred_channel": "sms"},
                       agent="2001")[0] == 404
    with Session(engine) as session:  # the audit trail: who changed what, from what, and why
        changes = [(c.agent, c.field, c.old, c.new, c.reason) for c in session.scalars(
            select(CustomerChange).where(CustomerChange.customer_id == wang).order_by(CustomerChange.id))]
    assert changes == [("2001", "preferred_channel", "voice", "sms", ""),
                       ("2001", "do_not_call", "false", "true", "asked on the phone"),
                       ("9001", "do_not_call", "true", "false", ""),
                       ("2001", "no_contact_before", "", "2026-11-30T16:00:00+00:00", "")]
