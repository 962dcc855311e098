"""English speech through the real Asterisk: a human voice says an option of the demo hotline.

The hotline is the demo's (ivr/demo/plugins/hotline.toml, as scripts/demo
serves it) with ``[speech] models = { en = "pocketsphinx" }``. The caller is a
Local channel in [test-caller] that plays one of Asterisk's own English
recordings (a person's voice), sent through G.711 u-law and back first as a
narrowband call would carry it; ivr EXECs AudioSocket, streams the main
menu's prompt back and decides with pocketsphinx. The caller is a customer
whose language is English, so the lookup skips the language menu.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from asterisk_harness import AMI, Event, Sandbox
from conftest import ROOT, ServeProcess, free_port
from speech_audio import human_line
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import Contact, make_engine

pytestmark = pytest.mark.asterisk


@pytest.fixture(scope="module")
def english_server(sandbox: Sandbox) -> Iterator[ServeProcess]:
    server = ServeProcess(free_port(), {"IVR_PLUGINS_FOLDER": str(ROOT / "ivr" / "demo" / "plugins"),
                                        "IVR_PLUGINS_DISABLE": "ivr.plugins.demo_hotline",
                                        "IVR_SPEECH_MODELS": "en=pocketsphinx",
                                        "IVR_SPEECH_PORT": str(free_port())})
    server.add_customers("English caller", "en", [f"+861370000040{index}" for index in range(1, 4)])
    yield server
    server.stop()


def said(sandbox: Sandbox, recording: str) -> str:
    """Asterisk's human recording ``recording`` after a u-law line, as a sound the caller can play."""
    wav = human_line(recording, sandbox.host_path("/tmp"))
    return f"/tmp/{wav.stem}"


def call(ami: AMI, server: ServeProcess, caller: int, **variables: str) -> str:
    number = f"1370000040{caller}"
    # The greeting ("Welcome to the service hotline.") is played first; the caller speaks
    # into the main menu's prompt, as someone who knows the menu does.
    ami.originate("Local/hotline@test-route", "test-caller", "play",
                  {"IVR_AGI_PORT": str(server.port), "PRE_WAIT": "4", "POST_WAIT": "15", **variables},
                  caller_id=f'"Caller {caller}" <{number}>')
    return number


def queued(ami: AMI, number: str) -> Event:
    return ami.wait_for(lambda e: e.get("UserEvent") == "IvrQueue" and e.get("CallerIDNum") == number,
                        timeout=45)


def contact(server: ServeProcess, number: str, timeout: float = 45) -> Contact:
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


def test_a_human_voice_saying_three_chooses_option_three(
        sandbox: Sandbox, ami: AMI, english_server: ServeProcess) -> None:
    # "three" is found by the strict grammar (garbage_penalty 4): accepted without a question.
    number = call(ami, english_server, 1, FILE=said(sandbox, "digits/3"))
    choice = ami.wait_for(lambda e: e.get("UserEvent") == "IvrMenuChoice" and e.get("CallerIDNum") == number
                          and e.get("Menu") == "main", timeout=45)
    assert choice["Digit"] == "3" and choice["Path"] == "main:said:3>main:3"
    row = contact(english_server, number, timeout=60)
    assert row.transcript == "three" and row.dtmf == "3"


def test_human_speech_off_the_menu_is_not_routed_and_the_keypad_still_works(
        sandbox: Sandbox, ami: AMI, english_server: ServeProcess) -> None:
    # With the defaults (whole decode, accept at 4, confirm what 30 hears) most off-menu speech is asked
    # about ("Did you choose option 0?", docs/benchmarks.md), some rejected at once; this one goes
    # either way between runs (the call's frames differ). The caller presses 2 (no) when a question
    # would be asked (the invalid-choice prompt ignores it), then 0 in the menu again.
    number = call(ami, english_server, 2, FILE=said(sandbox, "queue-thankyou"),
                  DIGITS="WWWW2WWWWWWWWWWWW0")
    event = queued(ami, number)
    assert event["Queue"] == "sales"
    path = event["Path"]
    assert (path.startswith("main:said:?>") or ":no>" in path) and path.endswith("main:0"), path


def test_a_phrase_heard_but_not_surely_is_confirmed_before_it_routes(
        sandbox: Sandbox, ami: AMI, english_server: ServeProcess) -> None:
    # "one" is found by the lenient grammar only (confirm_penalty): ivr asks "Did you choose
    # option one?" and the caller presses 1 (yes) while it asks; the call goes to sales.
    number = call(ami, english_server, 3, FILE=said(sandbox, "digits/1"), DIGITS="WWWW1")
    event = queued(ami, number)
    assert event["Queue"] == "sales" and event["Language"] == "en"
    assert event["Path"] == "main:said:1>main:confirm:1:yes>main:1"
    row = contact(english_server, number, timeout=60)
    assert [step["kind"] for step in row.ivr_path][:3] == ["speech", "confirm", "menu"]
    assert row.ivr_path[1]["value"] == "1:yes" and row.transcript.startswith("one")
