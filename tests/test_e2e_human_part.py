"""The human part of real calls through the sandbox: who answered, wait, talk, abandon, restart.

A hotline caller (a known customer) presses 1 for sales; the sales queue's
member is the simulated agent phone Local/1001@test-agent. The contact must
end with what a supervisor asks: the customer, the agent, seconds waited and
talked, who hung up, or that the caller gave up waiting; and a restart of
ivr while the caller waits must not leave the contact open forever.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from asterisk_harness import AMI, Sandbox
from conftest import ServeProcess, free_port
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import Agent, Contact, Customer, CustomerPhone, make_engine

pytestmark = pytest.mark.asterisk

NUMBER = "13900000091"
INTERFACE = "Local/1001@test-agent"


def _seed(server: ServeProcess) -> tuple[int, int]:
    """Agent 1001 and a known customer calling from NUMBER; their ids."""
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        agent = Agent(code="1001", name="Ana", device=INTERFACE, skills=["sales"])
        customer = Customer(name="Wang Fang", language="zh", phones=[CustomerPhone(e164=f"+86{NUMBER}")])
        session.add_all([agent, customer])
        session.commit()
        ids = (agent.id, customer.id)
    engine.dispose()
    return ids


def _member(ami: AMI, present: bool) -> None:
    ami.manager.send_action({"Action": "QueueRemove", "Queue": "sales", "Interface": INTERFACE})
    if present:
        response = ami.manager.send_action({"Action": "QueueAdd", "Queue": "sales", "Interface": INTERFACE,
                                            "MemberName": "1001"})
        assert response.get_header("Response") == "Success", response.headers


def _contact(server: ServeProcess, until: tuple[str, ...], timeout: float = 30.0) -> Contact:
    """The caller's contact once its queue outcome is one of ``until`` (the recorder batches)."""
    engine = make_engine(f"sqlite:///{server.database}")
    deadline = time.monotonic() + timeout
    try:
        while True:
            with Session(engine) as session:
                contact = session.scalars(select(Contact).where(Contact.caller_number == NUMBER)).first()
                if contact is not None and contact.queue_outcome in until:
                    session.expunge(contact)
                    return contact
            assert time.monotonic() < deadline, (contact and contact.queue_outcome, server.output()[-3000:])
            time.sleep(0.2)
    finally:
        engine.dispose()


def _call(ami: AMI, server: ServeProcess, post_wait: str) -> None:
    """The customer calls the hotline, presses 1 (sales) and stays ``post_wait`` seconds."""
    ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",
                  {"IVR_AGI_PORT": str(server.port), "DIGITS": "1", "PRE_WAIT": "2", "POST_WAIT": post_wait},
                  caller_id=f'"Wang Fang" <{NUMBER}>')


@pytest.fixture
def server(sandbox: Sandbox, ami: AMI) -> Iterator[ServeProcess]:
    served = ServeProcess(free_port(), {"IVR_SERVER_INSTANCE": "human-part-test"})
    ami.forget_events()
    yield served
    _member(ami, present=False)
    ami.agent_behaves("1001")
    served.stop()


def test_an_answered_queue_call_has_its_customer_agent_wait_and_talk(server: ServeProcess, ami: AMI) -> None:
    agent_id, customer_id = _seed(server)
    ami.agent_behaves("1001", ring="3", talk="4")  # rings 3 s, talks 4 s, then the agent hangs up
    _member(ami, present=True)
    _call(ami, server, post_wait="30")
    completed = ami.wait_for(lambda e: e.get("Event") == "AgentComplete" and e.get("MemberName") == "1001",
                             timeout=60)
    contact = _contact(server, until=("answered",))
    assert (contact.customer_id, contact.agent_id, contact.queue, contact.hangup_by) == (
        customer_id, agent_id, "sales", "agent")
    assert contact.wait_seconds is not None and contact.wait_seconds >= 3  # at least the ringing
    assert contact.talk_seconds == float(completed["TalkTime"])  # app_queue's own count
    assert contact.talk_seconds >= 3
    assert contact.answered_at is not None and contact.duration_seconds is not None
    assert contact.duration_seconds >= contact.wait_seconds + contact.talk_seconds
    assert (contact.status, contact.outcome) == ("final", "completed")  # the IVR part as before


def test_a_caller_who_gives_up_waiting_abandoned(server: ServeProcess, ami: AMI) -> None:
    _seed(server)
    _member(ami, present=False)  # nobody to answer: the caller waits, then hangs up
    _call(ami, server, post_wait="12")
    abandon = ami.wait_for(lambda e: e.get("Event") == "QueueCallerAbandon", timeout=60)
    contact = _contact(server, until=("abandoned",))
    assert contact.agent_id is None and contact.talk_seconds is None
    assert contact.wait_seconds is not None and contact.wait_seconds >= float(abandon["HoldTime"])


def test_a_restart_while_the_caller_waits_still_ends_the_contact(
        server: ServeProcess, ami: AMI) -> None:
    _seed(server)
    _member(ami, present=False)
    _call(ami, server, post_wait="20")
    ami.wait_for(lambda e: e.get("Event") == "QueueCallerJoin" and e.get("CallerIDNum") == NUMBER, timeout=60)
    assert _contact(server, until=("waiting",)).queue == "sales"
    server.stop()  # the caller waits on while ivr restarts
    restarted = ServeProcess(free_port(), {"IVR_SERVER_INSTANCE": "human-part-test"},
                             keep_database=server.database)
    try:
        ami.wait_for(lambda e: e.get("Event") == "QueueCallerAbandon", timeout=60)
        contact = _contact(restarted, until=("abandoned",))
        assert contact.wait_seconds is not None and contact.wait_seconds >= 8
    finally:
        restarted.stop()


def test_a_caller_who_hangs_up_while_ivr_is_down_is_marked_lost(server: ServeProcess, ami: AMI) -> None:
    _seed(server)
    _member(ami, present=False)
    _call(ami, server, post_wait="12")  # joins the queue after the recording notice, then hangs up
    ami.wait_for(lambda e: e.get("Event") == "QueueCallerJoin" and e.get("CallerIDNum") == NUMBER, timeout=60)
    _contact(server, until=("waiting",))
    server.stop()
    ami.wait_for(lambda e: e.get("Event") == "QueueCallerAbandon", timeout=60)  # nobody listening
    restarted = ServeProcess(free_port(), {"IVR_SERVER_INSTANCE": "human-part-test"},
                             keep_database=server.database)
    try:
        contact = _contact(restarted, until=("lost",))
        assert contact.ended_at is not None  # the IVR part's end stays; the human part says lost
        assert "call(s) ended while no ivr was listening" in restarted.output()
    finally:
        restarted.stop()
