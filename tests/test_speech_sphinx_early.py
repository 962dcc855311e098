"""The whole-utterance pocketsphinx decode's early decision, on Asterisk's human English recordings.

At ``early_end_seconds`` (0.25 s) of quiet the turn's audio so far is decoded
whole; a phrase both searches are sure of, that no other option's phrase goes
on from, ends the turn there instead of after the VAD's 0.6 s. Times are
audio time fed (20 ms frames), never wall time. The recordings come from the
Asterisk sandbox's sounds (tests/speech_audio.human_line, through u-law);
without them or the pocketsphinx package these fail, never skip.
"""

from __future__ import annotations

import array
import json
import math
import subprocess
import sys
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from speech_audio import human_line
from twisted.internet import defer

from ivr.config import load_settings
from ivr.plugins.sphinx_speech import SphinxPlugin
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.recognizer import SpeechResult
from ivr.speech.sphinx_backend import SphinxSpeech
from ivr.speech.streaming import PauseAnswer, StreamingRecognizer
from ivr.speech.vad import VADSettings

ROOT = Path(__file__).resolve().parent.parent
FEATURES = {
    "1": ["call forwarding"], "2": ["call waiting"], "3": ["do not disturb"], "4": ["speed dial"],
    "5": ["telephone number"], "6": ["extension"], "7": ["location"], "8": ["goodbye"], "9": ["hello"],
    "0": ["time"],
}
#: Option 5's phrase is the start of option 6's: "telephone number" may still go on.
PREFIXED = {"5": ["telephone number"], "6": ["telephone number please"], "1": ["call forwarding"]}


def inline(work: Any) -> defer.Deferred[Any]:
    return defer.maybeDeferred(work)


def engine(vad: VADSettings | None = None) -> SphinxSpeech:
    """The engine as ``[speech]``'s defaults build it (whole decode, n4 / w30), decoding inline."""
    settings = load_settings(environ={}).speech
    plugin = SphinxPlugin({"en": "pocketsphinx"}, "ivr.toml", 1, settings.garbage_penalty,
                          settings.confirm_penalty, decode=settings.sphinx_decode,
                          beams=settings.sphinx_beams, confirm_beams=settings.sphinx_confirm_beams)
    assert plugin.engine.rejection.whole
    speech = SphinxSpeech(["en"], rejection=plugin.engine.rejection, vad=vad or VADSettings(), run=inline)
    speech.load()
    return speech


@pytest.fixture(scope="module")
def early() -> SphinxSpeech:
    return engine()


@pytest.fixture(scope="module")
def late() -> SphinxSpeech:
    """The same engine never ending early: the decision at the VAD's end of speech."""
    return engine(VADSettings(early_end_seconds=99.0))


@dataclass
class Heard:
    result: SpeechResult
    #: Seconds of quiet fed after the last loud frame when the turn was decided.
    quiet: float


def hear(speech: SphinxSpeech, menu: dict[str, list[str]], wav: Path, tail: float = 1.5) -> Heard:
    """Feed the recording and ``tail`` s of silence in 20 ms frames, stopping at the decision."""
    with wave.open(str(wav), "rb") as reader:
        rate, pcm = reader.getframerate(), reader.readframes(reader.getnframes())
    pcm += bytes(int(tail * rate) * 2)
    grammar = SpeechGrammar.build("menu", "en", menu)
    speech.check(grammar)
    recognizer = speech.recognizer("en", grammar)
    assert recognizer is not None
    results: list[SpeechResult] = []
    recognizer.result().addCallback(results.append)
    frame = rate // 50 * 2
    fed = 0.0
    for offset in range(0, len(pcm), frame):
        recognizer.feed(pcm[offset:offset + frame], rate)
        fed += 0.02
        if results:
            break
    assert results, "not decided within the silence after the recording"
    vad = recognizer._vad
    assert vad is not None and vad.quiet_since is not None
    return Heard(results[0], round(fed - vad.quiet_since, 2))


