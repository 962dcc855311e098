"""The confirmation question of a speech menu: "Did you choose option 2? Say yes or press 1".

Asked when the recogniser heard a phrase but not surely (``unsure``). It names
the option by its key (Asterisk says the digit), so every menu can ask it
without a prompt per option; the answer is spoken (:func:`confirm_grammar`,
in the languages that have yes/no phrases) or keyed, and a key pressed while
the question plays answers it. The call (:class:`ivr.Call`) is reached through
the narrow :class:`ConfirmingCall` interface.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from twisted.logger import Logger

from ivr.errors import CommandFailed
from ivr.speech.grammar import SpeechGrammar, confirm_grammar
from ivr.speech.turn import SpeechAnswer

__all__ = ["ConfirmingCall", "ask_to_confirm"]

log = Logger(namespace="ivr.speech")
_KEYS = "0123456789*#"


class ConfirmingCall(Protocol):
    """What the question needs of a call."""

    @property
    def uniqueid(self) -> str: ...

    @property
    def heard(self) -> list[SpeechAnswer]: ...

    @property
    def listening(self) -> bool:
        """True when this call can take a speech turn."""

    async def play(self, prompt: str, escape_digits: str = "", offset: int = 0) -> str | None: ...

    async def say_digits(self, digits: str, escape_digits: str = "") -> str | None: ...

    async def wait_for_digit(self, timeout: float) -> str | None: ...

    async def ask(self, prompt: str, grammar: SpeechGrammar, timeout: float = 5.0) -> SpeechAnswer: ...


async def ask_to_confirm(call: ConfirmingCall, key: str, language: str, timeout: float = 5.0) -> bool:
    """Ask about option ``key``; True for yes. The answer goes into ``call.heard`` with
    ``confirming`` set, so the call's steps and history show the question and its answer."""
    try:
        early = await call.play("ivr-confirm-option", _KEYS) or await call.say_digits(key, _KEYS)
    except CommandFailed:  # the prompt is not installed (run `ivr voices build`): ask nothing, reprompt
        log.warn("call {uniqueid}: cannot ask to confirm option {key} (is ivr-confirm-option installed?)",
                 uniqueid=call.uniqueid, key=key)
        call.heard.append(SpeechAnswer("error", confirming=key))
        return False
    grammar = confirm_grammar(language)
    answer = SpeechAnswer("dtmf", early) if early else SpeechAnswer("error")
    before = len(call.heard)
    if early is None and grammar is not None and call.listening:
        answer = await call.ask("ivr-confirm-yes-no", grammar, timeout)
        del call.heard[before:]  # recorded once, below, as the answer to this question
    if answer.via == "error":  # no speech here: the keypad alone
        digit = await call.play("ivr-confirm-yes-no", _KEYS) or await call.wait_for_digit(timeout)
        answer = SpeechAnswer("dtmf", digit) if digit else SpeechAnswer("timeout")
    answer = replace(answer, confirming=key)
    call.heard.append(answer)
    return answer.via in ("speech", "dtmf") and answer.choice == "1"
