"""The customer timeline on the agent page, in a real headless Chromium (Debian's /usr/bin/chromium).

``ivr serve`` runs with the HTTP API and no Asterisk (the timeline reads the
database only). A customer with 25 contacts (calls with their IVR path, what
was said, agent, wait and talk, queue outcome, disposition and notes; SMS in
and out; a callback with a recording) is found by name and by number; the
page shows the newest 20 and pages to the older ones; the recording is an
``<audio>`` element pointing at ``/recordings/<contact id>``, which the
browser loads with the agent's session and can play. Hostile names and notes stay
text, and every API request needs the session.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import math
import struct
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ServeProcess, free_port
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session

from ivr.db import Agent, Contact, Customer, CustomerPhone, make_engine
from ivr.web.auth import hash_token

TOKEN = "token-of-agent-1001-0123456789abcdef"
HOSTILE_NOTE = '<img src=x onerror="alert(1)"> O\'Brien & "co" 李'
START = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)  # 16:00 at the desk (Asia/Shanghai)
PATH = [{"kind": "language", "menu": "", "key": "", "value": "zh"},
        {"kind": "menu", "menu": "main", "key": "2", "value": "after-sales"}]
RECORDING = "ivr-out-2.wav"  # named as MixMonitor names them: the contact's uniqueid


def write_wav(path: Path, seconds: float = 0.5) -> None:
    """A short 8 kHz mono 16-bit tone, as Asterisk's MixMonitor writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / 8000)))
                      for n in range(int(8000 * seconds)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(frames)


def seed(session: Session) -> dict[str, int]:
    """Wang Fang and her 25 contacts (oldest first), Li Na with one; returns the ids tests look for."""
    agent = Agent(code="1001", name="Ana", device="PJSIP/1001", api_token_hash=hash_token(TOKEN))
    wang = Customer(name="Wang Fang 王芳", external_id="C-8", vip_tier="vip", language="zh",
                    phones=[CustomerPhone(e164="+8613800138000"), CustomerPhone(e164="+8613900139000")])
    li = Customer(name="Li Na", external_id="C-9", phones=[CustomerPhone(e164="+8613700137000")])
    session.add_all([agent, wang, li])
    session.flush()

    def at(index: int) -> dt.datetime:
        return START + dt.timedelta(hours=index)

    ids: dict[str, int] = {"wang": wang.id, "li": li.id}
    rows = [
        Contact(uniqueid="sms-in:gw-1", channel="sms", kind="sms", started_at=at(0),
                caller_number="13800138000", caller_e164="+8613800138000", customer_id=wang.id,
                status="final", outcome="callback", transcript="洗衣机漏水, please call me",
                followup_id=1),
        Contact(uniqueid="sms-out:1", channel="sms", kind="sms", direction="outbound", started_at=at(1),
                caller_number="+8613800138000", caller_e164="+8613800138000", customer_id=wang.id,
                status="final", outcome="queued", transcript="Thank you, we will call you back by 18:00."),
        Contact(uniqueid="ivr-out-2", kind="callback", direction="outbound", started_at=at(2),
                caller_number="+8613800138000", caller_e164="+8613800138000", customer_id=wang.id,
                agent_id=agent.id, status="final", outcome="answered", duration_seconds=312.0,
                talk_seconds=290.0, followup_id=1, recording_ref=RECORDING, disposition="resolved",
                notes="technician booked for Friday"),
    ]
    for index in range(3, 25):
        newest = index == 24
        rows.append(Contact(
            uniqueid=f"1763625600.{index}", started_at=at(index), caller_number="13900139000",
            caller_name="Wang" if not newest else '"><script>alert(2)</script>', caller_e164="+8613900139000",
            customer_id=wang.id, agent_id=agent.id, route="hotline", ivr_path=PATH, dtmf="2",
            transcript="售后" if newest else "", queue="after-sales", queue_outcome="answered",
            wait_seconds=12.5, talk_seconds=185.0, hangup_by="caller", status="final", outcome="completed",
            duration_seconds=240.0, disposition="complaint" if newest else "follow-up",
            notes=HOSTILE_NOTE if newest else f"call {index}"))
    rows.append(Contact(uniqueid="li.1", started_at=at(5), caller_e164="+8613700137000", customer_id=li.id,
                        status="final", outcome="completed"))
    session.add_all(rows)
    session.flush()
    ids["recorded"] = rows[2].id
    return ids


@pytest.fixture(scope="module")
def timeline_server(tmp_path_factory: pytest.TempPathFactory,
                    ) -> Iterator[tuple[ServeProcess, int, dict[str, int]]]:
    recordings = tmp_path_factory.mktemp("recordings")
    write_wav(recordings / RECORDING)
    http_port = free_port()
    server = ServeProcess(free_port(), {
        "IVR_HTTP_ENABLED": "true", "IVR_HTTP_PORT": str(http_port), "IVR_AMI_ENABLED": "false",
        "IVR_HTTP_SESSION_SECRET": "timeline-session-secret-0123456789", "IVR_CALLBACKS_DISPATCH": "false",
        "IVR_RECORDINGS_FOLDER": str(recordings)})
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        ids = seed(session)
        session.commit()
    engine.dispose()
    yield server, http_port, ids
    server.stop()



def log_in(browser: Browser, port: int) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"http://127.0.0.1:{port}/agent")
    page.fill("input[name=agent]", "1001")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("#me")).to_have_text("1001", timeout=10_000)
    return page


