"""Outbound calls, agent first: click-to-call and callbacks.

:meth:`OutboundDialer.place` checks the request with the :class:`DialPolicy`,
claims the customer (one agent at a time), writes the contact's start, then
asks Asterisk (AMI Originate, async) to ring the agent's phone. When the agent
answers, Asterisk runs the dialplan context ``ivr-callback``, whose AGI script
``callback`` is served here (:meth:`OutboundDialer.route`): the agent hears a
whisper, then the customer is dialled through the trunk with ``Dial``. The
AGI session stays up until the customer leg ends, so the contact gets both
legs' outcomes from one place, and a crash of ivr is reconciled like any call.

An agent who does not answer never reaches the AGI: the Originate's
``OriginateResponse`` ends the contact (``agent-no-answer``, ``agent-busy``...).

The contact's links (the agent, the customer, the callback request it keeps)
are not in the recorder's start record: once the recorder has written the
start, they are written onto the row off the reactor (:mod:`ivr.history.links`),
and again when the call ends if the row was not there yet.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.ami import AMIClient, OriginateOutcome, OriginateResult
from ivr.call import Call
from ivr.dialing.policy import DialDecision, DialPolicy, DialReason, DialRequest
from ivr.errors import AMIDisconnected, AMIError, CallHangup, CommandFailed, IVRError
from ivr.history.human_part import seconds_of
from ivr.history.links import ContactLinks, link_contact_now
from ivr.history.recorder import ContactEnd, ContactHumanPart, ContactRecorder, ContactStart, ContactStep
from ivr.history.recording_refs import RECORDING_VARIABLE
from ivr.routing.path import IvrPath
from ivr.routing.router import CallOutcome, CallStep, Route, notify

__all__ = ["CustomerClaims", "DialRefused", "OutboundCall", "OutboundDialer", "OutboundRequest",
           "CALLBACK_SCRIPT"]

log = Logger(namespace="ivr.dialing")

#: The AGI script [ivr-callback] runs on the agent's channel once it answers.
CALLBACK_SCRIPT = "callback"
#: Where the customer's leg goes when the agent hangs up first (Dial's F option: context^exten^priority).
AFTER_AGENT = "ivr-survey-outbound^s^1"

#: Dial's DIALSTATUS -> the contact's outcome for the customer leg.
_CUSTOMER_OUTCOMES = {
    "ANSWER": "answered", "BUSY": "customer-busy", "NOANSWER": "customer-no-answer",
    "CONGESTION": "customer-unreachable", "CHANUNAVAIL": "customer-unreachable", "CANCEL": "agent-hung-up",
    "DONTCALL": "customer-refused", "TORTURE": "customer-refused", "INVALIDARGS": "dial-failed"}
_AGENT_OUTCOMES = {
    OriginateOutcome.NO_ANSWER: "agent-no-answer", OriginateOutcome.BUSY: "agent-busy",
    OriginateOutcome.CONGESTION: "agent-unreachable", OriginateOutcome.FAILED: "agent-unreachable"}


class DialRefused(IVRError):
    """The dial policy said no; ``decision`` says why (and which HTTP status fits)."""

    def __init__(self, decision: DialDecision) -> None:
        self.decision = decision
        super().__init__(decision.message)


@dataclass(frozen=True)
class OutboundRequest:
    """Who should call whom, and why (the reason and SMS text go to the agent's card)."""

    agent: str
    number: str
    kind: str = "click-to-call"
    reason: str = ""
    #: A callback's SMS, as the customer wrote it (shown to the agent as text).
    sms_text: str = ""
    customer_id: int | None = None
    do_not_call: bool = False
    requested_by: str = ""
    #: The callback request this call keeps (its contact is linked to it).
    followup_id: int | None = None


@dataclass(frozen=True)
class Agent:
    code: str
    device: str


@dataclass
class OutboundCall:
    """One outbound call in progress; ``uniqueid`` is the agent channel's and the contact's."""

    uniqueid: str
    request: OutboundRequest
    agent: Agent
    e164: str
    placed_at: float
    #: Fires with the final outcome ("answered", "agent-no-answer", "customer-busy" ...).
    finished: defer.Deferred[str] = field(default_factory=defer.Deferred)
    agent_answered: bool = False
    #: Set when the call is over.
    outcome: str | None = None
    #: True once the contact row carries its links (agent, customer, callback request).
    linked: bool = False


class CustomerClaims(Protocol):
    """Who is on each customer now: an atomic claim, so two agents never call one customer."""

    def claim(self, e164: str, agent: str, kind: str) -> defer.Deferred[str | None]:
        """Claim ``e164`` for ``agent``; None if claimed, else the agent already on it."""

    def release(self, e164: str, agent: str) -> defer.Deferred[None]:
        """Give ``agent``'s claim on ``e164`` back."""


class OutboundDialer:
    """Places agent-first calls through AMI and serves their ``callback`` AGI script."""

    def __init__(self, ami: AMIClient, policy: DialPolicy, recorder: ContactRecorder, clock: IReactorTime,
                 find_agent: Callable[[str], Awaitable[Agent | None]], active: CustomerClaims, *,
                 trunk: str, instance: str, agi_port: int | None = None, agent_ring_seconds: float = 30.0,
                 customer_ring_seconds: int = 40, hooks: Any = None, hook_deadline: float = 1.0,
                 on_state: Callable[[OutboundCall, str], None] | None = None, record: bool = False) -> None:
        self.ami = ami
        self.policy = policy
        self.recorder = recorder
        self.clock = clock
        self.find_agent = find_agent
        self.active = active
        self.trunk = trunk
        self.instance = instance
        #: The agent's answered leg runs its AGI on this port: the instance that placed the call.
        self.agi_port = agi_port
        self.agent_ring_seconds = agent_ring_seconds
        self.customer_ring_seconds = customer_ring_seconds
        self.hooks = hooks
        self.hook_deadline = hook_deadline
        self.calls: dict[str, OutboundCall] = {}
        #: Told when an agent leg rings, is answered, ends (the screen pop listens).
        self.on_state = on_state
        #: Record the conversation (MixMonitor on the agent's channel, both parties once bridged).
        self.record = record

    def route(self) -> Route:
        """The AGI script the agent's answered leg runs; it lives as long as the conversation."""
        return Route(CALLBACK_SCRIPT, self._agent_answered, deadline=4 * 3600.0)

    async def place(self, request: OutboundRequest) -> OutboundCall:
        """Ring the agent, then the customer. Raises DialRefused if the policy says no,
        AMIDisconnected if Asterisk's manager is not connected (nothing would ring)."""
        if not self.ami.ready:
            raise AMIDisconnected("not logged in to Asterisk's manager")
        agent = await self.find_agent(request.agent)
        if agent is None or not agent.device:
            raise DialRefused(DialDecision(False, DialReason.INVALID_INPUT, "no such agent with a phone"))
        decision = await self.policy.decide(DialRequest(
            request.number, agent=agent.code,
            customer_id=None if request.customer_id is None else str(request.customer_id),
            do_not_call=request.do_not_call))
        if not decision.allowed or decision.e164 is None:
            raise DialRefused(decision)
        e164 = decision.e164
        uniqueid = f"ivr-out-{uuid.uuid4().hex}"
        holder = await self.active.claim(e164, agent.code, request.kind)
        if holder is not None:
            raise DialRefused(DialDecision(False, DialReason.AGENT_CONFLICT,
                                           f"{e164} is already on a call with agent {holder}", e164,
                                           agent=holder))
        call = OutboundCall(uniqueid, request, agent, e164, time.time())
        self.calls[uniqueid] = call
        self.recorder.record(ContactStart(
            uniqueid=uniqueid, started_at=call.placed_at, handled_by=self.instance, caller_number=e164,
            caller_e164=e164, called_number=e164, route=CALLBACK_SCRIPT, kind=request.kind,
            direction="outbound"))
        self._link(call)
        try:
            originated = self.ami.originate(
                agent.device, context="ivr-callback", exten=e164, priority=1,
                caller_id=e164, timeout=self.agent_ring_seconds, channel_id=uniqueid,
                variables={"IVR_CONTACT_KIND": request.kind, "IVR_AGENT": agent.code, "IVR_TRUNK": self.trunk,
                           **({"IVR_AGI_PORT": str(self.agi_port)} if self.agi_port else {})})
        except AMIError as exc:
            self._finish(call, "agent-unreachable", f"Originate refused: {exc}")
            raise
        originated.addCallbacks(lambda result: self._agent_result(call, result),
                                lambda failure: self._finish(call, "agent-unreachable",
                                                             f"Originate failed: {failure.value}"))
        log.info("{kind} {uniqueid}: ringing agent {agent} ({device}) for {number}", kind=request.kind,
                 uniqueid=uniqueid, agent=agent.code, device=agent.device, number=e164)
        self._announce(call, "ringing")
        return call

    def _announce(self, call: OutboundCall, state: str) -> None:
        if self.on_state is not None:
            try:
                self.on_state(call, state)
            except Exception:
                log.failure("announcing {uniqueid} ({state}) failed", uniqueid=call.uniqueid, state=state)

    def _agent_result(self, call: OutboundCall, result: OriginateResult) -> None:
        if result.outcome is OriginateOutcome.ANSWERED:
            call.agent_answered = True
            self._announce(call, "answered")
            return  # the callback AGI takes it from here
        self._finish(call, _AGENT_OUTCOMES.get(result.outcome, "agent-unreachable"),
                     f"agent leg: Originate reason {result.reason_code}")

    def _finish(self, call: OutboundCall, outcome: str, reason: str) -> None:
        """End a call whose agent never answered: the contact is written here, not by the AGI."""
        if self.calls.pop(call.uniqueid, None) is None:
            return
        now = time.time()
        step = CallStep("agent-leg", value=outcome)
        self.recorder.record(ContactStep(call.uniqueid, 1, now, step))
        self.recorder.record(ContactEnd(call.uniqueid, now, outcome, reason,
                                        ivr_path=IvrPath.of([step]).to_json(),
                                        duration_seconds=round(now - call.placed_at, 3)))
        self._release(call.e164, call.agent.code)
        self._link(call)
        log.info("{kind} {uniqueid} ended: {outcome}", kind=call.request.kind, uniqueid=call.uniqueid,
                 outcome=outcome)
        call.outcome = outcome
        self._announce(call, "ended")
        call.finished.callback(outcome)

    def _link(self, call: OutboundCall) -> None:
        """Write the contact's agent, customer and callback request once the recorder has its row.

        Called when the call is placed and again when it ends: the second
        does nothing unless the first found no row (the start was still in
        the recorder's journal, the database being down).
        """
        if call.linked:
            return
        request = call.request
        links = ContactLinks(request.customer_id, call.agent.code, request.followup_id)
        engine = self.recorder.engine

        def write(_: object) -> defer.Deferred[bool]:
            return threads.deferToThread(link_contact_now, engine, call.uniqueid, links)

        def done(linked: bool) -> None:
            call.linked = call.linked or linked

        written = self.recorder.flush().addCallback(write).addCallback(done)
        written.addErrback(lambda failure: log.failure("linking contact {uniqueid} failed", failure,
                                                       uniqueid=call.uniqueid))

    def _release(self, e164: str, agent: str) -> None:
        self.active.release(e164, agent).addErrback(
            lambda failure: log.failure("releasing the claim on {number} failed", failure, number=e164))

    async def _step(self, call: Call, kind: str, value: str) -> None:
        await notify(self.hooks, "ivr_call_step", self.clock, self.hook_deadline, call=call,
                     step=CallStep(kind, value=value))

    async def _record_talk(self, call: Call, status: str) -> None:
        """How long the customer rang and talked, as ``Dial`` counted (ANSWEREDTIME, DIALEDTIME)."""
        if status != "ANSWER":
            return
        talked = seconds_of(await call.get_variable("ANSWEREDTIME"))
        dialled = seconds_of(await call.get_variable("DIALEDTIME"))
        rang = dialled - talked if dialled is not None and talked is not None else None
        self.recorder.record(ContactHumanPart(call.uniqueid, "", wait_seconds=rang, talk_seconds=talked))

    async def _record(self, call: Call) -> None:
        """Start recording before the customer is dialled: MixMonitor on the agent's channel hears
        both parties, and (option b) writes only once they are bridged, i.e. the customer answered.
        ``IVR_RECORDING`` names the file for :mod:`ivr.history.recording_refs`."""
        name = call.recording_name if self.record else None
        if name is None:
            if self.record:
                log.warn("{uniqueid!r} not recorded: its uniqueid cannot name a file",
                         uniqueid=call.uniqueid[:80])
            return
        try:
            started = await call.exec("MixMonitor", name, "b")
        except CommandFailed as exc:
            log.warn("{uniqueid} not recorded: {error}", uniqueid=call.uniqueid, error=exc)
            return
        if started == 0:
            await call.set_variable(RECORDING_VARIABLE, name)
        else:
            log.warn("{uniqueid} not recorded: MixMonitor answered {result}", uniqueid=call.uniqueid,
                     result=started)

    async def _agent_answered(self, call: Call) -> CallOutcome:
        """The agent picked up: whisper, then dial the customer and wait for that leg to end.

        A call placed elsewhere (``ivr call`` on the command line, another
        instance) is dialled too, but only after its number passes the
        policy's number checks again: the AGI never dials on trust.
        """
        outbound = self.calls.get(call.uniqueid)
        if outbound is not None:
            e164, agent, kind = outbound.e164, outbound.agent.code, outbound.request.kind
        else:
            decision = self.policy.check_number(call.extension)
            if not decision.allowed or decision.e164 is None:
                log.warn("callback AGI on {uniqueid}: {number!r} refused ({reason}); not dialling",
                         uniqueid=call.uniqueid, number=call.extension[:64], reason=decision.reason.value)
                await self._step(call, "dial-refused", decision.reason.value)
                return CallOutcome("dial-refused", decision.reason.value)
            e164 = decision.e164
            agent = await call.get_variable("IVR_AGENT") or ""
            kind = await call.get_variable("IVR_CONTACT_KIND") or ""
        outcome = "agent-hung-up"
        try:
            await self._step(call, "agent-leg", "answered")
            # When the agent answered (the agent themself is linked by _link, with the customer).
            self.recorder.record(ContactHumanPart(call.uniqueid, "", answered_at=time.time()))
            await call.play(f"ivr-whisper-{'callback' if kind == 'callback' else 'click-to-call'}")
            await self._step(call, "dial", e164)
            await self._record(call)
            # g: the agent's leg carries on when the customer hangs up; F: when the agent hangs up
            # first, the customer's leg goes on to [ivr-survey-outbound] (a survey, if ivr marked one).
            await call.exec("Dial", f"PJSIP/{e164}@{self.trunk}", str(self.customer_ring_seconds),
                            f"gF({AFTER_AGENT})")
            status = (await call.get_variable("DIALSTATUS") or "").upper()
            outcome = _CUSTOMER_OUTCOMES.get(status, "dial-failed")
            await self._step(call, "customer-leg", outcome)
            await self._record_talk(call, status)
            return CallOutcome(outcome, f"DIALSTATUS={status}" if status else "")
        except CallHangup:
            return CallOutcome(outcome)
        finally:
            self.calls.pop(call.uniqueid, None)
            self._release(e164, agent)  # whoever placed the call (this instance, another, the CLI)
            if outbound is not None:
                self._link(outbound)
                outbound.outcome = outcome
                self._announce(outbound, "ended")
                outbound.finished.callback(outcome)
