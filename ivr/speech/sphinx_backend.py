"""The English recogniser: pocketsphinx, offline, a menu's phrases beside a phone-loop garbage path.

The PyPI ``pocketsphinx`` wheel bundles a US-English acoustic model (16 kHz)
and the CMU pronouncing dictionary, so English speech menus need nothing
else. Each menu turn leases a decoder from a shared pool (creating one costs
~0.1 s and ~40 MB, so they are kept) and decodes on :class:`DecodingPool`
threads, never on the reactor thread.

Rejection (measured on Asterisk's human English recordings, docs/benchmarks.md
"English speech"): a plain grammar maps every sound to some menu phrase and
accepts most off-menu speech. Beside the phrases the grammar offers a
*garbage path*: any sequence of the model's 39 phones, entered with prior
probability ``10 ** -penalty`` (:class:`SphinxRejection`). Off-menu speech
fits the phone loop better than any phrase; a phrase said by the caller fits
the phrase better even after the garbage path's prior. A hypothesis that is
one option's phrases is accepted, anything through the garbage path rejected.
The penalty is the rejection strength: lower rejects more (off-menu speech
and right answers alike), higher accepts more.

Three outcomes: with ``confirm_penalty`` above ``penalty`` the turn is decoded
with the lenient grammar (``confirm_penalty``); a phrase it finds is decoded
again, whole, with the strict one (``penalty``, only for those turns). Found
by both: ``match``; by the lenient one only: ``unsure`` (the menu asks "did
you choose option 2?"); else ``rejected``. At 30 the lenient grammar is
practically a plain one: the confirmation question, not the engine, then
turns most off-menu callers away (the measured trade in docs/benchmarks.md).

Whole-utterance decoding (``[speech] sphinx_decode = "whole"``, the default)
waits for the end of speech and decodes once with the utterance's own
cepstral mean. With the defaults (accept at 4 with narrow beams; confirm what
a lenient search at 30 with wide beams hears) 19 of the human corpus' 21 menu
phrases end right (directly or after "yes") at 1.2 % false accepts, against
10 for the old streaming 4/10; about 4 in 5 off-menu callers are asked to
confirm (docs/benchmarks.md). It has no partial transcript, so at a pause
(``early_end_seconds`` of quiet) it decodes the audio so far the same way, its
quiet repeated up to ``end_seconds`` as if the caller stays quiet: a phrase
both searches find ends the turn there, through the streaming layer's
early-end rule (no other option's phrase goes on from it); anything else, an
"unsure" included, waits for the end of speech (``end_seconds``), and is
decided on that decode if the caller said nothing more, else decoded again
whole (docs/benchmarks.md, "An early decision for the whole decode").

Narrowband audio (8 kHz) is upsampled to 16 kHz by linear interpolation:
the model's filter bank then sees an empty 4-8 kHz band rather than a mirror
image of the voice (zero-stuffing, which suits vosk's model, misleads this one).
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ivr.errors import ConfigError, RecognizerError
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.recognizer import SpeechResult
from ivr.speech.streaming import DecodingPool, PauseAnswer, Runner, StreamingRecognizer
from ivr.speech.vad import VADSettings
from ivr.speech.wideband import double_rate

__all__ = ["BEAMS", "PHONES", "SphinxRejection", "SphinxSpeech", "conclude"]

#: The phones of the bundled US-English model (CMU ARPAbet, stress removed).
PHONES: tuple[str, ...] = tuple(
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z "
    "ZH".split())
#: The pseudo-words of the garbage path: one per phone; never a real dictionary word.
_GARBAGE = {f"+{phone.lower()}+": phone for phone in PHONES}


def _phrases_only(words: tuple[str, ...] | list[str]) -> bool:
    """Words that are some phrase of the grammar: none of them went through the garbage path."""
    return bool(words) and not any(w in _GARBAGE for w in words)
#: The value of ``[speech] models`` that chooses this engine.
ENGINE = "pocketsphinx"
_LANGUAGES = {"en": "en-us"}
_VAD = VADSettings()


#: Search beams (beam, wbeam, pbeam) by name (``[speech] sphinx_beams``, ``sphinx_confirm_beams``):
#: ivr's narrow ones, or pocketsphinx's defaults.
Beams = tuple[float, float, float]
BEAMS: dict[str, Beams] = {
    "narrow": (1e-20, 1e-15, 1e-20),
    "wide": (1e-48, 7e-29, 1e-48),
}


@dataclass(frozen=True, slots=True)
class SphinxRejection:
    """How strongly off-menu speech is rejected (see the module docstring).

    The field defaults are the plain streaming decode; ``[speech]``'s defaults
    (whole; accept at 4 with narrow beams; confirm what penalty 30 with wide
    beams hears) come through :meth:`named`.

    ``penalty``: the garbage path's prior is ``10 ** -penalty``. ``whole``:
    decode the turn once, after the end of speech, with the utterance's own
    cepstral mean (the streaming decode starts from the model's mean and
    mishears more). The beams prune the search: pocketsphinx's defaults
    (``wide``) hear more but cost 6x the CPU when the garbage path competes;
    with a lenient penalty (30) the garbage path is pruned early and wide
    beams cost about as little as narrow ones, so the confirming search gets
    its own ``confirm_beams`` (docs/benchmarks.md, "English speech").
    """

    penalty: float = 4.0
    #: Lenient penalty whose phrases are confirmed with the caller (None, or not above ``penalty``: off).
    confirm_penalty: float | None = None
    whole: bool = False
    beams: Beams = BEAMS["narrow"]
    #: The lenient (confirming) search's beams; None: ``beams``.
    confirm_beams: Beams | None = None

    @classmethod
    def named(cls, penalty: float, confirm_penalty: float | None = None, decode: str = "stream",
              beams: str = "narrow", confirm_beams: str | None = None) -> SphinxRejection:
        """From ``[speech]``'s settings: ``decode`` is stream or whole, the beams :data:`BEAMS` names."""
        return cls(penalty, confirm_penalty or None, decode == "whole", BEAMS[beams],
                   BEAMS[confirm_beams] if confirm_beams else None)

    def settings(self) -> dict[str, Any]:
        """As JSON, for a decoding worker process (:meth:`from_settings` rebuilds it)."""
        return {"penalty": self.penalty, "confirm_penalty": self.confirm_penalty, "whole": self.whole,
                "beams": list(self.beams), "confirm_beams": None if self.confirm_beams is None
                else list(self.confirm_beams)}

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> SphinxRejection:
        values = dict(settings)
        for key in ("beams", "confirm_beams"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    @property
    def first_search(self) -> tuple[float, Beams]:
        """The penalty and beams a turn's decode starts with: the lenient search's when there is one
        (``confirm_penalty`` above ``penalty``), else the strict one's."""
        if self.confirm_penalty is not None and self.confirm_penalty > self.penalty:
            return self.confirm_penalty, self.confirm_beams or self.beams
        return self.penalty, self.beams


@dataclass(frozen=True, slots=True)
class SphinxHypothesis:
    """What a final decode found: its words (garbage included) and the posterior of the best path."""

    words: tuple[str, ...]
    posterior: float
    #: False when only the lenient (confirmation) grammar found these words.
    sure: bool = True


def conclude(grammar: SpeechGrammar, heard: SphinxHypothesis,
             speech: tuple[float | None, float | None] = (None, None)) -> SpeechResult:
    """The menu's decision from a final hypothesis: one option's phrases, or rejected."""
    start, end = speech
    spoken = [w for w in heard.words if w not in _GARBAGE]
    garbage = len(heard.words) - len(spoken)
    transcript = " ".join(spoken)
    if not heard.words:
        return SpeechResult(None, "", 0.0, "rejected", start, end, "no words")
    if garbage:
        phones = " ".join(_GARBAGE[w] for w in heard.words if w in _GARBAGE)
        return SpeechResult(None, transcript, 0.0, "rejected", start, end,
                            f"garbage path ({garbage} phones: {phones})")
    choice = grammar.match(transcript)
    if choice is None:
        return SpeechResult(None, transcript, heard.posterior, "rejected", start, end,
                            "not one option's phrases")
    if not heard.sure:
        return SpeechResult(choice, transcript, heard.posterior, "unsure", start, end,
                            "found only by the lenient grammar: confirm")
    return SpeechResult(choice, transcript, heard.posterior, "match", start, end)


def _model_folder(language: str) -> str:
    import pocketsphinx

    return str(pocketsphinx.get_model_path(_LANGUAGES[language]))


class _Engine:
    """One pocketsphinx decoder with the garbage words, and the menu grammars it has compiled."""

    def __init__(self, language: str, rejection: SphinxRejection) -> None:
        from pocketsphinx import Decoder

        folder = _model_folder(language)
        self.decoder: Any = Decoder(hmm=f"{folder}/{_LANGUAGES[language]}",
                                    dict=f"{folder}/cmudict-en-us.dict", lm=None, samprate=16000,
                                    loglevel="FATAL")
        last = len(_GARBAGE) - 1
        for index, (word, phone) in enumerate(_GARBAGE.items()):
            self.decoder.add_word(word, phone, index == last)
        self.rejection = rejection
        self._compiled: dict[tuple[object, ...], str] = {}

    def knows(self, word: str) -> bool:
        return word not in _GARBAGE and self.decoder.lookup_word(word) is not None

    def use(self, grammar: SpeechGrammar, penalty: float, beams: Beams) -> None:
        """Make ``grammar`` (plus the garbage path) the active search, compiling it once per decoder.

        A search takes its beams from the decoder's settings when it is compiled, so each
        search has its own (the strict and the lenient one differ)."""
        key = (grammar.menu, grammar.language, tuple(grammar.options.items()), penalty, beams)
        name = self._compiled.get(key)
        if name is None:
            name = f"g{len(self._compiled)}"
            config = self.decoder.config
            config["beam"], config["wbeam"], config["pbeam"] = beams
            self.decoder.add_fsg(name, self._fsg(name, grammar, penalty))
            self._compiled[key] = name
        self.decoder.activate_search(name)

    def _fsg(self, name: str, grammar: SpeechGrammar, penalty: float) -> Any:
        """States: 0 start, 1 final, 2 the phone loop, 3... inside multi-word phrases."""
        garbage = 10.0 ** -penalty
        phrases = grammar.phrases
        transitions: list[tuple[Any, ...]] = []
        state = 3
        for phrase in phrases:
            words = phrase.split()
            previous = 0
            for index, word in enumerate(words):
                last = index == len(words) - 1
                following = 1 if last else state
                if not last:
                    state += 1
                transitions.append((previous, following, (1 - garbage) / len(phrases) if index == 0 else 1.0,
                                    word))
                previous = following
        transitions.append((0, 2, garbage))
        for word in _GARBAGE:
            transitions.append((2, 2, 0.5 / len(_GARBAGE), word))
        transitions.append((2, 1, 0.5))
        return self.decoder.create_fsg(name, 0, 1, transitions)


def _heard(decoder: Any) -> tuple[tuple[str, ...], float]:
    """The ended utterance's words and the posterior of its best path (0 when unknown)."""
    hyp = decoder.hyp()
    words = tuple(hyp.hypstr.split()) if hyp is not None else ()
    try:
        posterior = float(decoder.get_prob()) if words else 0.0
    except (RuntimeError, ValueError):
        posterior = 0.0
    return words, min(1.0, max(0.0, posterior if math.isfinite(posterior) else 0.0))


def _decode(engine: _Engine, grammar: SpeechGrammar, penalty: float, beams: Beams,
            audio: bytes) -> tuple[tuple[str, ...], float]:
    """Decode a whole utterance (16 kHz) at ``penalty``, its cepstral mean from the utterance itself."""
    engine.use(grammar, penalty, beams)
    decoder = engine.decoder
    decoder.reinit_feat()  # else the cepstral mean carries over from the last utterance decoded
    decoder.start_utt()
    decoder.process_raw(audio, False, True)
    decoder.end_utt()
    return _heard(decoder)


def _staying_quiet(audio: bytes, quiet: float, end: float) -> bytes:
    """What the line adds by the end of speech if the caller stays quiet: the last ``quiet`` seconds
    of ``audio`` (16 kHz), repeated up to ``end`` seconds of quiet in all."""
    have = min(len(audio), int(quiet * 16000) * 2)
    want = int(max(0.0, end - quiet) * 16000) * 2
    if have <= 0 or want <= 0:
        return b""
    tail = audio[-have:]
    return (tail * (want // have + 1))[:want]


#: A turn decoder's answer: the final hypothesis, a pause's, or a partial transcript.
_Answer = SphinxHypothesis | PauseAnswer | str


class _TurnDecoder:
    """One turn's decoding: leases an engine at its first audio, gives it back at the end."""

    def __init__(self, speech: SphinxSpeech, grammar: SpeechGrammar) -> None:
        self.speech = speech
        self.grammar = grammar
        self.engine: _Engine | None = None
        rejection = speech.rejection
        #: The search the turn starts with; with confirmation, the strict one re-decodes a found phrase.
        self.penalty, self.beams = rejection.first_search
        self.strict, self.strict_beams = rejection.penalty, rejection.beams
        #: The utterance so far (16 kHz), kept only when it may be decoded again.
        self.audio: list[bytes] = []
        #: The whole decode has no running partial: it decodes at each pause instead (an early end).
        self.pauses = speech.rejection.whole

    def accept(self, pcm: bytes, rate: int, final: bool, pause: float = 0.0) -> _Answer:
        try:
            return self._accept(pcm, rate, final, pause)
        except BaseException:
            engine, self.engine = self.engine, None
            self.audio = []
            if engine is not None:  # in an unknown state: dropped, and its place in the pool freed
                self.speech.discard(self.grammar.language, engine)
            raise

    def _accept(self, pcm: bytes, rate: int, final: bool, pause: float) -> _Answer:
        if rate == 8000:
            pcm = double_rate(pcm)
        elif rate != 16000:
            raise RecognizerError(f"pocketsphinx decodes 8 or 16 kHz audio, not {rate} Hz")
        if self.speech.rejection.whole:
            if pause:
                return self._pause(pcm, pause)
            return self._whole(pcm, final)
        engine = self.engine
        if engine is None:
            engine = self.engine = self.speech.lease(self.grammar.language)
            engine.use(self.grammar, self.penalty, self.beams)
            engine.decoder.reinit_feat()  # noise removal would otherwise carry the last caller's state
            engine.decoder.start_utt()
        decoder = engine.decoder
        if pcm:
            decoder.process_raw(pcm, False, False)
            if self.penalty != self.strict:
                self.audio.append(pcm)
        if not final:
            hyp = decoder.hyp()
            text = hyp.hypstr if hyp is not None else ""
            return text if _phrases_only(text.split()) else ""
        decoder.end_utt()
        words, posterior = _heard(decoder)
        sure = self._strict_agrees(engine, words, b"".join(self.audio))
        self.audio = []
        self.engine = None
        self.speech.give_back(self.grammar.language, engine)
        return SphinxHypothesis(words, posterior, sure)

    def _whole(self, pcm: bytes, final: bool) -> SphinxHypothesis | str:
        """Keep the audio; at the end of speech decode it whole: lenient, then strict if it found a phrase."""
        if pcm:
            self.audio.append(pcm)
        if not final:
            return ""  # no partial transcript: the turn ends at a pause (:meth:`_pause`) or the end of speech
        audio, self.audio = b"".join(self.audio), []
        return self._hear(audio)

    def _pause(self, pcm: bytes, quiet: float) -> PauseAnswer:
        """At a pause (the audio so far ends with ``quiet`` seconds of quiet), decode it as the end of
        speech would if the caller stays quiet: its quiet repeated up to ``end_seconds`` (with the
        shorter quiet, parts of longer off-menu speech pass for phrases: docs/benchmarks.md). Only a
        phrase both searches find (an accept, not "unsure") may end the turn here; the hypothesis is
        what the turn ends on if the caller says nothing more (the same audio, decoded once)."""
        if pcm:
            self.audio.append(pcm)
        audio = b"".join(self.audio)
        heard = self._hear(audio + _staying_quiet(audio, quiet, self.speech.vad.end_seconds))
        words = heard.words
        if not heard.sure or not _phrases_only(words):
            return PauseAnswer("", heard)
        return PauseAnswer(" ".join(words), heard)

    def _hear(self, audio: bytes) -> SphinxHypothesis:
        """Decode ``audio`` whole: lenient, then strict if the lenient search found a phrase."""
        if not audio:
            return SphinxHypothesis((), 0.0)
        engine = self.engine = self.speech.lease(self.grammar.language)
        words, posterior = _decode(engine, self.grammar, self.penalty, self.beams, audio)
        sure = self._strict_agrees(engine, words, audio)
        self.engine = None
        self.speech.give_back(self.grammar.language, engine)
        return SphinxHypothesis(words, posterior, sure)

    def _strict_agrees(self, engine: _Engine, words: tuple[str, ...], audio: bytes) -> bool:
        """Whether the strict search hears the phrase the lenient one found (true when the turn's
        search is the strict one, or found no phrase: there is nothing to confirm)."""
        if self.penalty == self.strict or not _phrases_only(words):
            return True
        return _decode(engine, self.grammar, self.strict, self.strict_beams, audio)[0] == words

    def holds_resources(self) -> bool:
        return self.engine is not None

    def release(self) -> None:
        self.audio = []
        engine, self.engine = self.engine, None
        if engine is not None:
            try:
                engine.decoder.end_utt()
            except RuntimeError:
                pass
            self.speech.give_back(self.grammar.language, engine)


class SphinxSpeech:
    """The pocketsphinx engine: decoders per language, kept in a pool; recognisers per turn.

    ``languages`` are the languages of ``[speech] models`` set to ``"pocketsphinx"``;
    only ``en`` has a bundled model. :meth:`load` at start-up raises ConfigError
    for anything else, so a call never finds out first. At most ``max_decoders``
    decoders (~40 MB each) exist per language: a turn beyond that answers
    ``error`` (keys) rather than growing the process without bound.
    """

    def __init__(self, languages: list[str], *, source: str = "config", key: str = "speech.models",
                 threads: int = 2, rejection: SphinxRejection = SphinxRejection(), vad: VADSettings = _VAD,
                 run: Runner[Any] | None = None, max_decoders: int = 24) -> None:
        self.languages = list(languages)
        self.max_decoders = max(1, max_decoders)
        self.source = source
        self.key = key
        self.rejection = rejection
        self.vad = vad
        self.pool = DecodingPool(threads, "ivr-sphinx")
        #: Runs decoding jobs (the pool's threads; a benchmark may decode inline).
        self.run: Runner[Any] = run if run is not None else self.pool.run
        self._loaded: dict[str, _Engine] = {}
        self._idle: dict[str, list[_Engine]] = {}
        #: Decoders made per language, idle or leased.
        self._made: dict[str, int] = {}
        self._lock = threading.Lock()

    def load(self) -> None:
        """Check the model and build one decoder per language (blocking: start-up only)."""
        for language in self.languages:
            if language in self._loaded:
                continue
            if language not in _LANGUAGES:
                raise ConfigError(self.source, f"{self.key}.{language}",
                                  f"pocketsphinx has no bundled model for {language!r}",
                                  "use pocketsphinx for en only, or a vosk model folder for this language")
            try:
                engine = _Engine(language, self.rejection)
            except ImportError:
                raise ConfigError(self.source, f"{self.key}.{language}",
                                  "the pocketsphinx package is not installed",
                                  "pip install pocketsphinx (run scripts/bootstrap)") from None
            except (RuntimeError, ValueError) as exc:
                raise ConfigError(self.source, f"{self.key}.{language}",
                                  f"the pocketsphinx model could not be loaded ({exc})",
                                  "reinstall the pocketsphinx package") from None
            self._loaded[language] = engine
            self._idle[language] = [engine]
            self._made[language] = 1

    def knows(self, language: str, word: str) -> bool:
        """Whether the dictionary has ``word`` (start-up only: before any call decodes)."""
        engine = self._loaded.get(language)
        return engine is not None and engine.knows(word)

    def check(self, grammar: SpeechGrammar) -> None:
        """Start-up check: the grammar's language is loaded and its dictionary has every word."""
        if grammar.language not in self._loaded:
            raise ConfigError(grammar.source, f"menu {grammar.menu!r} speech ({grammar.language})",
                              f"no speech model for language {grammar.language!r}",
                              f"add {self.key}.{grammar.language} = \"{ENGINE}\" to the config")
        grammar.check_vocabulary(lambda word: self.knows(grammar.language, word))

    def lease(self, language: str) -> _Engine:
        """An idle decoder, or a new one under the cap (called on decoding threads only).

        RecognizerError when ``max_decoders`` are all leased: the turn answers
        ``error``. (Waiting here could deadlock: the turns holding them need these threads.)
        """
        with self._lock:
            idle = self._idle.setdefault(language, [])
            if idle:
                return idle.pop()
            made = self._made.get(language, 0)
            if made >= self.max_decoders:
                raise RecognizerError(f"all {made} pocketsphinx decoders for {language} are in use")
            self._made[language] = made + 1
        try:
            return _Engine(language, self.rejection)
        except BaseException:
            self.discard(language, None)
            raise

    def give_back(self, language: str, engine: _Engine) -> None:
        with self._lock:
            self._idle.setdefault(language, []).append(engine)

    def discard(self, language: str, engine: _Engine | None) -> None:
        """Forget a leased decoder (a failed decode left it in an unknown state): its place is free."""
        with self._lock:
            self._made[language] = max(0, self._made.get(language, 0) - 1)

    def decoders(self, language: str) -> tuple[int, int]:
        """(made, idle) decoders for ``language``: what tests and metrics see of the pool."""
        with self._lock:
            return self._made.get(language, 0), len(self._idle.get(language, []))

    def recognizer(self, language: str, grammar: SpeechGrammar) -> StreamingRecognizer | None:
        """A recogniser for one menu turn, or None when ``language`` is not this engine's."""
        if language not in self._loaded:
            return None
        return StreamingRecognizer(grammar, _TurnDecoder(self, grammar), self.run,
                                   lambda heard, speech: conclude(grammar, heard, speech), self.vad)


def engine_languages(models: Mapping[str, str]) -> list[str]:
    """The languages ``[speech] models`` gives to pocketsphinx."""
    return sorted(language for language, value in models.items() if value == ENGINE)


if sys.byteorder != "little":  # pragma: no cover - AudioSocket PCM is little-endian, as every host we use
    raise ImportError("ivr.speech.sphinx_backend assumes a little-endian host")
