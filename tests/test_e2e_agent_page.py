"""The agent's page in a real headless Chromium (Playwright, Debian's /usr/bin/chromium).

A real call through the sandbox walks the hotline menu into the sales queue,
whose member is a simulated agent phone (Local/1001@test-agent). When
Asterisk rings it, the card appears on agent 1001's page with the customer,
the IVR path and the keys; it follows the call (ringing, answered, ended);
the disposition is saved to the contact. A hostile caller name shows as
text, another agent's page stays empty, and a forged session gets nothing.
"""

from __future__ import annotations

import datetime as dt
import http.client
import re
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from asterisk_harness import AMI, Sandbox
from conftest import ServeProcess, free_port
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import Contact, Customer, CustomerPhone, make_engine
from ivr.db.models import Agent, FollowUp
from ivr.db.sql import utc
from ivr.web.auth import hash_token

pytestmark = pytest.mark.asterisk

TOKENS = {"1001": "token-of-agent-1001-0123456789abcdef", "1002": "token-of-agent-1002-0123456789abcdef"}
HOSTILE = "<script>alert(1)</script> O'Brien \"&amp;\" 李"
NUMBER = "13900000077"
OWNED = "13900000078"  # a customer whose account owner (agent 1002, phone from the agents table) rings first


@pytest.fixture(scope="module")
def agent_server(sandbox: Sandbox, ami: AMI) -> Iterator[tuple[ServeProcess, int]]:
    http_port = free_port()
    server = ServeProcess(free_port(), {
        "IVR_HTTP_ENABLED": "true", "IVR_HTTP_PORT": str(http_port),
        "IVR_HTTP_SESSION_SECRET": "agent-page-session-secret-0123456789",
        "IVR_HTTP_ADMIN_KEY": "agent-page-admin-key-0123456789", "IVR_DIALING_TRUNK": "loop"})
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        for code, token in TOKENS.items():
            session.add(Agent(code=code, name=f"Agent {code}", device=f"Local/{code}@test-agent",
                              skills=["sales"], api_token_hash=hash_token(token)))
        session.add(Customer(name=HOSTILE, language="zh", vip_tier="vip",
                             phones=[CustomerPhone(e164=f"+86{NUMBER}")]))
        session.flush()
        owner = session.scalars(select(Agent).where(Agent.code == "1002")).one()
        session.add(Customer(name="Owned customer", language="zh", owner_agent_id=owner.id,
                             phones=[CustomerPhone(e164=f"+86{OWNED}")]))
        session.commit()
    engine.dispose()
    ami.agent_behaves("1001", ring="3", talk="4")  # rings for 3 s, then talks for 4
    ami.manager.send_action({"Action": "QueueRemove", "Queue": "sales", "Interface": "Local/1001@test-agent"})
    response = ami.manager.send_action({"Action": "QueueAdd", "Queue": "sales",
                                        "Interface": "Local/1001@test-agent", "MemberName": "1001"})
    assert response.get_header("Response") == "Success", response.headers
    yield server, http_port
    ami.manager.send_action({"Action": "QueueRemove", "Queue": "sales", "Interface": "Local/1001@test-agent"})
    ami.agent_behaves("1001")
    server.stop()



def log_in(browser: Browser, port: int, agent: str) -> Page:
    page = browser.new_context().new_page()
    page.goto(f"http://127.0.0.1:{port}/agent")
    page.fill("input[name=agent]", agent)
    page.fill("input[name=token]", TOKENS[agent])
    page.click("button[type=submit]")
    expect(page.locator("#link")).to_have_text("live", timeout=10_000)
    return page


def test_a_real_call_pops_its_card_follows_the_call_and_saves_the_disposition(
        ami: AMI, agent_server: tuple[ServeProcess, int], browser: Browser, tmp_path: Path) -> None:
    server, port = agent_server
    ana, bo = log_in(browser, port, "1001"), log_in(browser, port, "1002")
    ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",
                  {"IVR_AGI_PORT": str(server.port), "DIGITS": "1", "PRE_WAIT": "2", "POST_WAIT": "20"},
                  caller_id=f'"Caller" <{NUMBER}>')
    rang = ami.wait_for(lambda e: e.get("Event") == "AgentCalled" and e.get("MemberName") == "1001",
                        timeout=40)
    expect(ana.locator("#state")).to_have_text("ringing", timeout=5_000)
    shown = time.time()
    print(f"card shown {(shown - float(rang['Timestamp'])) * 1000:.0f} ms after AgentCalled "
          "(includes Playwright's polling)")
    expect(ana.locator("#customer")).to_have_text(HOSTILE)  # literally: the markup is text, not HTML
    assert ana.locator("script").count() == 1  # nothing the caller sent became a script
    expect(ana.locator("#tier")).to_have_text("vip")
    expect(ana.locator("#language")).to_have_text("zh")
    expect(ana.locator("#path")).to_have_text("main:1")
    expect(ana.locator("#dtmf")).to_have_text("1")
    expect(ana.locator("#wait")).to_contain_text("s since arrival")
    ana.screenshot(path=str(tmp_path / "agent-page.png"), full_page=True)  # docs/agent-page.png is one
    expect(ana.locator("#state")).to_have_text("answered", timeout=10_000)
    ana.reload()  # a dropped connection: the page comes back with the call on it
    expect(ana.locator("#customer")).to_have_text(HOSTILE, timeout=5_000)
    expect(ana.locator("#state")).to_have_text("ended", timeout=20_000)
    expect(bo.locator("#empty")).to_be_visible()  # agent 1002 never saw 1001's call
    ana.select_option("#outcome", "follow-up")
    ana.fill("#note", "Wants a technician on Friday. <b>not bold</b>")
    ana.fill("#follow-up-at", "2031-05-09T10:30")  # a Friday, desk time (the default zone: Asia/Shanghai)
    ana.click("#disposition button[type=submit]")
    expect(ana.locator("#saved")).to_have_text("saved", timeout=5_000)
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        contact = session.scalars(select(Contact).where(Contact.caller_number == NUMBER)).one()
        assert contact.disposition == "follow-up"
        assert contact.notes == "Wants a technician on Friday. <b>not bold</b>"
        planned = session.scalars(select(FollowUp).where(FollowUp.source_contact_id == contact.id)).one()
        owner = session.get(Agent, planned.owner_agent_id)
        assert (planned.origin, planned.e164, owner and owner.code) == ("disposition", f"+86{NUMBER}", "1001")
        assert utc(planned.next_attempt_at) == dt.datetime(2031, 5, 9, 10, 30,
                                                           tzinfo=ZoneInfo("Asia/Shanghai"))
    engine.dispose()
    mine = ana.locator(f"#followup-list li[data-id='{planned.id}']")  # on agent 1001's list, not yet due
    expect(mine).to_contain_text(f"+86{NUMBER}", timeout=5_000)
    expect(mine).to_contain_text("disposition")
    expect(mine).not_to_have_class(re.compile("overdue"))
    expect(bo.locator("#followup-list li")).to_have_count(0)
    metrics = fetch(port, "/metrics")
    counted = dict(re.findall(r"^(ivr_screenpop_cards_\w+_total) (\S+)$", metrics, re.M))
    assert float(counted["ivr_screenpop_cards_delivered_total"]) >= 3  # ringing, answered, ended: each acked
    assert float(counted["ivr_screenpop_cards_undelivered_total"]) == 0


