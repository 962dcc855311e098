"""Menus: validation at start-up, TOML menus, and the engine against a simulated Asterisk."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

import pluggy
import pytest
from asterisk_sim import parse_args
from conftest import Session
from twisted.internet import defer

from ivr import Call, CallStep, Option, Route, Router
from ivr.config import RoutingSettings
from ivr.errors import ConfigError
from ivr.plugins import hookspecs
from ivr.routing.customers import Customer, CustomerLookup
from ivr.routing.hours import BusinessHours
from ivr.routing.menu_engine import MenuRouteHandler, RoutingServices
from ivr.routing.menus import (
    Menu,
    MenuRoute,
    MenuSet,
    callback,
    hangup,
    load_menu_file,
    play,
    queue,
    submenu,
)

QUEUES = ["sales", "after-sales"]


def menu_set(*items: Menu | MenuRoute) -> MenuSet:
    menus = MenuSet()
    for item in items:
        if isinstance(item, Menu):
            menus.add(item)
        else:
            menus.add_route(item)
    return menus


GOOD = [MenuRoute("hotline", "main"),
        Menu("main", "main-prompt", {"1": queue("sales"), "2": submenu("after"), "3": play("hours")}),
        Menu("after", "after-prompt", {"1": play("repair"), "0": queue("after-sales")})]


def test_a_good_menu_set_validates() -> None:
    menu_set(*GOOD).validate(QUEUES, lambda prompt: True)


@pytest.mark.parametrize(("items", "item", "problem"), [
    ([MenuRoute("r", "m"), Menu("m", "p", {"1": submenu("nope")})], "key '1'", "unknown submenu 'nope'"),
    ([MenuRoute("r", "m"), Menu("m", "p", {"1": queue("billing")})], "key '1'", "unknown queue 'billing'"),
    ([MenuRoute("r", "m"), Menu("m", "p", {"1": hangup()}), Menu("orphan", "p", {"1": hangup()})],
     "menu 'orphan'", "no route or menu leads to it"),
    ([MenuRoute("r", "a"), Menu("a", "p", {"1": submenu("b")}), Menu("b", "p", {"1": submenu("a"),
                                                                              "2": play("x")})],
     "menu 'a'", "round in circles"),
    ([MenuRoute("r", "m"), Menu("m", "p", {"*": hangup()})], "key '*'", "back key"),
    ([MenuRoute("r", "m"), Menu("m", "p", {"x": hangup()})], "key 'x'", "not a phone key"),
    ([MenuRoute("r", "m"), Menu("m", "p", {"1": callback()})], "key '1'", "callback"),
    ([MenuRoute("r", "missing")], "route 'r'", "unknown menu"),
])
def test_validation_names_the_item_and_the_problem(items: list[Menu | MenuRoute], item: str,
                                                   problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        menu_set(*items).validate(QUEUES, None)
    assert item in str(info.value) and problem in str(info.value)


def test_a_missing_prompt_file_is_named() -> None:
    with pytest.raises(ConfigError, match="prompt 'hours'.*no such prompt file"):
        menu_set(*GOOD).validate(QUEUES, lambda prompt: prompt != "hours")


TOML_MENU = '''
[routes.support]
start = "support-main"
languages = { "1" = "en", "2" = "zh" }
greeting = "ivr-welcome"

[menus.support-main]
prompt = "ivr-main-menu"
tries = 2
timeout = 3
[menus.support-main.options]
"1" = { queue = "sales" }
"2" = { menu = "support-after" }
"9" = { hangup = true }

[menus.support-after]
prompt = "ivr-after-sales-menu"
[menus.support-after.options]
"1" = { play = "ivr-repair-info" }
"5" = { queue = "after-sales", sensitive = true }
'''


def test_toml_menus_load_and_validate(tmp_path: Path) -> None:
    path = tmp_path / "support.toml"
    path.write_text(TOML_MENU)
    menus, routes = load_menu_file(path)
    assert [m.name for m in menus] == ["support-main", "support-after"]
    assert routes[0].languages == {"1": "en", "2": "zh"} and routes[0].greeting == "ivr-welcome"
    assert menus[0].tries == 2 and menus[1].options["5"].sensitive
    menu_set(*menus, *routes).validate(QUEUES, None)


@pytest.mark.parametrize(("text", "where"), [
    ('[menus.m]\nprompt = "p"\n[menus.m.options]\n"1" = { queue = "a" }\n"1" = { queue = "b" }\n', "(file)"),
    ('[menus.m]\nprompt = "p"\n[menus.m.options]\n"1" = { teleport = "x" }\n', "menus.m.options.1"),
    ('[menus.m]\nprompt = "p"\ncolour = "red"\n', "menus.m.colour"),
    ('[menus.m]\noptions = {}\n', "menus.m"),
    ('[oops]\n', "oops"),
])
def test_bad_toml_menu_files_name_the_file_and_item(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_menu_file(path)
    assert str(path) in str(info.value) and where in str(info.value)


# -- the engine, against a simulated Asterisk -------------------------------------------

Responder = Callable[[list[str]], str]


class Caller:
    """Answers each AGI command the way a caller's keypad and Asterisk would."""

    def __init__(self, keys: dict[str, list[str | None]]) -> None:
        self.keys = {prompt: list(presses) for prompt, presses in keys.items()}
        self.commands: list[list[str]] = []
        self.last_prompt = ""

    def __call__(self, argv: list[str]) -> str:
        self.commands.append(argv)
        verb = " ".join(argv[:2]).upper()
        if verb == "STREAM FILE":
            self.last_prompt = argv[2]
            presses = self.keys.get(argv[2])
            if presses and argv[3]:
                key = presses.pop(0)
                if key is not None:
                    return f"200 result={ord(key)} endpos=800"
            return "200 result=0 endpos=8000"
        if verb == "WAIT FOR":
            return "200 result=0"
        return "200 result=1"

    def prompts(self) -> list[str]:
        return [a[2] for a in self.commands if a[:2] == ["STREAM", "FILE"]]

    def variables(self) -> dict[str, str]:
        return {a[2]: a[3] for a in self.commands if a[:2] == ["SET", "VARIABLE"]}


