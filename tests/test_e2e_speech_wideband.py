"""Wideband speech through the real Asterisk: a G.722 caller is heard at 16 kHz, a G.711 one at 8 kHz.

The caller is a Local channel in [test-caller] whose call to the demo hotline
(English, pocketsphinx, as in test_e2e_speech_en.py) crosses real SIP with one
codec: endpoint loop-g722 or loop-ulaw of the sandbox (tests/asterisk-overlay,
[test-sip-codec]). The hotline's channel is then PJSIP/loop-g722-... (native
format g722) or PJSIP/loop-ulaw-...; ivr reads CHANNEL(audionativeformat) and
Dials an AudioSocket channel at slin16 for the first, EXECs the 8 kHz
AudioSocket() application for the second. The G.722 caller says "two" (espeak-ng
at 16 kHz: Asterisk's human recordings are 8 kHz, and pocketsphinx is less sure
of them upsampled, see docs/benchmarks.md), the u-law caller Asterisk's human "one".
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from asterisk_harness import AMI, Event, Sandbox
from conftest import ROOT, ServeProcess, free_port
from speech_audio import human_line, wideband_line

pytestmark = pytest.mark.asterisk


def ensure_conf(sandbox: Sandbox) -> None:
    """The sandbox runs this checkout's codec loop (another checkout may have installed its own)."""
    sandbox.ensure_loaded(("pjsip show endpoints", "loop-g722"),
                          ("dialplan show test-sip-in-codec", "test-sip-in-codec"))
    assert "loop-g722" in sandbox.rx("pjsip show endpoints")


@pytest.fixture(scope="module")
def wideband_server(sandbox: Sandbox) -> Iterator[ServeProcess]:
    ensure_conf(sandbox)
    server = ServeProcess(free_port(), {"IVR_PLUGINS_FOLDER": str(ROOT / "ivr" / "demo" / "plugins"),
                                        "IVR_PLUGINS_DISABLE": "ivr.plugins.demo_hotline",
                                        "IVR_SPEECH_MODELS": "en=pocketsphinx",
                                        "IVR_SPEECH_PORT": str(free_port()),
                                        "IVR_LOG_LEVEL": "debug"})
    server.add_customers("Wideband caller", "en", [f"+861370000050{index}" for index in range(1, 4)])
    yield server
    server.stop()


def sound(sandbox: Sandbox, codec: str) -> str:
    """What the caller says: "two" by espeak-ng at 16 kHz into the G.722 leg (a wideband source);
    Asterisk's human "three" (8 kHz) into the u-law leg (accepted at once with the defaults)."""
    if codec == "g722":
        path = wideband_line("two", sandbox.host_path("/tmp"))
    else:
        path = human_line("digits/3", sandbox.host_path("/tmp"), ulaw=False)
    return f"/tmp/{path.stem}"


def call(ami: AMI, server: ServeProcess, caller: int, codec: str, sound: str) -> str:
    number = f"1370000050{caller}"
    # A phrase only the lenient search hears is confirmed ("Did you choose option two?"): the
    # caller presses 1 (yes) after speaking, which a phrase accepted at once never hears.
    ami.originate(f"Local/{codec}-{server.port}@test-sip-codec", "test-caller", "play",
                  {"PRE_WAIT": "4", "POST_WAIT": "10", "FILE": sound, "DIGITS": "WWWW1"},
                  caller_id=f'"Caller {caller}" <{number}>', codecs="slin16" if codec == "g722" else "")
    return number


def main_menu_choice(ami: AMI, number: str) -> Event:
    return ami.wait_for(lambda e: e.get("UserEvent") == "IvrMenuChoice" and e.get("CallerIDNum") == number
                        and e.get("Menu") == "main", timeout=45)


@pytest.mark.parametrize(("caller", "codec", "rate", "digit"),
                         [(1, "g722", 16000, "2"), (2, "ulaw", 8000, "3")])
def test_the_caller_is_heard_at_the_rate_their_codec_carries(sandbox: Sandbox, ami: AMI,
                                                             wideband_server: ServeProcess, caller: int,
                                                             codec: str, rate: int, digit: str) -> None:
    number = call(ami, wideband_server, caller, codec, sound(sandbox, codec))
    choice = main_menu_choice(ami, number)
    assert choice["Channel"].startswith(f"PJSIP/loop-{codec}-"), choice
    assert choice["Digit"] == digit
    said = f"main:said:{digit}>"
    assert choice["Path"] in (f"{said}main:{digit}", f"{said}main:confirm:{digit}:yes>main:{digit}")
    uniqueid = choice["Uniqueid"]
    output = wideband_server.output()
    assert f"call {uniqueid}: codec ({codec}), speech at {rate} Hz" in output
    heard = f"call {uniqueid}: heard at {rate} Hz:"  # the rate of Asterisk's frames
    assert f"{heard} speech '{digit}'" in output or f"{heard} unsure '{digit}'" in output
    audiosockets = [e for e in ami.events if e.get("Event") == "DialBegin" and e.get("Uniqueid") == uniqueid
                    and e.get("DestChannel", "").startswith("AudioSocket/")]
    assert bool(audiosockets) == (codec == "g722")  # the channel driver only when wideband
