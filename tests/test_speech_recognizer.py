"""Recogniser plumbing without a model: VAD, barge-in, in-order decoding off the reactor, errors."""

from __future__ import annotations

import array
import math
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet import defer

from ivr.speech.grammar import SpeechGrammar
from ivr.speech.recognizer import Recognizer, SpeechResult
from ivr.speech.vad import EnergyVAD, VADSettings
from ivr.speech.vosk_backend import Rejection, VoskRecognizer, decide, widen

GRAMMAR = SpeechGrammar.build("main", "ko", {"1": ["상담원", "상담원 연결"], "2": ["수리"]})
RATE = 8000
FRAME = 320


def tone(seconds: float, amplitude: int = 8000, rate: int = RATE) -> bytes:
    samples = array.array("h", (int(amplitude * math.sin(2 * math.pi * 440 * n / rate))
                                for n in range(int(seconds * rate))))
    return samples.tobytes()


def silence(seconds: float, rate: int = RATE) -> bytes:
    return bytes(int(seconds * rate) * 2)


def frames(pcm: bytes, size: int = FRAME) -> list[bytes]:
    return [pcm[i:i + size] for i in range(0, len(pcm), size)]


# -- voice activity ---------------------------------------------------------


def test_vad_finds_start_and_end_of_speech_in_audio_time() -> None:
    vad = EnergyVAD(RATE, VADSettings(end_seconds=0.6))
    for chunk in frames(silence(1.0) + tone(0.8) + silence(1.0)):
        vad.feed(chunk)
    assert vad.started == pytest.approx(1.0, abs=0.03)
    assert vad.ended == pytest.approx(1.8, abs=0.03)


def test_vad_ignores_a_click_and_steady_background() -> None:
    vad = EnergyVAD(RATE)
    rng = array.array("h", (int(300 * math.sin(n * 1.7)) for n in range(RATE * 2)))
    vad.feed(rng.tobytes() + tone(0.04) + silence(0.5))
    assert vad.started is None


def test_vad_cuts_a_caller_who_never_stops() -> None:
    vad = EnergyVAD(RATE, VADSettings(max_seconds=2.0))
    vad.feed(tone(5.0))
    assert vad.ended == pytest.approx(2.0, abs=0.05)


def test_vad_copes_with_odd_chunk_sizes() -> None:
    vad = EnergyVAD(RATE)
    pcm = silence(0.5) + tone(0.5) + silence(1.0)
    for index in range(0, len(pcm), 77 * 2):
        vad.feed(pcm[index:index + 154])
    assert vad.started == pytest.approx(0.5, abs=0.03) and vad.ended is not None


def test_widen_doubles_the_rate_by_zero_stuffing() -> None:
    pcm = array.array("h", [1, -2, 3]).tobytes()
    assert array.array("h", widen(pcm)).tolist() == [1, 0, -2, 0, 3, 0]


# -- decisions ----------------------------------------------------------------


def words(*pairs: tuple[str, float]) -> dict[str, Any]:
    return {"text": " ".join(w for w, _ in pairs), "result": [{"word": w, "conf": c} for w, c in pairs]}


@pytest.mark.parametrize(("result", "choice", "reason"), [
    (words(("상담원", 1.0), ("연결", 0.9)), "1", "match"),
    (words(("수리", 0.95)), "2", "match"),
    (words(("수리", 0.3)), None, "rejected"),             # too unsure
    (words(("수리", 1.0), ("상담원", 1.0)), None, "rejected"),  # two options
    (words(("연결", 1.0)), None, "rejected"),              # a stray word, not a phrase
    (words(("상담원", 1.0), ("괜찮아요", 1.0)), None, "rejected"),  # a competitor won part of it
    ({"text": ""}, None, "rejected"),
])
def test_decide(result: dict[str, Any], choice: str | None, reason: str) -> None:
    decided = decide(GRAMMAR, result, Rejection(min_confidence=0.6), (0.5, 1.5))
    assert (decided.choice, decided.reason) == (choice, reason)
    assert decided.speech_start == 0.5
    if choice:
        assert decided.transcript == result["text"]
        assert decided.confidence == min(w["conf"] for w in result["result"])


