"""Built-in plugin: the follow-up service other features ask, and the watch on what is overdue.

* ``ivr_open_followup``: survey recoveries, complaints, leads and admins'
  plugins open follow-ups here (owner first, the origin's cadence). A
  customer whose preferred channel is SMS gets the promise by SMS ("we will
  call you by ...").
* ``ivr_contact_disposed``: an agent's ``follow-up`` or ``callback-scheduled``
  with a date plans a follow-up owned by that agent; ``resolved`` or
  ``sale`` on a call that worked on a follow-up closes it.
* Every ``[followups] check_interval`` it escalates what has been overdue for
  ``escalate_after`` (logged; listed by ``ivr followups list --escalated``, on
  the supervisors' views) and refreshes the overdue counts /metrics shows,
  so a scrape never queries the database on the reactor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Table, select
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ivr.callbacks.followup import FollowUp
from ivr.callbacks.store import FollowUpStore
from ivr.db.models import Agent, Contact, Customer
from ivr.db.sql import utc
from ivr.dialing.consent import must_not_call
from ivr.plugins.hookspecs import hookimpl
from ivr.plugins.requests import Disposition, FollowUpOrigin, FollowUpRequest

__all__ = ["CLOSING_DISPOSITIONS", "PLANNING_DISPOSITIONS", "FollowUpService"]

log = Logger(namespace="ivr.followups")

_contacts = cast(Table, Contact.__table__)
_customers = cast(Table, Customer.__table__)
_agents = cast(Table, Agent.__table__)

#: Dispositions that plan the next contact (with the date the agent set).
PLANNING_DISPOSITIONS = ("follow-up", "callback-scheduled")
#: Dispositions that close the follow-up the call worked on.
CLOSING_DISPOSITIONS = ("resolved", "sale")

#: Sends one SMS (the ``ivr_send_sms`` hook through the router's deadline); True once accepted.
SendSms = Callable[[str, str], Awaitable[bool]]


class FollowUpService:
    """Opens follow-ups for other features, plans and closes them from dispositions, escalates."""

    def __init__(self, store: FollowUpStore, clock: IReactorTime, send_sms: SendSms | None = None,
                 confirmation: str = "We will call you by {due}.") -> None:
        self.store = store
        self.clock = clock
        self.send_sms = send_sms
        self.confirmation = confirmation
        self.escalated = 0
        #: (owner code, skill, overdue) from the last check; what /metrics shows.
        self.overdue: list[tuple[str, str, int]] = []
        self._loop = LoopingCall(lambda: defer.Deferred.fromCoroutine(self.check()))
        self._loop.clock = clock

    def start(self) -> None:
        self._loop.start(self.store.followups.check_interval, now=True).addErrback(
            lambda failure: log.failure("the follow-up watch stopped", failure))

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    # -- hooks ----------------------------------------------------------------

    @hookimpl(trylast=True)
    def ivr_open_followup(self, request: FollowUpRequest) -> defer.Deferred[int]:
        return defer.Deferred.fromCoroutine(self.open(request)).addCallback(lambda opened: opened[0].id)

    async def open(self, request: FollowUpRequest) -> tuple[FollowUp, bool]:
        """Store ``request`` and confirm it to a customer who prefers SMS; (it, True if new)."""
        followup, created = await threads.deferToThread(self.store.create, request)
        log.info("follow-up {id} ({origin}) for {number}, due {due}", id=followup.id, origin=followup.origin,
                 number=followup.e164, due=followup.due_at.isoformat())
        if created and request.origin is not FollowUpOrigin.SMS and self.send_sms is not None:
            prefers_sms = await threads.deferToThread(self._prefers_sms, followup.customer_id, followup.e164)
            if prefers_sms:
                due = followup.due_at.astimezone(self.store.hours.zone).strftime("%Y-%m-%d %H:%M")
                await self.send_sms(followup.e164, self.confirmation.format(due=due))
        return followup, created

    def _prefers_sms(self, customer_id: int | None, e164: str) -> bool:
        """The customer wants SMS, and may be sent one now (not opted out, not held off by a date)."""
        if customer_id is None:
            return False
        with self.store.engine.connect() as connection:
            row = connection.execute(select(_customers.c.preferred_channel, _customers.c.no_contact_before)
                                     .where(_customers.c.id == customer_id)).first()
            if row is None or row.preferred_channel != "sms" or must_not_call(connection, e164):
                return False
        return row.no_contact_before is None or utc(row.no_contact_before) <= self.store.now()

    @hookimpl
    def ivr_contact_disposed(self, disposition: Disposition) -> defer.Deferred[FollowUp | None] | None:
        if disposition.outcome in PLANNING_DISPOSITIONS and disposition.follow_up_at is not None:
            return threads.deferToThread(self.plan_from, disposition)
        if disposition.outcome in CLOSING_DISPOSITIONS:
            return threads.deferToThread(self.close_from, disposition)
        return None

    def _contact(self, uniqueid: str) -> Any:
        c = _contacts.c
        with self.store.engine.connect() as connection:
            return connection.execute(select(c.id, c.customer_id, c.caller_e164, c.direction, c.called_number,
                                             c.followup_id, c.queue).where(c.uniqueid == uniqueid)).first()

    def plan_from(self, disposition: Disposition) -> FollowUp | None:
        """The follow-up an agent's dated disposition asks for, owned by that agent (blocking)."""
        contact = self._contact(disposition.uniqueid)
        if contact is None:
            return None
        number = contact.caller_e164 if contact.direction == "inbound" else contact.called_number
        with self.store.engine.connect() as connection:
            agent_id = connection.execute(
                select(_agents.c.id).where(_agents.c.code == disposition.agent)).scalar()
        if not number:
            log.warn("no number to follow up contact {uniqueid}", uniqueid=disposition.uniqueid)
            return None
        at = disposition.follow_up_at
        followup, _created = self.store.create(FollowUpRequest(
            number, FollowUpOrigin.DISPOSITION, reason=f"{disposition.outcome} by {disposition.agent}",
            customer_id=contact.customer_id, skill=contact.queue or "", start_at=at, owner_agent_id=agent_id,
            contact_id=contact.id, text=disposition.note,
            key=f"disposition:{disposition.uniqueid}:{at.isoformat() if at else ''}"))
        return followup

    def close_from(self, disposition: Disposition) -> FollowUp | None:
        """Close the open follow-up the disposed call worked on, if any (blocking)."""
        contact = self._contact(disposition.uniqueid)
        if contact is None or contact.followup_id is None:
            return None
        followup = self.store.get(contact.followup_id)
        if followup is None or not followup.is_open or followup.dialing:
            return None
        return self.store.close(followup.id, outcome=disposition.outcome)

    # -- the watch ----------------------------------------------------------------

    async def check(self) -> None:
        """Escalate what is overdue too long, and count what is overdue for /metrics."""
        try:
            escalated = await threads.deferToThread(self.store.escalate_overdue)
            self.overdue = await threads.deferToThread(self.store.overdue_by_owner)
        except Exception:
            log.failure("checking overdue follow-ups failed; trying again later")
            return
        for followup in escalated:
            self.escalated += 1
            late = self.store.now() - followup.due_at
            log.warn("follow-up {id} ({origin}, {number}) is {minutes} min overdue: escalated to supervisors",
                     id=followup.id, origin=followup.origin, number=followup.e164,
                     minutes=int(late / dt.timedelta(minutes=1)))

    def metrics(self) -> Iterator[Metric]:
        """Overdue follow-ups by owner and skill, and escalations, as of the last check."""
        overdue = GaugeMetricFamily("ivr_followups_overdue", "open follow-ups past their due time",
                                    labels=["owner", "skill"])
        for owner, skill, count in self.overdue:
            overdue.add_metric([owner, skill], count)
        yield overdue
        yield CounterMetricFamily("ivr_followups_escalated", "overdue follow-ups escalated to supervisors",
                                  value=self.escalated)
