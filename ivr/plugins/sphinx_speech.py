"""Built-in plugin: English speech menus with pocketsphinx and its bundled US-English model.

``ivr serve`` registers it when ``[speech] models`` sets a language to
``"pocketsphinx"`` (only ``en`` has a bundled model). At start-up it loads the
model and checks every phrase of every English speech menu against the
pronouncing dictionary, so a word the recogniser could never hear stops the
server with the menu and the word named. Like vosk it answers
``ivr_recognizer`` last (``trylast``): another engine's plugin can take over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ivr.plugins.hookspecs import hookimpl
from ivr.routing.menus import Menu
from ivr.speech.grammar import SpeechGrammar, confirm_grammar
from ivr.speech.recognizer import Recognizer
from ivr.speech.sphinx_backend import SphinxRejection, SphinxSpeech, engine_languages

__all__ = ["SphinxPlugin"]


class SphinxPlugin:
    """The pocketsphinx engine behind the ``ivr_recognizer`` hook."""

    def __init__(self, models: Mapping[str, str], source: str, threads: int = 2,
                 garbage_penalty: float = 4.0, confirm_penalty: float = 30.0, *, decode: str = "whole",
                 beams: str = "narrow", confirm_beams: str = "wide") -> None:
        rejection = SphinxRejection.named(garbage_penalty, confirm_penalty, decode, beams, confirm_beams)
        self.engine = SphinxSpeech(engine_languages(models), source=source, key="speech.models",
                                   threads=threads, rejection=rejection)

    def load(self, menus: Iterable[Menu], grammars: Iterable[SpeechGrammar] = ()) -> None:
        """Load the model and check every speech menu in its languages, and other ``grammars`` (the
        survey's questions) in them, against the dictionary (blocking: start-up only)."""
        self.engine.load()
        for menu in menus:
            for language in sorted(menu.speech_languages() & set(self.engine.languages)):
                grammar = menu.grammar(language)
                if grammar is not None:
                    self.engine.check(grammar)
        for grammar in grammars:
            if grammar.language in self.engine.languages:
                self.engine.check(grammar)
        for language in self.engine.languages:  # the yes/no answers of a confirmation question
            confirm = confirm_grammar(language)
            if confirm is not None:
                self.engine.check(confirm)

    @hookimpl(trylast=True)
    def ivr_recognizer(self, language: str, grammar: SpeechGrammar) -> Recognizer | None:
        return self.engine.recognizer(language, grammar)
