"""The supervisor's wallboard in a real headless Chromium, with real calls through the sandbox.

Agent 1061 (a code no other test uses: the sandbox is shared) is the simulated
phone Local/1061@test-agent in the sales queue.
One hotline caller presses 1 for sales and is answered; the supervisor then
pauses 1061 from the page (Asterisk must say the member is paused: ``queue
show`` and AMI ``QueueStatus``; the audit row must exist), and a second
caller waits in vain and hangs up. The wallboard's numbers move with each
call, the charts draw the calls (pixels on the canvas, not an empty one), the
page speaks Chinese to a Chinese browser, and an agent's session gets 403 on
every supervisor URL.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from asterisk_harness import AMI, Sandbox
from conftest import ServeProcess, free_port
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import Agent, Contact, Customer, CustomerPhone, make_engine
from ivr.db.models import SupervisorAction
from ivr.web.auth import hash_token

pytestmark = pytest.mark.asterisk

INTERFACE = "Local/1061@test-agent"
TOKENS = {"1061": "token-of-agent-1061-0123456789abcdef", "9001": "token-of-supervisor-9001-0123456789"}
#: Where the Chinese screenshots go when IVR_DOCS_SCREENSHOTS names a folder (docs/ to refresh them).
SHOTS = os.environ.get("IVR_DOCS_SCREENSHOTS", "")
ANSWERED, ABANDONED = "13900000061", "13900000062"


def _member(ami: AMI, present: bool) -> None:
    ami.manager.send_action({"Action": "QueueRemove", "Queue": "sales", "Interface": INTERFACE})
    if present:
        response = ami.manager.send_action({"Action": "QueueAdd", "Queue": "sales", "Interface": INTERFACE,
                                            "MemberName": "1061"})
        assert response.get_header("Response") == "Success", response.headers


@pytest.fixture(scope="module")
def board_server(sandbox: Sandbox, ami: AMI) -> Iterator[tuple[ServeProcess, int]]:
    http_port = free_port()
    server = ServeProcess(free_port(), {
        "IVR_HTTP_ENABLED": "true", "IVR_HTTP_PORT": str(http_port),
        "IVR_HTTP_SESSION_SECRET": "supervisor-page-session-secret-0123456789",
        "IVR_SERVER_INSTANCE": "wallboard-test", "IVR_REPORT_WALLBOARD_INTERVAL": "1",
        "IVR_CALLBACKS_DISPATCH": "false"})
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        session.add(Agent(code="1061", name="Ana <b>Li</b>", device=INTERFACE, skills=["sales"],
                          api_token_hash=hash_token(TOKENS["1061"])))
        for number in (ANSWERED, ABANDONED):  # known customers: no language menu before the main menu
            session.add(Customer(name=f"Customer {number}", language="zh",
                                 phones=[CustomerPhone(e164=f"+86{number}")]))
        session.add(Agent(code="9001", name="Zhou", device="", role="supervisor",  # no phone: not listed
                          api_token_hash=hash_token(TOKENS["9001"])))
        session.commit()
    engine.dispose()
    _member(ami, present=True)
    ami.manager.send_action({"Action": "QueuePause", "Interface": INTERFACE, "Paused": "false"})
    yield server, http_port
    _member(ami, present=False)
    ami.agent_behaves("1061")
    server.stop()


def supervisor_page(browser: Browser, port: int, locale: str = "en-GB") -> Page:
    page = browser.new_context(locale=locale, viewport={"width": 1400, "height": 1000}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(f"http://127.0.0.1:{port}/supervisor")
    page.fill("input[name=supervisor]", "9001")
    page.fill("input[name=token]", TOKENS["9001"])
    page.click("button[type=submit]")
    expect(page.locator("#link")).to_have_attribute("data-state", "live", timeout=10_000)
    page.errors = errors  # type: ignore[attr-defined]
    return page


def cell(page: Page, queue: str, column: str) -> str:
    return page.locator(f'#queues tr[data-queue="{queue}"] td.{column}').inner_text()


def call(ami: AMI, server: ServeProcess, number: str, post_wait: str) -> None:
    ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",
                  {"IVR_AGI_PORT": str(server.port), "DIGITS": "1", "PRE_WAIT": "2", "POST_WAIT": post_wait},
                  caller_id=f'"Caller" <{number}>')


def queue_member(ami: AMI) -> dict[str, str]:
    """Our member of the sales queue as AMI ``QueueStatus`` reports it, over a connection of its own
    (pyst2 sometimes hands back a list action's response before its events)."""
    with socket.create_connection(("127.0.0.1", 5038), timeout=10) as sock:
        sock.sendall(b"Action: Login\r\nUsername: test\r\nSecret: test\r\nEvents: off\r\n\r\n"
                     b"Action: QueueStatus\r\nQueue: sales\r\nActionID: wallboard-test\r\n\r\n")
        received = b""
        while b"QueueStatusComplete" not in received:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    blocks = [dict(line.split(": ", 1) for line in block.split("\r\n") if ": " in line)
              for block in received.decode().split("\r\n\r\n")]
    members = [b for b in blocks if b.get("Event") == "QueueMember" and b.get("Location") == INTERFACE]
    assert len(members) == 1, received
    return members[0]


def painted(page: Page, chart: str) -> int:
    """Pixels drawn on a chart's canvas (an empty ECharts canvas has none)."""
    return int(page.evaluate("""(id) => {
        const canvas = document.querySelector('#' + id + ' canvas');
        if (!canvas) return 0;
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0; for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return n; }""", chart))


def series_total(page: Page, chart: str, index: int) -> int:
    return int(page.evaluate("""([id, i]) => echarts.getInstanceByDom(document.getElementById(id))
        .getOption().series[i].data.reduce((a, b) => a + (b || 0), 0)""", [chart, index]))


def test_real_calls_move_the_wallboard_and_a_pause_reaches_asterisk(
        board_server: tuple[ServeProcess, int], ami: AMI, sandbox: Sandbox, browser: Browser,
        tmp_path: Path) -> None:
    server, port = board_server
    page = supervisor_page(browser, port, locale="zh-CN")
    expect(page.locator("header strong")).to_have_text("实时看板")  # a Chinese browser gets Chinese
    expect(page.locator('#agents tr[data-agent="1061"] .state')).to_have_text("空闲", timeout=10_000)
    # Names are text, never markup:
    expect(page.locator('#agents tr[data-agent="1061"] td.who')).to_have_text("1061 Ana <b>Li</b>")
    expect(page.locator('#agents tr[data-agent="9001"]')).to_have_count(0)
    assert cell(page, "sales", "offered") == "0"
    page.click("#lang")  # the switch: English from here on
    expect(page.locator("header strong")).to_have_text("Wallboard")

    # 1. An answered sales call.
    ami.agent_behaves("1061", ring="2", talk="3")
    ami.forget_events()
    call(ami, server, ANSWERED, post_wait="20")
    ami.wait_for(lambda e: e.get("Event") == "AgentConnect" and e.get("MemberName") == "1061", timeout=60)
    expect(page.locator('#agents tr[data-agent="1061"] .state')).to_have_text("On a call", timeout=10_000)
    ami.wait_for(lambda e: e.get("Event") == "AgentComplete" and e.get("MemberName") == "1061", timeout=60)
    ami.forget_events()
    expect(page.locator('#queues tr[data-queue="sales"] td.answered')).to_have_text("1", timeout=15_000)
    expect(page.locator("#t-offered")).to_have_text("1")
    expect(page.locator("#t-sl")).to_have_text("100.0%")  # answered after ~2 s of ringing

    # 2. The supervisor pauses 1061 from the page; Asterisk says so; the audit row is there.
    expect(page.locator('#agents tr[data-agent="1061"] .state')).to_have_text("Free", timeout=15_000)
    page.click('#agents tr[data-agent="1061"] button.toggle-pause')
    expect(page.locator("#acted")).to_have_text("done", timeout=10_000)
    assert re.search(r"Local/1061@test-agent.*\(paused", sandbox.rx("queue show sales")), \
        sandbox.rx("queue show sales")
    assert queue_member(ami)["Paused"] == "1"  # AMI QueueStatus says so too
    expect(page.locator('#agents tr[data-agent="1061"] .state')).to_have_text("Paused", timeout=10_000)
    expect(page.locator('#queues tr[data-queue="sales"] td.paused')).to_have_text("1")
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        audit = session.execute(select(SupervisorAction.supervisor, SupervisorAction.action,
                                       SupervisorAction.agent, SupervisorAction.interface,
                                       SupervisorAction.result)).all()
    engine.dispose()
    assert [tuple(row) for row in audit] == [("9001", "pause", "1061", INTERFACE, "ok")]

    # 3. A caller nobody answers (the only agent is paused) gives up: abandoned.
    call(ami, server, ABANDONED, post_wait="14")
    ami.wait_for(lambda e: e.get("Event") == "QueueCallerJoin" and e.get("CallerIDNum") == ABANDONED,
                 timeout=60)
    expect(page.locator('#queues tr[data-queue="sales"] td.waiting')).to_have_text("1", timeout=10_000)
    ami.wait_for(lambda e: e.get("Event") == "QueueCallerAbandon" and e.get("CallerIDNum") == ABANDONED,
                 timeout=60)
    expect(page.locator('#queues tr[data-queue="sales"] td.abandoned')).to_have_text("1", timeout=15_000)
    expect(page.locator("#t-offered")).to_have_text("2")
    expect(page.locator("#t-abandoned")).to_have_text("1")
    expect(page.locator("#t-sl")).to_have_text("50.0%")
    expect(page.locator('#queues tr[data-queue="sales"] td.waiting')).to_have_text("0")
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:  # nobody answered: no agent (not the supervisor without a phone)
        assert session.scalar(select(Contact.agent_id).where(Contact.caller_number == ABANDONED)) is None
    engine.dispose()

    # 4. The charts draw the two calls (reloaded by choosing the range again).
    page.select_option("#c-range", "7d")
    page.select_option("#c-range", "today")
    expect(page.locator("#charts")).to_have_attribute("data-loaded", "today", timeout=10_000)
    page.wait_for_function("""() => {
        const c = echarts.getInstanceByDom(document.getElementById('chart-calls'));
        return c && c.getOption().series[1].data.some((v) => v > 0); }""", timeout=15_000)
    assert (series_total(page, "chart-calls", 0), series_total(page, "chart-calls", 1)) == (1, 1)
    assert series_total(page, "chart-waits", 0) + series_total(page, "chart-waits", 1) == 2
    for chart in ("chart-calls", "chart-sl", "chart-waits", "chart-agents"):
        assert painted(page, chart) > 2000, chart
    assert page.evaluate("document.querySelectorAll('script').length") == 2  # only the two files
    assert page.errors == []  # type: ignore[attr-defined]  # nothing refused by the CSP, no script error

    # Unpause from the page: Asterisk agrees.
    page.click('#agents tr[data-agent="1061"] button.toggle-pause')
    expect(page.locator('#agents tr[data-agent="1061"] .state')).to_have_text("Free", timeout=10_000)
    assert queue_member(ami)["Paused"] == "0"
    if SHOTS:  # docs/supervisor-wallboard.png and docs/supervisor-chart.png, in Chinese
        page.click("#lang")
        expect(page.locator("header strong")).to_have_text("实时看板")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(Path(SHOTS) / "supervisor-wallboard.png"), full_page=True)
        page.locator("#chart-calls").screenshot(path=str(Path(SHOTS) / "supervisor-chart.png"))


