"""Built-in plugin: turns calls handed to people into cards on the agents' pages.

It follows calls through the same hooks as the contact history (path, keys,
what was said) and keeps each call's :class:`CallContext` after ivr hands it
to a queue. The pop happens on the server when Asterisk reports that an
agent's phone rings for that caller (AMI ``AgentCalled``: the caller's
uniqueid and the member's interface), never by matching events in a browser.
``AgentConnect`` marks the card answered; ``AgentComplete``,
``AgentRingNoAnswer`` and an abandoned caller mark it ended. Outbound calls
(click-to-call, callbacks) pop as soon as the agent's phone is rung, with the
reason and the customer's SMS text.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from twisted.internet import threads
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ivr.ami import AMIMessage
from ivr.call import Call
from ivr.db.models import Agent
from ivr.dialing.outbound import OutboundCall
from ivr.history.human_part import device_of
from ivr.phone import normalise_number
from ivr.plugins.hookspecs import hookimpl
from ivr.routing.path import NAVIGATION, step_label
from ivr.routing.router import CallOutcome, CallStep
from ivr.screenpop.cards import CallContext, Card, CardBuilder
from ivr.screenpop.hub import PopHub

__all__ = ["ScreenPop"]

log = Logger(namespace="ivr.screenpop")

#: Seconds a call's context is kept after ivr handed it on (the caller may wait in a queue).
CONTEXT_TTL = 3600.0


class ScreenPop:
    """Call contexts in, cards out."""

    def __init__(self, hub: PopHub, builder: CardBuilder, engine: Engine, clock: IReactorTime,
                 region: str = "CN") -> None:
        self.hub = hub
        self.builder = builder
        self.engine = engine
        self.clock = clock
        self.region = region
        self.contexts: dict[str, CallContext] = {}
        #: Which agent's card each call is on (caller uniqueid -> agent code).
        self.ringing: dict[str, str] = {}
        self._devices: dict[str, str] = {}
        #: When each ended call's context is dropped (clock seconds). Every context lives
        #: CONTEXT_TTL, so the order of ending is the order of expiry: a queue, and one timer
        #: for its head, serve them all (a timer per call filled the reactor's heap).
        self._expiry: dict[str, float] = {}
        self._expiring: deque[tuple[float, str]] = deque()
        self._sweep: IDelayedCall | None = None

    # -- the call hooks -----------------------------------------------------

    @hookimpl
    def ivr_call_started(self, call: Call) -> None:
        self.contexts[call.uniqueid] = CallContext(
            call.uniqueid, call.caller_number or "", call.caller_name or "",
            normalise_number(call.caller_number, self.region), call.language, arrived_at=time.time())

    @hookimpl
    def ivr_call_step(self, call: Call, step: CallStep) -> None:
        context = self.contexts.get(call.uniqueid)
        if context is None:
            return
        context.language = call.language
        if step.kind in NAVIGATION:
            context.path.append(step_label(step))
        if step.kind == "menu":
            context.dtmf += step.key
        elif step.kind == "speech":
            context.transcript = " | ".join(filter(None, [context.transcript, step.value]))
        elif step.kind == "transfer":
            context.queue = step.value.split(":", 1)[-1]

    @hookimpl
    def ivr_call_ended(self, call: Call, outcome: CallOutcome) -> None:
        uniqueid = call.uniqueid
        if uniqueid in self.contexts:  # kept while the caller waits for a person, then dropped
            expires = self.clock.seconds() + CONTEXT_TTL
            self._expiry[uniqueid] = expires  # ended again: the earlier entry is stale
            self._expiring.append((expires, uniqueid))
            if self._sweep is None:
                self._sweep = self.clock.callLater(CONTEXT_TTL, self._forget_expired)

    def _forget_expired(self) -> None:
        """Drop the contexts whose time is up; look again in a second at the soonest."""
        self._sweep = None
        now = self.clock.seconds()
        expiring = self._expiring
        while expiring:
            expires, uniqueid = expiring[0]
            if expires > now:
                self._sweep = self.clock.callLater(max(1.0, expires - now), self._forget_expired)
                return
            expiring.popleft()
            if self._expiry.get(uniqueid) == expires:
                del self._expiry[uniqueid]
                self.contexts.pop(uniqueid, None)
                self.ringing.pop(uniqueid, None)

    def stop(self) -> None:
        """Forget every call now (server shutdown): no timer outlives the server."""
        sweep, self._sweep = self._sweep, None
        if sweep is not None and sweep.active():
            sweep.cancel()
        self._expiry.clear()
        self._expiring.clear()
        self.contexts.clear()
        self.ringing.clear()

    # -- Asterisk's events ----------------------------------------------------

    def subscribe(self, ami: Any) -> None:
        ami.subscribe(self._agent_called, "AgentCalled")
        ami.subscribe(self._dial_begin, "DialBegin")  # a phone rung directly: the account owner first
        ami.subscribe(self._dial_end, "DialEnd")
        ami.subscribe(lambda e: self._caller_state(e, "answered"), "AgentConnect")
        for name in ("AgentComplete", "AgentRingNoAnswer", "QueueCallerAbandon"):
            ami.subscribe(lambda e: self._caller_state(e, "ended"), name)

    def _agent_called(self, event: AMIMessage) -> None:
        self._ringing(event.get("Uniqueid", ""), event.get("Interface", "") or event.get("MemberName", ""))

    def _dial_begin(self, event: AMIMessage) -> None:
        self._ringing(event.get("Uniqueid", ""), device_of(event.get("DestChannel", "")))

    def _dial_end(self, event: AMIMessage) -> None:
        uniqueid = event.get("Uniqueid", "")
        agent = self.ringing.get(uniqueid)
        if agent is None or device_of(event.get("DestChannel", "")) not in self._devices_of(agent):
            return
        if event.get("DialStatus", "") == "ANSWER":
            self.hub.state(agent, uniqueid, "answered")
        else:  # not answered (the queue may ring someone else next)
            self.ringing.pop(uniqueid, None)
            self.hub.state(agent, uniqueid, "ended")

    def _devices_of(self, agent: str) -> set[str]:
        return {device for device, code in self._devices.items() if code == agent}

    def _ringing(self, uniqueid: str, interface: str) -> None:
        context = self.contexts.get(uniqueid)
        if context is None or not interface:
            return  # not a call this instance handled (another instance pops it)
        agent = self._devices.get(interface)
        if agent is not None:
            self._pop(context, agent)
            return
        found = threads.deferToThread(self._agent_for, interface)
        found.addCallback(self._pop_if_agent, context)
        found.addErrback(lambda failure: log.failure("finding the agent for {interface} failed", failure,
                                                     interface=interface))

    def _pop_if_agent(self, agent: str | None, context: CallContext) -> None:
        if agent is not None:
            self._pop(context, agent)

    def _agent_for(self, interface: str) -> str | None:
        with Session(self.engine) as session:
            code = session.scalar(select(Agent.code).where(Agent.device == interface))
        if code is not None:
            self._devices[interface] = code
        return code

    def _caller_state(self, event: AMIMessage, state: str) -> None:
        uniqueid = event.get("Uniqueid", "")
        agent = self.ringing.get(uniqueid)
        if agent is None:
            return
        if state == "ended":
            self.ringing.pop(uniqueid, None)
        self.hub.state(agent, uniqueid, state)

    # -- pops -------------------------------------------------------------------

    def _pop(self, context: CallContext, agent: str) -> None:
        if self.ringing.get(context.uniqueid) == agent:
            return  # already on this agent's screen (a queue rings members through Dial too)
        self.ringing[context.uniqueid] = agent
        built = self.builder.build(context, agent)
        built.addCallback(self._show)
        built.addErrback(lambda failure: log.failure("building the card for {uniqueid} failed", failure,
                                                     uniqueid=context.uniqueid))

    def _show(self, card: Card) -> None:
        if self.ringing.get(card.uniqueid) == card.agent:  # still ringing that agent
            self.hub.pop(card)

    def outbound_state(self, call: OutboundCall, state: str) -> None:
        """The dialer's ``on_state``: a click-to-call's or callback's agent leg rang, was answered, ended."""
        request = call.request
        self.outbound(call.uniqueid, call.agent.code, call.e164, request.kind, request.reason,
                      request.sms_text, state)

    def outbound(self, uniqueid: str, agent: str, e164: str, kind: str, reason: str, sms_text: str,
                 state: str) -> None:
        """An outbound call's agent leg: pop when it rings, then follow its state."""
        if state == "ringing":
            context = CallContext(uniqueid, e164, "", e164, kind=kind, reason=reason, sms_text=sms_text,
                                  arrived_at=time.time())
            self._pop(context, agent)
        else:
            self.hub.state(agent, uniqueid, state)
            if state == "ended":
                self.ringing.pop(uniqueid, None)
