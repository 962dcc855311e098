"""The pocketsphinx English engine: real recognition of Asterisk's human recordings over a phone line.

The utterances are made at test time from the sandbox's Asterisk English
core sounds (one woman's recordings at 8 kHz; scripts/asterisk-sandbox
installs them) by tests/speech_audio.human_line: padded, then through G.711
u-law and back. They go through the real recogniser in 20 ms frames (VAD,
pre-roll, upsampling, grammar with the phone-loop garbage path). Without the
sandbox's sounds or the pocketsphinx package these fail; they never skip.
"""

from __future__ import annotations

import array
import wave
from pathlib import Path
from typing import Any

import pytest
from speech_audio import human_line
from twisted.internet import defer

from ivr.config import load_settings
from ivr.errors import ConfigError
from ivr.plugins.sphinx_speech import SphinxPlugin
from ivr.routing.menus import Menu, Option
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.recognizer import Recognizer, SpeechResult
from ivr.speech.sphinx_backend import BEAMS, SphinxHypothesis, SphinxSpeech, conclude
from ivr.survey.questions import grammars, load_questions_file

#: The English demo hotline's main menu phrases (ivr/demo/plugins/hotline.toml).
HOTLINE = {
    "1": ["sales", "one"],
    "2": ["after sales", "repair", "two"],
    "3": ["opening hours", "hours", "three"],
    "0": ["agent", "operator", "zero"],
}
#: The phone-features menu of bench/speech_corpus_en.py: each phrase is a whole recording.
FEATURES = {
    "1": ["call forwarding"], "2": ["call waiting"], "3": ["do not disturb"], "4": ["speed dial"],
    "5": ["telephone number"], "6": ["extension"], "7": ["location"], "8": ["goodbye"], "9": ["hello"],
    "0": ["time"],
}


def inline(work: Any) -> defer.Deferred[Any]:
    return defer.maybeDeferred(work)


@pytest.fixture(scope="module")
def speech() -> SphinxSpeech:
    engine = SphinxSpeech(["en"], run=inline)  # decode on the test's thread: it waits for it anyway
    engine.load()
    return engine


def hear(speech: SphinxSpeech, grammar: SpeechGrammar, wav: Path) -> SpeechResult:
    with wave.open(str(wav), "rb") as reader:
        rate, pcm = reader.getframerate(), reader.readframes(reader.getnframes())
    recognizer = speech.recognizer("en", grammar)
    assert isinstance(recognizer, Recognizer)
    results: list[SpeechResult] = []
    started: list[float] = []
    recognizer.result().addCallback(results.append)
    recognizer.speech_started().addCallback(started.append)
    frame = rate // 50 * 2
    for offset in range(0, len(pcm), frame):
        recognizer.feed(pcm[offset:offset + frame], rate)
    recognizer.finish()
    assert results, "no result after finish()"
    assert started and 0.2 <= started[0] <= 0.9, "speech start (barge-in) is off"  # pad + the recording's
    return results[0]


def features(speech: SphinxSpeech) -> SpeechGrammar:
    grammar = SpeechGrammar.build("features", "en", FEATURES)
    speech.check(grammar)
    return grammar


@pytest.mark.parametrize(("recording", "key"), [
    ("call-forwarding", "1"), ("call-waiting", "2"), ("do-not-disturb", "3"), ("telephone-number", "5"),
    ("location", "7"),
])
def test_human_menu_phrases_over_a_ulaw_line_choose_their_option(
        speech: SphinxSpeech, tmp_path: Path, recording: str, key: str) -> None:
    result = hear(speech, features(speech), human_line(recording, tmp_path))
    assert (result.choice, result.reason) == (key, "match"), result
    assert result.transcript == FEATURES[key][0]


# Examples; the false accepts there are (e.g. vm-isonphone heard as "extension") are counted in
# docs/benchmarks.md ("English speech").
@pytest.mark.parametrize("recording", ["queue-thankyou", "please-try-again", "vm-nobodyavail", "digits/7",
                                       "letters/k", "auth-thankyou", "vm-tooshort"])
def test_human_speech_off_the_menu_is_rejected(speech: SphinxSpeech, tmp_path: Path, recording: str) -> None:
    result = hear(speech, features(speech), human_line(recording, tmp_path))
    assert result.choice is None and result.reason == "rejected", result


def test_the_hotline_hears_one_on_a_narrowband_line(speech: SphinxSpeech, tmp_path: Path) -> None:
    grammar = SpeechGrammar.build("main", "en", HOTLINE)
    speech.check(grammar)
    assert hear(speech, grammar, human_line("digits/1", tmp_path)).choice == "1"


