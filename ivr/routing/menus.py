"""Voice menus: declared in Python or TOML, validated at start-up, run per call.

A :class:`Menu` is a prompt and a map of keys to :class:`Option`\\ s. Options
lead to a submenu, play an information prompt (then the menu again), transfer
to a queue or an agent, request a callback, hang up, or run a plugin action.
``*`` goes back one level and ``#`` repeats the prompt (both configurable).
Everything that could strand a caller is checked before the first call:
unknown submenus and queues, missing prompt files, unreachable menus and
loops with no way out.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ivr.errors import ConfigError
from ivr.speech.grammar import SpeechGrammar, confirm_grammar

__all__ = [
    "Menu",
    "MenuSet",
    "MenuRoute",
    "Option",
    "OptionKind",
    "load_menu_file",
    "submenu",
    "play",
    "queue",
    "agent",
    "callback",
    "hangup",
    "action",
    "complaint",
    "grammars_to_check",
]

OptionKind = Literal["submenu", "play", "queue", "agent", "callback", "hangup", "action", "complaint"]
_KINDS: tuple[OptionKind, ...] = ("submenu", "play", "queue", "agent", "callback", "hangup", "action",
                                  "complaint")
#: Options after which the caller has left the menus.
TERMINAL: frozenset[str] = frozenset({"queue", "agent", "callback", "hangup", "action", "complaint"})
#: What a caller who complains hears before the complaints queue.
COMPLAINT_PROMPT = "ivr-complaint-taken"
_KEY = re.compile(r"[0-9*#]\Z")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Za-z0-9]{2,8})?\Z")


@dataclass(frozen=True, slots=True)
class Option:
    """What pressing one key does."""

    kind: OptionKind
    target: str = ""
    #: Mask the key in the contact history (e.g. an account PIN menu).
    sensitive: bool = False
    #: What a caller may say instead of pressing the key, per language: {"ko": ("상담원", "직원")}.
    speech: Mapping[str, tuple[str, ...]] = field(default_factory=dict, compare=False, hash=False)


def submenu(name: str) -> Option:
    return Option("submenu", name)


def play(prompt: str) -> Option:
    return Option("play", prompt)


def queue(name: str) -> Option:
    return Option("queue", name)


def agent(name: str) -> Option:
    return Option("agent", name)


def callback(skill: str = "") -> Option:
    return Option("callback", skill)


def hangup() -> Option:
    return Option("hangup")


def action(name: str) -> Option:
    return Option("action", name)


def complaint(queue: str) -> Option:
    """Open a complaint case for the caller, then put them in ``queue`` (e.g. "complaints")."""
    return Option("complaint", queue)


@dataclass(frozen=True, slots=True)
class Menu:
    """One voice menu. ``source`` names where it was declared, for error messages."""

    name: str
    prompt: str
    options: Mapping[str, Option]
    tries: int = 3
    timeout: float = 5.0
    invalid_prompt: str = "ivr-invalid"
    timeout_prompt: str = "ivr-timeout"
    back_key: str = "*"
    repeat_key: str = "#"
    source: str = "python"
    #: Speech misses (off-menu phrases) before the menu stops listening.
    speech_tries: int = 2
    #: Then: "keypad" (keys only from there on) or "queue:NAME" (to a person).
    speech_fallback: str = "keypad"

    def speech_languages(self) -> set[str]:
        return {language for option in self.options.values() for language in option.speech}

    def grammar(self, language: str) -> SpeechGrammar | None:
        """The options' phrases in ``language`` as a grammar, or None if it has none."""
        phrases = {key: o.speech[language] for key, o in self.options.items() if o.speech.get(language)}
        if not phrases:
            return None
        return SpeechGrammar.build(self.name, language, phrases, self.source)

    def prompts(self) -> set[str]:
        """Every prompt this menu may play."""
        found = {self.prompt, self.invalid_prompt, self.timeout_prompt}
        found |= {o.target for o in self.options.values() if o.kind == "play"}
        if any(o.kind == "complaint" for o in self.options.values()):
            found.add(COMPLAINT_PROMPT)
        return {p for p in found if p}