def test_the_agent_page_shows_a_customers_whole_timeline_pages_and_searches(
        timeline_server: tuple[ServeProcess, int, dict[str, int]], browser: Browser, tmp_path: Path) -> None:
    _, port, ids = timeline_server
    page = log_in(browser, port)
    page.fill("#q", "wang")  # part of the name, any case
    page.click("#search button[type=submit]")
    expect(page.locator("#subject-name")).to_have_text("Wang Fang 王芳", timeout=10_000)
    expect(page.locator("#subject-facts")).to_contain_text("C-8 · vip · language zh")
    expect(page.locator("#count")).to_have_text(
        "25 contacts, newest first; 20 shown; times in Asia/Shanghai")
    entries = page.locator("#contacts > li")
    expect(entries).to_have_count(20)
    newest = entries.nth(0)
    expect(newest.locator(".when")).to_have_text("2026-11-21 16:00")  # 2026-11-21T08:00Z at the desk
    for shown in ("inbound hotline", "completed / answered", "language:zh > main:2", "售后", "after-sales",
                  "1001 (Ana)", "12.5 s", "3 min 05 s", "complaint", HOSTILE_NOTE,
                  '"><script>alert(2)</script>'):
        expect(newest).to_contain_text(shown)
    assert page.locator("script").count() == 1 and page.locator("#contacts img").count() == 0  # text only
    expect(page.locator("audio")).to_have_count(0)  # the recorded call is on the older page
    page.screenshot(path=str(tmp_path / "agent-timeline-newest.png"), full_page=True)

    page.click("#older")
    expect(entries).to_have_count(25)
    expect(page.locator("#older")).to_be_hidden()
    expect(page.locator("#count")).to_contain_text("25 shown")
    oldest = entries.nth(24)
    expect(oldest.locator(".when")).to_have_text("2026-11-20 16:00")
    expect(oldest).to_contain_text("洗衣机漏水, please call me")
    expect(oldest).to_contain_text("Follow-up#1")
    recorded = entries.nth(22)
    expect(recorded).to_contain_text("outbound callback")
    audio = recorded.locator("audio")
    expect(audio).to_have_count(1)
    expect(audio).to_have_attribute("src", f"/recordings/{ids['recorded']}")
    assert audio.get_attribute("controls") is not None
    # The browser fetches it with the agent's session (the agent took that call) and can play it.
    audio.evaluate("el => { el.preload = 'auto'; el.load(); }")
    page.wait_for_function("el => el.readyState >= 1 && el.duration > 0.4", arg=audio.element_handle(),
                           timeout=10_000)
    assert audio.evaluate("el => el.error") is None
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.screenshot(path=str(tmp_path / "agent-timeline.png"))  # docs/agent-timeline.png is one

    page.fill("#q", "137 0013 7000")  # a number in a national format
    page.click("#search button[type=submit]")
    expect(page.locator("#subject-name")).to_have_text("Li Na", timeout=10_000)
    expect(entries).to_have_count(1)
    page.fill("#q", "a")  # several customers: the agent chooses
    page.click("#search button[type=submit]")
    expect(page.locator("#results button")).to_have_count(2)
    page.locator("#results button", has_text="Wang Fang").click()
    expect(page.locator("#subject-name")).to_have_text("Wang Fang 王芳")
    expect(entries).to_have_count(20)


def request(port: int, path: str, cookie: str = "") -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_every_timeline_request_needs_a_genuine_session(
        timeline_server: tuple[ServeProcess, int, dict[str, int]], browser: Browser) -> None:
    _, port, ids = timeline_server
    for path in (f"/agent/api/timeline?customer={ids['wang']}", "/agent/api/search?q=wang"):
        assert request(port, path)[0] == 401
        assert request(port, path, "ivr_agent=MTAwMQ==|9999999999|csrf|" + "0" * 64)[0] == 401  # forged
    page = log_in(browser, port)
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
    assert request(port, f"/agent/api/timeline?customer={ids['li']}", cookie)[0] == 200  # any customer
    status, body = request(port, "/agent/api/timeline?number=137%200013%207000&limit=1", cookie)
    assert status == 200 and [c["caller_number"] for c in body["contacts"]] == [""]
    for bad in ("customer=abc", "customer=1&number=2", "", "number=12ab", f"customer={ids['li']}&limit=0",
                "customer=99999999999"):
        assert request(port, f"/agent/api/timeline?{bad}", cookie)[0] == 400, bad
    assert request(port, "/agent/api/timeline?customer=999999", cookie)[0] == 404
    assert request(port, "/agent/api/search?q=", cookie)[0] == 400
    assert request(port, "/agent/api/nothing", cookie)[0] == 404