class RecordingDecoder:
    """Stands in for a pocketsphinx decoder: keeps what it is given."""

    def __init__(self) -> None:
        self.fed: list[bytes] = []

    def reinit_feat(self) -> None: ...
    def start_utt(self) -> None: ...
    def end_utt(self) -> None: ...

    def process_raw(self, pcm: bytes, no_search: bool, full_utt: bool) -> None:
        self.fed.append(pcm)

    def hyp(self) -> None:
        return None


class FakeEngine:
    def __init__(self) -> None:
        self.decoder = RecordingDecoder()

    def use(self, grammar: SpeechGrammar, penalty: float, beams: tuple[float, float, float]) -> None: ...


@pytest.mark.parametrize(("rate", "factor"), [(8000, 2), (16000, 1)])
def test_narrowband_is_upsampled_and_wideband_goes_to_the_model_as_it_is(rate: int, factor: int) -> None:
    engine = FakeEngine()
    speech = SphinxSpeech(["en"], run=inline)
    speech.lease = lambda language: engine  # type: ignore[assignment,method-assign,return-value]
    speech.give_back = lambda language, e: None  # type: ignore[assignment,method-assign]
    speech._loaded["en"] = engine  # type: ignore[assignment]
    recognizer = speech.recognizer("en", GRAMMAR)
    assert recognizer is not None
    results: list[SpeechResult] = []
    recognizer.result().addCallback(results.append)
    tone = array.array("h", [8000 if (i // 8) % 2 else -8000 for i in range(rate)]).tobytes()  # 1 s, loud
    for offset in range(0, len(tone), rate // 50 * 2):
        recognizer.feed(tone[offset:offset + rate // 50 * 2], rate)
    recognizer.finish()
    fed = sum(map(len, engine.decoder.fed))
    assert fed and fed % (factor * 2) == 0 and results[0].reason == "rejected"  # no words heard
    assert fed <= len(tone) * factor and fed >= int(0.9 * len(tone)) * factor


def test_audio_at_another_rate_is_an_error_result_not_an_exception() -> None:
    speech = SphinxSpeech(["en"], run=inline)
    speech._loaded["en"] = FakeEngine()  # type: ignore[assignment]
    recognizer = speech.recognizer("en", GRAMMAR)
    assert recognizer is not None
    results: list[SpeechResult] = []
    recognizer.result().addCallback(results.append)
    loud = array.array("h", [9000, -9000] * 240).tobytes()
    for _ in range(30):
        recognizer.feed(loud, 24000)
    recognizer.finish()
    assert results and results[0].reason == "error" and "24000" in results[0].detail


def test_a_word_missing_from_the_dictionary_stops_start_up(speech: SphinxSpeech) -> None:
    bad = SpeechGrammar.build("billing", "en", {"1": ["sales"], "2": ["refund qwertyuiop"]},
                              source="menus.toml")
    with pytest.raises(ConfigError) as caught:
        speech.check(bad)
    text = str(caught.value)
    assert "menus.toml" in text and "menu 'billing'" in text and "'qwertyuiop'" in text


def test_a_garbage_pseudo_word_is_not_a_dictionary_word(speech: SphinxSpeech) -> None:
    with pytest.raises(ConfigError, match="'aa'"):
        speech.check(SpeechGrammar.build("main", "en", {"1": ["+aa+"]}))  # normalised to "aa": unknown


def test_languages_without_a_bundled_model_are_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        SphinxSpeech(["ko"], source="/etc/ivr/ivr.toml").load()
    text = str(caught.value)
    assert "/etc/ivr/ivr.toml" in text and "speech.models.ko" in text and "vosk" in text


def test_a_menu_language_not_loaded_is_refused_and_gets_no_recogniser(speech: SphinxSpeech) -> None:
    grammar = SpeechGrammar.build("main", "zh", {"1": ["人工"]})
    with pytest.raises(ConfigError, match="no speech model for language 'zh'"):
        speech.check(grammar)
    assert speech.recognizer("zh", grammar) is None


def test_the_plugin_checks_every_english_menu_at_start_up() -> None:
    good = Menu("main", "p", {"1": Option("queue", "sales", speech={"en": ("sales",), "ko": ("판매",)})})
    bad = Menu("billing", "p", {"1": Option("queue", "sales", speech={"en": ("sales", "xyzzyq")})},
               source="plugins/billing.toml")
    plugin = SphinxPlugin({"en": "pocketsphinx", "ko": "package"}, "ivr.toml")  # ko is vosk's: not checked
    plugin.load([good])
    with pytest.raises(ConfigError) as caught:
        plugin.load([good, bad])
    assert "plugins/billing.toml" in str(caught.value) and "'xyzzyq'" in str(caught.value)


def test_the_garbage_penalty_setting_is_validated(tmp_path: Path) -> None:
    assert load_settings(environ={"IVR_SPEECH_GARBAGE_PENALTY": "12.5"}).speech.garbage_penalty == 12.5
    with pytest.raises(ConfigError, match="speech.garbage_penalty"):
        load_settings(environ={"IVR_SPEECH_GARBAGE_PENALTY": "0"})


# -- the decision and the audio, without the decoder -----------------------------------

GRAMMAR = SpeechGrammar.build("main", "en", HOTLINE)


@pytest.mark.parametrize(("words", "choice", "reason"), [
    (("after", "sales"), "2", "match"),
    (("one",), "1", "match"),
    (("one", "one"), "1", "match"),
    (("one", "two"), None, "rejected"),          # two options: never guess
    (("one", "+ah+", "+n+"), None, "rejected"),  # part of it went through the garbage path
    (("+s+", "+ey+"), None, "rejected"),
    ((), None, "rejected"),
])
def test_conclude(words: tuple[str, ...], choice: str | None, reason: str) -> None:
    result = conclude(GRAMMAR, SphinxHypothesis(words, 0.9), (0.3, 1.2))
    assert (result.choice, result.reason) == (choice, reason)
    assert (result.speech_start, result.speech_end) == (0.3, 1.2)
    assert "+" not in result.transcript


SURVEY_EN = """[[questions]]
name = "score"
prompt = "ivr-survey-satisfaction"
answers = { "1" = "1", "2" = "2", "3" = "3", "4" = "4", "5" = "5" }
speech = { en = { "1" = ["very satisfied"], "5" = ["very %s"] } }
"""


@pytest.mark.parametrize("word", ["dissatisfied", "unsatisfiedish"])
def test_the_plugin_checks_a_surveys_english_phrases_against_the_dictionary(tmp_path: Path,
                                                                            word: str) -> None:
    path = tmp_path / "survey.toml"
    path.write_text(SURVEY_EN % word)
    questions = load_questions_file(path)
    plugin = SphinxPlugin({"en": "pocketsphinx"}, "ivr.toml")
    if word == "dissatisfied":
        plugin.load([], grammars(questions))
        return
    with pytest.raises(ConfigError) as caught:
        plugin.load([], grammars(questions))
    assert "'survey-score'" in str(caught.value) and "'unsatisfiedish'" in str(caught.value)



@pytest.fixture(scope="module")
def defaults() -> SphinxSpeech:
    """The engine as ``[speech]``'s defaults build it: whole decode, accept at 4 (narrow beams),
    confirm what penalty 30 (wide beams) alone hears."""
    settings = load_settings(environ={}).speech
    plugin = SphinxPlugin({"en": "pocketsphinx"}, "ivr.toml", 1, settings.garbage_penalty,
                          settings.confirm_penalty, decode=settings.sphinx_decode,
                          beams=settings.sphinx_beams, confirm_beams=settings.sphinx_confirm_beams)
    plugin.engine.run = inline
    plugin.engine.load()
    rejection = plugin.engine.rejection
    assert rejection.whole and rejection.penalty == 4 and rejection.confirm_penalty == 30
    assert rejection.beams == BEAMS["narrow"] and rejection.confirm_beams == BEAMS["wide"]
    return plugin.engine


@pytest.mark.parametrize(("recording", "key", "reason"), [
    ("digits/3", "3", "match"),
    ("digits/1", "1", "unsure"),  # heard, but only by the lenient grammar: the caller is asked
    ("digits/7", None, "rejected"),  # not an option: the lenient search takes the garbage path too
])
def test_the_default_whole_decode_accepts_confirms_or_rejects(
        defaults: SphinxSpeech, tmp_path: Path, recording: str, key: str | None, reason: str) -> None:
    grammar = SpeechGrammar.build("main", "en", HOTLINE)
    result = hear(defaults, grammar, human_line(recording, tmp_path))
    assert (result.choice, result.reason) == (key, reason), result


def test_the_whole_decode_hears_phrases_the_streaming_one_misses(speech: SphinxSpeech, defaults: SphinxSpeech,
                                                                  tmp_path: Path) -> None:
    """'extension' through u-law: the streaming decode's garbage path takes it at penalty 4; decoded
    whole, the lenient grammar hears it. 'speed dial': narrow beams prune every path of the whole
    decode; the lenient search's wide beams keep it (docs/benchmarks.md)."""
    for recording, key in (("extension", "6"), ("speed-dial", "4")):
        wav = human_line(recording, tmp_path)
        assert hear(speech, features(speech), wav).choice is None  # streaming, accept at 4, no confirmation
        result = hear(defaults, features(defaults), wav)
        assert (result.choice, result.reason) == (key, "unsure"), result