@dataclass(frozen=True, slots=True)
class MenuRoute:
    """A route that starts a caller in a menu (what a TOML ``[routes]`` entry makes).

    ``languages`` maps keys to language codes for callers whose language is
    not known yet (asked with ``language_prompt``); ``greeting`` plays once.
    """

    name: str
    start: str
    source: str = "python"
    languages: Mapping[str, str] = field(default_factory=dict)
    language_prompt: str = "ivr-language-menu"
    greeting: str = ""

    def prompts(self) -> set[str]:
        found = {self.greeting} | ({self.language_prompt} if self.languages else set())
        return {p for p in found if p}


ActionHandler = Callable[..., Awaitable[None]]


@dataclass
class MenuSet:
    """All menus, menu routes and plugin actions, checked together."""

    menus: dict[str, Menu] = field(default_factory=dict)
    routes: dict[str, MenuRoute] = field(default_factory=dict)
    actions: dict[str, ActionHandler] = field(default_factory=dict)

    def add(self, menu: Menu) -> None:
        if menu.name in self.menus:
            other = self.menus[menu.name].source
            raise ConfigError(menu.source, f"menu {menu.name!r}", f"already defined in {other}",
                              "give one of them another name")
        self.menus[menu.name] = menu

    def add_route(self, route: MenuRoute) -> None:
        if route.name in self.routes:
            raise ConfigError(route.source, f"route {route.name!r}",
                              f"already defined in {self.routes[route.name].source}", "rename one")
        self.routes[route.name] = route

    def validate(self, queues: Iterable[str], prompt_exists: Callable[[str], bool] | None,
                 callbacks: bool = False, agents: Iterable[str] | None = None,
                 complaints: bool = False) -> None:
        """Raise ConfigError for the first thing that would strand a caller.

        ``callbacks`` says whether a plugin takes callback requests; without
        one, a ``callback`` option would promise something nobody delivers.
        ``complaints`` likewise for ``complaint`` options (``ivr_caller_complains``).
        """
        known_queues = set(queues)
        known_agents = None if agents is None else set(agents)
        for menu in self.menus.values():
            self._check_menu(menu, known_queues)
            for key, option in menu.options.items():
                self._check_option(menu, key, option, known_queues, known_agents, callbacks, complaints)
            if prompt_exists is not None:
                _check_prompts(menu.source, f"menu {menu.name!r}", menu.prompts(), prompt_exists)
        for route in self.routes.values():
            self._check_route(route)
            if prompt_exists is not None:
                _check_prompts(route.source, f"route {route.name!r}", route.prompts(), prompt_exists)
        reachable = self._reachable({r.start for r in self.routes.values()})
        for menu in self.menus.values():
            if menu.name not in reachable:
                raise ConfigError(menu.source, f"menu {menu.name!r}", "no route or menu leads to it",
                                  "link it from another menu or a route, or remove it")
            if not self._has_exit(menu.name):
                raise ConfigError(menu.source, f"menu {menu.name!r}",
                                  "callers can only go round in circles from here (no queue, agent, "
                                  "callback, hangup or action is reachable)", "add a way out")

    def _check_menu(self, menu: Menu, known_queues: set[str]) -> None:
        """The menu's own settings: keys, name, tries, options, speech."""
        where = f"menu {menu.name!r}"
        for setting, key in (("back_key", menu.back_key), ("repeat_key", menu.repeat_key)):
            if key and not _KEY.match(key):
                raise ConfigError(menu.source, f"{where} {setting}", f"{key!r} is not one phone key",
                                  'use one of 0-9, * and #, or "" for none')
        if not _NAME.match(menu.name):
            raise ConfigError(menu.source, where, "bad menu name", "use letters, digits, - _ .")
        if menu.tries < 1 or menu.timeout <= 0:
            raise ConfigError(menu.source, where, "tries must be >= 1 and timeout > 0",
                              "set tries = 3, timeout = 5 or similar")
        if not menu.options:
            raise ConfigError(menu.source, where, "has no options", "give it at least one key")
        fallback = menu.speech_fallback
        if fallback != "keypad" and not (fallback.startswith("queue:") and fallback[6:] in known_queues):
            raise ConfigError(menu.source, f"{where} speech_fallback",
                              f"{fallback!r} is not keypad or a known queue",
                              'use "keypad" or "queue:NAME" with NAME in [routing] queues')
        for language in sorted(menu.speech_languages()):
            menu.grammar(language)  # a ConfigError names the menu and the phrase

    def _check_option(self, menu: Menu, key: str, option: Option, known_queues: set[str],
                      known_agents: set[str] | None, callbacks: bool, complaints: bool = False) -> None:
        """One key of a menu: a phone key, not taken, leading somewhere that exists."""
        item = f"menu {menu.name!r} key {key!r}"
        if not _KEY.match(key):
            raise ConfigError(menu.source, item, "not a phone key", "use one of 0-9, * and #")
        if key in (menu.back_key, menu.repeat_key):
            raise ConfigError(menu.source, item,
                              f"also the {'back' if key == menu.back_key else 'repeat'} key",
                              "pick another key or change back_key / repeat_key")
        if option.kind == "submenu" and option.target not in self.menus:
            raise ConfigError(menu.source, item, f"unknown submenu {option.target!r}",
                              "define that menu or fix the name")
        if option.kind == "complaint" and not complaints:
            raise ConfigError(menu.source, item, "no plugin takes complaints",
                              "enable the ivr.complaints plugin (or one implementing ivr_caller_complains)")
        if option.kind in ("queue", "complaint") and option.target not in known_queues:
            raise ConfigError(menu.source, item, f"unknown queue {option.target!r}",
                              "add it to [routing] queues (and to Asterisk's queues.conf)")
        if option.kind == "agent" and known_agents is not None and option.target not in known_agents:
            raise ConfigError(menu.source, item, f"unknown agent {option.target!r}",
                              "add it to [routing] agents with its dial string")
        if option.kind == "callback" and not callbacks:
            raise ConfigError(menu.source, item, "no plugin takes callback requests",
                              "install a plugin implementing ivr_request_callback, or use a queue")
        if option.kind == "action" and option.target not in self.actions:
            raise ConfigError(menu.source, item, f"unknown action {option.target!r}",
                              "register it with the ivr_menu_actions hook")

    def _check_route(self, route: MenuRoute) -> None:
        if route.start not in self.menus:
            raise ConfigError(route.source, f"route {route.name!r}", f"unknown menu {route.start!r}",
                              "start the route in a defined menu")
        for key, language in route.languages.items():
            if not _KEY.match(key) or key == "#" or not _LANGUAGE.match(language):
                raise ConfigError(route.source, f"route {route.name!r} languages {key!r}",
                                  f"{key!r} = {language!r} is not a key and a language code",
                                  'map keys 0-9 or * to codes such as "en" or "zh"')

    def _reachable(self, starts: set[str]) -> set[str]:
        seen: set[str] = set()
        todo = [s for s in starts if s in self.menus]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo += [o.target for o in self.menus[name].options.values() if o.kind == "submenu"]
        return seen

    def _has_exit(self, start: str) -> bool:
        for name in self._reachable({start}):
            if any(o.kind in TERMINAL for o in self.menus[name].options.values()):
                return True
        return False