def request(port: int, method: str, path: str, cookie: str = "", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body, {**({"Cookie": cookie} if cookie else {}), **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_an_agents_session_gets_403_on_every_supervisor_url(
        board_server: tuple[ServeProcess, int], browser: Browser) -> None:
    _, port = board_server
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{port}/agent")
    page.fill("input[name=agent]", "1061")
    page.fill("input[name=token]", TOKENS["1061"])
    page.click("button[type=submit]")
    expect(page.locator("#link")).to_have_text("live", timeout=10_000)
    answer = page.goto(f"http://127.0.0.1:{port}/supervisor")
    assert answer is not None and answer.status == 403
    expect(page.locator("#forbidden")).to_be_visible()
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in context.cookies())
    csrf = page.evaluate("fetch('/agent').then(r => r.text())")
    token = re.search(r'name="csrf-token" content="([^"]+)"', csrf)
    assert token is not None
    for method, path, body in (("GET", "/supervisor/events", None), ("GET", "/supervisor/api/charts", None),
                               ("POST", "/supervisor/api/act",
                                json.dumps({"action": "pause", "agent": "1061"}).encode())):
        status, reply = request(port, method, path, cookie, body,
                                {"X-CSRF-Token": token.group(1), "Content-Type": "application/json"})
        assert status == 403, (path, reply)
        assert json.loads(reply) == {"error": "supervisors only"}
    assert request(port, "GET", "/supervisor/api/charts")[0] == 401  # no session at all
    # The agent's own token does not open the supervisor's login either.
    login = browser.new_context().new_page()  # no session yet
    login.goto(f"http://127.0.0.1:{port}/supervisor")
    login.fill("input[name=supervisor]", "1061")
    login.fill("input[name=token]", TOKENS["1061"])
    login.click("button[type=submit]")
    expect(login.locator("p.error")).to_have_text("This account is not a supervisor.")


def test_supervisor_writes_need_the_csrf_token(board_server: tuple[ServeProcess, int],
                                               browser: Browser) -> None:
    _, port = board_server
    page = supervisor_page(browser, port)
    status = page.evaluate("""async () => (await fetch('/supervisor/api/act', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({action: 'pause', agent: '1061'})
        })).status""")
    assert status == 403
    # Hostile chart filters are values, never SQL; a range outside the list is refused.
    hostile = page.evaluate("""async () => { const q = new URLSearchParams({range: '30d',
        queue: "sales' OR '1'='1", agent: "x'); DROP TABLE contacts; --"});
        const r = await fetch('/supervisor/api/charts?' + q); return [r.status, await r.json()]; }""")
    assert hostile[0] == 200 and sum(hostile[1]["calls"]["answered"]) == 0 and hostile[1]["agents"] == []
    bad = page.evaluate("async () => (await fetch('/supervisor/api/charts?range=forever')).status")
    assert bad == 400
    assert request(port, "GET", "/supervisor/app.js")[0] == 200