def run_call(caller: Caller, customer: Customer | None = None, open_now: bool = True,
             menus: MenuSet | None = None, hooks: object = None) -> None:
    menus = menus or menu_set(
        MenuRoute("hotline", "main", languages={"1": "en", "2": "zh"}, greeting="ivr-welcome"), *GOOD[1:])
    settings = RoutingSettings(queues=QUEUES, agents={"1001": "PJSIP/1001"})
    weekly = {d: "09:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")}
    hours = BusinessHours.parse("Asia/Shanghai", weekly, ["2026-10-01"], "test")
    moment = dt.datetime(2026, 11, 23, 3 if open_now else 13, 0, tzinfo=dt.UTC)  # Monday 11:00 / 21:00 CST
    session = Session(on_ready=lambda p: router.session_ready(p))  # type: ignore[arg-type]
    lookup = CustomerLookup(session.clock, lambda phone: customer)
    services = RoutingServices(menus, lookup, hours, settings, hooks, now=lambda: moment)
    router = Router(session.clock, [Route("hotline", MenuRouteHandler(menus.routes["hotline"], services))])
    session.start("hotline", callerid="13800138000")
    for _ in range(200):
        lines = session.sent()
        if not lines:
            break
        for line in lines:
            session.feed(caller(parse_args(line.decode().rstrip("\n"))) + "\n")
    assert session.transport.disconnecting, caller.commands[-3:]


