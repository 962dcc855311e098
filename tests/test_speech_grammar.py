"""Speech grammars: normalisation, the vosk grammar list, mapping text to one option, vocabulary checks."""

from __future__ import annotations

import json

import pytest

from ivr.errors import ConfigError
from ivr.speech.grammar import SpeechGrammar, normalise

MENU = {
    "1": ["상담원", "상담원 연결", "직원"],
    "2": ["수리", "수리 접수", "고장 신고"],
    "3": ["Booking!", "  예약  "],
}


def grammar() -> SpeechGrammar:
    return SpeechGrammar.build("main", "ko", MENU)


def test_normalise_folds_case_width_punctuation_and_spaces() -> None:
    assert normalise("  Agent,\tPLEASE!! ") == "agent please"
    assert normalise("ＡＧＥＮＴ") == "agent"
    assert normalise("상담원 연결?") == "상담원 연결"
    assert normalise("after-sales") == "after sales"
    assert normalise("...") == ""


def test_phrases_keep_option_order_and_are_normalised() -> None:
    g = grammar()
    assert g.options["3"] == ("booking", "예약")
    assert g.phrases == ["상담원", "상담원 연결", "직원", "수리", "수리 접수", "고장 신고", "booking", "예약"]
    assert json.loads(g.vosk_grammar()) == g.phrases
    assert json.loads(g.vosk_grammar(["네", "수리"]))[-1] == "네"  # menu phrases are not repeated
    assert g.words >= {"상담원", "연결", "고장", "신고"}


@pytest.mark.parametrize(("text", "key"), [
    ("상담원", "1"),
    ("상담원 연결", "1"),
    ("직원 상담원", "1"),        # a grammar decode may chain phrases of one option
    ("BOOKING", "3"),
    ("고장 신고", "2"),
    ("고장", None),             # part of a phrase is not a phrase
    ("수리 상담원", None),       # two options: ambiguous
    ("", None),
    ("안녕하세요", None),
    ("상담원 안녕하세요", None),  # anything off the grammar spoils it
])
def test_match_maps_text_to_exactly_one_option(text: str, key: str | None) -> None:
    assert grammar().match(text) == key


def test_key_of_a_single_phrase() -> None:
    assert grammar().key_of("Booking") == "3"
    assert grammar().key_of("booking 예약") is None


@pytest.mark.parametrize(("options", "problem"), [
    ({}, "has no phrases"),
    ({"1": ["상담원"], "2": ["상담원!"]}, "also chooses key '1'"),
    ({"1": ["?!"]}, "has no words"),
    ({"1": []}, "has no phrases"),
    ({"1": ["one two three four five six seven eight nine"]}, "too long"),
])
def test_bad_phrases_are_config_errors_naming_the_menu(options: dict[str, list[str]], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SpeechGrammar.build("billing", "ko", options, source="menus.toml")
    assert problem in str(caught.value)
    assert "menu 'billing'" in str(caught.value) and "menus.toml" in str(caught.value)


def test_a_single_string_is_one_phrase() -> None:
    g = SpeechGrammar.build("m", "en", {"1": "agent"})
    assert g.options == {"1": ("agent",)}


def test_vocabulary_check_names_the_menu_key_and_word() -> None:
    known = {"상담원", "연결", "직원", "수리", "접수", "고장", "booking", "예약"}
    with pytest.raises(ConfigError) as caught:
        grammar().check_vocabulary(known.__contains__)
    message = str(caught.value)
    assert "menu 'main'" in message and "key '2'" in message and "'신고'" in message
    grammar().check_vocabulary(lambda word: True)
