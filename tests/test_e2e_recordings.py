"""Call recording through the real Asterisk: MixMonitor files, recording_ref, and who may fetch them.

A hotline call walks the menu into the sales queue; the simulated agent
(Local/<code>@test-agent) answers and "says" Asterisk's demo-thanks (a human
recording of 5.5 s) before hanging up. Asterisk's MixMonitor writes the
conversation into its monitor folder under the contact's uniqueid, ivr stores
that name in ``contacts.recording_ref`` and serves the file at
``/recordings/<contact id>``: to a supervisor (with Range for seeking), not to
another agent. A click-to-call records the customer's side over real SIP, and
a queue whose calls are configured unrecorded leaves no file.

"Not silent" is measured with sox: the recording's RMS amplitude must reach
half the RMS of the prompt that was played into the call (sox on the prompt
file itself, about 0.1). RMS goes with the square root of the share of the
file the prompt fills, so passing needs the prompt in over a quarter of it;
digital silence measures 0.0 and the idle noise of a quiet mu-law channel
under 0.001. A recording of the conversation measures about the prompt's own
level (MixMonitor writes the frames that flow: the prompt, and little or no
silence around it).
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from asterisk_harness import AMI, Event, Sandbox
from conftest import ServeProcess, free_port
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ivr.db import Contact, Customer, CustomerPhone, make_engine
from ivr.db.models import Agent
from ivr.web.sessions import SessionSigner

pytestmark = pytest.mark.asterisk

SECRET = "e2e-recordings-session-secret-0123456789"
ADMIN = "e2e-recordings-admin-key-0123456789"
AGENT, OTHER, BOSS = "1051", "1052", "9051"  # codes no other test uses: their events are ours alone
NUMBER = "13900000091"  # a known customer (language zh: no language menu)
SPOKEN = "demo-thanks"  # what the agent and the customer "say": a human voice, 5.5 s
MONITOR = "/var/spool/asterisk/monitor"  # Asterisk's monitor folder, inside the sandbox


@pytest.fixture(scope="module")
def recorded(sandbox: Sandbox, ami: AMI) -> Iterator[tuple[ServeProcess, int, Engine, Path]]:
    http_port = free_port()
    monitor = sandbox.host_path(MONITOR)
    server = ServeProcess(free_port(), {
        "IVR_HTTP_ENABLED": "true", "IVR_HTTP_PORT": str(http_port), "IVR_HTTP_SESSION_SECRET": SECRET,
        "IVR_HTTP_ADMIN_KEY": ADMIN, "IVR_DIALING_TRUNK": "loop", "IVR_DIALING_MAX_ATTEMPTS_PER_DAY": "50",
        "IVR_CALLBACKS_DISPATCH": "false", "IVR_RECORDINGS_FOLDER": str(monitor),
        "IVR_RECORDINGS_OFF_QUEUES": "after-sales"})
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        session.add_all([Agent(code=code, device=f"Local/{code}@test-agent", skills=["sales"], role=role)
                         for code, role in ((AGENT, "agent"), (OTHER, "agent"), (BOSS, "supervisor"))])
        session.add(Customer(name="Recorded customer", language="zh",
                             phones=[CustomerPhone(e164=f"+86{NUMBER}")]))
        session.commit()
    ami.agent_behaves(AGENT, ring="1", talk="1", say=SPOKEN)
    phone = f"Local/{AGENT}@test-agent"
    for queue in ("sales", "after-sales"):
        ami.manager.send_action({"Action": "QueueRemove", "Queue": queue, "Interface": phone})
        response = ami.manager.send_action({"Action": "QueueAdd", "Queue": queue, "MemberName": AGENT,
                                            "Interface": phone})
        assert response.get_header("Response") == "Success", response.headers
    yield server, http_port, engine, monitor
    for queue in ("sales", "after-sales"):
        ami.manager.send_action({"Action": "QueueRemove", "Queue": queue, "Interface": phone})
    ami.agent_behaves(AGENT)
    engine.dispose()
    server.stop()


# ------------------------------------------------------------------ helpers


def sox_rms(path: Path) -> float:
    """RMS amplitude of a sound file (sox ``stat``, 1.0 = full scale)."""
    result = subprocess.run(["sox", str(path), "-n", "stat"], capture_output=True, text=True, check=True)
    match = re.search(r"RMS\s+amplitude:\s+([0-9.]+)", result.stderr)
    assert match, result.stderr
    return float(match.group(1))


def prompt_rms(sandbox: Sandbox) -> float:
    """The played prompt's own level (sounds/en is a link that resolves only inside the sandbox)."""
    return sox_rms(next(sandbox.path.glob(f"usr/share/asterisk/sounds/en_*/{SPOKEN}.wav")))