def test_a_caller_walks_two_levels_and_lands_in_the_queue_with_variables() -> None:
    caller = Caller({"ivr-language-menu": ["2"], "main-prompt": ["2"], "after-prompt": ["0"]})
    run_call(caller, Customer("+8613800138000", True, "C42", tier="vip"))
    assert caller.prompts()[:3] == ["ivr-language-menu", "ivr-welcome", "main-prompt"]
    variables = caller.variables()
    assert variables["CHANNEL(language)"] == "zh"
    assert variables["IVR_QUEUE"] == "after-sales" and variables["QUEUE_PRIO"] == "10"
    assert variables["IVR_CUSTOMER_ID"] == "C42" and variables["IVR_CONTACT_ID"] == "1700000000.1"
    assert variables["IVR_PATH"] == "language:zh>main:2>after:0"
    assert caller.commands[-3:] == [["SET", "CONTEXT", "ivr-queue"], ["SET", "EXTENSION", "s"],
                                    ["SET", "PRIORITY", "1"]]


def test_known_language_skips_the_choice_and_owner_rings_first() -> None:
    caller = Caller({"main-prompt": ["1"]})
    run_call(caller, Customer("+8613800138000", True, "C7", language="en", owner="1001"))
    assert "ivr-language-menu" not in caller.prompts()
    variables = caller.variables()
    assert variables["IVR_OWNER_DEVICE"] == "PJSIP/1001" and variables["QUEUE_PRIO"] == "0"


def test_invalid_key_plays_invalid_then_the_menu_again() -> None:
    caller = Caller({"ivr-language-menu": ["1"], "main-prompt": ["7", "1"]})
    run_call(caller)
    assert caller.prompts()[2:5] == ["main-prompt", "ivr-invalid", "main-prompt"]
    assert caller.variables()["IVR_QUEUE"] == "sales"


def test_timeouts_use_up_tries_then_the_fallback() -> None:
    caller = Caller({"ivr-language-menu": ["1"]})
    run_call(caller)
    assert caller.prompts().count("main-prompt") == 3
    assert caller.prompts().count("ivr-timeout") == 3
    variables = caller.variables()
    assert variables["IVR_FALLBACK_REASON"] == "menu-exhausted"
    assert variables["IVR_PATH"] == "language:en>main:exhausted"
    assert ["SET", "CONTEXT", "ivr-fallback"] in caller.commands


def test_star_goes_back_and_pound_repeats_without_using_a_try() -> None:
    caller = Caller({"ivr-language-menu": ["1"], "main-prompt": ["2", "1"], "after-prompt": ["#", "*"]})
    run_call(caller)
    prompts = caller.prompts()
    assert prompts[2:6] == ["main-prompt", "after-prompt", "after-prompt", "main-prompt"]
    assert "ivr-invalid" not in prompts
    assert caller.variables()["IVR_PATH"] == "language:en>main:2>after:back>main:1"


def test_play_option_returns_to_the_menu() -> None:
    caller = Caller({"ivr-language-menu": ["1"], "main-prompt": ["3", "1"]})
    run_call(caller)
    assert caller.prompts()[2:5] == ["main-prompt", "hours", "main-prompt"]


def test_closed_hours_play_the_closed_message_and_hang_up() -> None:
    caller = Caller({})
    run_call(caller, open_now=False)
    assert caller.prompts() == ["ivr-closed", "ivr-goodbye"]
    assert ["HANGUP"] in caller.commands


def test_holidays_are_closed() -> None:
    hours = BusinessHours.parse("Asia/Shanghai", {"thu": "09:00-18:00"}, ["2026-10-01"], "test")
    assert not hours.is_open(dt.datetime(2026, 10, 1, 3, tzinfo=dt.UTC))
    assert hours.is_open(dt.datetime(2026, 10, 8, 3, tzinfo=dt.UTC))


