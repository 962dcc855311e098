"""Walking a caller through menus: language, opening hours, menus, then a transfer.

One :class:`MenuRouteHandler` serves each menu route. For every call it looks
the caller up (with a deadline), decides how to route them (hook
``ivr_choose_route``, or :func:`default_decision`), and walks the menus,
recording the IVR path. A transfer carries the path, the customer and the
contact id as channel variables for the agent's screen pop.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from ivr.call import ALL_DIGITS, Call
from ivr.config import RecordingSettings, RoutingSettings
from ivr.errors import FallbackRequested
from ivr.routing.customers import Customer, CustomerLookup
from ivr.routing.hours import BusinessHours
from ivr.routing.menus import COMPLAINT_PROMPT, MenuRoute, MenuSet, Option
from ivr.routing.path import NAVIGATION, IvrPath
from ivr.routing.router import CallStep, await_hook, notify
from ivr.speech.turn import SpeechAnswer

__all__ = ["MenuRouteHandler", "RouteDecision", "RoutingServices", "default_decision"]

log = Logger(namespace="ivr.routing")


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """How to treat one caller, decided before the first menu."""

    #: Language to use; "" lets the caller choose (if the route offers a choice).
    language: str = ""
    #: Queue priority (Asterisk's QUEUE_PRIO): VIPs and hot leads go first.
    priority: int = 0
    #: Device of the account owner, rung first for ``owner_seconds`` before the queue.
    owner_device: str = ""
    #: False outside business hours and on holidays.
    open: bool = True


def default_decision(customer: Customer, now: dt.datetime, hours: BusinessHours,
                     settings: RoutingSettings) -> RouteDecision:
    """The built-in policy: the customer's language, tier priority, owner first, opening hours."""
    priority = {"vip": settings.vip_priority, "hot-lead": settings.hot_lead_priority}.get(customer.tier, 0)
    # [routing] agents wins; else the phone the lookup found (the agents table).
    owner = customer.owner
    owner_device = (settings.agents.get(owner, "") or customer.owner_device) if owner else ""
    return RouteDecision(language=customer.language, priority=priority, owner_device=owner_device,
                         open=hours.is_open(now))


@dataclass
class RoutingServices:
    """What menu routes share: menus, the lookup, opening hours, settings, plugin hooks."""

    menus: MenuSet
    lookup: CustomerLookup
    hours: BusinessHours
    settings: RoutingSettings
    hooks: Any = None
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    #: Seconds a plugin hook may take on the caller's time.
    hook_deadline: float = 1.0
    #: Which transfers are recorded (None: none).
    recordings: RecordingSettings | None = None


@dataclass
class _Walk:
    """The state of one call's walk through the menus."""

    call: Call
    customer: Customer
    decision: RouteDecision
    services: RoutingServices
    path: IvrPath = field(default_factory=IvrPath)

    async def step(self, step: CallStep) -> None:
        """Record a step in the path (``menu:key``) and tell the ivr_call_step subscribers."""
        if step.kind in NAVIGATION:
            self.path.add(step)
        services = self.services
        await notify(services.hooks, "ivr_call_step", services.lookup.clock, services.hook_deadline,
                     call=self.call, step=step)

    @property
    def path_text(self) -> str:
        """The path as the dialplan reads it (``IVR_PATH``): ``main:2>after-sales:0``."""
        return self.path.text(">")


#: What Call.menu answers when speech kept missing and the menu hands such callers to a person.
_NO_MATCH = "speech-no-match"


def _heard_step(menu: str, answer: SpeechAnswer) -> CallStep:
    """A speech turn as a step: what was said (``main:said:2``), or the answer to "did you choose
    option 2?" (``main:confirm:2:yes``; ``no``, or ``-`` for no answer)."""
    if answer.confirming is not None:
        verdict = {"1": "yes", "2": "no"}.get(answer.choice or "", "-") if answer.via in ("speech", "dtmf") \
            else "-"
        return CallStep("confirm", menu, "", f"{answer.confirming}:{verdict}", answer.confidence)
    return CallStep("speech", menu, answer.choice or "", answer.transcript, answer.confidence)


