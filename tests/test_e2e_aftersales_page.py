"""Surveys and complaints in the customer's timeline on the agent page, in a real headless Chromium.

The survey and the complaint are written by their own stores (as the survey
route and the complaints service write them); the agent finds the customer and
reads, as text, the survey's answers and what it rated, and the complaint case
with what the customer wrote (hostile text included).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from conftest import ServeProcess, free_port
from playwright.sync_api import Browser, expect
from sqlalchemy.orm import Session

from ivr.complaints.store import open_case
from ivr.db import Agent, Contact, Customer, CustomerPhone, make_engine
from ivr.plugins.feedback import ComplaintRequest
from ivr.survey import store
from ivr.web.auth import hash_token

TOKEN = "token-of-agent-1001-0123456789abcdef"
HOSTILE = '投诉 <img src=x onerror="alert(1)"> it broke again'
CALL = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def page_server() -> Iterator[tuple[ServeProcess, int]]:
    http_port = free_port()
    server = ServeProcess(free_port(), {
        "IVR_HTTP_ENABLED": "true", "IVR_HTTP_PORT": str(http_port), "IVR_AMI_ENABLED": "false",
        "IVR_HTTP_SESSION_SECRET": "aftersales-session-secret-0123456789", "IVR_CALLBACKS_DISPATCH": "false"})
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        agent = Agent(code="1001", name="Ana", api_token_hash=hash_token(TOKEN))
        customer = Customer(name="Wang Fang 王芳", phones=[CustomerPhone(e164="+8613800138000")])
        session.add_all([agent, customer])
        session.flush()
        session.add(Contact(uniqueid="1763625600.1", started_at=CALL, caller_number="13800138000",
                            caller_e164="+8613800138000", customer_id=customer.id, agent_id=agent.id,
                            queue="after-sales", queue_outcome="answered", status="final",
                            outcome="completed"))
        session.commit()
    rated = store.rated_call(engine, "1763625600.1")
    assert rated is not None
    ids = store.open_survey(engine, rated, "zh", "test", CALL + dt.timedelta(minutes=5))
    assert ids is not None
    for name, value in (("score", "5"), ("buy_again", "no")):
        store.save_answer(engine, ids.survey_id, name, value, False, CALL + dt.timedelta(minutes=6))
    store.finish(engine, ids.survey_id, "partial-hangup", CALL + dt.timedelta(minutes=7))
    open_case(engine, ComplaintRequest(key="sms:gw-9", origin="sms", e164="+8613800138000", text=HOSTILE),
              CALL + dt.timedelta(hours=3), 10, CALL + dt.timedelta(hours=1))
    engine.dispose()
    yield server, http_port
    server.stop()


def test_the_agent_reads_the_survey_and_the_complaint_in_the_timeline(
        page_server: tuple[ServeProcess, int], browser: Browser) -> None:
    _, port = page_server
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"http://127.0.0.1:{port}/agent")
    page.fill("input[name=agent]", "1001")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("#me")).to_have_text("1001", timeout=10_000)
    page.fill("#q", "13800138000")
    page.click("#search button[type=submit]")
    expect(page.locator("#subject-name")).to_have_text("Wang Fang 王芳", timeout=10_000)
    entries = page.locator("#contacts > li")
    expect(entries).to_have_count(3)
    complaint, survey, call = entries.nth(0), entries.nth(1), entries.nth(2)
    expect(complaint).to_contain_text("inbound complaint")
    expect(complaint).to_contain_text("complaint #1 open, answer due 2026-11-20 11:00 UTC")
    expect(complaint).to_contain_text(HOSTILE)
    expect(survey).to_contain_text("inbound survey")
    expect(survey).to_contain_text("partial-hangup")
    expect(survey).to_contain_text("rates agent 1001, queue after-sales")
    expect(survey).to_contain_text("score 5 (very dissatisfied), buy again no")
    expect(call).to_contain_text("inbound hotline")
    assert page.locator("#contacts img").count() == 0  # what the customer wrote stays text
