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
from ivr.routing.menus import Menu, grammars_to_check
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.pool import DecodingProcesses
from ivr.speech.recognizer import Recognizer
from ivr.speech.sphinx_backend import (
    ENGINE,
    SphinxHypothesis,
    SphinxRejection,
    SphinxSpeech,
    conclude,
    engine_languages,
)

__all__ = ["SphinxPlugin"]


class SphinxPlugin:
    """The pocketsphinx engine behind the ``ivr_recognizer`` hook."""

    def __init__(self, models: Mapping[str, str], source: str, threads: int = 2,
                 garbage_penalty: float = 4.0, confirm_penalty: float = 30.0, *, decode: str = "whole",
                 beams: str = "narrow", confirm_beams: str = "wide", pool: DecodingProcesses | None = None,
                 max_decoders: int = 8) -> None:
        rejection = SphinxRejection.named(garbage_penalty, confirm_penalty, decode, beams, confirm_beams)
        self.engine = SphinxSpeech(engine_languages(models), source=source, key="speech.models",
                                   threads=threads, rejection=rejection, max_decoders=max_decoders)
        #: Worker processes that decode (``[speech] decoding = "process"``), or None: threads here.
        self.pool = pool
        if pool is not None:
            pool.add_engine(ENGINE, {"source": source, "languages": self.engine.languages,
                                     "rejection": rejection.settings()})

    def load(self, menus: Iterable[Menu], grammars: Iterable[SpeechGrammar] = ()) -> None:
        """Load the model and check every speech menu in its languages, and other ``grammars`` (the
        survey's questions) in them, against the dictionary (blocking: start-up only). With worker
        processes, a worker process loads the model and checks."""
        found = grammars_to_check(menus, grammars, self.engine.languages)
        if self.pool is not None:
            self.pool.check(ENGINE, found)
            return
        self.engine.load()
        for grammar in found:
            self.engine.check(grammar)

    @hookimpl(trylast=True)
    def ivr_recognizer(self, language: str, grammar: SpeechGrammar) -> Recognizer | None:
        if self.pool is None:
            return self.engine.recognizer(language, grammar)
        if language not in self.engine.languages:
            return None
        return self.pool.recognizer(ENGINE, grammar, lambda heard, speech: conclude(grammar, heard, speech),
                                    self.engine.vad, _hypothesis, pauses=self.engine.rejection.whole)


def _hypothesis(value: list[object]) -> SphinxHypothesis:
    """A worker's final answer (words, posterior, sure) as the hypothesis ``conclude`` takes."""
    words, posterior, sure = value
    assert isinstance(words, list) and isinstance(posterior, float | int)
    return SphinxHypothesis(tuple(str(word) for word in words), float(posterior), bool(sure))