def test_sensitive_keys_are_masked_in_the_path() -> None:
    menus = menu_set(MenuRoute("hotline", "pin"), Menu("pin", "pin-prompt", {
        "5": queue("sales").__class__("queue", "sales", sensitive=True)}))
    caller = Caller({"pin-prompt": ["5"]})
    run_call(caller, menus=menus)
    assert caller.variables()["IVR_PATH"] == "pin:*"


def test_a_slow_crm_never_holds_the_call() -> None:
    from twisted.internet.task import Clock

    clock = Clock()
    slow: defer.Deferred[Customer] = defer.Deferred()
    lookup = CustomerLookup(clock, lambda phone: slow, deadline=0.3)
    found = defer.ensureDeferred(lookup.find("13800138000"))
    assert not found.called
    clock.advance(0.31)
    customer = found.result
    assert customer == Customer("+8613800138000") and not customer.known
    assert lookup.timeouts == 1


def test_lookups_are_cached_for_their_ttl() -> None:
    from twisted.internet.task import Clock

    asked: list[str] = []
    now = [0.0]

    def crm(phone: str) -> Customer:
        asked.append(phone)
        return Customer(phone, True, "C1")

    lookup = CustomerLookup(Clock(), crm, ttl=60, now=lambda: now[0])
    for _ in range(3):
        defer.ensureDeferred(lookup.find("+86 138 0013 8000"))
    now[0] = 61
    defer.ensureDeferred(lookup.find("13800138000"))
    assert asked == ["+8613800138000", "+8613800138000"]


@pytest.mark.parametrize("raw", ["", "unknown", "'; DROP TABLE x", "<script>", "1" * 40, "abc"])
def test_hostile_caller_ids_are_unknown_customers(raw: str) -> None:
    from ivr.phone import normalise_number

    assert normalise_number(raw, "CN") is None


def test_call_menu_primitive_returns_the_choice() -> None:
    got: list[str | None] = []

    async def handler(call: Call) -> None:
        got.append(await call.menu("p", {"1": "yes", "2": "no"}))

    session = Session(on_ready=lambda p: Router(session.clock, [Route("x", handler)]).session_ready(p))  # type: ignore[arg-type]
    session.start("x")
    session.sent()
    session.feed("200 result=50 endpos=10\n")
    assert got == ["no"]


def test_a_key_pressed_during_the_greeting_answers_the_first_menu() -> None:
    caller = Caller({"ivr-language-menu": ["1"], "ivr-welcome": ["2"], "after-prompt": ["0"]})
    run_call(caller)
    assert "main-prompt" not in caller.prompts()
    assert caller.variables()["IVR_PATH"] == "language:en>main:2>after:0"


class CallbackDesk:
    """A plugin that takes callback requests and looks at every queue transfer."""

    def __init__(self, take_queue: bool = False, take_callbacks: bool = True) -> None:
        self.requests: list[tuple[str, str]] = []
        self.queues: list[str] = []
        self.take_queue = take_queue
        self.take_callbacks = take_callbacks

    @pluggy.HookimplMarker("ivr")
    def ivr_request_callback(self, call: Call, skill: str, reason: str) -> bool:
        self.requests.append((skill, reason))
        return self.take_callbacks

    @pluggy.HookimplMarker("ivr")
    def ivr_before_queue(self, call: Call, queue: str, customer: Customer) -> bool:
        self.queues.append(queue)
        return self.take_queue


def hooks_with(plugin: object) -> object:
    manager = pluggy.PluginManager("ivr")
    manager.add_hookspecs(hookspecs)
    manager.register(plugin)
    return manager.hook


def test_closed_hours_offer_a_callback_when_a_plugin_takes_them() -> None:
    desk = CallbackDesk()
    caller = Caller({"ivr-callback-offer": ["1"]})
    run_call(caller, open_now=False, hooks=hooks_with(desk))
    assert caller.prompts() == ["ivr-closed", "ivr-callback-offer", "ivr-callback-confirmed", "ivr-goodbye"]
    assert desk.requests == [("", "closed")]