def _speech_from_toml(value: object, source: str, item: str) -> dict[str, tuple[str, ...]]:
    fix = 'write speech = { ko = ["상담원", "직원"] }: a list of phrases per language'
    if not isinstance(value, dict):
        raise ConfigError(source, f"{item}.speech", "is not a table of languages", fix)
    speech: dict[str, tuple[str, ...]] = {}
    for language, phrases in value.items():
        if isinstance(phrases, str):
            phrases = [phrases]
        if not _LANGUAGE.match(str(language)) or not isinstance(phrases, list) or not phrases \
                or not all(isinstance(p, str) and p.strip() for p in phrases):
            raise ConfigError(source, f"{item}.speech.{language}", "is not a list of phrases", fix)
        speech[str(language)] = tuple(phrases)
    return speech


def _option_from_toml(value: object, source: str, item: str) -> Option:
    if not isinstance(value, dict) or not 1 <= len(value) <= 3:
        raise ConfigError(source, item, f"{value!r} is not an option",
                          'write e.g. { queue = "sales" } or { menu = "after-sales" }')
    sensitive = bool(value.get("sensitive", False))
    speech = _speech_from_toml(value["speech"], source, item) if "speech" in value else {}
    kinds = [k for k in value if k not in ("sensitive", "speech")]
    if len(kinds) != 1:
        raise ConfigError(source, item, "needs exactly one action", "menu, play, queue, agent, callback, "
                          "hangup, action or complaint")
    kind = "submenu" if kinds[0] == "menu" else kinds[0]
    if kind not in _KINDS:
        raise ConfigError(source, item, f"unknown action {kinds[0]!r}",
                          "use menu, play, queue, agent, callback, hangup, action or complaint")
    target = value[kinds[0]]
    if kind == "hangup":
        target = ""
    elif not isinstance(target, str) or not target:
        raise ConfigError(source, item, f"{kinds[0]} needs a name", f'write {{ {kinds[0]} = "name" }}')
    return Option(kind, target, sensitive, speech)


