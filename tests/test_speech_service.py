"""SpeechService.turn: which AudioSocket a call gets (8 kHz application or 16 kHz channel) and what flows.

Asterisk is played by a fake call: it answers GET VARIABLE with a codec list
and, on EXEC, connects an AudioSocket session over a StringTransport the way
app_audiosocket / chan_audiosocket do (UUID first, then audio at the channel's
rate), and a key press ends the turn.
"""

from __future__ import annotations

import array
import uuid
import wave
from pathlib import Path

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ivr.audiosocket import AudioSocketFactory, Kind, encode_frame, frame_bytes
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.recognizer import Recognizer, SpeechResult
from ivr.speech.service import PromptAudio, SpeechService
from ivr.speech.turn import SpeechAnswer
from ivr.speech.wideband import audiosocket_dial, call_rate, double_rate

PROMPT = array.array("h", [(i * 37) % 2000 - 1000 for i in range(1600)]).tobytes()  # 0.2 s at 8 kHz


class StubRecognizer:
    """Hears nothing; records the rate of every frame it was fed."""

    def __init__(self, grammar: SpeechGrammar) -> None:
        self._grammar = grammar
        self.rates: list[int] = []
        self.closed = False

    @property
    def grammar(self) -> SpeechGrammar:
        return self._grammar

    def feed(self, pcm: bytes, sample_rate: int) -> None:
        self.rates.append(sample_rate)

    def speech_started(self) -> defer.Deferred[float]:
        return defer.Deferred()

    def result(self) -> defer.Deferred[SpeechResult]:
        return defer.Deferred()

    def finish(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class FakeCall:
    """A channel with native formats ``formats``; Asterisk connects on EXEC unless ``connects`` is False."""

    uniqueid = "1700000000.1"

    def __init__(self, factory: AudioSocketFactory, formats: str | None, connects: bool = True) -> None:
        self.factory = factory
        self.formats = formats
        self.connects = connects
        self.commands: list[tuple[str, ...]] = []
        self.transport = StringTransport()

    async def get_variable(self, name: str) -> str | None:
        self.commands.append(("GET VARIABLE", name))
        return self.formats

    async def exec(self, application: str, *args: str) -> int:
        self.commands.append((application, *args))
        if not self.connects:
            return 0  # Dial: CHANUNAVAIL (with g, 0); the turn must not wait for a socket
        if application == "AudioSocket":
            ident, kind, rate = uuid.UUID(args[0]), Kind.AUDIO, 8000
        else:  # Dial(AudioSocket/<host>:<port>/<uuid>/c(slin16))
            ident, kind, rate = uuid.UUID(args[0].split("/")[2]), Kind.AUDIO_SLIN16, 16000
        session = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert session is not None
        session.makeConnection(self.transport)
        session.dataReceived(encode_frame(Kind.UUID, ident.bytes))
        await task.deferLater(self.factory.clock, 0.02)  # the next frame of the call
        session.dataReceived(encode_frame(kind, bytes(frame_bytes(rate))) + encode_frame(Kind.DTMF, b"5"))
        return 0


class Harness:
    def __init__(self, tmp_path: Path, wideband: bool = True) -> None:
        folder = tmp_path / "en"
        folder.mkdir(exist_ok=True)
        with wave.open(str(folder / "menu.wav"), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(PROMPT)
        self.clock = Clock()
        self.factory = AudioSocketFactory(self.clock)
        self.grammar = SpeechGrammar("main", "en", {"1": ("sales",)})
        self.recognizers: list[StubRecognizer] = []
        self.service = SpeechService(self.factory, "127.0.0.1", 4574, self.clock, self._recognizer,
                                     PromptAudio(tmp_path), wideband=wideband)

    def _recognizer(self, language: str, grammar: SpeechGrammar) -> Recognizer:
        recognizer = StubRecognizer(grammar)
        self.recognizers.append(recognizer)
        return recognizer

    def turn(self, call: FakeCall) -> SpeechAnswer:
        answers: list[SpeechAnswer] = []
        defer.Deferred.fromCoroutine(self.service.turn(call, "menu", self.grammar, 5.0)).addCallback(
            answers.append)
        self.clock.advance(0.02)
        assert len(answers) == 1, "the turn did not end"
        return answers[0]


def sent(transport: StringTransport) -> list[tuple[int, bytes]]:
    data, frames = transport.value(), []
    while data:
        length = int.from_bytes(data[1:3], "big")
        frames.append((data[0], data[3:3 + length]))
        data = data[3 + length:]
    return frames


def test_a_wideband_caller_gets_an_audiosocket_channel_at_16_khz(tmp_path: Path) -> None:
    line = Harness(tmp_path)
    call = FakeCall(line.factory, "(g722|ulaw)")
    assert line.turn(call) == SpeechAnswer("dtmf", "5")
    (_, variable), (application, target, timeout, options) = call.commands
    assert variable == "CHANNEL(audionativeformat)"
    ident = uuid.UUID(target.split("/")[2])
    assert (application, target, timeout, options) == (
        "Dial", f"AudioSocket/127.0.0.1:4574/{ident}/c(slin16)", "", "g")
    assert line.recognizers[0].rates == [16000]
    frames = sent(call.transport)
    prompt = [payload for kind, payload in frames if kind != Kind.HANGUP]
    assert {kind for kind, _ in frames[:-1]} == {Kind.AUDIO_SLIN16}
    assert prompt[0] == double_rate(PROMPT)[:640]  # the 8 kHz prompt, at the channel's rate
    assert frames[-1] == (Kind.HANGUP, b"")  # Dial returns; the AGI carries on


@pytest.mark.parametrize("formats", ["(ulaw)", "(alaw|g722)", "(slin)", "", None])
def test_a_narrowband_caller_keeps_the_8_khz_application(tmp_path: Path, formats: str | None) -> None:
    line = Harness(tmp_path)
    call = FakeCall(line.factory, formats)
    assert line.turn(call) == SpeechAnswer("dtmf", "5")
    application, ident, address = call.commands[1]
    assert (application, address) == ("AudioSocket", "127.0.0.1:4574") and uuid.UUID(ident)
    assert line.recognizers[0].rates == [8000]
    frames = sent(call.transport)
    assert {kind for kind, _ in frames[:-1]} == {Kind.AUDIO}
    assert frames[0][1] == PROMPT[:320]


def test_with_wideband_off_no_codec_is_asked_and_g722_gets_8_khz(tmp_path: Path) -> None:
    line = Harness(tmp_path, wideband=False)
    call = FakeCall(line.factory, "(g722)")
    assert line.turn(call) == SpeechAnswer("dtmf", "5")
    assert [command[0] for command in call.commands] == ["AudioSocket"]
    assert line.recognizers[0].rates == [8000]


def test_an_audiosocket_channel_that_never_connects_ends_the_turn_for_the_keypad(tmp_path: Path) -> None:
    line = Harness(tmp_path)
    call = FakeCall(line.factory, "(opus)", connects=False)
    assert line.turn(call) == SpeechAnswer("error")  # at once: Dial returned, nothing waits for the socket
    assert call.commands[1][0] == "Dial"
    assert line.recognizers[0].closed and line.factory.expected == 0


@pytest.mark.parametrize(("formats", "rate"), [
    ("(g722)", 16000), ("(g722|ulaw)", 16000), ("(opus)", 16000), ("(slin16)", 16000), ("(siren7)", 16000),
    ("(ulaw|g722)", 8000), ("(ulaw)", 8000), ("(alaw)", 8000), ("(gsm)", 8000), ("(slin)", 8000),
    ("(slin12)", 8000), ("(nothing)", 8000), ("", 8000), (None, 8000),
])
def test_the_first_native_format_decides_the_rate(formats: str | None, rate: int) -> None:
    assert call_rate(formats) == rate


def test_the_dial_target_names_the_codec() -> None:
    ident = uuid.UUID(int=7)
    assert audiosocket_dial("10.0.0.5", 9092, ident, 16000) == f"AudioSocket/10.0.0.5:9092/{ident}/c(slin16)"
    assert audiosocket_dial("10.0.0.5", 9092, ident, 8000).endswith("/c(slin)")
    with pytest.raises(ValueError, match="44100 Hz"):
        audiosocket_dial("10.0.0.5", 9092, ident, 44100)


def test_doubling_the_rate_keeps_every_sample_and_interpolates_between() -> None:
    wide = array.array("h", double_rate(array.array("h", [0, 100, -100, 32767]).tobytes()))
    assert list(wide) == [0, 50, 100, 0, -100, 16333, 32767, 32767]
    assert double_rate(b"") == b""


def test_prompts_come_at_twice_their_rate_for_a_wideband_turn(tmp_path: Path) -> None:
    Harness(tmp_path)  # writes en/menu.wav
    prompts = PromptAudio(tmp_path)
    assert prompts.pcm("menu", "en") == (PROMPT, 8000) == prompts.pcm("menu", "en", 8000)
    wide, rate = prompts.pcm("menu", "en", 16000)
    assert rate == 16000 and len(wide) == 2 * len(PROMPT) and wide[::4] == PROMPT[::2]
    assert prompts.pcm("menu", "en", 16000)[0] is wide  # interpolated once
    assert prompts.pcm("menu", "en", 48000) == (PROMPT, 8000)  # Asterisk transcodes the rest
