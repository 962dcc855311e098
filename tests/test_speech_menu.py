"""Call.menu with speech over StringTransport: phrases answer like keys; misses reprompt, then keys.

The speech turns are scripted (a stand-in for SpeechService.turn); the AGI
side is the real protocol, so the prompts ivr plays in between are checked.
"""

from __future__ import annotations

from collections.abc import Iterator

from asterisk_sim import parse_args
from conftest import Session

from ivr import Call, Route, Router
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.turn import SpeechAnswer

GRAMMAR = SpeechGrammar.build("main", "ko", {"1": ["상담원"], "2": ["예약"]})
CHOICES = {"1": "agent", "2": "booking"}


class ScriptedSpeech:
    """Each turn answers the next scripted SpeechAnswer (and records the prompt it was asked to play)."""

    def __init__(self, answers: list[SpeechAnswer]) -> None:
        self.answers: Iterator[SpeechAnswer] = iter(answers)
        self.prompts: list[str] = []
        self.grammars: list[SpeechGrammar] = []

    async def turn(self, call: Call, prompt: str, grammar: SpeechGrammar, timeout: float) -> SpeechAnswer:
        self.prompts.append(prompt)
        self.grammars.append(grammar)
        return next(self.answers)


def run_menu(answers: list[SpeechAnswer], replies: list[str], **menu: object) -> tuple[list[object], list[
        list[str]], ScriptedSpeech, Call | None]:
    """Run one speech menu; ``replies`` answer the AGI commands it sends, in order."""
    speech = ScriptedSpeech(answers)
    result: list[object] = []
    seen: list[Call] = []

    async def handler(call: Call) -> None:
        call.speech = speech
        seen.append(call)
        answer = await call.menu("ivr-speech-menu", CHOICES, speech=GRAMMAR, **menu)  # type: ignore[arg-type]
        result.append(answer)

    routers: list[Router] = []
    session = Session(on_ready=lambda protocol: routers[0].session_ready(protocol))
    routers.append(Router(session.clock, [Route("main", handler)], call_deadline=60.0))
    session.start("main")
    commands: list[list[str]] = []
    for reply in replies:
        commands += [parse_args(line.decode().rstrip("\n")) for line in session.sent()]
        session.feed(reply + "\n")
    commands += [parse_args(line.decode().rstrip("\n")) for line in session.sent()]
    return result, commands, speech, seen[0] if seen else None


def played(commands: list[list[str]]) -> list[tuple[str, str]]:
    """The prompts ivr streamed over AGI, with the keys that may interrupt each."""
    return [(c[2], c[3]) for c in commands if c[:2] == ["STREAM", "FILE"]]


def test_a_spoken_phrase_answers_like_its_key() -> None:
    result, commands, speech, call = run_menu([SpeechAnswer("speech", "2", "예약", 0.93)], [])
    assert result == ["booking"] and speech.prompts == ["ivr-speech-menu"]
    assert call is not None and [a.transcript for a in call.heard] == ["예약"]


def test_a_key_during_the_turn_counts_as_that_key() -> None:
    result, _, _, call = run_menu([SpeechAnswer("dtmf", "1")], [])
    assert result == ["agent"] and call is not None and call.heard == []


def test_off_menu_speech_plays_invalid_then_listens_again() -> None:
    answers = [SpeechAnswer("rejected", None, "날씨", 0.4), SpeechAnswer("speech", "1", "상담원", 0.9)]
    result, commands, speech, _ = run_menu(answers, ["200 result=0 endpos=100"])
    assert played(commands) == [("ivr-invalid", "")]  # between the two speech turns
    assert result == ["agent"] and speech.prompts == ["ivr-speech-menu", "ivr-speech-menu"]


def test_after_the_speech_misses_the_menu_goes_keypad_only() -> None:
    answers = [SpeechAnswer("rejected", None, "a", 0.3), SpeechAnswer("rejected", None, "b", 0.3)]
    replies = ["200 result=0 endpos=100", "200 result=0 endpos=100", "200 result=50 endpos=100"]
    result, commands, speech, _ = run_menu(answers, replies, tries=3, speech_tries=2)
    assert len(speech.prompts) == 2  # no third speech turn
    assert played(commands) == [("ivr-invalid", ""), ("ivr-invalid", ""),
                                ("ivr-speech-menu", "0123456789*#")]
    assert result == ["booking"]  # key 2 (ASCII 50)