def test_a_caller_who_cannot_be_called_back_is_told_so_never_promised() -> None:
    refusing = CallbackDesk(take_callbacks=False)  # e.g. the caller opted out of calls
    caller = Caller({"ivr-callback-offer": ["1"]})
    run_call(caller, open_now=False, hooks=hooks_with(refusing))
    assert caller.prompts() == ["ivr-closed", "ivr-callback-offer", "ivr-callback-refused", "ivr-goodbye"]
    menus = menu_set(MenuRoute("hotline", "m"), Menu("m", "m-prompt", {"1": callback("sales")}))
    menus.validate(QUEUES, None, callbacks=True)
    caller = Caller({"m-prompt": ["1"]})
    run_call(caller, menus=menus, hooks=hooks_with(refusing))
    assert "ivr-callback-refused" in caller.prompts() and "ivr-callback-confirmed" not in caller.prompts()


def test_callback_option_and_before_queue_hook() -> None:
    desk = CallbackDesk(take_queue=True)
    menus = menu_set(MenuRoute("hotline", "m"), Menu("m", "m-prompt", {"1": callback("sales"),
                                                                       "2": queue("sales")}))
    menus.validate(QUEUES, None, callbacks=True)
    caller = Caller({"m-prompt": ["1"]})
    run_call(caller, menus=menus, hooks=hooks_with(desk))
    assert desk.requests == [("sales", "m:1")]
    assert "ivr-callback-confirmed" in caller.prompts()
    caller = Caller({"m-prompt": ["2"]})
    run_call(caller, menus=menus, hooks=hooks_with(desk))
    assert desk.queues == ["sales"] and "IVR_QUEUE" not in caller.variables()


class StepRecorder:
    def __init__(self) -> None:
        self.steps: list[CallStep] = []

    @pluggy.HookimplMarker("ivr")
    def ivr_call_step(self, call: Call, step: CallStep) -> None:
        self.steps.append(step)


def test_steps_reach_subscribers_in_order_with_sensitive_keys_masked() -> None:
    recorder = StepRecorder()
    menus = menu_set(MenuRoute("hotline", "main", languages={"1": "en"}),
                     Menu("main", "main-prompt", {"2": submenu("pin")}),
                     Menu("pin", "pin-prompt", {"7": Option("queue", "sales", sensitive=True)}))
    caller = Caller({"ivr-language-menu": ["1"], "main-prompt": ["2"], "pin-prompt": ["7"]})
    run_call(caller, menus=menus, hooks=hooks_with(recorder))
    assert recorder.steps == [CallStep("language", value="en"), CallStep("menu", "main", "2", "pin"),
                              CallStep("menu", "pin", "*", "sales"),
                              CallStep("transfer", value="queue:sales")]


@pytest.mark.parametrize(("items", "words"), [
    ([MenuRoute("r", "m"), Menu("m", "p", {"1": hangup()}, back_key="23")], "back_key"),
    ([MenuRoute("r", "m", languages={"#": "en"}), Menu("m", "p", {"1": hangup()})], "languages '#'"),
    ([MenuRoute("r", "m", languages={"1": "../x"}), Menu("m", "p", {"1": hangup()})], "languages '1'"),
    ([MenuRoute("r", "m"), Menu("m", "p", {"1": Option("agent", "9999")})], "unknown agent '9999'"),
])
def test_keys_languages_and_agents_are_checked(items: list[Menu | MenuRoute], words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        menu_set(*items).validate(QUEUES, None, agents=["1001"])


def test_endless_repeats_use_up_tries() -> None:
    caller = Caller({"ivr-language-menu": ["1"], "main-prompt": ["#"] * 20})
    run_call(caller)
    assert caller.prompts().count("main-prompt") == 8  # 5 free repeats, then 3 that each cost a try
    assert caller.variables()["IVR_FALLBACK_REASON"] == "menu-exhausted"
