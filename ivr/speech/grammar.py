"""A speech menu's grammar: the phrases callers may say, and what each one chooses.

Built from a menu's options (key -> phrases and synonyms), normalised the
same way a recogniser's transcript is, so the two compare as plain strings.
A recogniser restricted to :meth:`SpeechGrammar.phrases` can still return
several phrases in a row (a vosk grammar loops); :meth:`SpeechGrammar.match`
accepts that only when every word belongs to phrases of one single option.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ivr.errors import ConfigError

__all__ = ["CONFIRM_PHRASES", "SpeechGrammar", "confirm_grammar", "normalise"]

_SPACE = re.compile(r"\s+")
#: Longest phrase accepted, in words (menus name things; they do not take dictation).
_MAX_WORDS = 8


#: "Did you choose option 2? Say yes or press 1, say no or press 2": the answers per language
#: (key 1 yes, key 2 no). A language missing here confirms by keypad only.
CONFIRM_PHRASES: dict[str, dict[str, list[str]]] = {
    "en": {"1": ["yes", "yeah", "yes please", "correct", "right"], "2": ["no", "no thanks", "wrong"]},
    # Measured with espeak-ng voices over the phone line (docs/benchmarks.md "Korean yes and no"):
    # 응 and 맞아 were rarely heard and 응 took a hesitating 음 for yes, so they are left out.
    "ko": {"1": ["네", "예"], "2": ["아니요", "아니오", "아닙니다"]},
}


def confirm_grammar(language: str) -> SpeechGrammar | None:
    """The yes/no grammar of a confirmation question in ``language``, or None (keypad only)."""
    phrases = CONFIRM_PHRASES.get(language)
    return SpeechGrammar.build("confirm", language, phrases, "built-in") if phrases else None


def normalise(text: str) -> str:
    """Compatibility-fold, lower-case, drop punctuation and symbols, collapse spaces.

    Applied to menu phrases and to transcripts alike, so that "Agent!",
    "agent" and "ＡＧＥＮＴ" are the same phrase.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if unicodedata.category(ch)[0] in "PSCZ" else ch for ch in folded)
    return _SPACE.sub(" ", kept).strip()


@dataclass(frozen=True, slots=True)
class SpeechGrammar:
    """Phrases per option key for one menu in one language; build with :meth:`build`."""

    menu: str
    language: str
    #: Option key -> its normalised phrases, first one first (the prompt's wording).
    options: Mapping[str, tuple[str, ...]]
    source: str = "python"
    _by_phrase: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, menu: str, language: str, options: Mapping[str, Iterable[str]],
              source: str = "python") -> SpeechGrammar:
        """Normalise and check ``options``; a ConfigError names the menu and the problem."""
        where = f"menu {menu!r} speech ({language})"
        normalised: dict[str, tuple[str, ...]] = {}
        by_phrase: dict[str, str] = {}
        if not options:
            raise ConfigError(source, where, "has no phrases", "give at least one option a phrase")
        for key, phrases in options.items():
            if isinstance(phrases, str):
                phrases = [phrases]
            kept: list[str] = []
            for phrase in phrases:
                clean = normalise(phrase)
                if not clean:
                    raise ConfigError(source, f"{where} key {key!r}", f"phrase {phrase!r} has no words",
                                      "write the words a caller says")
                if len(clean.split()) > _MAX_WORDS:
                    raise ConfigError(source, f"{where} key {key!r}", f"phrase {phrase!r} is too long",
                                      f"keep phrases to {_MAX_WORDS} words or fewer")
                other = by_phrase.get(clean)
                if other is not None and other != key:
                    raise ConfigError(source, f"{where} key {key!r}",
                                      f"phrase {phrase!r} also chooses key {other!r}",
                                      "give each phrase to one option only")
                if clean not in kept:
                    kept.append(clean)
                by_phrase[clean] = key
            if not kept:
                raise ConfigError(source, f"{where} key {key!r}", "has no phrases",
                                  "give it a phrase or leave it out of speech")
            normalised[str(key)] = tuple(kept)
        grammar = cls(menu, language, normalised, source)
        grammar._by_phrase.update(by_phrase)
        return grammar

    @property
    def phrases(self) -> list[str]:
        """Every phrase, in option order."""
        return [p for phrases in self.options.values() for p in phrases]

    @property
    def words(self) -> set[str]:
        return {w for p in self.phrases for w in p.split()}

    def vosk_grammar(self, extra: Iterable[str] = ()) -> str:
        """The JSON list vosk's ``KaldiRecognizer`` takes, with ``extra`` competing words appended."""
        words = self.words
        return json.dumps(self.phrases + [w for w in extra if w not in words], ensure_ascii=False)

    def key_of(self, phrase: str) -> str | None:
        """The option a single phrase chooses (after normalising), or None."""
        return self._by_phrase.get(normalise(phrase))

    def match(self, transcript: str) -> str | None:
        """The one option ``transcript`` chooses, or None.

        The transcript must be made only of menu phrases (a grammar-restricted
        decode may repeat or chain them) and they must all choose one option;
        "repair agent" on a menu where those are two options chooses nothing.
        """
        words = normalise(transcript).split()
        if not words:
            return None
        found: set[str] = set()
        position = 0
        longest = max(len(p.split()) for p in self._by_phrase)
        while position < len(words):
            for size in range(min(longest, len(words) - position), 0, -1):
                key = self._by_phrase.get(" ".join(words[position:position + size]))
                if key is not None:
                    found.add(key)
                    position += size
                    break
            else:
                return None
        return found.pop() if len(found) == 1 else None

    def check_vocabulary(self, known: Callable[[str], bool]) -> None:
        """Raise ConfigError naming the menu, option and word for a word ``known`` rejects.

        A word the model does not know can never be recognised, so the option
        would silently be unreachable by voice: refuse it at start-up instead.
        """
        for key, phrases in self.options.items():
            for phrase in phrases:
                for word in phrase.split():
                    if not known(word):
                        where = f"menu {self.menu!r} speech ({self.language}) key {key!r}"
                        raise ConfigError(self.source, where,
                                          f"word {word!r} of phrase {phrase!r} is not in the {self.language} "
                                          "speech model's vocabulary",
                                          "use another word or spelling the model knows, or a larger model")