def test_or_hands_the_caller_to_a_person_when_configured() -> None:
    answers = [SpeechAnswer("rejected", None, "a", 0.3), SpeechAnswer("rejected", None, "b", 0.3)]
    result, _, _, _ = run_menu(answers, ["200 result=0 endpos=100"], speech_tries=2,
                               speech_exhausted="to-a-person")
    assert result == ["to-a-person"]


def test_when_speech_fails_the_same_try_is_asked_on_the_keypad() -> None:
    result, commands, speech, _ = run_menu([SpeechAnswer("error")], ["200 result=49 endpos=100"])
    assert len(speech.prompts) == 1 and played(commands) == [("ivr-speech-menu", "0123456789*#")]
    assert result == ["agent"]


# -- three outcomes: a phrase heard but not surely is confirmed first ----------------------

EN_GRAMMAR = SpeechGrammar.build("main", "en", {"1": ["sales"], "2": ["after sales"]})


def run_en_menu(answers: list[SpeechAnswer], replies: list[str], grammar: SpeechGrammar = EN_GRAMMAR,
                ) -> tuple[list[object], list[list[str]], ScriptedSpeech, Call | None]:
    speech = ScriptedSpeech(answers)
    result: list[object] = []
    seen: list[Call] = []

    async def handler(call: Call) -> None:
        call.speech = speech
        seen.append(call)
        result.append(await call.menu("ivr-speech-menu", CHOICES, speech=grammar))

    routers: list[Router] = []
    session = Session(on_ready=lambda protocol: routers[0].session_ready(protocol))
    routers.append(Router(session.clock, [Route("main", handler)], call_deadline=60.0))
    session.start("main")
    commands: list[list[str]] = []
    for reply in replies:
        commands += [parse_args(line.decode().rstrip("\n")) for line in session.sent()]
        session.feed(reply + "\n")
    commands += [parse_args(line.decode().rstrip("\n")) for line in session.sent()]
    return result, commands, speech, seen[0] if seen else None


def test_an_unsure_phrase_is_confirmed_by_a_spoken_yes() -> None:
    answers = [SpeechAnswer("unsure", "2", "after sales", 0.5), SpeechAnswer("speech", "1", "yes", 0.9)]
    result, commands, speech, call = run_en_menu(answers, ["200 result=0 endpos=100", "200 result=0"])
    assert played(commands) == [("ivr-confirm-option", "0123456789*#")]
    assert ["SAY", "DIGITS", "2", "0123456789*#"] in commands  # "Did you choose option" ... "two"
    assert speech.prompts == ["ivr-speech-menu", "ivr-confirm-yes-no"]
    assert result == ["booking"]
    assert call is not None
    assert [(a.via, a.choice, a.transcript, a.confirming) for a in call.heard] == [
        ("unsure", "2", "after sales", None), ("speech", "1", "yes", "2")]


def test_a_no_is_a_miss_the_menu_asks_again_and_routes_nothing() -> None:
    answers = [SpeechAnswer("unsure", "2", "after sales", 0.5), SpeechAnswer("speech", "2", "no", 0.9),
               SpeechAnswer("speech", "1", "sales", 0.9)]
    result, commands, speech, call = run_en_menu(
        answers, ["200 result=0 endpos=100", "200 result=0", "200 result=0 endpos=100"])
    assert played(commands) == [("ivr-confirm-option", "0123456789*#"), ("ivr-invalid", "")]
    assert speech.prompts == ["ivr-speech-menu", "ivr-confirm-yes-no", "ivr-speech-menu"]
    assert result == ["agent"]  # what the caller then said surely, not the option they denied
    assert call is not None and [a.confirming for a in call.heard] == [None, "2", None]


def test_the_confirmation_takes_a_key_and_silence_is_not_a_yes() -> None:
    keyed, _, _, call = run_en_menu([SpeechAnswer("unsure", "1", "sales", 0.5), SpeechAnswer("dtmf", "1")],
                                    ["200 result=0 endpos=100", "200 result=0"])
    assert keyed == ["agent"] and call is not None and call.heard[-1].confirming == "1"
    silent, _, _, call = run_en_menu(
        [SpeechAnswer("unsure", "1", "sales", 0.5), SpeechAnswer("timeout"), SpeechAnswer("dtmf", "2")],
        ["200 result=0 endpos=100", "200 result=0", "200 result=0 endpos=100"])
    assert silent == ["booking"]  # the caller pressed 2 on the next try
    assert call is not None and [(a.via, a.confirming) for a in call.heard] == [
        ("unsure", None), ("timeout", "1")]


