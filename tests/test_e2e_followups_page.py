"""Follow-ups that are never forgotten, as an agent and a supervisor see them, in a real headless Chromium.

``ivr serve`` runs with a lead cadence of seconds: a lead posted over HTTP is
soon overdue, escalates, shows on its owner's page marked overdue (and on no
one else's), is counted in /metrics by owner, and the owner closes it from
the page.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import time
from collections.abc import Iterator

import pytest
from conftest import ServeProcess, free_port
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session

from ivr.db import Customer, CustomerPhone, make_engine
from ivr.db.models import Agent, ComplaintCase, FollowUp
from ivr.web.auth import hash_token
from ivr.web.sessions import SessionSigner

ADMIN = "followups-page-admin-key-0123456789"
TOKENS = {"1001": "token-of-owner-1001-0123456789abcdef", "2001": "token-of-agent-2001-0123456789abcdef",
          "9001": "token-of-supervisor-9001-0123456789ab"}
OWNED = "+8613800000555"
SESSIONS = "followups-page-session-secret-012345"
COMPLAINT = "投诉 <b>the repair never came</b>"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[ServeProcess, int]]:
    http_port = free_port()
    server = ServeProcess(free_port(), {
        "IVR_HTTP_ENABLED": "true", "IVR_HTTP_PORT": str(http_port), "IVR_HTTP_ADMIN_KEY": ADMIN,
        "IVR_HTTP_SESSION_SECRET": SESSIONS, "IVR_AMI_ENABLED": "false",
        "IVR_HOURS_WEEKLY": ",".join(f"{d}=00:00-24:00" for d in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                                  "sun")),
        "IVR_FOLLOWUPS_CADENCE": "lead=0.05m 1d",  # due in 3 s, then a day later
        "IVR_FOLLOWUPS_ESCALATE_AFTER": "1", "IVR_FOLLOWUPS_CHECK_INTERVAL": "0.5"})
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        owner = Agent(code="1001", name="Owner", api_token_hash=hash_token(TOKENS["1001"]))
        session.add_all([owner, Agent(code="2001", api_token_hash=hash_token(TOKENS["2001"])),
                         Agent(code="9001", role="supervisor", api_token_hash=hash_token(TOKENS["9001"]))])
        session.flush()
        zhao = Customer(name="Zhao", owner_agent_id=owner.id, phones=[CustomerPhone(e164=OWNED)])
        session.add(zhao)
        session.flush()
        session.add(ComplaintCase(key="sms:c1", origin="sms", customer_id=zhao.id, e164=OWNED,
                                  owner_agent_id=owner.id, text=COMPLAINT,
                                  response_due_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))
        session.commit()
    engine.dispose()
    yield server, http_port
    server.stop()


def request(port: int, method: str, path: str, body: object = None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, json.dumps(body).encode() if body is not None else b"",
                           {"Content-Type": "application/json", "X-IVR-Admin-Key": ADMIN})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def log_in(browser: Browser, port: int, agent: str, locale: str = "en-US") -> Page:
    page = browser.new_context(locale=locale).new_page()
    page.goto(f"http://127.0.0.1:{port}/agent")
    page.fill("input[name=agent]", agent)
    page.fill("input[name=token]", TOKENS[agent])
    page.click("button[type=submit]")
    expect(page.locator("#link")).to_have_attribute("data-state", "live", timeout=10_000)
    return page


def overdue_by_owner(port: int) -> dict[str, float]:
    metrics = request(port, "GET", "/metrics")[1]
    return {owner: float(value) for owner, value in
            re.findall(r'^ivr_followups_overdue\{owner="(\w*)",skill="[^"]*"\} (\S+)$', metrics, re.M)}


def test_an_overdue_lead_escalates_shows_on_its_owners_page_and_is_closed_there(
        served: tuple[ServeProcess, int], browser: Browser) -> None:
    server, port = served
    status, body = request(port, "POST", "/api/leads", {"phone": OWNED, "note": "asked for a brochure",
                                                        "lead_id": "page-1"})
    assert status == 201
    followup_id = json.loads(body)["followup_id"]
    deadline = time.monotonic() + 30
    # Overdue after 3 s, escalated 1 s later; the watch looks every 0.5 s.
    while "ivr_followups_escalated_total 1.0" not in request(port, "GET", "/metrics")[1]:
        assert time.monotonic() < deadline, "the overdue lead never escalated"
        time.sleep(0.3)
    assert overdue_by_owner(port) == {"1001": 1.0}
    cookie, _ = SessionSigner(SESSIONS).make("9001")  # the supervisors' list of what escalated
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/api/followups?which=escalated", headers={"Cookie": f"ivr_agent={cookie}"})
    escalated = json.loads(connection.getresponse().read())["followups"]
    connection.close()
    assert [(f["id"], f["owner"], f["overdue"], f["escalated"]) for f in escalated] == [
        (followup_id, "1001", True, True)]

    board = browser.new_context(locale="zh-CN").new_page()  # the supervisor's wallboard lists it too
    board.goto(f"http://127.0.0.1:{port}/supervisor")
    board.fill("input[name=supervisor]", "9001")
    board.fill("input[name=token]", TOKENS["9001"])
    board.click("button[type=submit]")
    late = board.locator("#late-followups tr.escalated")
    expect(late).to_have_count(1, timeout=10_000)
    expect(late).to_contain_text(OWNED)
    expect(late).to_contain_text("已上报")  # escalated, in the browser's language
    expect(late.locator("td").nth(3)).to_have_text("1001")
    case = board.locator("#complaint-cases tr.escalated")  # past its answer time
    expect(case).to_have_count(1)
    expect(case.locator("td").nth(6)).to_have_text(COMPLAINT)  # as text, not markup
    assert board.locator("#complaint-cases b").count() == 0
    expect(case).to_contain_text("Zhao")

    owner, other = log_in(browser, port, "1001"), log_in(browser, port, "2001")
    item = owner.locator(f"#followup-list li[data-id='{followup_id}']")
    expect(item).to_have_class(re.compile("overdue"), timeout=5_000)
    expect(item).to_contain_text("OVERDUE")
    expect(item).to_contain_text("escalated")
    expect(item).to_contain_text("asked for a brochure")
    expect(owner.locator("#followups-count")).to_have_text("1 open, 1 overdue")
    expect(other.locator("#followups-count")).to_have_text("0 open, 0 overdue")  # not theirs to see
    item.locator("button.close").click()
    expect(owner.locator("#followups-count")).to_have_text("0 open, 0 overdue", timeout=5_000)
    engine = make_engine(f"sqlite:///{server.database}")
    try:
        with Session(engine) as session:
            row = session.get(FollowUp, followup_id)
            assert row is not None and (row.state, row.outcome) == ("done", "closed")
    finally:
        engine.dispose()


def test_the_agent_page_speaks_the_browsers_language_and_switches(served: tuple[ServeProcess, int],
                                                                  browser: Browser) -> None:
    _, port = served
    assert request(port, "POST", "/api/leads", {"phone": OWNED, "lead_id": "page-zh"})[0] == 201
    page = log_in(browser, port, "1001", locale="zh-CN")
    expect(page.locator("#followups h2")).to_have_text("我的跟进")
    expect(page.locator("#link")).to_have_text("实时")
    expect(page.locator("#followups-count")).to_contain_text("待办")
    expect(page.locator("#disposition button[type=submit]")).to_have_text("保存")
    # The options' values stay what the server takes.
    assert page.locator("#outcome").evaluate("select => select.options[1].value") == "follow-up"
    page.click("#lang")
    expect(page.locator("#followups h2")).to_have_text("My follow-ups")
    expect(page.locator("#followups-count")).to_contain_text("open")
    page.reload()  # the choice is remembered
    expect(page.locator("#followups h2")).to_have_text("My follow-ups")
