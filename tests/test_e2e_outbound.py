"""Click-to-call through the real Asterisk: the agent's phone rings first, then the customer's.

Agents are Local channels in [test-agent]; customers are reached over real SIP
(the PJSIP ``loop`` trunk) and answer, are busy or do not answer as the test
sets in [test-customer]'s globals. Every call is checked in the contact
history with both legs' outcomes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from asterisk_harness import AMI, Sandbox
from conftest import ROOT, ServeProcess, free_port
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ivr.db import Contact, make_engine
from ivr.db.models import Agent

pytestmark = pytest.mark.asterisk

ENV = {"IVR_DIALING_TRUNK": "loop", "IVR_DIALING_CUSTOMER_RING_SECONDS": "4",
       "IVR_AMI_ORIGINATE_TIMEOUT": "4", "IVR_DIALING_MAX_ATTEMPTS_PER_DAY": "50"}


@pytest.fixture(scope="module")
def outbound_server(sandbox: Sandbox, ami: AMI) -> Iterator[ServeProcess]:
    ami.agent_behaves("1001")
    server = ServeProcess(free_port(), ENV)
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        session.add_all([Agent(code="1001", name="Ana", device="Local/1001@test-agent"),
                         Agent(code="1002", name="Bo", device="Local/1002@test-agent")])
        session.commit()
    engine.dispose()
    yield server
    server.stop()


@pytest.fixture
def history(outbound_server: ServeProcess) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{outbound_server.database}")
    yield engine
    engine.dispose()


def ivr_call(server: ServeProcess, agent: str, number: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV, "IVR_AGI_PORT": str(server.port),
           "IVR_DATABASE_URL": f"sqlite:///{server.database}", "IVR_DATABASE_JOURNAL": str(server.journal)}
    return subprocess.run([sys.executable, "-m", "ivr.cli", "call", agent, number], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def final_contact(engine: Engine, e164: str, timeout: float = 40) -> Contact:
    deadline = time.monotonic() + timeout
    while True:
        with Session(engine) as session:
            rows = session.scalars(select(Contact).where(Contact.caller_e164 == e164)).all()
            if len(rows) == 1 and rows[0].status == "final":
                session.expunge_all()
                return rows[0]
        assert len(rows) <= 1, f"{len(rows)} contacts for {e164}"
        assert time.monotonic() < deadline, f"no final contact for {e164}: {rows}"
        time.sleep(0.3)


def legs(contact: Contact) -> list[tuple[str, str]]:
    return [(step["kind"], step["value"]) for step in contact.ivr_path]


@pytest.mark.parametrize(("customer", "behaviour", "outcome"), [
    ("+8613800000101", "answer", "answered"),
    ("+8613800000102", "busy", "customer-busy"),
    ("+8613800000103", "noanswer", "customer-no-answer"),
])
def test_agent_answers_then_the_customer_is_dialled_over_sip(
        ami: AMI, outbound_server: ServeProcess, history: Engine, customer: str, behaviour: str,
        outcome: str) -> None:
    digits = customer.lstrip("+")
    ami.set_global(f"TEST_CUSTOMER_{digits}", behaviour)
    ami.set_global(f"TEST_CUSTOMER_{digits}_POST_WAIT", "1")
    result = ivr_call(outbound_server, "1001", customer)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "agent answered" in result.stdout
    agent_up = ami.wait_for(lambda e: e.get("UserEvent") == "TestAgentAnswered" and e.get("Agent") == "1001",
                            timeout=20)
    assert agent_up
    contact = final_contact(history, customer)
    assert (contact.kind, contact.direction, contact.outcome) == ("click-to-call", "outbound", outcome)
    assert legs(contact) == [("agent-leg", "answered"), ("dial", customer), ("customer-leg", outcome)]
    with Session(history) as session:  # the agent who took it is on the contact
        assert contact.agent_id == session.scalars(select(Agent.id).where(Agent.code == "1001")).one()
    assert contact.answered_at is not None and contact.queue_outcome == ""  # outbound: no queue
    if behaviour == "answer":
        answered = ami.wait_for(lambda e: e.get("UserEvent") == "TestCustomerAnswered"
                                and e.get("Number") == digits, timeout=5)
        assert answered["Channel"].startswith("PJSIP/loop-")  # the customer leg came over real SIP
        assert contact.talk_seconds is not None and contact.talk_seconds >= 1  # POST_WAIT=1 on the line
        assert contact.wait_seconds is not None
    else:
        assert contact.talk_seconds is None


def test_an_agent_who_does_not_answer_ends_the_call_before_any_customer_is_dialled(
        ami: AMI, outbound_server: ServeProcess, history: Engine) -> None:
    customer = "+8613800000104"
    ami.agent_behaves("1002", "noanswer")
    try:
        result = ivr_call(outbound_server, "1002", customer)
    finally:
        ami.agent_behaves("1002")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "agent-no-answer" in result.stdout
    contact = final_contact(history, customer)
    assert (contact.outcome, legs(contact)) == ("agent-no-answer", [("agent-leg", "agent-no-answer")])
    assert not [e for e in ami.events if e.get("UserEvent") == "TestCustomerAnswered"
                and e.get("Number") == customer.lstrip("+")]


@pytest.mark.parametrize("number", [
    "+882355500000", "+4490 5555 0123", "13800138000&SIP/evil", "+1 900 555 0199"])
def test_premium_foreign_or_hostile_numbers_are_refused_and_nothing_rings(
        outbound_server: ServeProcess, history: Engine, number: str) -> None:
    result = ivr_call(outbound_server, "1001", number)
    assert result.returncode == 3, result.stdout + result.stderr
    assert '"allowed": false' in result.stdout
    with Session(history) as session:
        assert session.scalars(select(Contact).where(Contact.kind == "click-to-call",
                                                     Contact.called_number.contains("900"))).all() == []
