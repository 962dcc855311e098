"""The human part of a call: from the hand-off to a person until the conversation ends.

The IVR part of a call ends when ivr hands the caller to the dialplan's
``[ivr-queue]``; what matters to a call centre happens after that: did
someone answer, who, how long did the caller wait, how long did they talk,
who hung up. Asterisk tells it over AMI (app_queue's ``QueueCallerJoin``,
``AgentConnect``, ``AgentComplete``, ``QueueCallerAbandon``; ``DialEnd`` for
an account owner rung directly before the queue; ``Hangup``), keyed by the
caller channel's ``Uniqueid``, which is the contact's.

:class:`HumanPartTracker` follows the calls this instance handed off and
writes each change as a :class:`~ivr.history.recorder.ContactHumanPart`
record (through the contact recorder: in order with the call's own records,
journaled like them). ``queue_outcome`` is ``waiting`` or ``talking`` while it
lasts, then ``answered``, ``abandoned``, ``timeout`` (no one answered before the
queues gave up), ``callback`` (the caller asked to be called back instead) or
``lost`` (the call ended while no ivr was listening: found at start-up).

Seconds waited are the caller's: from the hand-off to the answer (the
owner's phone ringing and the queue together). Seconds talked are
app_queue's ``TalkTime`` when it says, else from the answer to the hang-up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine, Table, select, text
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ivr.ami import AMIMessage
from ivr.call import Call
from ivr.db.models import WITH_A_PERSON, Contact
from ivr.db.sql import utc
from ivr.errors import AMIError
from ivr.history.records import ContactHumanPart
from ivr.plugins.hookspecs import hookimpl
from ivr.routing.router import CallStep

__all__ = ["HumanPartTracker", "OpenHumanPart", "device_of", "open_human_parts", "seconds_of"]

log = Logger(namespace="ivr.history")


def device_of(channel: str) -> str:
    """The device a channel was dialled as: ``PJSIP/1001-0000000a`` is ``PJSIP/1001``,
    ``Local/1001@agents-0000001b;1`` is ``Local/1001@agents``."""
    name = channel.split(";", 1)[0]
    return name.rsplit("-", 1)[0] if "-" in name else name


@dataclass
class OpenHumanPart:
    """What this instance knows of one caller waiting for or talking to a person."""

    uniqueid: str
    #: When the call reached ivr (epoch seconds): the contact's duration runs from here.
    started: float
    queue: str = ""
    outcome: str = "waiting"
    #: When the caller began to wait (the hand-off), and when a person answered.
    waiting_since: float | None = None
    answered_at: float | None = None
    waited: float = 0.0
    #: The agent's code or device (the recorder finds the agent by either).
    agent: str = ""
    #: In a queue now (app_queue's events then speak for the answer, not DialEnd).
    in_queue: bool = False
    #: A queue gave up on the caller (IvrFallback queue-TIMEOUT ...): a later hang-up is a timeout.
    timed_out: bool = False


class HumanPartTracker:
    """Follows handed-off calls through Asterisk's events into contact records.

    ``write`` takes each record (the contact recorder's ``record``). Built by
    the composition root when AMI is enabled, registered as a plugin (it hears
    the transfers through ``ivr_call_step``) and subscribed to the AMI client.
    """

    def __init__(self, write: Callable[[ContactHumanPart], None], clock: IReactorTime,
                 check_interval: float = 30.0) -> None:
        self.write = write
        self.clock = clock
        self.open: dict[str, OpenHumanPart] = {}
        #: When each call this instance serves began (until it is handed off or ends).
        self._started: dict[str, float] = {}
        #: Seconds between checks that the calls followed still exist in Asterisk.
        self.check_interval = check_interval
        self._checks: LoopingCall | None = None
        #: The check made as soon as AMI is logged in (a restart's calls are settled at once).
        self._first: defer.Deferred[Any] | None = None

    # -- ivr's own hooks --------------------------------------------------------

    @hookimpl
    def ivr_call_started(self, call: Call) -> None:
        self._started[call.uniqueid] = self.clock.seconds()

    @hookimpl
    def ivr_call_step(self, call: Call, step: CallStep) -> None:
        uniqueid = call.uniqueid
        if step.kind == "transfer":
            kind, _, target = step.value.partition(":")
            now = self.clock.seconds()
            part = OpenHumanPart(uniqueid, self._started.get(uniqueid, now),
                                 queue=target if kind == "queue" else "", waiting_since=now)
            self.open[uniqueid] = part
            self._emit(part)
        elif step.kind == "callback":  # a call back instead of a wait: final, nobody to wait for
            started = self._started.get(uniqueid, self.clock.seconds())
            self._emit(OpenHumanPart(uniqueid, started, outcome="callback"))

    @hookimpl
    def ivr_call_ended(self, call: Call, outcome: Any) -> None:
        self._started.pop(call.uniqueid, None)

    # -- Asterisk's events --------------------------------------------------------

    def start(self, ami: Any) -> None:
        """Once logged in to AMI, then every ``check_interval`` seconds, close calls Asterisk no
        longer has: the events of their end were missed (ivr was down, or AMI was reconnecting)."""
        self._checks = LoopingCall(lambda: defer.Deferred.fromCoroutine(self.check(ami)))
        self._checks.clock = self.clock
        self._checks.start(self.check_interval, now=False)
        first = self._first = ami.when_ready()
        first.addCallback(lambda _: defer.Deferred.fromCoroutine(self.check(ami)))
        first.addErrback(lambda failure: None if failure.check(defer.CancelledError) else
                         log.failure("checking Asterisk's channels failed", failure))

    def stop(self) -> None:
        if self._checks is not None and self._checks.running:
            self._checks.stop()
        if self._first is not None and not self._first.called:
            self._first.cancel()

    async def check(self, ami: Any) -> None:
        """Ask Asterisk for its channels (``CoreShowChannels``); follow-ups of calls no longer there."""
        if not self.open or not ami.ready:
            return
        followed = set(self.open)
        try:
            result = await ami.send_action("CoreShowChannels")
        except AMIError as exc:
            log.warn("could not list Asterisk's channels ({error}); checking later", error=exc)
            return
        live = {event.get("Uniqueid", "") for event in result.events}
        # Only calls followed before the question: one handed off meanwhile may not be listed yet.
        self.reconcile(live | (set(self.open) - followed))

    def subscribe(self, ami: Any) -> None:
        """Listen to the events that tell the human part (``ami`` is an :class:`~ivr.ami.AMIClient`)."""
        handlers: dict[str, Callable[[AMIMessage], None]] = {
            "QueueCallerJoin": self._joined,
            "AgentConnect": self._connected,
            "AgentComplete": self._completed,
            "QueueCallerAbandon": self._abandoned,
            "DialEnd": self._dial_end,
            "UserEvent": self._user_event,
            "Hangup": self._hangup,
        }
        for name, handler in handlers.items():
            ami.subscribe(handler, name)

    def _part(self, event: AMIMessage) -> OpenHumanPart | None:
        return self.open.get(event.get("Uniqueid", ""))

    def _joined(self, event: AMIMessage) -> None:
        part = self._part(event)
        if part is None:
            return
        part.queue = event.get("Queue", "") or part.queue
        part.in_queue = True
        part.outcome = "waiting"
        if part.waiting_since is None:
            part.waiting_since = self.clock.seconds()
        self._emit(part)

    def _connected(self, event: AMIMessage) -> None:
        part = self._part(event)
        if part is None:
            return
        part.queue = event.get("Queue", "") or part.queue
        self._answer(part, event.get("MemberName", "") or event.get("Interface", ""))

    def _dial_end(self, event: AMIMessage) -> None:
        """The account owner's phone, rung directly before the queue, answered."""
        part = self._part(event)
        if part is None or part.in_queue or part.outcome != "waiting":
            return
        if event.get("DialStatus", "") == "ANSWER":
            self._answer(part, device_of(event.get("DestChannel", "")))

    def _answer(self, part: OpenHumanPart, agent: str) -> None:
        now = self.clock.seconds()
        part.waited += now - part.waiting_since if part.waiting_since is not None else 0.0
        part.waiting_since = None
        part.answered_at = now
        part.agent = agent
        part.outcome = "talking"
        part.in_queue = False
        self._emit(part)

    def _completed(self, event: AMIMessage) -> None:
        part = self._part(event)
        if part is None:
            return
        talk = seconds_of(event.get("TalkTime"))
        self._finish(part, "answered", talk=talk, hangup_by=_hangup_by(event.get("Reason", "")))

    def _abandoned(self, event: AMIMessage) -> None:
        part = self._part(event)
        if part is not None:
            self._finish(part, "abandoned")

    def _user_event(self, event: AMIMessage) -> None:
        """``IvrFallback`` from the dialplan: a queue gave up on the caller (queue-TIMEOUT ...)."""
        part = self._part(event)
        if part is not None and event.get("UserEvent", "") == "IvrFallback" \
                and event.get("Reason", "").startswith("queue-"):
            part.timed_out = True
            part.in_queue = False

    def _hangup(self, event: AMIMessage) -> None:
        part = self._part(event)
        if part is None:
            return
        if part.outcome == "talking":
            self._finish(part, "answered")
        else:
            self._finish(part, "timeout" if part.timed_out else "abandoned")

    def _finish(self, part: OpenHumanPart, outcome: str, talk: float | None = None,
                hangup_by: str = "") -> None:
        now = self.clock.seconds()
        if part.waiting_since is not None:
            part.waited += now - part.waiting_since
            part.waiting_since = None
        if talk is None and part.answered_at is not None:
            talk = now - part.answered_at
        part.outcome = outcome
        self.open.pop(part.uniqueid, None)
        self._emit(part, ended_at=now, talk=talk, hangup_by=hangup_by)

    # -- after a restart -------------------------------------------------------------

    def resume(self, parts: Iterable[OpenHumanPart]) -> None:
        """Take over the calls a previous run of this instance left waiting or talking."""
        for part in parts:
            self.open[part.uniqueid] = part

    def reconcile(self, live_uniqueids: Iterable[str]) -> int:
        """Close as ``lost`` every open call whose channel Asterisk no longer has; how many."""
        live = set(live_uniqueids)
        gone = [part for uniqueid, part in self.open.items() if uniqueid not in live]
        for part in gone:
            self.open.pop(part.uniqueid, None)
            part.outcome = "lost"
            part.waiting_since = None
            self._emit(part)
        if gone:
            log.warn("{count} call(s) ended while no ivr was listening: marked lost", count=len(gone))
        return len(gone)

    def _emit(self, part: OpenHumanPart, ended_at: float | None = None, talk: float | None = None,
              hangup_by: str = "") -> None:
        waited = part.waited if part.outcome not in ("waiting", "callback", "lost") else None
        self.write(ContactHumanPart(
            uniqueid=part.uniqueid, queue_outcome=part.outcome, queue=part.queue, agent=part.agent,
            wait_seconds=round(waited, 3) if waited is not None else None,
            talk_seconds=round(talk, 3) if talk is not None else None, hangup_by=hangup_by,
            answered_at=part.answered_at, ended_at=ended_at,
            duration_seconds=round(ended_at - part.started, 3) if ended_at is not None else None))


def seconds_of(value: str | None) -> float | None:
    """Seconds as Asterisk writes them (``TalkTime``, ``ANSWEREDTIME``), or None if there are none."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _hangup_by(reason: str) -> str:
    """app_queue's AgentComplete ``Reason``: caller, agent or transfer; anything else is unknown."""
    return reason if reason in ("caller", "agent", "transfer") else ""


def open_human_parts(engine: Engine, instance: str) -> list[OpenHumanPart]:
    """The calls ``instance`` handed off that were still waiting or talking when it stopped
    (blocking: at start-up, before the reactor runs)."""
    contacts = cast(Table, Contact.__table__)
    c = contacts.c
    query = (select(c.uniqueid, c.started_at, c.ended_at, c.answered_at, c.queue, c.queue_outcome,
                    c.wait_seconds)
             .where(c.handled_by == instance, text(WITH_A_PERSON)))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    parts = []
    for row in rows:
        started = utc(row.started_at).timestamp()
        handed_off = utc(row.ended_at).timestamp() if row.ended_at is not None else started
        answered = utc(row.answered_at).timestamp() if row.answered_at is not None else None
        talking = row.queue_outcome == "talking"
        parts.append(OpenHumanPart(row.uniqueid, started, queue=row.queue, outcome=row.queue_outcome,
                                   waiting_since=None if talking else handed_off, answered_at=answered,
                                   waited=row.wait_seconds or 0.0))
    return parts