def test_a_korean_caller_confirms_with_a_spoken_ne() -> None:
    answers = [SpeechAnswer("unsure", "2", "예약", 0.5), SpeechAnswer("speech", "1", "네", 0.9)]
    result, _, speech, call = run_en_menu(answers, ["200 result=0 endpos=100", "200 result=0"], GRAMMAR)
    assert speech.prompts == ["ivr-speech-menu", "ivr-confirm-yes-no"]
    assert speech.grammars[-1].language == "ko" and speech.grammars[-1].menu == "confirm"
    assert result == ["booking"]
    assert call is not None and call.heard[-1].confirming == "2"


ZH_GRAMMAR = SpeechGrammar.build("main", "zh", {"1": ["人工"], "2": ["预约"]})


def test_a_language_without_yes_no_phrases_confirms_on_the_keypad() -> None:
    speech = ScriptedSpeech([SpeechAnswer("unsure", "2", "预约", 0.5)])
    result: list[object] = []

    async def handler(call: Call) -> None:
        call.speech = speech
        result.append(await call.menu("ivr-speech-menu", CHOICES, speech=ZH_GRAMMAR))

    routers: list[Router] = []
    session = Session(on_ready=lambda protocol: routers[0].session_ready(protocol))
    routers.append(Router(session.clock, [Route("main", handler)], call_deadline=60.0))
    session.start("main")
    commands: list[list[str]] = []
    for reply in ["200 result=0 endpos=100", "200 result=0", "200 result=49 endpos=100"]:
        commands += [parse_args(line.decode().rstrip("\n")) for line in session.sent()]
        session.feed(reply + "\n")
    assert speech.prompts == ["ivr-speech-menu"]  # no yes/no speech turn in Chinese
    assert played(commands) == [("ivr-confirm-option", "0123456789*#"),
                                ("ivr-confirm-yes-no", "0123456789*#")]
    assert result == ["booking"]  # the caller pressed 1: yes


def test_the_question_and_its_answer_are_steps_of_the_path() -> None:
    from ivr.routing.menu_engine import _heard_step
    from ivr.routing.path import IvrPath

    path = IvrPath()
    for answer in [SpeechAnswer("unsure", "2", "after sales", 0.5),
                   SpeechAnswer("speech", "1", "yes", 0.9, confirming="2"),
                   SpeechAnswer("dtmf", "2", confirming="1"), SpeechAnswer("timeout", confirming="1")]:
        path.add(_heard_step("main", answer))
    assert path.text(">") == "main:said:2>main:confirm:2:yes>main:confirm:1:no>main:confirm:1:-"
    assert all(step["key"] == "" for step in path.to_json()[1:])  # an answer is not a key of the menu


def test_a_key_during_the_question_answers_it() -> None:
    result, commands, speech, call = run_en_menu([SpeechAnswer("unsure", "2", "after sales", 0.5)],
                                                 ["200 result=49 endpos=100"])
    assert result == ["booking"] and speech.prompts == ["ivr-speech-menu"]  # no yes/no turn needed
    assert not any(c[:2] == ["SAY", "DIGITS"] for c in commands)
    assert call is not None and (call.heard[-1].via, call.heard[-1].confirming) == ("dtmf", "2")


def test_a_missing_question_prompt_asks_nothing_and_reprompts() -> None:
    answers = [SpeechAnswer("unsure", "2", "after sales", 0.5), SpeechAnswer("speech", "1", "sales", 0.9)]
    # STREAM FILE ivr-confirm-option fails (-1), CHANNEL STATUS says the line is up, invalid plays
    result, commands, speech, call = run_en_menu(
        answers, ["200 result=-1 endpos=0", "200 result=6", "200 result=0 endpos=100"])
    assert result == ["agent"] and speech.prompts == ["ivr-speech-menu", "ivr-speech-menu"]
    assert call is not None and (call.heard[1].via, call.heard[1].confirming) == ("error", "2")