# -- the recogniser's plumbing, with a fake decoder and a manual thread pool ---


class FakeDecoder:
    def __init__(self, answer: dict[str, Any] | Exception, partial: str = "") -> None:
        self.answer = answer
        self.partial = partial
        self.chunks: list[tuple[int, bool]] = []

    def accept(self, pcm: bytes, rate: int, final: bool) -> dict[str, Any] | str:
        self.chunks.append((len(pcm), final))
        if not final:
            return self.partial  # what vosk's PartialResult would say so far
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class ManualPool:
    """Jobs wait here until the test runs them: nothing is decoded on the caller's stack."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[], Any], defer.Deferred[Any]]] = []

    def __call__(self, work: Callable[[], Any]) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.jobs.append((work, d))
        return d

    def run_all(self) -> None:
        while self.jobs:
            work, d = self.jobs.pop(0)
            try:
                value = work()
            except Exception as exc:  # noqa: BLE001 - handed to the Deferred like a thread pool does
                d.errback(exc)
            else:
                d.callback(value)


REPAIR = words(("수리", 1.0))


def recognizer(answer: dict[str, Any] | Exception = REPAIR) -> tuple[
        VoskRecognizer, FakeDecoder, ManualPool, list[SpeechResult], list[float]]:
    pool = ManualPool()
    rec = VoskRecognizer(None, GRAMMAR, pool, Rejection(), VADSettings(end_seconds=0.4))
    fake = FakeDecoder(answer)
    rec._decoder = fake  # type: ignore[assignment]
    results: list[SpeechResult] = []
    started: list[float] = []
    rec.result().addCallback(results.append)
    rec.speech_started().addCallback(started.append)
    return rec, fake, pool, results, started


def test_vosk_recognizer_is_a_recognizer() -> None:
    rec, *_ = recognizer()
    assert isinstance(rec, Recognizer)
    assert rec.grammar is GRAMMAR


def test_speech_start_fires_at_once_for_barge_in_and_decoding_is_queued_not_inline() -> None:
    rec, fake, pool, results, started = recognizer()
    for chunk in frames(silence(2.0) + tone(0.1)):
        rec.feed(chunk, RATE)
    assert started and started[0] == pytest.approx(2.0, abs=0.03)
    assert fake.chunks == []  # nothing decoded on the reactor's stack
    assert len(pool.jobs) == 1  # one job in flight per turn; the rest waits in order
    pool.run_all()
    # Silence before speech is not decoded, except the pre-roll.
    assert fake.chunks[0][0] <= int((VoskRecognizer.preroll + 0.1) * RATE) * 2 + FRAME


def test_audio_is_decoded_in_order_and_the_end_of_speech_decides() -> None:
    rec, fake, pool, results, started = recognizer()
    speech = tone(0.6)
    for chunk in frames(silence(0.3) + speech + silence(1.0)):
        rec.feed(chunk, RATE)
        if len(pool.jobs) and len(fake.chunks) % 2:
            pool.run_all()
    pool.run_all()
    assert fake.chunks[-1][1] is True
    assert sum(1 for _, final in fake.chunks if final) == 1
    assert [r.choice for r in results] == ["2"] and results[0].reason == "match"
    assert results[0].speech_start == pytest.approx(0.3, abs=0.03)
    assert rec.result().result.choice == "2"  # type: ignore[attr-defined]


def test_finish_without_speech_is_silence_and_decodes_nothing() -> None:
    rec, fake, pool, results, started = recognizer()
    for chunk in frames(silence(3.0)):
        rec.feed(chunk, RATE)
    rec.finish()
    assert results and results[0].reason == "silence" and results[0].choice is None
    assert pool.jobs == [] and started == []


def test_finish_mid_speech_decides_on_what_was_heard() -> None:
    rec, fake, pool, results, _ = recognizer()
    for chunk in frames(tone(1.0)):
        rec.feed(chunk, RATE)
    rec.finish()
    pool.run_all()
    assert results[0].choice == "2"
    rec.feed(tone(0.1), RATE)  # late audio is ignored
    assert pool.jobs == []


def test_close_gives_a_result_at_once_and_drops_the_decoder() -> None:
    rec, fake, pool, results, _ = recognizer()
    for chunk in frames(tone(0.5)):
        rec.feed(chunk, RATE)
    rec.close()
    assert results[0].reason == "rejected" and results[0].detail == "closed"
    pool.run_all()  # the job in flight finishes, and nothing else happens
    assert len(results) == 1 and rec._decoder is None


def test_a_failing_decoder_is_an_error_result_not_an_exception() -> None:
    rec, fake, pool, results, _ = recognizer(RuntimeError("kaldi broke"))
    for chunk in frames(tone(0.5) + silence(0.6)):
        rec.feed(chunk, RATE)
    pool.run_all()
    assert results[0].reason == "error" and results[0].choice is None
    assert "kaldi broke" in results[0].detail


def test_a_rate_change_is_refused() -> None:
    from ivr.errors import RecognizerError

    rec, *_ = recognizer()
    rec.feed(silence(0.1), RATE)
    with pytest.raises(RecognizerError):
        rec.feed(silence(0.1, 16000), 16000)


def feed_until_decided(rec: VoskRecognizer, pool: ManualPool, audio: bytes) -> float | None:
    """Audio seconds fed when the decision came (None: not before the audio ran out)."""
    fed = 0.0
    for chunk in frames(audio):
        rec.feed(chunk, RATE)
        fed += len(chunk) / 2 / RATE
        pool.run_all()
        if rec.result().called:
            return fed
    return None


def test_a_whole_phrase_heard_so_far_ends_the_turn_after_a_short_pause() -> None:
    rec, fake, pool, results, _ = recognizer()
    fake.partial = "수리"  # vosk's partial result already says one whole option
    at = feed_until_decided(rec, pool, silence(0.3) + tone(0.6) + silence(1.0))
    assert at is not None and at < 0.3 + 0.6 + 0.4  # before the 0.4 s end of speech
    assert [r.choice for r in results] == ["2"]


def test_a_phrase_another_option_goes_on_from_waits_for_the_full_pause() -> None:
    grammar = SpeechGrammar.build("main", "ko", {"1": ["예약"], "2": ["예약 취소"]})
    pool = ManualPool()
    rec = VoskRecognizer(None, grammar, pool, Rejection(), VADSettings(end_seconds=0.4))
    fake = FakeDecoder(words(("예약", 1.0), ("취소", 1.0)), partial="예약")  # 예약 may become 예약 취소
    rec._decoder = fake  # type: ignore[assignment]
    at = feed_until_decided(rec, pool, silence(0.3) + tone(0.6) + silence(1.0))
    assert at is not None and at >= 0.3 + 0.6 + 0.4 - 0.02
    assert rec.result().result.choice == "2"  # type: ignore[attr-defined]


def test_a_partial_that_is_no_whole_phrase_waits_for_the_full_pause() -> None:
    rec, fake, pool, _, _ = recognizer()
    fake.partial = "상담"
    at = feed_until_decided(rec, pool, silence(0.3) + tone(0.6) + silence(1.0))
    assert at is not None and at >= 0.3 + 0.6 + 0.4 - 0.02


def test_a_turn_closed_mid_job_frees_its_decoder_off_the_reactor_once_the_job_ends() -> None:
    class Holding(FakeDecoder):
        released = 0

        def holds_resources(self) -> bool:
            return self.released == 0

        def release(self) -> None:
            self.released += 1

    rec, _, pool, results, _ = recognizer()
    holding = Holding(REPAIR)
    rec._decoder = holding
    for chunk in frames(tone(0.3)):
        rec.feed(chunk, RATE)
    assert len(pool.jobs) == 1  # a decoding job in flight
    rec.close()  # DTMF won
    assert results[0].reason == "rejected" and holding.released == 0
    pool.run_all()  # the job ends, then the release runs as a job of its own
    assert holding.released == 1
