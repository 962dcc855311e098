"""The survey's questions: built in, from a TOML file or a plugin, checked before the first call.

The first question (``score``) is the five levels of the after-sales
practice, in this order: 1 very satisfied (高度满意), 2 satisfied (一般满意),
3 no opinion (无意见), 4 somewhat dissatisfied (有些不满意), 5 very
dissatisfied (极不满意). ``buy_again`` and ``recommend`` are yes/no. Admins
may change prompts, keys and spoken phrases, reorder or leave out the yes/no
questions; every answer still lands in its column.

A TOML file (``[survey] questions``)::

    [[questions]]
    name = "score"
    prompt = "my-satisfaction-prompt"
    answers = { "1" = "1", "2" = "2", "3" = "3", "4" = "4", "5" = "5" }
    speech = { ko = { "1" = ["매우 만족"], "5" = ["매우 불만"] } }
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ivr.errors import ConfigError
from ivr.plugins.feedback import SCORE, SurveyQuestion
from ivr.speech.grammar import SpeechGrammar

__all__ = ["BUILTIN_QUESTIONS", "LEVELS", "PROMPTS", "choose_questions", "grammar", "grammars",
           "load_questions_file", "prompts", "validate"]

#: The five levels, as the after-sales practice names them (1 best, 5 worst).
LEVELS: dict[int, str] = {1: "very satisfied", 2: "satisfied", 3: "no opinion",
                          4: "somewhat dissatisfied", 5: "very dissatisfied"}
#: Prompts the survey plays around its questions (voices/prompts.toml).
PROMPTS = ("ivr-survey-intro", "ivr-survey-thanks")
_YES_NO = {"1": "yes", "2": "no"}
_NAMES = {SCORE: {str(n) for n in LEVELS}, "buy_again": {"yes", "no"}, "recommend": {"yes", "no"}}
_KEY = re.compile(r"[0-9*#]\Z")
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Za-z0-9]{2,8})?\Z")

BUILTIN_QUESTIONS: tuple[SurveyQuestion, ...] = (
    SurveyQuestion(SCORE, "ivr-survey-satisfaction", {str(n): str(n) for n in LEVELS}),
    SurveyQuestion("buy_again", "ivr-survey-buy-again", _YES_NO),
    SurveyQuestion("recommend", "ivr-survey-recommend", _YES_NO),
)


def grammar(question: SurveyQuestion, language: str, source: str = "survey") -> SpeechGrammar | None:
    """The question's phrases in ``language`` as a grammar (keys are its answer keys), or None."""
    phrases = question.speech.get(language)
    if not phrases:
        return None
    return SpeechGrammar.build(f"survey-{question.name}", language, phrases, source)


def grammars(questions: Iterable[SurveyQuestion]) -> list[SpeechGrammar]:
    """Every question's grammar in every language it has phrases for (to check against the models)."""
    return [g for q in questions for language in q.speech if (g := grammar(q, language)) is not None]


def prompts(questions: Iterable[SurveyQuestion]) -> set[str]:
    """Every prompt the survey may play."""
    return {q.prompt for q in questions} | set(PROMPTS)


