"""Click-to-call over HTTP and SMS-triggered callbacks, through ivr serve and the real Asterisk.

Agents are Local channels in [test-agent]; customers answer over the PJSIP
``loop`` trunk in [test-customer]. Callbacks are dialled by the dispatcher of
``ivr serve``: agent first, then the customer; the outcome goes to the
callback request and both legs to the contact history, where the SMS that
asked, its reply and the call are linked in the customer's timeline. Two instances on one
PostgreSQL dial each callback exactly once.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asterisk_harness import AMI, Sandbox
from conftest import TESTS, ServeProcess, free_port, postgres_sandbox
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ivr.db import Contact, Customer, CustomerPhone, make_engine
from ivr.db.models import Agent, FollowUp
from ivr.web.auth import hash_token
from ivr.web.sessions import SessionSigner
from ivr.web.signature import sign

pytestmark = pytest.mark.asterisk

SECRET = "e2e-sms-secret-0123456789abcdef"
ADMIN = "e2e-admin-key-0123456789abcdef"
TOKEN = "agent-1001-token-0123456789abcdefghij"
SESSION_SECRET = "e2e-session-secret-0123456789abcdef"


def server_env(http_port: int, **extra: str) -> dict[str, str]:
    return {"IVR_HTTP_ENABLED": "true", "IVR_HTTP_PORT": str(http_port), "IVR_HTTP_SMS_SECRET": SECRET,
            "IVR_HTTP_ADMIN_KEY": ADMIN, "IVR_DIALING_TRUNK": "loop",
            "IVR_DIALING_CUSTOMER_RING_SECONDS": "4",
            "IVR_AMI_ORIGINATE_TIMEOUT": "4", "IVR_DIALING_MAX_ATTEMPTS_PER_DAY": "50",
            "IVR_CALLBACKS_DISPATCH_INTERVAL": "0.5", "IVR_SMS_MIN_INTERVAL": "0", **extra}


def add_agents(engine: Engine, codes: list[str]) -> None:
    with Session(engine) as session:
        for code in codes:
            session.add(Agent(code=code, name=f"Agent {code}", device=f"Local/{code}@test-agent",
                              skills=["sales", "after-sales"],
                              api_token_hash=hash_token(TOKEN) if code == "1001" else None))
        session.commit()


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def click_to_call(port: int, payload: dict[str, Any], **auth: str) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if "token" in auth:
        headers["Authorization"] = f"Bearer {auth['token']}"
    if "admin" in auth:
        headers["X-IVR-Admin-Key"] = auth["admin"]
    return post(port, "/api/calls", json.dumps(payload).encode(), headers)


def text_in(port: int, sender: str, text: str, message_id: str) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"from": sender, "text": text, "message_id": message_id}).encode()
    stamp = int(time.time())
    return post(port, "/api/sms", body, {"Content-Type": "application/json", "X-IVR-Timestamp": str(stamp),
                                         "X-IVR-Signature": sign(SECRET, stamp, body)})


def wait_for(check: Any, timeout: float = 40, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def final_contacts(engine: Engine, e164: str) -> list[Contact]:
    """The calls with ``e164`` once all are final (its SMS are contacts too, but not calls)."""
    with Session(engine) as session:
        rows = list(session.scalars(select(Contact).where(Contact.caller_e164 == e164,
                                                          Contact.channel == "voice")))
        session.expunge_all()
    return rows if rows and all(r.status == "final" for r in rows) else []


@pytest.fixture(scope="module")
def served(sandbox: Sandbox, ami: AMI) -> Iterator[tuple[ServeProcess, int, Engine]]:
    for code in ("1001", "1002"):
        ami.agent_behaves(code)  # answer after 1 s, stay 30 s, whatever an earlier test set
    http_port = free_port()
    server = ServeProcess(free_port(), server_env(http_port, IVR_PLUGINS_FOLDER=str(TESTS / "e2e_callbacks"),
                                                  IVR_HTTP_SESSION_SECRET=SESSION_SECRET))
    engine = make_engine(f"sqlite:///{server.database}")
    add_agents(engine, ["1001", "1002"])
    yield server, http_port, engine
    engine.dispose()
    server.stop()


def test_click_to_call_needs_the_agents_token_or_the_admin_key(
        served: tuple[ServeProcess, int, Engine]) -> None:
    _, port, _ = served
    payload = {"agent": "1001", "number": "+8613800000301"}
    assert click_to_call(port, payload)[0] == 401
    assert click_to_call(port, payload, token="wrong-token")[0] == 401
    assert click_to_call(port, {**payload, "agent": "1002"}, token=TOKEN)[0] == 401  # not 1002's token
    status, body = click_to_call(port, {**payload, "number": "+1 900 555 0199"}, admin=ADMIN)
    assert status == 403 and body["decision"]["reason"] == "destination-not-allowed"


def test_click_to_call_rings_the_agent_then_the_customer_and_a_second_agent_gets_409(
        ami: AMI, served: tuple[ServeProcess, int, Engine]) -> None:
    _, port, engine = served
    customer = "+8613800000302"
    ami.set_global("TEST_CUSTOMER_8613800000302_POST_WAIT", "4")
    status, body = click_to_call(port, {"agent": "1001", "number": "138 0000 0302"}, token=TOKEN)
    assert status == 202 and body["number"] == customer and body["agent"] == "1001"
    ami.wait_for(lambda e: e.get("UserEvent") == "TestCustomerAnswered" and e.get("Number") == customer[1:])
    status, body = click_to_call(port, {"agent": "1002", "number": customer}, admin=ADMIN)
    assert status == 409 and body["decision"]["agent"] == "1001"
    contact = wait_for(lambda: final_contacts(engine, customer), what="the click-to-call contact")[0]
    assert (contact.kind, contact.outcome) == ("click-to-call", "answered")
    with Session(engine) as session:  # the agent who placed it is on the contact
        assert session.get(Agent, contact.agent_id).code == "1001"  # type: ignore[union-attr]
    assert [(s["kind"], s["value"]) for s in contact.ivr_path][-1] == ("customer-leg", "answered")
    status, _ = click_to_call(port, {"agent": "1002", "number": customer}, admin=ADMIN)
    assert status == 202  # the first call is over: the customer is free again


def test_an_sms_makes_one_callback_that_an_agent_and_the_customer_get(
        ami: AMI, served: tuple[ServeProcess, int, Engine]) -> None:
    _, port, engine = served
    customer = "+8613800000303"
    ami.set_global("TEST_CUSTOMER_8613800000303_POST_WAIT", "2")
    answers = [text_in(port, customer, "2 my washing machine leaks", "sms-e2e-1") for _ in range(3)]
    assert [status for status, _ in answers] == [200, 200, 200]
    ami.wait_for(lambda e: e.get("UserEvent") == "TestCustomerAnswered" and e.get("Number") == customer[1:])

    def done() -> list[FollowUp]:
        with Session(engine) as session:
            rows = list(session.scalars(select(FollowUp).where(FollowUp.e164 == customer)))
        return rows if rows and rows[0].state == "done" else []

    requests = wait_for(done, what="the callback to be done")
    assert len(requests) == 1
    assert (requests[0].skill, requests[0].last_outcome) == ("after-sales", "answered")
    contact = wait_for(lambda: final_contacts(engine, customer), what="the callback's contact")
    assert len(contact) == 1 and (contact[0].kind, contact[0].outcome) == ("callback", "answered")


def test_an_sms_triggered_callback_links_the_sms_the_request_and_the_call_in_the_customers_timeline(
        ami: AMI, served: tuple[ServeProcess, int, Engine]) -> None:
    _, port, engine = served
    customer = "+8613800000306"
    with Session(engine) as session:
        row = Customer(name="Chain customer", external_id="C-306", phones=[CustomerPhone(e164=customer)])
        session.add(row)
        session.commit()
        customer_id = row.id
    ami.set_global("TEST_CUSTOMER_8613800000306_POST_WAIT", "2")
    assert text_in(port, customer, "2 the fridge is warm", "sms-e2e-chain")[0] == 200
    assert text_in(port, customer, "2 the fridge is warm", "sms-e2e-chain")[0] == 200  # redelivered

    def done() -> FollowUp | None:
        with Session(engine) as session:
            row = session.scalars(select(FollowUp).where(FollowUp.e164 == customer)).first()
        return row if row is not None and row.state == "done" else None

    request = wait_for(done, what="the callback to be done")
    (call,) = wait_for(lambda: final_contacts(engine, customer), what="the callback's contact")
    assert (request.customer_id, request.contact_id) == (customer_id, call.id)  # the request -> its call
    assert (call.kind, call.outcome, call.followup_id, call.customer_id) == (
        "callback", "answered", request.id, customer_id)  # the call -> the request, and its customer
    with Session(engine) as session:
        assert session.get(Agent, call.agent_id).code in ("1001", "1002")  # type: ignore[union-attr]
    cookie, _ = SessionSigner(SESSION_SECRET).make("1002")  # any agent reads any customer's timeline
    status, body = get_json(port, f"/agent/api/timeline?customer={customer_id}", cookie)
    assert status == 200 and body["subject"]["customer"]["external_id"] == "C-306"
    contacts = body["contacts"]  # newest first: the call, the SMS reply, the SMS that asked
    assert [(c["channel"], c["direction"], c["kind"]) for c in contacts] == [
        ("voice", "outbound", "callback"), ("sms", "outbound", "sms"), ("sms", "inbound", "sms")]
    assert [c["followup_id"] for c in contacts] == [request.id, None, request.id]
    assert contacts[2]["transcript"] == "2 the fridge is warm" and contacts[2]["outcome"] == "callback"
    assert contacts[1]["transcript"].startswith("Thank you, we will call you back by")
    assert contacts[0]["agent"] in ("1001", "1002") and contacts[0]["outcome"] == "answered"
    assert body["total"] == 3
    assert get_json(port, f"/agent/api/timeline?customer={customer_id}", "")[0] == 401  # no session


def get_json(port: int, path: str, cookie: str) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={"Cookie": f"ivr_agent={cookie}"} if cookie else {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_busy_customer_is_retried_later_with_the_attempt_counted(
        ami: AMI, served: tuple[ServeProcess, int, Engine]) -> None:
    _, port, engine = served
    customer = "+8613800000304"
    ami.set_global("TEST_CUSTOMER_8613800000304", "busy")
    assert text_in(port, customer, "1", "sms-e2e-2")[0] == 200

    def retried() -> FollowUp | None:
        with Session(engine) as session:
            row = session.scalars(select(FollowUp).where(FollowUp.e164 == customer)).first()
        return row if row is not None and row.attempts == 1 else None

    request = wait_for(retried, what="the first attempt")
    assert (request.state, request.last_outcome) == ("open", "busy")
    contact = wait_for(lambda: final_contacts(engine, customer), what="the busy attempt's contact")
    assert contact[0].outcome == "customer-busy"


def test_a_caller_who_presses_for_a_call_back_is_called_back(
        ami: AMI, served: tuple[ServeProcess, int, Engine]) -> None:
    server, _, engine = served
    number = "13800000305"
    ami.set_global(f"TEST_CUSTOMER_86{number}_POST_WAIT", "2")
    ami.originate("Local/cb-hotline@test-route", "test-caller", "dtmf",
                  {"IVR_AGI_PORT": str(server.port), "DIGITS": "1", "PRE_WAIT": "1", "POST_WAIT": "15"},
                  caller_id=f'"Waiting caller" <{number}>')

    def called_back() -> list[FollowUp]:
        with Session(engine) as session:
            query = select(FollowUp).where(FollowUp.e164 == f"+86{number}")
            rows = list(session.scalars(query))
        return rows if rows and rows[0].state == "done" else []

    request = wait_for(called_back, timeout=60, what="the IVR callback to be done")[0]
    assert (request.origin, request.skill) == ("ivr", "after-sales")
    contacts = wait_for(lambda: final_contacts(engine, f"+86{number}"), what="both contacts")
    assert sorted((c.kind, c.outcome) for c in contacts) == [
        ("callback", "answered"), ("hotline", "completed")]  # the IVR confirmed, then ended the first call


@pytest.mark.postgres
def test_two_instances_on_one_postgresql_dial_each_callback_exactly_once(
        ami: AMI, sandbox: Sandbox, postgres_url: str) -> None:
    database = postgres_url.rsplit("/", 1)[1]
    assert postgres_sandbox("reset", database).returncode == 0
    ports = [free_port(), free_port()]
    for index in range(6):
        ami.agent_behaves(f"20{index:02d}")
    servers = [ServeProcess(free_port(), server_env(port, IVR_DATABASE_URL=postgres_url,
                                                    IVR_SERVER_INSTANCE=f"ivr-{index}"))
               for index, port in enumerate(ports)]
    engine = make_engine(postgres_url)
    try:
        add_agents(engine, [f"20{index:02d}" for index in range(6)])
        customers = [f"+86138000004{index:02d}" for index in range(8)]
        for index, customer in enumerate(customers):
            ami.set_global(f"TEST_CUSTOMER_{customer[1:]}_POST_WAIT", "1")
            # SMS arrive at either instance
            assert text_in(ports[index % 2], customer, "1", f"sms-pg-{index}")[0] == 200

        def all_done() -> bool:
            with Session(engine) as session:
                statuses = list(session.scalars(select(FollowUp.state)))
            return len(statuses) == len(customers) and set(statuses) == {"done"}

        wait_for(all_done, timeout=120, what="every callback to be done")
        with Session(engine) as session:
            per_number = dict(session.execute(
                select(Contact.caller_e164, func.count()).where(Contact.kind == "callback")
                .group_by(Contact.caller_e164)).all())
            handled = set(session.scalars(select(Contact.handled_by).where(Contact.kind == "callback")))
        assert per_number == {customer: 1 for customer in customers}  # each dialled exactly once
        assert handled <= {"ivr-0", "ivr-1"}  # which instance takes which is up to the race
    finally:
        for server in servers:
            server.stop()
        engine.dispose()


def own(engine: Engine, number: str, owner: str, name: str) -> int:
    """A customer with ``number`` whose account owner is agent ``owner``; their id."""
    with Session(engine) as session:
        owner_id = session.scalar(select(Agent.id).where(Agent.code == owner))
        row = Customer(name=name, owner_agent_id=owner_id, phones=[CustomerPhone(e164=number)])
        session.add(row)
        session.commit()
        return row.id


def test_another_agents_click_to_call_to_an_owned_customer_gets_409_naming_the_owner(
        ami: AMI, served: tuple[ServeProcess, int, Engine]) -> None:
    _, port, engine = served
    customer = "+8613800000307"
    own(engine, customer, "1001", "Owned by 1001")
    cookie, session = SessionSigner(SESSION_SECRET).make("1002")
    status, body = post(port, "/api/calls", json.dumps({"agent": "1002", "number": customer}).encode(),
                        {"Content-Type": "application/json", "Cookie": f"ivr_agent={cookie}",
                         "X-CSRF-Token": session.csrf})
    assert (status, body["owner"]) == (409, "1001") and "1001" in body["error"]
    with Session(engine) as db:
        assert db.scalar(select(func.count()).select_from(Contact)
                         .where(Contact.caller_e164 == customer)) == 0
    ami.set_global("TEST_CUSTOMER_8613800000307_POST_WAIT", "2")
    status, body = click_to_call(port, {"agent": "1001", "number": customer}, token=TOKEN)  # the owner may
    assert status == 202 and body["agent"] == "1001"
    wait_for(lambda: final_contacts(engine, customer), what="the owner's call")


def test_a_callback_rings_the_owner_first_then_a_pool_agent_after_the_owners_head_start(
        ami: AMI, sandbox: Sandbox) -> None:
    ami.agent_behaves("3001", action="noanswer")  # the owner is away from the desk, not marked away
    ami.agent_behaves("3002")
    http_port = free_port()
    server = ServeProcess(free_port(), server_env(http_port, IVR_FOLLOWUPS_OWNER_WINDOW="3",
                                                  IVR_CALLBACKS_AGENT_RETRY_DELAY="1"))
    engine = make_engine(f"sqlite:///{server.database}")
    try:
        add_agents(engine, ["3001", "3002"])
        customer = "+8613800000308"
        own(engine, customer, "3001", "Owned by 3001")
        ami.set_global("TEST_CUSTOMER_8613800000308_POST_WAIT", "2")
        assert text_in(http_port, customer, "1 call me", "sms-owner-1")[0] == 200

        def done() -> FollowUp | None:
            with Session(engine) as session:
                row = session.scalars(select(FollowUp).where(FollowUp.e164 == customer)).first()
            return row if row is not None and row.state == "done" else None

        followup = wait_for(done, timeout=60, what="the callback to be done")
        calls = wait_for(lambda: final_contacts(engine, customer), what="both attempts' contacts")
        with Session(engine) as session:
            codes = {a.id: a.code for a in session.scalars(select(Agent))}
        attempts = sorted(calls, key=lambda c: c.started_at)
        assert [(codes.get(c.agent_id or 0), c.outcome) for c in attempts] == [
            ("3001", "agent-no-answer"), ("3002", "answered")]
        assert (followup.owner_agent_id and codes[followup.owner_agent_id]) == "3001"
        assert followup.contact_id == attempts[1].id and followup.attempts == 1  # the owner's try used none
    finally:
        engine.dispose()
        server.stop()
        ami.agent_behaves("3001")