def eventually(check: Callable[[], object], what: str, timeout: float = 60.0) -> object:
    """Poll until ``check`` returns something true (the deadline only guards against hanging)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.2)


def newer(ami: AMI, start: int, predicate: Callable[[Event], bool], timeout: float = 60.0) -> Event:
    """The first event since ``ami.events[start]`` matching ``predicate``."""
    found = eventually(lambda: next((e for e in ami.events[start:] if predicate(e)), None),
                       "an AMI event", timeout)
    assert isinstance(found, dict)
    return found


def dialplan_steps(ami: AMI, start: int, uniqueid: str) -> list[tuple[str, str, str]]:
    """(application, its arguments, channel language) of each dialplan step the channel ran."""
    return [(e.get("Application", ""), e.get("AppData", ""), e.get("Language", ""))
            for e in ami.events[start:] if e.get("Event") == "Newexten" and e.get("Uniqueid") == uniqueid]


def contact_of(engine: Engine, **where: str) -> Contact | None:
    with Session(engine) as session:
        row = session.scalars(select(Contact).filter_by(**where).order_by(Contact.id.desc())).first()
        if row is not None:
            session.expunge(row)
        return row


def wait_contact(engine: Engine, what: str, ready: Callable[[Contact], object] = bool,
                 **where: str) -> Contact:
    """The newest contact matching ``where`` once ``ready`` says so."""
    found = eventually(lambda: (c := contact_of(engine, **where)) is not None and ready(c) and c, what)
    assert isinstance(found, Contact)
    return found


def closed_wav(path: Path) -> bool:
    """MixMonitor writes the WAV header's sizes when it closes the file: header and size agree."""
    try:
        with wave.open(str(path), "rb") as w:
            frames, width, channels = w.getnframes(), w.getsampwidth(), w.getnchannels()
    except (FileNotFoundError, EOFError, wave.Error):
        return False
    return frames > 0 and path.stat().st_size >= 44 + frames * width * channels


def fetch(port: int, contact_id: int, agent: str = "", headers: dict[str, str] | None = None
          ) -> tuple[int, dict[str, str], bytes]:
    cookie = {"Cookie": f"ivr_agent={SessionSigner(SECRET).make(agent)[0]}"} if agent else {}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", f"/recordings/{contact_id}", headers={**cookie, **(headers or {})})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def check_serving(port: int, contact: Contact, file: Path) -> None:
    """No session 401, another agent 403, a supervisor the whole file and any range of it."""
    audio = file.read_bytes()
    assert fetch(port, contact.id)[0] == 401
    status, _, body = fetch(port, contact.id, OTHER)
    assert status == 403 and b"RIFF" not in body
    status, headers, body = fetch(port, contact.id, BOSS)
    assert (status, headers["content-type"]) == (200, "audio/wav") and body == audio
    status, headers, body = fetch(port, contact.id, BOSS, {"Range": "bytes=44-1043"})
    assert (status, body) == (206, audio[44:1044])
    assert headers["content-range"] == f"bytes 44-1043/{len(audio)}"


# ------------------------------------------------------------------ the calls