def validate(questions: Sequence[SurveyQuestion], source: str,
             prompt_exists: Callable[[str], bool] | None) -> None:
    """Raise ConfigError for the first question that would confuse a caller or lose an answer."""
    if not questions or questions[0].name != SCORE:
        raise ConfigError(source, "survey questions", "the first question must be the five-level 'score'",
                          "start with name = \"score\" (answers 1 very satisfied ... 5 very dissatisfied)")
    seen: set[str] = set()
    for question in questions:
        where = f"survey question {question.name!r}"
        if question.name not in _NAMES:
            raise ConfigError(source, where, "unknown question",
                              "name questions score, buy_again or recommend")
        if question.name in seen:
            raise ConfigError(source, where, "asked twice", "ask each question once")
        seen.add(question.name)
        if not question.prompt:
            raise ConfigError(source, f"{where} prompt", "is empty", "name a prompt from voices/prompts.toml")
        bad = [k for k in question.answers if not _KEY.match(k)]
        if bad:
            raise ConfigError(source, f"{where} answers", f"{bad[0]!r} is not one phone key",
                              "use keys 0-9, * or #")
        wanted = _NAMES[question.name]
        if set(question.answers.values()) != wanted:
            raise ConfigError(source, f"{where} answers", "must give each of " + ", ".join(sorted(wanted)),
                              "map one key to each answer, e.g. { \"1\" = \"yes\", \"2\" = \"no\" }")
        for language, phrases in question.speech.items():
            unknown = [k for k in phrases if k not in question.answers]
            if unknown or not _LANGUAGE.match(language):
                raise ConfigError(source, f"{where} speech.{language}",
                                  "phrases must be under a language code and the keys of answers",
                                  'write speech = { ko = { "1" = ["예"] } }')
            grammar(question, language, source)  # a ConfigError names the phrase
        if prompt_exists is not None and not prompt_exists(question.prompt):
            raise ConfigError(source, f"{where} prompt {question.prompt!r}", "no such prompt file",
                              "add it to voices/prompts.toml and run `ivr voices build`")
    if prompt_exists is not None:
        for prompt in PROMPTS:
            if not prompt_exists(prompt):
                raise ConfigError(source, f"survey prompt {prompt!r}", "no such prompt file",
                                  "run `ivr voices build`")


def _strings(value: Any, source: str, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(source, where, "is not a table of keys to answers",
                          'write answers = { "1" = "yes", "2" = "no" }')
    return {str(k): v for k, v in value.items()}


def _speech(value: Any, source: str, where: str) -> dict[str, dict[str, tuple[str, ...]]]:
    fix = 'write speech = { ko = { "1" = ["예", "네"] } }'
    if not isinstance(value, dict):
        raise ConfigError(source, where, "is not a table of languages", fix)
    found: dict[str, dict[str, tuple[str, ...]]] = {}
    for language, by_key in value.items():
        if not isinstance(by_key, dict):
            raise ConfigError(source, f"{where}.{language}", "is not a table of keys", fix)
        found[str(language)] = {}
        for key, phrases in by_key.items():
            if isinstance(phrases, str):
                phrases = [phrases]
            if not isinstance(phrases, list) or not phrases or not all(isinstance(p, str) for p in phrases):
                raise ConfigError(source, f"{where}.{language}.{key}", "is not a list of phrases", fix)
            found[str(language)][str(key)] = tuple(phrases)
    return found


def load_questions_file(path: Path) -> list[SurveyQuestion]:
    """Questions from a TOML file (see the module docstring); ConfigError names the file and key."""
    source = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "(file)", f"cannot read it: {exc}", "check [survey] questions") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(file)", f"not valid TOML: {exc}", "fix the syntax there") from None
    items = data.get("questions")
    if set(data) - {"questions"} or not isinstance(items, list):
        raise ConfigError(source, "questions", "the file must hold [[questions]] tables only",
                          "write one [[questions]] table per question")
    questions = []
    for index, item in enumerate(items):
        where = f"questions[{index}]"
        if not isinstance(item, dict) or set(item) - {"name", "prompt", "answers", "speech"} \
                or not isinstance(item.get("name"), str) or not isinstance(item.get("prompt"), str):
            raise ConfigError(source, where, "needs name, prompt and answers (and optional speech)",
                              'write name = "score", prompt = "...", answers = { ... }')
        questions.append(SurveyQuestion(item["name"], item["prompt"],
                                        _strings(item.get("answers"), source, f"{where}.answers"),
                                        _speech(item.get("speech", {}), source, f"{where}.speech")))
    return questions


def choose_questions(offered: Sequence[SurveyQuestion] | None, questions_file: str, settings_source: str,
                     prompt_exists: Callable[[str], bool] | None) -> tuple[SurveyQuestion, ...]:
    """A plugin's questions (``ivr_survey_questions``), else ``[survey] questions``, else the built-in
    three; validated (a ConfigError names where they came from)."""
    if offered is not None:
        questions, source = tuple(offered), "plugin (ivr_survey_questions)"
    elif questions_file:
        questions, source = tuple(load_questions_file(Path(questions_file))), questions_file
    else:
        questions, source = BUILTIN_QUESTIONS, f"{settings_source} (built-in survey questions)"
    validate(questions, source, prompt_exists)
    return questions
