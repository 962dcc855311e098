"""One menu turn over a streaming decoder: VAD, pre-roll, decoding in order off the reactor, one result.

Engine-neutral: vosk (:mod:`ivr.speech.vosk_backend`) and pocketsphinx
(:mod:`ivr.speech.sphinx_backend`) give it a :class:`Decoder` for the turn
and a function that turns the decoder's final answer into the menu's
:class:`~ivr.speech.recognizer.SpeechResult`.

A turn ends early when the partial transcript is already one option's whole
phrase and the caller has been quiet for ``early_end_seconds``. A decoder
with no running partial (pocketsphinx decoding each turn whole) asks for a
*pause* job instead (``pauses``): at ``early_end_seconds`` of quiet it decodes
what it has and answers a :class:`PauseAnswer`, whose transcript goes through
the same early-end rule and whose final answer then decides the turn at once;
else that answer still stands at the end of speech if the caller has said
nothing since (the audio is the same), so the turn is not decoded twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ivr.errors import RecognizerError
from ivr.speech.grammar import SpeechGrammar, normalise
from ivr.speech.recognizer import SpeechResult
from ivr.speech.vad import EnergyVAD, VADSettings

__all__ = ["Decoder", "DecodingPool", "PauseAnswer", "Runner", "StreamingRecognizer"]

log = Logger(namespace="ivr.speech")
T = TypeVar("T")
_VAD = VADSettings()
#: Runs a blocking function off the reactor thread; its Deferred fires on the reactor thread.
Runner = Callable[[Callable[[], T]], "defer.Deferred[T]"]


@dataclass(frozen=True, slots=True)
class PauseAnswer:
    """A decoder's answer to a pause job: the phrase it is sure of so far ("" if none: no early end),
    and the final answer the turn ends on if the caller says nothing more (None: decode again then),
    so the turn ends without another job (and its queue wait)."""

    transcript: str
    final: Any = None


class Decoder(Protocol):
    """One turn's decoder state, used from decoding threads one job at a time."""

    #: True when it has no running partial transcript and wants a pause job at each quiet point.
    pauses: bool

    def accept(self, pcm: bytes, rate: int, final: bool, pause: float = 0.0) -> Any:
        """Decode ``pcm``; the final answer when ``final``, else the partial transcript (a str). A pause
        job (only asked of a decoder that ``pauses``) gives ``pause``, the seconds of quiet the audio
        so far ends with, and answers a :class:`PauseAnswer`."""

    def holds_resources(self) -> bool:
        """True while it holds engine memory that :meth:`release` must free on a decoding thread."""

    def release(self) -> None: ...