def test_a_queue_call_answered_by_an_agent_is_recorded_and_served_to_the_right_people(
        ami: AMI, sandbox: Sandbox, recorded: tuple[ServeProcess, int, Engine, Path]) -> None:
    server, port, engine, monitor = recorded
    start = len(ami.events)
    ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",
                  {"IVR_AGI_PORT": str(server.port), "DIGITS": "1", "PRE_WAIT": "2", "POST_WAIT": "40"},
                  caller_id=f'"Caller" <{NUMBER}>')
    said = newer(ami, start, lambda e: e.get("UserEvent") == "TestAgentSaid" and e.get("Agent") == AGENT)
    assert said["Status"] == "SUCCESS"
    contact = wait_contact(engine, "the contact", caller_number=NUMBER, queue="sales")
    newer(ami, start, lambda e: e.get("Event") == "Hangup" and e.get("Uniqueid") == contact.uniqueid)
    # The caller was told, in their language, before the recording started.
    steps = dialplan_steps(ami, start, contact.uniqueid)
    assert ("Playback", "ivr-recording-notice", "zh") in steps
    assert steps.index(("Playback", "ivr-recording-notice", "zh")) < \
        steps.index(("MixMonitor", f"{contact.uniqueid}.wav,b", "zh"))
    contact = wait_contact(engine, "recording_ref stored", lambda c: c.recording_ref,
                           uniqueid=contact.uniqueid)
    assert contact.recording_ref == f"{contact.uniqueid}.wav"  # named after the contact, nothing else
    file = monitor / contact.recording_ref
    eventually(lambda: closed_wav(file), f"{file} written and closed", timeout=30)
    level, floor = sox_rms(file), prompt_rms(sandbox) / 2
    print(f"recording {file.name}: RMS {level:.4f} (floor {floor:.4f})")
    assert level > floor, f"the recording is (nearly) silent: RMS {level} <= {floor}"
    check_serving(port, contact, file)
    # The agent who took the call may hear it too. contacts.agent_id comes from the queue's
    # AgentConnect (the queue-tracking feature); if it is not written here, write it as it would.
    with Session(engine) as session:
        ana = session.scalars(select(Agent).where(Agent.code == AGENT)).one()
        row = session.get(Contact, contact.id)
        assert row is not None and row.agent_id in (None, ana.id)
        row.agent_id = ana.id
        session.commit()
    status, _, body = fetch(port, contact.id, AGENT)
    assert status == 200 and body == file.read_bytes()
    assert fetch(port, contact.id, OTHER)[0] == 403


def test_a_queue_whose_calls_are_not_recorded_leaves_no_file(
        ami: AMI, recorded: tuple[ServeProcess, int, Engine, Path]) -> None:
    server, _, engine, monitor = recorded
    start = len(ami.events)
    ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",  # after-sales (2), a person (0)
                  {"IVR_AGI_PORT": str(server.port), "DIGITS": "2WW0", "PRE_WAIT": "2", "POST_WAIT": "40"},
                  caller_id=f'"Caller" <{NUMBER}>')
    said = newer(ami, start, lambda e: e.get("UserEvent") == "TestAgentSaid" and e.get("Agent") == AGENT)
    assert said["Status"] == "SUCCESS"  # the agent answered and talked
    contact = wait_contact(engine, "the contact", caller_number=NUMBER, queue="after-sales")
    newer(ami, start, lambda e: e.get("Event") == "Hangup" and e.get("Uniqueid") == contact.uniqueid)
    applications = {application for application, _, _ in dialplan_steps(ami, start, contact.uniqueid)}
    assert "Queue" in applications and not applications & {"Playback", "MixMonitor"}  # no notice either
    assert not (monitor / f"{contact.uniqueid}.wav").exists()
    refreshed = contact_of(engine, uniqueid=contact.uniqueid)
    assert refreshed is not None and refreshed.recording_ref == ""


def test_a_click_to_call_records_the_conversation_with_the_customer(
        ami: AMI, sandbox: Sandbox, recorded: tuple[ServeProcess, int, Engine, Path]) -> None:
    _, port, engine, monitor = recorded
    customer = "+8613800000291"
    digits = customer.lstrip("+")
    for name, value in (("", "answer"), ("_FILE", SPOKEN), ("_POST_WAIT", "1")):
        ami.set_global(f"TEST_CUSTOMER_{digits}{name}", value)
    ami.agent_behaves(OTHER)  # answers, says nothing: the customer's voice is what gets recorded
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/api/calls", json.dumps({"agent": OTHER, "number": customer}),
                       {"Content-Type": "application/json", "X-IVR-Admin-Key": ADMIN})
    response = connection.getresponse()
    assert response.status == 202, response.read()
    connection.close()
    contact = wait_contact(engine, "the click-to-call ended", lambda c: c.status == "final",
                           caller_e164=customer)
    assert (contact.kind, contact.outcome) == ("click-to-call", "answered")
    contact = wait_contact(engine, "recording_ref stored", lambda c: c.recording_ref,
                           uniqueid=contact.uniqueid)
    assert contact.recording_ref == f"{contact.uniqueid}.wav" and contact.uniqueid.startswith("ivr-out-")
    file = monitor / contact.recording_ref
    eventually(lambda: closed_wav(file), f"{file} written and closed", timeout=30)
    level, floor = sox_rms(file), prompt_rms(sandbox) / 2
    print(f"recording {file.name}: RMS {level:.4f} (floor {floor:.4f})")
    assert level > floor, f"the recording is (nearly) silent: RMS {level} <= {floor}"
    status, _, body = fetch(port, contact.id, BOSS)
    assert status == 200 and body == file.read_bytes()
    assert fetch(port, contact.id, AGENT)[0] == 403  # not their call