def fetch(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        connection.close()


def test_the_account_owner_rung_directly_gets_the_card_too(
        ami: AMI, agent_server: tuple[ServeProcess, int], browser: Browser) -> None:
    server, port = agent_server
    bo = log_in(browser, port, "1002")
    ami.agent_behaves("1002", ring="3", talk="3")
    try:
        ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",
                      {"IVR_AGI_PORT": str(server.port), "DIGITS": "1", "PRE_WAIT": "2", "POST_WAIT": "40"},
                      caller_id=f'"Owned" <{OWNED}>')
        expect(bo.locator("#customer")).to_have_text("Owned customer", timeout=40_000)
        expect(bo.locator("#state")).to_have_text("ringing")
        expect(bo.locator("#state")).to_have_text("answered", timeout=10_000)
    finally:
        ami.agent_behaves("1002")


def get(port: int, path: str, cookie: str = "") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        return connection.getresponse().status
    finally:
        connection.close()


def test_streams_need_a_genuine_session(agent_server: tuple[ServeProcess, int], browser: Browser) -> None:
    _, port = agent_server
    assert get(port, "/agent/events") == 401
    assert get(port, "/agent/events", "ivr_agent=MTAwMQ==|9999999999|csrf|" + "0" * 64) == 401  # forged
    page = browser.new_context().new_page()
    page.goto(f"http://127.0.0.1:{port}/agent")
    page.fill("input[name=agent]", "1001")
    page.fill("input[name=token]", TOKENS["1002"])  # another agent's token
    page.click("button[type=submit]")
    expect(page.locator("p.error")).to_have_text("Unknown agent or wrong token.")


def test_writes_need_the_csrf_token(agent_server: tuple[ServeProcess, int], browser: Browser) -> None:
    _, port = agent_server
    page = log_in(browser, port, "1002")
    status = page.evaluate("""async () => (await fetch('/agent/disposition', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({uniqueid: 'x', outcome: 'other'})
        })).status""")
    assert status == 403



@pytest.mark.postgres
def test_a_pop_made_on_one_instance_reaches_a_page_on_another(
        ami: AMI, sandbox: Sandbox, postgres_url: str, browser: Browser) -> None:
    from conftest import postgres_sandbox

    database = postgres_url.rsplit("/", 1)[1]
    assert postgres_sandbox("reset", database).returncode == 0
    http_ports = [free_port(), free_port()]
    servers = [ServeProcess(free_port(), {
        "IVR_DATABASE_URL": postgres_url, "IVR_SERVER_INSTANCE": f"pop-{index}", "IVR_HTTP_ENABLED": "true",
        "IVR_HTTP_PORT": str(port), "IVR_HTTP_SESSION_SECRET": "shared-session-secret-0123456789",
        "IVR_HTTP_ADMIN_KEY": "shared-admin-key-0123456789", "IVR_DIALING_TRUNK": "loop",
        "IVR_CALLBACKS_DISPATCH": "false"}) for index, port in enumerate(http_ports)]
    engine = make_engine(postgres_url)
    try:
        with Session(engine) as session:
            session.add(Agent(code="1001", device="Local/1001@test-agent", skills=["sales"],
                              api_token_hash=hash_token(TOKENS["1001"])))
            session.commit()
        page = log_in(browser, http_ports[1], "1001")  # the agent's page is on instance 1
        ami.agent_behaves("1001", ring="2")
        connection = http.client.HTTPConnection("127.0.0.1", http_ports[0], timeout=30)
        connection.request("POST", "/api/calls", b'{"agent": "1001", "number": "+8613800000501"}',
                           {"Content-Type": "application/json",
                            "X-IVR-Admin-Key": "shared-admin-key-0123456789"})
        assert connection.getresponse().status == 202  # placed by instance 0
        connection.close()
        expect(page.locator("#kind")).to_have_text("click-to-call", timeout=10_000)
        expect(page.locator("#caller")).to_have_text("+8613800000501")
        expect(page.locator("#state")).to_have_text("answered", timeout=15_000)
    finally:
        for server in servers:
            server.stop()
        engine.dispose()
