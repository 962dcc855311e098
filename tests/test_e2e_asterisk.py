"""End-to-end: real calls through the sandbox Asterisk into ``ivr serve``.

The "caller" is the ;1 half of a Local channel running the test-caller
context (Wait, SendDTMF, Playback, MixMonitor, hang up); the ;2 half runs
the site dialplan from asterisk-conf/ and reaches ivr over FastAGI.
What happened is read back from AMI events (pyst2) and recordings.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from asterisk_harness import AMI, Event, Sandbox
from conftest import TEST_ROUTES, ServeProcess, free_port

pytestmark = pytest.mark.asterisk


def caller_number() -> str:
    """A caller ID unique to one test call, used to find its events."""
    return "9" + "".join(random.choices("0123456789", k=9))


def from_caller(number: str, name: str) -> Callable[[Event], bool]:
    return lambda e: (e.get("Event") == "UserEvent" and e.get("UserEvent") == name
                      and e.get("CallerIDNum") == number)


def audio_rms(path: str) -> float:
    """RMS amplitude of a recording, by sox."""
    result = subprocess.run(["sox", path, "-n", "stat"], capture_output=True, text=True, check=True)
    match = re.search(r"RMS\s+amplitude:\s+([0-9.]+)", result.stderr)
    assert match, result.stderr
    return float(match.group(1))


def wait_for_file(path: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, "rb") as handle:
                if len(handle.read()) > 44:
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no recording at {path}")


def test_call_is_answered_hears_the_prompt_and_the_handler_sees_the_digit(
        sandbox: Sandbox, ami: AMI, ivr_server: ServeProcess) -> None:
    number = caller_number()
    recording = f"/tmp/ivr-test-{number}.wav"
    ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",
                  {"DIGITS": "2", "PRE_WAIT": "2", "RECORD_TO": recording},
                  caller_id=f'"E2E" <{number}>')
    choice = ami.wait_for(from_caller(number, "IvrMenuChoice"), timeout=30)
    assert (choice["Menu"], choice["Choice"]) == ("language", "zh")
    ami.wait_for(lambda e: e.get("Event") == "Hangup" and e.get("CallerIDNum") == number
                 and ";1" in e.get("Channel", ""), timeout=30)
    host_recording = str(sandbox.host_path(recording))
    wait_for_file(host_recording)
    # The caller heard the greeting: the recording of the caller's side is not silence.
    assert audio_rms(host_recording) > 0.01


def test_caller_hanging_up_mid_prompt_ends_the_handler_cleanly(
        sandbox: Sandbox, ami: AMI, ivr_server: ServeProcess) -> None:
    number = caller_number()
    ami.originate("Local/long-prompt@test-route", "test-caller", "hangup-after",
                  {"HANGUP_AFTER": "2"}, caller_id=f'"E2E" <{number}>')
    done = ami.wait_for(lambda e: e.get("UserEvent") == "IvrAgiDone" and e.get("CallerIDNum") == number,
                        timeout=30)
    assert done["Status"] == "HANGUP"
    uniqueid = done["Uniqueid"]
    deadline = time.monotonic() + 10
    while f"call {uniqueid} on long-prompt ended: caller hung up" not in ivr_server.output():
        assert time.monotonic() < deadline, ivr_server.output()[-2000:]
        time.sleep(0.1)
    lines = [line for line in ivr_server.output().splitlines() if uniqueid in line]
    assert not [line for line in lines if "#error" in line or "#critical" in line or "#warn" in line]
    assert not [e for e in ami.events if e.get("UserEvent") == "IvrPromptDone"
                and e.get("CallerIDNum") == number]


def test_without_ivr_serve_asterisk_takes_the_fallback_within_two_seconds(
        sandbox: Sandbox, ami: AMI) -> None:
    number = caller_number()
    recording = f"/tmp/ivr-test-{number}.wav"
    started = time.monotonic()
    ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",
                  {"IVR_AGI_PORT": "4599", "RECORD_TO": recording, "POST_WAIT": "4"},
                  caller_id=f'"E2E" <{number}>')
    fallback = ami.wait_for(from_caller(number, "IvrFallback"), timeout=10)
    elapsed = time.monotonic() - started
    assert fallback["Reason"] == "FAILURE"
    assert elapsed < 3.0, f"fallback took {elapsed:.2f}s"
    ami.wait_for(lambda e: e.get("Event") == "Hangup" and e.get("CallerIDNum") == number
                 and ";1" in e.get("Channel", ""), timeout=30)
    host_recording = str(sandbox.host_path(recording))
    wait_for_file(host_recording)
    assert audio_rms(host_recording) > 0.01  # the apology was heard, not silence


def test_rfc4733_dtmf_over_real_sip_reaches_the_handler(
        sandbox: Sandbox, ami: AMI, ivr_server: ServeProcess) -> None:
    number = caller_number()
    ami.originate("Local/hotline@test-sip-out", "test-caller", "dtmf",
                  {"DIGITS": "2", "PRE_WAIT": "2"}, caller_id=f'"E2E SIP" <{number}>')
    choice = ami.wait_for(from_caller(number, "IvrMenuChoice"), timeout=30)
    assert (choice["Menu"], choice["Choice"]) == ("language", "zh")
    assert choice["Channel"].startswith("PJSIP/loop-"), choice


def test_fifty_concurrent_calls_all_complete(
        sandbox: Sandbox, ami: AMI, ivr_server: ServeProcess) -> None:
    calls = {caller_number(): ("en", "zh")[i % 2] for i in range(50)}
    for number, language in calls.items():
        ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",
                      {"DIGITS": "1" if language == "en" else "2", "PRE_WAIT": "2", "POST_WAIT": "3"},
                      caller_id=f'"Load" <{number}>')
    choices: list[Event] = ami.wait_for_all(
        lambda e: e.get("UserEvent") == "IvrMenuChoice" and e.get("CallerIDNum") in calls,
        count=50, timeout=120)
    assert {c["CallerIDNum"]: c["Choice"] for c in choices} == calls
    done = ami.wait_for_all(
        lambda e: e.get("UserEvent") == "IvrAgiDone" and e.get("CallerIDNum") in calls,
        count=50, timeout=60)
    # Each caller hangs up in the main menu, so AGISTATUS is HANGUP.
    assert {d["Status"] for d in done} == {"HANGUP"}
    assert not [e for e in ami.events if e.get("UserEvent") == "IvrFallback"
                and e.get("CallerIDNum") in calls]


# -- the AGI outcomes Asterisk's own testsuite checks, seen from the dialplan -------


def agi_done(ami: AMI, number: str, timeout: float = 30) -> Event:
    return ami.wait_for(lambda e: e.get("UserEvent") == "IvrAgiDone" and e.get("CallerIDNum") == number,
                        timeout=timeout)


def fallbacks(ami: AMI, number: str) -> list[Event]:
    return [e for e in ami.events if e.get("UserEvent") == "IvrFallback" and e.get("CallerIDNum") == number]


def test_outcome_success_handler_finished(sandbox: Sandbox, ami: AMI, ivr_server: ServeProcess) -> None:
    number = caller_number()
    ami.originate("Local/echo@test-route", "test-caller", "hangup-after", {"HANGUP_AFTER": "5"},
                  caller_id=f'"E2E" <{number}>')
    done = agi_done(ami, number)
    assert (done["Status"], done["Result"]) == ("SUCCESS", "done")
    time.sleep(0.5)
    assert fallbacks(ami, number) == []


def test_outcome_notfound_unknown_route_goes_to_fallback(
        sandbox: Sandbox, ami: AMI, ivr_server: ServeProcess) -> None:
    number = caller_number()
    ami.originate("Local/no-such-menu@test-route", "test-caller", "hangup-after", {"HANGUP_AFTER": "4"},
                  caller_id=f'"E2E" <{number}>')
    assert ami.wait_for(from_caller(number, "IvrFallback"))["Reason"] == "unknown-route"
    assert "no route for AGI script 'no-such-menu'" in ivr_server.output()


def test_outcome_failure_handler_error_goes_to_fallback(
        sandbox: Sandbox, ami: AMI, ivr_server: ServeProcess) -> None:
    number = caller_number()
    ami.originate("Local/boom@test-route", "test-caller", "hangup-after", {"HANGUP_AFTER": "4"},
                  caller_id=f'"E2E" <{number}>')
    assert ami.wait_for(from_caller(number, "IvrFallback"))["Reason"] == "handler-error"


def test_outcome_failure_refused_peer_goes_to_fallback(sandbox: Sandbox, ami: AMI) -> None:
    port = free_port()
    server = ServeProcess(port, {"IVR_AGI_ALLOWED_PEERS": "127.0.0.2/32"})
    try:
        number = caller_number()
        ami.originate("Local/4000@ivr-hotline", "test-caller", "hangup-after",
                      {"IVR_AGI_PORT": str(port), "HANGUP_AFTER": "4"}, caller_id=f'"E2E" <{number}>')
        assert ami.wait_for(from_caller(number, "IvrFallback"))["Reason"] == "INTERRUPTED"
    finally:
        server.stop()
    assert "not in allowed_peers" in server.output()


def test_outcome_failure_server_killed_mid_call_goes_to_fallback(sandbox: Sandbox, ami: AMI) -> None:
    port = free_port()
    server = ServeProcess(port, {"IVR_ROUTING_ROUTES": TEST_ROUTES})
    number = caller_number()
    try:
        ami.originate("Local/slow@test-route", "test-caller", "hangup-after",
                      {"IVR_AGI_PORT": str(port), "HANGUP_AFTER": "8"}, caller_id=f'"E2E" <{number}>')
        ami.wait_for(lambda e: e.get("Event") == "Newexten" and e.get("CallerIDNum") == number
                     and e.get("Application") == "AGI", timeout=10)
        time.sleep(1.0)  # inside WAIT FOR DIGIT now
    finally:
        server.stop(signal.SIGKILL)
    assert ami.wait_for(from_caller(number, "IvrFallback"))["Reason"] == "INTERRUPTED"


def test_outcome_hangup_while_waiting_is_a_normal_end(
        sandbox: Sandbox, ami: AMI, ivr_server: ServeProcess) -> None:
    number = caller_number()
    ami.originate("Local/slow@test-route", "test-caller", "hangup-after", {"HANGUP_AFTER": "2"},
                  caller_id=f'"E2E" <{number}>')
    done = agi_done(ami, number)
    assert done["Status"] == "HANGUP"
    uniqueid = done["Uniqueid"]
    deadline = time.monotonic() + 10
    while f"call {uniqueid} on slow ended: caller hung up" not in ivr_server.output():
        assert time.monotonic() < deadline, ivr_server.output()[-2000:]
        time.sleep(0.1)
    assert fallbacks(ami, number) == []