@pytest.mark.parametrize(("recording", "key"), [("call-forwarding", "1"), ("telephone-number", "5")])
def test_a_sure_menu_phrase_is_decided_after_a_quarter_second_of_quiet(
        early: SphinxSpeech, late: SphinxSpeech, tmp_path: Path, recording: str, key: str) -> None:
    wav = human_line(recording, tmp_path)
    heard = hear(early, FEATURES, wav)
    assert (heard.result.choice, heard.result.reason) == (key, "match"), heard
    assert 0.25 <= heard.quiet <= 0.3, heard.quiet  # not the VAD's 0.6 s
    assert heard.result.speech_end is not None
    full = hear(late, FEATURES, wav)
    assert full.quiet >= 0.6 and (full.result.choice, full.result.reason) == (key, "match")


def test_a_phrase_another_option_goes_on_from_waits_for_the_end_of_speech(
        early: SphinxSpeech, tmp_path: Path) -> None:
    """'telephone number' is option 5's whole phrase, but option 6's starts with it: the caller may
    not be done, so the turn waits for the VAD's 0.6 s and then decides as before."""
    heard = hear(early, PREFIXED, human_line("telephone-number", tmp_path))
    assert heard.quiet >= 0.6, heard.quiet
    assert (heard.result.choice, heard.result.reason) == ("5", "match"), heard


@pytest.mark.parametrize("recording", ["hello", "speed-dial"])
def test_a_phrase_only_the_lenient_search_hears_is_not_decided_early(
        early: SphinxSpeech, late: SphinxSpeech, tmp_path: Path, recording: str) -> None:
    """Unsure (the caller will be asked to confirm): not an immediate accept, so no early end; at the
    end of speech the pause's decode stands, and says what the whole decode then says."""
    wav = human_line(recording, tmp_path)
    heard, full = hear(early, FEATURES, wav), hear(late, FEATURES, wav)
    assert heard.quiet >= 0.6 and heard.result.reason == "unsure", heard
    assert (heard.result.choice, heard.result.transcript) == (full.result.choice, full.result.transcript)


@pytest.mark.parametrize("recording", ["queue-thankyou", "please-try-again", "vm-nobodyavail", "digits/7",
                                       "letters/k", "auth-thankyou", "vm-tooshort"])
def test_off_menu_speech_is_not_decided_early(early: SphinxSpeech, tmp_path: Path, recording: str) -> None:
    """Rejected, or at most confirmed ("did you choose option 7?"): never accepted, never early."""
    heard = hear(early, FEATURES, human_line(recording, tmp_path))
    assert heard.quiet >= 0.6 and heard.result.reason in ("rejected", "unsure"), heard


class PausingDecoder:
    """A whole-utterance decoder in memory: hears "sales" at every pause (sure of it or not), "repair"
    in a final job (a final answer is never a str: that is a partial transcript)."""

    pauses = True

    def __init__(self, sure: bool = True) -> None:
        self.sure = sure
        self.jobs: list[tuple[bool, bool]] = []

    def accept(self, pcm: bytes, rate: int, final: bool, pause: float = 0.0) -> Any:
        self.jobs.append((final, pause > 0))
        if pause:
            return PauseAnswer("sales" if self.sure else "", "sales")
        return ["repair"] if final else ""

    def holds_resources(self) -> bool:
        return False

    def release(self) -> None:
        pass