def load_menu_file(path: Path) -> tuple[list[Menu], list[MenuRoute]]:
    """Read menus and routes from a TOML file in the plugins folder."""
    source = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(file)", f"not valid TOML: {exc}", "fix the syntax there") from None
    unknown = set(data) - {"menus", "routes"}
    if unknown:
        raise ConfigError(source, ", ".join(sorted(unknown)), "unknown table",
                          "use [menus.NAME] and [routes]")
    menus = []
    for name, table in data.get("menus", {}).items():
        where = f"menus.{name}"
        if not isinstance(table, dict) or not isinstance(table.get("prompt"), str):
            raise ConfigError(source, where, "needs a prompt", 'add prompt = "name-of-prompt"')
        options = table.get("options", {})
        if not isinstance(options, dict):
            raise ConfigError(source, f"{where}.options", "is not a table", f"write [{where}.options]")
        extra = set(table) - {"prompt", "options", "tries", "timeout", "invalid_prompt", "timeout_prompt",
                              "back_key", "repeat_key", "speech_tries", "speech_fallback"}
        if extra:
            raise ConfigError(source, f"{where}.{sorted(extra)[0]}", "unknown setting",
                              "menus know prompt, options, tries, timeout, invalid_prompt, "
                              "timeout_prompt, back_key, repeat_key, speech_tries, speech_fallback")
        try:
            menus.append(Menu(
                name=name, prompt=table["prompt"],
                options={str(k): _option_from_toml(v, source, f"{where}.options.{k}")
                         for k, v in options.items()},
                tries=int(table.get("tries", 3)), timeout=float(table.get("timeout", 5.0)),
                invalid_prompt=str(table.get("invalid_prompt", "ivr-invalid")),
                timeout_prompt=str(table.get("timeout_prompt", "ivr-timeout")),
                back_key=str(table.get("back_key", "*")), repeat_key=str(table.get("repeat_key", "#")),
                source=source, speech_tries=int(table.get("speech_tries", 2)),
                speech_fallback=str(table.get("speech_fallback", "keypad")),
            ))
        except (TypeError, ValueError) as exc:
            raise ConfigError(source, where, str(exc), "tries is a whole number, timeout seconds") from None
    routes = []
    for name, spec in data.get("routes", {}).items():
        where = f"routes.{name}"
        if isinstance(spec, str):
            routes.append(MenuRoute(name, spec, source))
            continue
        if not isinstance(spec, dict) or not isinstance(spec.get("start"), str):
            raise ConfigError(source, where, "must name a start menu",
                              f'write {name} = "main" or [routes.{name}] start = "main"')
        languages = spec.get("languages", {})
        if not isinstance(languages, dict) or not all(isinstance(v, str) for v in languages.values()):
            raise ConfigError(source, f"{where}.languages", "must map keys to language codes",
                              'write languages = { "1" = "en", "2" = "zh" }')
        routes.append(MenuRoute(name, spec["start"], source, dict(languages),
                                str(spec.get("language_prompt", "ivr-language-menu")),
                                str(spec.get("greeting", ""))))
    return menus, routes


def _check_prompts(source: str, where: str, prompts: Iterable[str], exists: Callable[[str], bool]) -> None:
    for prompt in sorted(prompts):
        if not exists(prompt):
            raise ConfigError(source, f"{where} prompt {prompt!r}", "no such prompt file",
                              "add it to voices/prompts.toml and run `ivr voices build`")


def grammars_to_check(menus: Iterable[Menu], others: Iterable[SpeechGrammar],
                      languages: Iterable[str]) -> list[SpeechGrammar]:
    """What an engine checks against its models at start-up for ``languages``: every speech
    menu's grammar, ``others`` (the survey's questions), and the yes/no answers of the
    confirmation question, so that a word its model lacks stops the server, not a caller."""
    wanted = set(languages)
    found = [grammar for menu in menus for language in sorted(menu.speech_languages() & wanted)
             if (grammar := menu.grammar(language)) is not None]
    found += [grammar for grammar in others if grammar.language in wanted]
    found += [confirm for language in sorted(wanted) if (confirm := confirm_grammar(language))]
    return found
