"""What a speech menu needs from a recogniser, whatever engine is behind it.

The ``ivr_recognizer(language, grammar)`` hook returns a fresh
:class:`Recognizer` for one menu turn (or None when the plugin has no model
for that language). The menu feeds it the caller's audio as it arrives,
stops the prompt when :meth:`Recognizer.speech_started` fires (barge-in), and
routes on the one :class:`SpeechResult` that :meth:`Recognizer.result` fires
with: after the caller stops talking, or as soon as :meth:`Recognizer.finish`
says no more audio will come (timeout, DTMF, hangup).

Rules every implementation keeps, because the menu relies on them:

* ``feed`` never blocks the reactor: decoding happens elsewhere, in order;
* ``result`` fires exactly once, also after ``finish`` or ``close``, and never
  with an error: a broken engine gives ``SpeechResult(None, ..., reason="error")``
  so the caller carries on with the keypad;
* ``choice`` is an option key of the grammar or None; off-menu speech is None
  (``reason="rejected"``), never the nearest phrase; a phrase heard but not
  surely may come as ``reason="unsure"`` with its ``choice``, which the menu
  then confirms with the caller before acting on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from twisted.internet import defer

from ivr.speech.grammar import SpeechGrammar

__all__ = ["Outcome", "Recognizer", "SpeechResult"]

#: Why a result is what it is:
#: ``match`` a phrase was recognised and accepted; ``unsure`` a phrase was recognised but
#: not surely (``choice`` is set: the menu asks the caller to confirm it); ``rejected``
#: speech was heard but is not (confidently) on the menu; ``silence`` nobody spoke;
#: ``error`` the engine failed.
Outcome = Literal["match", "unsure", "rejected", "silence", "error"]


@dataclass(frozen=True, slots=True)
class SpeechResult:
    """The decision for one menu turn: what goes into the call steps and history."""

    #: The option key chosen, or None.
    choice: str | None
    #: What the recogniser heard (normalised text; may be empty).
    transcript: str
    #: 0..1, how sure the engine is of ``transcript`` meaning ``choice``.
    confidence: float
    reason: Outcome
    #: Seconds of audio from the first frame fed to the start / end of speech (None: no speech).
    speech_start: float | None = None
    speech_end: float | None = None
    #: Engine-specific evidence, for logs and tuning (e.g. the free-form transcript).
    detail: str = ""


@runtime_checkable
class Recognizer(Protocol):
    """One menu turn's recognition. Use once: feed, then take the result."""

    @property
    def grammar(self) -> SpeechGrammar: ...

    def feed(self, pcm: bytes, sample_rate: int) -> None:
        """Caller audio, 16-bit little-endian mono, in order; every call at the same rate."""

    def speech_started(self) -> defer.Deferred[float]:
        """Fires (once, with the audio time in seconds) when the caller starts speaking."""

    def result(self) -> defer.Deferred[SpeechResult]:
        """Fires once with the decision."""

    def finish(self) -> None:
        """No more audio will come: decide on what was heard (silence if nothing)."""

    def close(self) -> None:
        """Abandon the turn (caller hung up, DTMF won): free resources; the result still fires."""
