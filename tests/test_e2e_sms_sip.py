"""SMS over SIP MESSAGE through the real Asterisk and ``ivr serve`` (issue #15).

The sandbox's ``loop`` endpoint plays the SMS trunk: a SIP MESSAGE to 95555
(the service number) is an SMS to ivr ([ivr-sms-in] raises IvrSmsIn), and a
MESSAGE to any other number is an SMS arriving on a customer's phone, which
[test-sms-in] reports as UserEvent TestSmsDelivered. The test sends customers'
SMS with AMI MessageSend (its own AMI user) or as raw SIP over UDP, and reads
the replies ivr sends back through Asterisk from those events.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from asterisk_harness import AMI, Event, Sandbox
from conftest import ServeProcess, free_port
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ivr.db import Contact, make_engine
from ivr.db.models import FollowUp, SmsMessage, SmsOutbox

pytestmark = pytest.mark.asterisk

SERVICE = "95555"
TRUNK = "pjsip:loop/sip:{digits}@127.0.0.1:5060"


def ensure_conf(sandbox: Sandbox) -> None:
    """The sandbox runs this checkout's SMS wiring (another checkout may have installed its own)."""
    sandbox.ensure_loaded(("dialplan show test-sms-in", "ivr-sms-in"), ("manager show user ivr", "message"))
    assert "ivr-sms-in" in sandbox.rx("dialplan show test-sms-in")


def server_env(**extra: str) -> dict[str, str]:
    return {"IVR_SIP_SMS_ENABLED": "true", "IVR_SIP_SMS_DESTINATION": TRUNK,
            "IVR_SIP_SMS_FROM_URI": f"sip:{SERVICE}@127.0.0.1", "IVR_SIP_SMS_POLL_INTERVAL": "0.3",
            "IVR_CALLBACKS_DISPATCH": "false", "IVR_SMS_MIN_INTERVAL": "0", **extra}


def wait_for(check: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def text_in(ami: AMI, sender: str, text: str) -> None:
    """A customer's phone sends ``text`` to the service number, as a SIP MESSAGE over the loop trunk."""
    response = ami.manager.send_action({
        "Action": "MessageSend", "Destination": f"pjsip:loop/sip:{SERVICE}@127.0.0.1:5060",
        "From": f"sip:{sender}@127.0.0.1", "Base64Body": base64.b64encode(text.encode()).decode()})
    assert response.get_header("Response") == "Success", response.headers


def delivered_to(number: str) -> Any:
    digits = number.lstrip("+")
    return lambda e: e.get("UserEvent") == "TestSmsDelivered" and e.get("To") == digits


def body(event: Event) -> str:
    return base64.b64decode(event["Body"]).decode()


def requests_for(engine: Engine, e164: str) -> list[FollowUp]:
    with Session(engine) as session:
        rows = list(session.scalars(select(FollowUp).where(FollowUp.e164 == e164)))
        session.expunge_all()
    return rows


def outbox_for(engine: Engine, e164: str) -> list[SmsOutbox]:
    with Session(engine) as session:
        rows = list(session.scalars(select(SmsOutbox).where(SmsOutbox.to_number == e164)))
        session.expunge_all()
    return rows


@pytest.fixture(scope="module")
def served(sandbox: Sandbox) -> Iterator[tuple[ServeProcess, Engine]]:
    ensure_conf(sandbox)
    server = ServeProcess(free_port(), server_env())
    engine = make_engine(f"sqlite:///{server.database}")
    wait_for(lambda: "AMI logged in" in server.output(), what="ivr serve's AMI login")
    yield server, engine
    engine.dispose()
    assert server.stop() == 0


def test_call_me_over_sip_makes_one_callback_and_the_reply_with_its_due_time_arrives_over_sip(
        ami: AMI, served: tuple[ServeProcess, Engine]) -> None:
    _, engine = served
    customer = "+8613800000501"
    text_in(ami, customer, "call me 请回电, \"soon\" | thanks")
    (request,) = wait_for(lambda: requests_for(engine, customer), what="the callback request")
    assert (request.origin, request.state, request.text) == ("sms", "open",
                                                             "call me 请回电, \"soon\" | thanks")
    due = request.due_at.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo("Asia/Shanghai"))
    reply = ami.wait_for(delivered_to(customer), timeout=30)
    assert body(reply) == f"Thank you, we will call you back by {due:%Y-%m-%d %H:%M}."
    assert f"<sip:{SERVICE}@127.0.0.1>" in base64.b64decode(reply["From"]).decode()
    (sms,) = wait_for(lambda: [r for r in outbox_for(engine, customer) if r.status == "sent"], what="sent")
    assert sms.attempts == 1 and sms.sent_at is not None
    with Session(engine) as session:
        timeline = session.scalars(select(Contact.outcome).where(Contact.caller_e164 == customer,
                                                                 Contact.direction == "outbound")).all()
    assert timeline == ["sent"]


#: "1" (sales), what breaks naive parsing on the way, and near the 1023 bytes Asterisk reads of a body.
LONG_TEXT = '1, "call" me | back\r\nplease ' + "请" * 300


def sip_message(port: int, sender: str, call_id: str, text: str) -> bytes:
    payload = text.encode()
    lines = [f"MESSAGE sip:{SERVICE}@127.0.0.1:5060 SIP/2.0",
             f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(8)};rport",
             "Max-Forwards: 70", f'From: "Carrier, test" <sip:{sender}@127.0.0.1>;tag={secrets.token_hex(4)}',
             f"To: <sip:{SERVICE}@127.0.0.1>", f"Call-ID: {call_id}", "CSeq: 7 MESSAGE",
             "Content-Type: text/plain;charset=UTF-8", f"Content-Length: {len(payload)}", "", ""]
    return "\r\n".join(lines).encode() + payload