class MenuRouteHandler:
    """The route handler for a :class:`MenuRoute`."""

    def __init__(self, route: MenuRoute, services: RoutingServices) -> None:
        self.route = route
        self.services = services

    async def __call__(self, call: Call) -> None:
        services = self.services
        customer = await services.lookup.find(call.caller_number)
        decision = self._decide(call, customer)
        walk = _Walk(call, customer, decision, services)
        await call.answer()
        if not decision.open:
            await self._closed(walk)
            return
        route = self.route
        if decision.language:
            await call.set_language(decision.language)
        elif route.languages:
            chosen = await call.menu(route.language_prompt, route.languages, tries=2, timeout=4.0)
            if chosen:
                await call.user_event("IvrMenuChoice", Menu="language", Choice=chosen, Path="")
            await walk.step(CallStep("language", value=chosen or "-"))
            if chosen:
                await call.set_language(chosen)
        early_key = None
        if route.greeting:  # a caller who knows the menu may key through the greeting
            early_key = await call.play(route.greeting, ALL_DIGITS)
        await self._walk(walk, route.start, early_key)

    def _decide(self, call: Call, customer: Customer) -> RouteDecision:
        services = self.services
        if services.hooks is not None:
            chosen = services.hooks.ivr_choose_route(call=call, customer=customer)
            if isinstance(chosen, RouteDecision):
                return chosen
        return default_decision(customer, services.now(), services.hours, services.settings)

    async def _closed(self, walk: _Walk) -> None:
        """Outside business hours: the hours, and a callback if a plugin takes requests."""
        call = walk.call
        await walk.step(CallStep("closed"))
        await call.user_event("IvrClosed", Script=self.route.name)
        await call.play("ivr-closed")
        hooks = self.services.hooks
        if hooks is not None and hooks.ivr_request_callback.get_hookimpls():
            wanted = await call.menu("ivr-callback-offer", {"1": "yes"}, tries=1, timeout=5.0,
                                     invalid_prompt=None, timeout_prompt=None)
            if wanted:
                taken = await self._ask_hook(hooks.ivr_request_callback, call=call, skill="", reason="closed")
                await call.play("ivr-callback-confirmed" if taken else "ivr-callback-refused")
        await call.play("ivr-goodbye")
        await call.hangup()

    async def _ask_hook(self, hook: Any, **kwargs: object) -> bool:
        services = self.services
        return bool(await await_hook(hook(**kwargs), services.lookup.clock, services.hook_deadline))

    async def _walk(self, walk: _Walk, start: str, early_key: str | None = None) -> None:
        menus = self.services.menus.menus
        stack = [start]
        call = walk.call
        while stack:
            menu = menus[stack[-1]]
            choices = {key: key for key in menu.options}
            grammar = menu.grammar(call.language) if call.speech is not None else None
            heard = len(call.heard)
            exhausted = None if menu.speech_fallback == "keypad" else _NO_MATCH
            try:
                key = await call.menu(menu.prompt, choices, tries=menu.tries, timeout=menu.timeout,
                                      invalid_prompt=menu.invalid_prompt, timeout_prompt=menu.timeout_prompt,
                                      repeat_key=menu.repeat_key, other_keys=menu.back_key,
                                      first_key=early_key, speech=grammar, speech_tries=menu.speech_tries,
                                      speech_exhausted=exhausted)
            finally:  # what was said goes into the path and the history, even if the caller hung up
                for answer in call.heard[heard:]:
                    await walk.step(_heard_step(menu.name, answer))
            early_key = None
            if key == _NO_MATCH:
                await walk.step(CallStep("speech-fallback", menu.name, value=menu.speech_fallback))
                await self._transfer(walk, Option("queue", menu.speech_fallback.removeprefix("queue:")))
                return
            if key is None:
                await walk.step(CallStep("exhausted", menu.name))
                await call.set_variable("IVR_PATH", walk.path_text)
                raise FallbackRequested("menu-exhausted")
            if key == menu.back_key:
                await walk.step(CallStep("back", menu.name))
                if len(stack) > 1:
                    stack.pop()
                continue
            option = menu.options[key]
            shown = "*" if option.sensitive else key
            await walk.step(CallStep("menu", menu.name, shown, option.target))
            await call.user_event("IvrMenuChoice", Menu=menu.name, Digit=shown, Path=walk.path_text)
            if option.kind == "submenu":
                stack.append(option.target)
            elif option.kind == "play":
                await call.play(option.target, "")
            elif option.kind == "hangup":
                await call.play("ivr-goodbye")
                await call.hangup()
                return
            elif option.kind == "action":
                await self.services.menus.actions[option.target](call)
                return
            elif option.kind in ("queue", "agent"):
                await self._transfer(walk, option)
                return
            elif option.kind == "complaint":
                await self._complaint(walk, option)
                return
            else:
                await self._callback(walk, option)
                return

    async def _callback(self, walk: _Walk, option: Option) -> None:
        """Hand a callback request to the plugin that takes them (validated to exist)."""
        call = walk.call
        await walk.step(CallStep("callback", value=option.target))
        taken = await self._ask_hook(self.services.hooks.ivr_request_callback, call=call,
                                     skill=option.target, reason=walk.path_text)
        if not taken:  # an anonymous number, or one that must not be called: say so, then a person
            await call.play("ivr-callback-refused")
            raise FallbackRequested("callback-refused")
        await call.play("ivr-callback-confirmed")
        await call.play("ivr-goodbye")
        await call.hangup()

    async def _complaint(self, walk: _Walk, option: Option) -> None:
        """The caller complains: the complaints service opens a case, then a person takes the call."""
        call, services = walk.call, self.services
        await walk.step(CallStep("complaint", value=option.target))
        await notify(services.hooks, "ivr_caller_complains", services.lookup.clock, services.hook_deadline,
                     call=call, customer=walk.customer, queue=option.target, reason=walk.path_text)
        await call.play(COMPLAINT_PROMPT)
        await self._transfer(walk, Option("queue", option.target))

    async def _transfer(self, walk: _Walk, option: Option) -> None:
        call, customer, decision = walk.call, walk.customer, walk.decision
        variables = {
            "IVR_CONTACT_ID": call.uniqueid,
            "IVR_CUSTOMER_ID": customer.customer_id,
            "IVR_PATH": walk.path_text,
            "IVR_LANGUAGE": call.language,
        }
        hooks = self.services.hooks
        if option.kind == "queue" and hooks is not None and await self._ask_hook(
                hooks.ivr_before_queue, call=call, queue=option.target, customer=customer):
            return  # a plugin took the caller (e.g. a callback instead of a long wait)
        await walk.step(CallStep("transfer", value=f"{option.kind}:{option.target}"))
        # [ivr-queue] tells the caller, then records (asterisk-conf/extensions_ivr.conf).
        recording = self._recording(call, option.target if option.kind == "queue" else "")
        await call.play("ivr-connecting")
        if option.kind == "agent":
            device = self.services.settings.agents.get(option.target, "")
            await call.transfer_to_queue("", decision.priority, variables, owner_device=device,
                                         owner_seconds=self.services.settings.owner_ring_seconds,
                                         recording=recording)
            return
        await call.transfer_to_queue(option.target, decision.priority, variables,
                                     owner_device=decision.owner_device,
                                     owner_seconds=self.services.settings.owner_ring_seconds,
                                     recording=recording)

    def _recording(self, call: Call, queue: str) -> str:
        """The file the conversation after this transfer is recorded into, or "" for none."""
        recordings = self.services.recordings
        if recordings is None or not recordings.records(queue):
            return ""
        name = call.recording_name
        if name is None:
            log.warn("call {uniqueid!r} not recorded: its uniqueid cannot name a file",
                     uniqueid=call.uniqueid[:80])
            return ""
        return name

