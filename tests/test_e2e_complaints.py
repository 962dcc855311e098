"""Complaints through real parts: "press 9" on a real call, an SMS "投诉", the supervisors' list.

The caller is a Local channel into the route ``complaint-hotline`` of
tests/e2e_aftersales (``"9" = { complaint = "complaints" }``); the SMS is a
signed POST to a real ``ivr serve``. A stand-in follow-up service
(tests/e2e_aftersales/followups_for_tests.py) keeps what it is asked.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asterisk_harness import AMI, Sandbox
from conftest import ROOT, TESTS, ServeProcess, free_port
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import Agent, Contact, Customer, CustomerPhone, make_engine
from ivr.db.models import ComplaintCase
from ivr.web.sessions import COOKIE, SessionSigner
from ivr.web.signature import sign

SMS_SECRET = "complaints-test-sms-secret-0123456789"
SESSION_SECRET = "complaints-test-session-secret-0123456789"
NUMBER = "13900000151"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServeProcess, int, Path]]:
    http_port = free_port()
    followups = tmp_path / "followups.jsonl"
    served = ServeProcess(free_port(), {
        "IVR_PLUGINS_FOLDER": str(TESTS / "e2e_aftersales"), "IVR_TEST_FOLLOWUPS": str(followups),
        "IVR_HTTP_ENABLED": "true", "IVR_HTTP_PORT": str(http_port), "IVR_HTTP_SMS_SECRET": SMS_SECRET,
        "IVR_HTTP_SESSION_SECRET": SESSION_SECRET, "IVR_SERVER_INSTANCE": "complaints-test",
        "IVR_ROUTING_QUEUES": "sales,after-sales,vip,ivr-fallback,complaints,survey-test"})
    engine = make_engine(f"sqlite:///{served.database}")
    with Session(engine) as session:
        owner = Agent(code="1009", name="Owen")
        session.add_all([Customer(name="Wang Fang", owner=owner, phones=[CustomerPhone(e164=f"+86{NUMBER}")]),
                         Agent(code="2001", name="Sue", role="supervisor")])
        session.commit()
    engine.dispose()
    yield served, http_port, followups
    served.stop()


def _cases(server: ServeProcess, count: int) -> list[ComplaintCase]:
    engine = make_engine(f"sqlite:///{server.database}")
    deadline = time.monotonic() + 30
    try:
        while True:
            with Session(engine) as session:
                cases = list(session.scalars(select(ComplaintCase).order_by(ComplaintCase.id)))
                if len(cases) >= count and all(c.followup_id for c in cases):
                    session.expunge_all()
                    return cases
            assert time.monotonic() < deadline, server.output()[-3000:]
            time.sleep(0.2)
    finally:
        engine.dispose()


def _get(port: int, path: str, cookie: str = "") -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers={"Cookie": f"{COOKIE.decode()}={cookie}"} if cookie else {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _sms(port: int, fields: dict[str, str]) -> tuple[int, Any]:
    body = json.dumps(fields, ensure_ascii=False).encode()
    stamp = int(time.time())
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/api/sms", body, {"Content-Type": "application/json",
                                                      "X-IVR-Timestamp": str(stamp),
                                                      "X-IVR-Signature": sign(SMS_SECRET, stamp, body)})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _history(server: ServeProcess) -> str:
    return subprocess.run([sys.executable, "-m", "ivr.cli", "history", f"+86{NUMBER}", "--url",
                           f"sqlite:///{server.database}"], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, check=True).stdout


def test_an_sms_complaint_opens_a_case_for_supervisors_only(server: tuple[ServeProcess, int, Path]) -> None:
    served, port, followups = server
    text = "投诉：洗衣机又坏了 <script>alert(1)</script>"
    status, answer = _sms(port, {"message_id": "gw-c1", "from": f"+86{NUMBER}", "text": text})
    assert (status, answer["action"], answer["followup_id"]) == (200, "complaint", None)  # no second callback
    assert _sms(port, {"message_id": "gw-c1", "from": f"+86{NUMBER}", "text": text})[1]["duplicate"]
    (case,) = _cases(served, 1)
    assert (case.origin, case.e164, case.status, case.text, case.priority) == ("sms", f"+86{NUMBER}", "open",
                                                                             text, 10)
    assert case.source_contact_id is not None  # the SMS's own row in the timeline
    (request,) = [json.loads(line) for line in followups.read_text().splitlines()]
    assert (request["origin"], request["skill"], request["text"]) == ("complaint", "complaints", text)
    assert "inbound complaint" in _history(served)
    signer = SessionSigner(SESSION_SECRET)
    assert _get(port, "/supervisor/complaints")[0] == 401
    agent, supervisor = signer.make("1009")[0], signer.make("2001")[0]
    assert _get(port, "/supervisor/complaints", agent)[0] == 403  # an agent, not a supervisor
    status, listing = _get(port, "/supervisor/complaints", supervisor)
    assert status == 200 and listing["overdue"] == 0
    (shown,) = listing["cases"]
    assert (shown["id"], shown["text"], shown["owner"], shown["customer"]) == (case.id, text, "1009",
                                                                               "Wang Fang")
    assert _get(port, "/supervisor/complaints?overdue=1", supervisor)[1]["cases"] == []


@pytest.mark.asterisk
def test_press_9_opens_a_case_and_queues_the_caller_for_complaints(
        sandbox: Sandbox, ami: AMI, server: tuple[ServeProcess, int, Path]) -> None:
    served, _, followups = server
    sandbox.ensure_loaded(("queue show complaints", "complaints has"))
    ami.forget_events()
    ami.originate("Local/complaint-hotline@test-route", "test-caller", "dtmf",
                  {"IVR_AGI_PORT": str(served.port), "DIGITS": "9", "PRE_WAIT": "2", "POST_WAIT": "12"},
                  caller_id=f'"Wang Fang" <{NUMBER}>')
    queued = ami.wait_for(lambda e: e.get("UserEvent") == "IvrQueue" and e.get("CallerIDNum") == NUMBER,
                          timeout=60)
    assert queued["Queue"] == "complaints" and queued["Path"] == "cp-main:9"
    (case,) = _cases(served, 1)
    engine = make_engine(f"sqlite:///{served.database}")
    with Session(engine) as session:
        call = session.scalars(select(Contact).where(Contact.uniqueid == queued["Uniqueid"])).one()
    engine.dispose()
    assert (case.origin, case.e164, case.source_contact_id, case.key) == ("menu", f"+86{NUMBER}", call.id,
                                                                        f"call:{call.uniqueid}")
    (request,) = [json.loads(line) for line in followups.read_text().splitlines()]
    assert (request["origin"], request["skill"], request["contact_id"]) == ("complaint", "complaints",
                                                                            call.id)
    history = _history(served)
    assert "inbound complaint" in history and "queue complaints" in history