def test_a_message_the_carrier_delivers_twice_makes_one_request_and_one_reply(
        ami: AMI, served: tuple[ServeProcess, Engine]) -> None:
    server, engine = served
    customer = "+8613800000502"
    call_id = f"{secrets.token_hex(8)}@carrier.example"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(5)
        for _ in range(2):  # the same message (Call-ID, CSeq) in two transactions, as after a failover
            udp.sendto(sip_message(udp.getsockname()[1], customer, call_id, LONG_TEXT), ("127.0.0.1", 5060))
            answer = udp.recv(4096).decode()
            assert answer.startswith("SIP/2.0 202"), answer
    wait_for(lambda: "(a copy already handled)" in server.output(), what="the second copy to be handled")
    assert len(requests_for(engine, customer)) == 1
    with Session(engine) as session:
        ids = session.scalars(select(SmsMessage.message_id).where(SmsMessage.from_e164 == customer)).all()
    assert ids == [f"sip:{call_id} 7 MESSAGE"]
    with Session(engine) as session:
        (kept,) = session.scalars(select(SmsMessage.text).where(SmsMessage.from_e164 == customer)).all()
    assert kept == LONG_TEXT
    reply = ami.wait_for(delivered_to(customer), timeout=30)
    assert body(reply).startswith("Thank you, we will call you back by ")
    assert len(outbox_for(engine, customer)) == 1


def test_a_send_asterisk_refuses_is_retried_then_failed_and_the_cli_shows_it(sandbox: Sandbox) -> None:
    ensure_conf(sandbox)
    server = ServeProcess(free_port(), server_env(
        IVR_SIP_SMS_DESTINATION="pjsip:no-such-trunk/sip:{digits}@127.0.0.1:5060",
        IVR_SIP_SMS_MAX_ATTEMPTS="3", IVR_SIP_SMS_RETRY_DELAY="0.5", IVR_SIP_SMS_RETRY_FACTOR="1"))
    engine = make_engine(f"sqlite:///{server.database}")
    try:
        from ivr.callbacks.outbox import SmsOutbox as Outbox

        Outbox(engine).store("+8613800000503", "your callback is at 11:00")
        (row,) = wait_for(lambda: [r for r in outbox_for(engine, "+8613800000503") if r.status == "failed"],
                          what="the message to fail")
        assert row.attempts == 3
        assert row.last_error == "Asterisk refused MessageSend: Message failed to send."
        log = server.output()
        assert re.search(r"attempt 1 failed .*retrying later", log) and "attempt 2 failed" in log
        listing = subprocess.run([sys.executable, "-m", "ivr.cli", "sms", "outbox", "--failed", "--url",
                                  f"sqlite:///{server.database}"], capture_output=True, text=True, timeout=60,
                                 env={**os.environ}, check=True).stdout.splitlines()
        assert listing[0] == "0 queued, 0 sending, 0 sent, 1 failed SMS"
        assert re.match(rf"#{row.id}  failed  3 tries  \+8613800000503  ", listing[1])
        assert "Message failed to send." in listing[1] and "your callback is at 11:00" in listing[1]
    finally:
        engine.dispose()
        assert server.stop() == 0


@pytest.mark.postgres
def test_two_instances_on_one_postgresql_act_on_each_sms_once_and_send_each_reply_once(
        ami: AMI, sandbox: Sandbox, postgres_url: str) -> None:
    ensure_conf(sandbox)
    from conftest import postgres_sandbox

    assert postgres_sandbox("reset", postgres_url.rsplit("/", 1)[1]).returncode == 0
    servers = [ServeProcess(free_port(), server_env(IVR_DATABASE_URL=postgres_url,
                                                    IVR_SERVER_INSTANCE=f"sms-{index}"))
               for index in range(2)]
    engine = make_engine(postgres_url)
    try:
        wait_for(lambda: all("AMI logged in" in server.output() for server in servers), what="AMI logins")
        customers = [f"+86138000006{index:02d}" for index in range(6)]
        for customer in customers:  # every IvrSmsIn reaches both instances
            text_in(ami, customer, "call me")
        for customer in customers:
            ami.wait_for(delivered_to(customer), timeout=30)

        def outbox_rows() -> list[Any]:
            with Session(engine) as session:
                rows = session.execute(select(SmsOutbox.to_number, SmsOutbox.status,
                                              SmsOutbox.attempts)).all()
            return sorted(tuple(row) for row in rows)

        sent = [(customer, "sent", 1) for customer in customers]
        wait_for(lambda: outbox_rows() == sent, what="each reply sent once")  # claimed once: 1 attempt
        with Session(engine) as session:
            assert sorted(session.scalars(select(FollowUp.e164)).all()) == customers

        def logs_once_both_saw_each_copy() -> str:
            text = "".join(server.output() for server in servers)
            return text if text.count("(a copy already handled)") == len(customers) else ""

        logs = wait_for(logs_once_both_saw_each_copy, what="the other instance to see each copy")
        assert len(re.findall(r"SMS \d+ to \+\d+ sent through Asterisk", logs)) == len(customers)
    finally:
        engine.dispose()
        for server in servers:
            assert server.stop() == 0
