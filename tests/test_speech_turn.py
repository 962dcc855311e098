"""A speech menu turn over AudioSocket, with a fake Clock and a scripted recogniser.

Barge-in, DTMF winning, the silence timeout and the AudioSocket always hung up
at the end, so the AGI that EXECed AudioSocket carries on.
"""

from __future__ import annotations

import uuid

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ivr.audiosocket import AudioSocketFactory, AudioSocketSession, Kind, encode_frame
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.recognizer import SpeechResult
from ivr.speech.turn import SpeechAnswer, SpeechTurn

CALL = uuid.UUID("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
FRAME = 320  # 20 ms of 8 kHz slin
PROMPT = bytes(FRAME * 100)  # 2 s
GRAMMAR = SpeechGrammar.build("main", "ko", {"1": ["상담원"], "2": ["예약"]})


class ScriptedRecognizer:
    """Stands in for vosk: the test says when speech starts and what the result is."""

    def __init__(self) -> None:
        self.fed = 0
        self.finished = self.closed = False
        self._started: defer.Deferred[float] = defer.Deferred()
        self._result: defer.Deferred[SpeechResult] = defer.Deferred()

    @property
    def grammar(self) -> SpeechGrammar:
        return GRAMMAR

    def feed(self, pcm: bytes, sample_rate: int) -> None:
        self.fed += len(pcm)

    def speech_started(self) -> defer.Deferred[float]:
        return self._started

    def result(self) -> defer.Deferred[SpeechResult]:
        return self._result

    def finish(self) -> None:
        self.finished = True
        if not self._result.called:
            self._result.callback(SpeechResult(None, "", 0.0, "silence"))

    def close(self) -> None:
        self.closed = True
        if not self._result.called:
            self._result.callback(SpeechResult(None, "", 0.0, "error"))

    def say(self, result: SpeechResult) -> None:
        self._started.callback(0.5)
        self._result.callback(result)


class Turn:
    def __init__(self, timeout: float = 3.0) -> None:
        self.clock = Clock()
        factory = AudioSocketFactory(self.clock)
        sessions: list[AudioSocketSession] = []
        factory.expect(CALL).addCallback(sessions.append)
        built = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert built is not None
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        built.makeConnection(self.transport)
        built.dataReceived(encode_frame(Kind.UUID, CALL.bytes))
        self.session = sessions[0]
        self.recognizer = ScriptedRecognizer()
        self.answers: list[SpeechAnswer] = []
        SpeechTurn(self.session, self.recognizer, self.clock, PROMPT, timeout=timeout).run().addCallback(
            self.answers.append)

    def caller_sends(self, frame: bytes) -> None:
        self.session.dataReceived(frame)

    def hung_up(self) -> bool:
        return self.transport.value().endswith(encode_frame(Kind.HANGUP))


def test_speech_stops_the_prompt_and_the_phrase_decides() -> None:
    turn = Turn()
    turn.clock.advance(0.5)
    assert turn.session.playing
    turn.caller_sends(encode_frame(Kind.AUDIO, bytes(FRAME)))
    assert turn.recognizer.fed == FRAME
    turn.recognizer.say(SpeechResult("1", "상담원", 0.92, "match"))
    assert not turn.session.playing  # barge-in
    assert turn.answers == [SpeechAnswer("speech", "1", "상담원", 0.92, barged_in=True)]
    assert turn.hung_up()


def test_a_key_wins_at_any_moment_even_mid_prompt() -> None:
    turn = Turn()
    turn.clock.advance(0.3)
    turn.caller_sends(encode_frame(Kind.DTMF, b"2"))
    assert turn.answers == [SpeechAnswer("dtmf", "2")]
    assert turn.recognizer.closed and not turn.session.playing and turn.hung_up()


def test_silence_after_the_prompt_takes_the_timeout_path() -> None:
    turn = Turn(timeout=3.0)
    turn.clock.pump([0.02] * 100)  # the 2 s prompt plays out
    assert turn.answers == []
    sent = len(turn.transport.value())
    turn.clock.pump([0.02] * 100)
    assert len(turn.transport.value()) > sent + 99 * FRAME  # silence keeps Asterisk's AudioSocket alive
    turn.clock.advance(0.9)
    assert turn.answers == []  # the timeout counts from the prompt's end
    turn.clock.advance(0.2)
    assert turn.recognizer.finished
    assert turn.answers == [SpeechAnswer("timeout")] and turn.hung_up()


def test_off_menu_speech_is_rejected_with_what_was_heard() -> None:
    turn = Turn()
    turn.clock.pump([0.02] * 120)
    turn.recognizer.say(SpeechResult(None, "날씨", 0.4, "rejected"))
    assert turn.answers == [SpeechAnswer("rejected", None, "날씨", 0.4)]


def test_a_caller_who_hangs_up_ends_the_turn() -> None:
    turn = Turn()
    turn.caller_sends(encode_frame(Kind.HANGUP))
    assert turn.transport.disconnecting
    turn.session.connectionLost(None)  # what the real transport does next
    assert [a.via for a in turn.answers] == ["hangup"] and turn.recognizer.closed


def test_a_phrase_heard_but_not_surely_keeps_its_choice_for_the_confirmation() -> None:
    turn = Turn()
    turn.clock.pump([0.02] * 120)
    turn.recognizer.say(SpeechResult("2", "예약", 0.5, "unsure"))
    assert turn.answers == [SpeechAnswer("unsure", "2", "예약", 0.5)] and turn.hung_up()