def test_a_pause_answer_does_not_stand_once_the_caller_speaks_again() -> None:
    """The pause job's answer comes back after the caller has started talking again: the turn goes on,
    and asks again at the next pause (where it then ends, on that pause's answer, without a final job)."""
    answers: list[tuple[defer.Deferred[Any], Any]] = []

    def later(work: Any) -> defer.Deferred[Any]:
        """Decode at once, answer when :func:`answer` says: a busy decoding thread or worker."""
        done: defer.Deferred[Any] = defer.Deferred()
        answers.append((done, work()))
        return done

    def answer(rounds: int = 1) -> None:
        for _ in range(rounds):
            waiting = list(answers)
            del answers[:]
            for done, value in waiting:
                done.callback(value)

    decoder = PausingDecoder()
    grammar = SpeechGrammar.build("main", "en", {"1": ["sales"], "2": ["repair"]})
    recognizer = StreamingRecognizer(grammar, decoder, later, lambda final, speech: SpeechResult(
        "1" if final == "sales" else "2", str(final), 1.0, "match", *speech))
    results: list[SpeechResult] = []
    recognizer.result().addCallback(results.append)
    loud, quiet = tone(0.02), bytes(320)

    def say(frames: int, pcm: bytes) -> None:
        for _ in range(frames):
            recognizer.feed(pcm, 8000)

    say(5, quiet)
    say(25, loud)
    answer(10)
    say(13, quiet)  # 0.26 s of quiet
    answer()  # the job in flight is answered: the pause job is asked
    assert decoder.jobs[-1] == (False, True)
    say(5, loud)  # the caller goes on before its answer comes back
    answer()
    assert not results
    say(13, quiet)
    answer(10)  # the next pause's own job ends the turn
    assert [(r.choice, r.speech_end) for r in results] == [("1", pytest.approx(0.96))]
    assert decoder.jobs.count((False, True)) == 2 and (True, False) not in decoder.jobs


def test_an_unsure_pause_answer_decides_at_the_end_of_speech_unless_the_caller_spoke_since() -> None:
    """Not sure at the pause: the turn waits for the VAD's end of speech and ends on the pause's
    decode (the same audio) without a final job; cut short while the caller talks, it decodes again."""
    for talking_at_finish in (False, True):
        decoder = PausingDecoder(sure=False)
        grammar = SpeechGrammar.build("main", "en", {"1": ["sales"], "2": ["repair"]})
        recognizer = StreamingRecognizer(grammar, decoder, inline, lambda final, speech: SpeechResult(
            "1" if final == "sales" else "2", str(final), 1.0, "match", *speech))
        results: list[SpeechResult] = []
        recognizer.result().addCallback(results.append)
        loud, quiet = tone(0.02), bytes(320)
        for pcm in [quiet] * 5 + [loud] * 25 + [quiet] * 13:
            recognizer.feed(pcm, 8000)
        assert not results and decoder.jobs[-1] == (False, True)
        if talking_at_finish:
            for pcm in [loud] * 5:
                recognizer.feed(pcm, 8000)
            recognizer.finish()
            assert [r.choice for r in results] == ["2"] and decoder.jobs[-1] == (True, False)
        else:
            for pcm in [quiet] * 17:
                recognizer.feed(pcm, 8000)
            assert [(r.choice, r.speech_end) for r in results] == [("1", pytest.approx(0.6))]
            assert (True, False) not in decoder.jobs


def tone(seconds: float, rate: int = 8000, amplitude: int = 8000) -> bytes:
    return array.array("h", [int(amplitude * math.sin(2 * math.pi * 440 * i / rate))
                             for i in range(int(seconds * rate))]).tobytes()


def test_a_worker_process_decides_early_too(tmp_path: Path) -> None:
    """Through the decoding worker pool (the default): fed the phrase and 0.4 s of silence, no finish();
    a sure phrase is decided from the pause job alone, an unsure one is not decided yet."""
    wavs = [str(human_line(name, tmp_path)) for name in ("call-forwarding", "hello")]
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "pool_probe.py"), *wavs, "--pause-only"],
                          capture_output=True, text=True, timeout=120, check=True)
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in out, out.get("error")
    decided = [(r["choice"], r["reason"]) for r in out["results"]]
    assert decided == [("1", "match"), (None, "undecided")]
    assert decided == [(r["choice"], r["reason"]) for r in out["threads"]]
    assert out["load"]["turns"] == 0
