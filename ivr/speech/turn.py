"""One speech menu turn over AudioSocket: prompt, barge-in, DTMF, timeout, decision.

:class:`SpeechTurn` joins an :class:`~ivr.audiosocket.AudioSocketSession`
(the caller's audio and keys) to a :class:`~ivr.speech.recognizer.Recognizer`
(what they said). It streams the prompt, stops it as soon as the caller
starts speaking, takes a key at any moment (the keypad always wins: dialects
defeat recognisers), and gives up after ``timeout`` seconds of silence once
the prompt has ended. It always hangs the AudioSocket up at the end, so the
AGI that EXECed ``AudioSocket`` carries on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ivr.audiosocket import AudioSocketSession
from ivr.errors import CallHangup
from ivr.speech.recognizer import Recognizer, SpeechResult

__all__ = ["SpeechAnswer", "SpeechTurn"]

log = Logger(namespace="ivr.speech")

#: How a turn ended: a phrase matched, one matched but not surely (to confirm), a key was
#: pressed, speech off the menu, nothing, or a failure.
Via = Literal["speech", "unsure", "dtmf", "rejected", "timeout", "error", "hangup"]


@dataclass(frozen=True, slots=True)
class SpeechAnswer:
    """What the caller did in one turn; ``choice`` is an option key (spoken) or the digit (pressed)."""

    via: Via
    choice: str | None = None
    transcript: str = ""
    confidence: float | None = None
    barged_in: bool = False
    #: For the answer to a confirmation question: the option key it confirms (or not).
    confirming: str | None = None


class SpeechTurn:
    """Runs one turn; use once via :meth:`run`."""

    def __init__(self, session: AudioSocketSession, recognizer: Recognizer, clock: IReactorTime,
                 prompt: bytes, rate: int = 8000, timeout: float = 5.0, max_turn: float = 30.0,
                 audio_gap: float = 1.0) -> None:
        self.session = session
        self.recognizer = recognizer
        self.clock = clock
        self.prompt = prompt
        self.rate = rate
        self.timeout = timeout
        self.max_turn = max_turn
        #: Seconds without caller audio that end an utterance: a line with silence suppression
        #: (or a Local channel) sends no frames at all when nobody talks.
        self.audio_gap = audio_gap
        self._gap: IDelayedCall | None = None
        self._answer: defer.Deferred[SpeechAnswer] = defer.Deferred()
        self._silence: IDelayedCall | None = None
        self._limit: IDelayedCall | None = None
        self._speaking = False
        self._prompting = True
        self._barged_in = False

    def run(self) -> defer.Deferred[SpeechAnswer]:
        """Fires with the answer once; the AudioSocket is hung up by then."""
        self.session.attach(self._audio, self._digit)
        self.session.when_closed().addCallback(self._closed)
        self.recognizer.speech_started().addCallback(self._speech_started)
        self.recognizer.result().addCallback(self._recognised)
        self._limit = self.clock.callLater(self.max_turn, self._give_up)
        self.session.play(self.prompt, self.rate).addCallback(self._prompt_over)
        return self._answer

    # -- events -------------------------------------------------------------

    def _audio(self, pcm: bytes, rate: int) -> None:
        if self._answer.called:
            return
        self.recognizer.feed(pcm, rate)
        if self._gap is not None and self._gap.active():
            self._gap.reset(self.audio_gap)
        else:
            self._gap = self.clock.callLater(self.audio_gap, self._audio_stopped)

    def _audio_stopped(self) -> None:
        if self._speaking:
            self.recognizer.finish()  # decide on what was said

    def _digit(self, digit: str) -> None:
        self._settle(SpeechAnswer("dtmf", digit, barged_in=self._barged_in))
        self.recognizer.close()  # after settling: closing fires its (now ignored) result

    def _speech_started(self, _at: float) -> None:
        self._speaking = True
        if self._silence is not None and self._silence.active():
            self._silence.cancel()
        if self._prompting:
            self._barged_in = True
            self.session.stop_playback()

    def _prompt_over(self, _finished: bool) -> None:
        self._prompting = False
        if self._answer.called:
            return
        # Asterisk's AudioSocket() drops a connection that sends nothing for 2 s: keep talking, quietly.
        self.session.play(bytes(int(self.rate * 2 * self.max_turn)), self.rate)
        if not self._speaking:
            self._silence = self.clock.callLater(self.timeout, self._no_speech)

    def _no_speech(self) -> None:
        self.recognizer.finish()  # its result (silence) settles the turn

    def _give_up(self) -> None:
        self.recognizer.finish()

    def _recognised(self, result: SpeechResult) -> None:
        if self._answer.called:
            return
        via: Via = {"match": "speech", "unsure": "unsure", "rejected": "rejected", "silence": "timeout"}.get(
            result.reason, "error")  # type: ignore[assignment]
        chosen = result.choice if via in ("speech", "unsure") else None
        self._settle(SpeechAnswer(via, chosen, result.transcript,
                                  result.confidence if result.transcript else None,
                                  barged_in=self._barged_in))

    def _closed(self, reason: object) -> None:
        if isinstance(reason, CallHangup):
            self._settle(SpeechAnswer("hangup", barged_in=self._barged_in))
            self.recognizer.close()
        else:  # the socket broke or went idle, the call goes on: decide on what was heard
            self.recognizer.finish()

    def _settle(self, answer: SpeechAnswer) -> None:
        if self._answer.called:
            return
        for timer in (self._silence, self._limit, self._gap):
            if timer is not None and timer.active():
                timer.cancel()
        self.session.stop_playback()
        self.session.attach(None, None)
        self.session.hangup()
        log.debug("speech turn: {via} {choice!r} ({transcript!r})", via=answer.via, choice=answer.choice,
                  transcript=answer.transcript)
        self._answer.callback(answer)