class StreamingRecognizer:
    """One menu turn with a streaming decoder: see :class:`ivr.speech.recognizer.Recognizer` for the contract.

    Speech start and end come from :class:`EnergyVAD` on the reactor thread (so
    barge-in never waits for the decoder). Audio before speech is not decoded,
    except the last ``preroll`` seconds, which hold the first syllable's onset.
    """

    preroll = 0.3
    #: Seconds of audio per decoding job while the caller talks: one job per 20 ms frame
    #: cost more in thread hand-offs than in decoding (bench/speech_load.py).
    batch = 0.1

    def __init__(self, grammar: SpeechGrammar, decoder: Decoder, run: Runner[Any],
                 conclude: Callable[[Any, tuple[float | None, float | None]], SpeechResult],
                 vad: VADSettings = _VAD) -> None:
        self._grammar = grammar
        self._run = run
        self._conclude = conclude
        self._vad_settings = vad
        self._decoder: Decoder | None = decoder
        self._rate: int | None = None
        self._vad: EnergyVAD | None = None
        self._before: list[bytes] = []
        self._before_bytes = 0
        self._queue: list[bytes] = []
        self._busy = False
        self._final = False
        #: The option the partial transcript already matches whole (for an early end), or None.
        self._partial_key: str | None = None
        self._pauses = decoder.pauses
        #: The pause (its :attr:`EnergyVAD.quiet_since`) the last pause job was asked at, and its answer.
        self._paused_at: float | None = None
        self._standing: PauseAnswer | None = None
        self._decided: SpeechResult | None = None
        #: The decoder of a turn closed while one of its jobs ran.
        self._closed_decoder: Decoder | None = None
        self._started_waiters: list[defer.Deferred[float]] = []
        self._result_waiters: list[defer.Deferred[SpeechResult]] = []

    @property
    def grammar(self) -> SpeechGrammar:
        return self._grammar

    # -- the menu's side ----------------------------------------------------

    def feed(self, pcm: bytes, sample_rate: int) -> None:
        if self._decided is not None or self._final:
            return
        if self._rate is None:
            self._rate = sample_rate
            self._vad = EnergyVAD(sample_rate, self._vad_settings)
        elif sample_rate != self._rate:
            raise RecognizerError(f"audio rate changed from {self._rate} to {sample_rate} Hz")
        vad = self._vad
        assert vad is not None
        was_speaking = vad.started is not None
        vad.feed(pcm)
        if vad.started is None:
            self._keep_preroll(pcm)
            return
        if not was_speaking:
            self._queue.extend(self._before)
            self._before = []
            waiters, self._started_waiters = self._started_waiters, []
            for waiter in waiters:
                waiter.callback(vad.started)
        self._queue.append(pcm)
        if vad.ended is not None or (self._partial_key is not None
                                     and vad.quiet_seconds >= self._vad_settings.early_end_seconds):
            self._final = True
        self._pump()

    def speech_started(self) -> defer.Deferred[float]:
        if self._vad is not None and self._vad.started is not None:
            return defer.succeed(self._vad.started)
        waiter: defer.Deferred[float] = defer.Deferred()
        self._started_waiters.append(waiter)
        return waiter

    def result(self) -> defer.Deferred[SpeechResult]:
        if self._decided is not None:
            return defer.succeed(self._decided)
        waiter: defer.Deferred[SpeechResult] = defer.Deferred()
        self._result_waiters.append(waiter)
        return waiter

    def finish(self) -> None:
        if self._decided is not None or self._final:
            return
        self._final = True
        if self._vad is None or self._vad.started is None:
            self._decide(SpeechResult(None, "", 0.0, "silence"))
            return
        self._pump()

    def close(self) -> None:
        if self._decided is not None:
            return
        self._final = True
        self._queue = []
        spoke = self._vad is not None and self._vad.started is not None
        self._decide(SpeechResult(None, "", 0.0, "rejected" if spoke else "silence", detail="closed"))
        decoder, self._decoder = self._decoder, None
        if decoder is not None and self._busy:
            self._closed_decoder = decoder  # released when its job is done
        elif decoder is not None and decoder.holds_resources():
            self._run(decoder.release)  # free the C decoder on a decoding thread, not the reactor

    # -- decoding -------------------------------------------------------------

    def _keep_preroll(self, pcm: bytes) -> None:
        assert self._rate is not None
        self._before.append(pcm)
        self._before_bytes += len(pcm)
        limit = int(self.preroll * self._rate) * 2
        while self._before and self._before_bytes - len(self._before[0]) >= limit:
            self._before_bytes -= len(self._before.pop(0))

    def _pump(self) -> None:
        if self._busy or self._decoder is None or self._decided is not None:
            return
        standing = self._stands()
        if self._final and standing is not None:
            self._end_on(standing.final)  # the caller said nothing since the pause: its decode stands
            return
        pause = self._pause_due()
        if (not self._final and not pause
                and sum(map(len, self._queue)) < int(self.batch * (self._rate or 8000)) * 2):
            return
        chunk = b"".join(self._queue)
        self._queue = []
        final = self._final
        decoder, rate = self._decoder, self._rate
        assert rate is not None
        self._busy = True
        if pause:
            assert self._vad is not None
            self._paused_at, quiet = self._vad.quiet_since, self._vad.quiet_seconds
            job: defer.Deferred[Any] = self._run(lambda: decoder.accept(chunk, rate, False, pause=quiet))
        else:
            job = self._run(lambda: decoder.accept(chunk, rate, final))
        job.addCallbacks(self._job_done, self._job_failed)

    def _pause_due(self) -> bool:
        """A pause job is due: the decoder wants one, and the caller has been quiet for
        ``early_end_seconds`` in a pause not yet asked about."""
        vad = self._vad
        return (self._pauses and not self._final and vad is not None
                and vad.quiet_seconds >= self._vad_settings.early_end_seconds
                and vad.quiet_since != self._paused_at)

    def _job_done(self, result: Any) -> None:
        self._busy = False
        if self._decided is not None:
            self._decoder = None
            closed, self._closed_decoder = self._closed_decoder, None
            if closed is not None and closed.holds_resources():
                self._run(closed.release)  # the turn was closed mid-job: free it off the reactor now
            return
        if isinstance(result, PauseAnswer):
            if self._heard_pause(result):
                return
        elif isinstance(result, str):
            self._partial_key = self._whole_phrase(result)
        else:
            vad = self._vad
            speech = (vad.started, vad.ended) if vad is not None else (None, None)
            self._decoder = None
            self._decide(self._conclude(result, speech))
            return
        self._pump()

    def _heard_pause(self, answer: PauseAnswer) -> bool:
        """Keep a pause job's answer while the caller stays quiet in that pause, and end the turn on it
        now when its transcript is one option's whole phrase (the early-end rule); True when it did."""
        self._standing = answer if answer.final is not None else None
        self._partial_key = self._whole_phrase(answer.transcript) if self._stands() is not None else None
        if self._partial_key is None:
            return False
        self._end_on(answer.final)
        return True

    def _stands(self) -> PauseAnswer | None:
        """The last pause job's answer, unless the caller has spoken since that pause."""
        vad = self._vad
        if self._standing is None or vad is None or vad.quiet_since != self._paused_at:
            return None
        return self._standing

    def _end_on(self, final: Any) -> None:
        """Decide on a pause job's final answer, without another job; free the decoder off the reactor."""
        vad = self._vad
        assert vad is not None
        decoder, self._decoder = self._decoder, None
        self._final = True
        self._queue = []
        if decoder is not None and decoder.holds_resources():
            self._run(decoder.release)  # e.g. the turn's place in its worker, freed before anyone hears
        self._decide(self._conclude(final, (vad.started, vad.quiet_since)))

    def _whole_phrase(self, partial: str) -> str | None:
        """The option ``partial`` already says in full, unless another option's phrase goes on from it
        (then the caller may not be done: 예약 could still become 예약 취소)."""
        key = self._grammar.match(partial) if partial else None
        if key is None:
            return None
        said = normalise(partial)
        for other, phrases in self._grammar.options.items():
            if other != key and any(phrase.startswith(said + " ") for phrase in phrases):
                return None
        return key

    def _job_failed(self, failure: Any) -> None:
        self._busy = False
        self._decoder = None
        log.failure("speech decoding failed for menu {menu}", failure, menu=self._grammar.menu)
        self._decide(SpeechResult(None, "", 0.0, "error", detail=str(failure.value)))

    def _decide(self, result: SpeechResult) -> None:
        if self._decided is not None:
            return
        self._decided = result
        waiters, self._result_waiters = self._result_waiters, []
        for waiter in waiters:
            waiter.callback(result)


class DecodingPool:
    """Decoding threads for one engine: runs blocking work off the reactor thread.

    Started lazily (or by :meth:`start`); stopped when the reactor shuts down.
    The engines' C code releases the GIL while it decodes.
    """

    def __init__(self, threads: int = 2, name: str = "ivr-speech",
                 reactor: IReactorFromThreads | None = None) -> None:
        self._pool = ThreadPool(minthreads=1, maxthreads=max(1, threads), name=name)
        self._reactor = reactor

    def _the_reactor(self) -> IReactorFromThreads:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor  # type: ignore[assignment]
        assert self._reactor is not None
        return self._reactor

    def start(self) -> None:
        if self._pool.started:
            return
        self._pool.start()
        self._the_reactor().addSystemEventTrigger("during", "shutdown", self.stop)  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self._pool.started:
            self._pool.stop()

    def run(self, work: Callable[[], T]) -> defer.Deferred[T]:
        """Run ``work`` on a decoding thread; the Deferred fires on the reactor thread."""
        if not self._pool.started:
            self.start()
        return deferToThreadPool(self._the_reactor(), self._pool, work)
