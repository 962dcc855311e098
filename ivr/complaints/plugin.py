"""Built-in plugin: opens complaint cases from the three doors customers and agents use.

* a menu option of kind ``complaint`` (``ivr_caller_complains``): the caller
  then goes to the complaints queue;
* an SMS with a keyword of ``[complaints] sms_keywords`` (``ivr_sms_received``);
* an agent's ``complaint`` disposition (``ivr_contact_disposed``);
* and any feature or plugin through ``ivr_open_complaint``.

Each case is due within ``[complaints] response_hours`` business hours and
asks for a follow-up (``ivr_open_followup``, origin complaint, the
complaints skill). Nobody waits for it: a caller's opening runs beside the
call, and a failure is logged, never heard.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.call import Call
from ivr.complaints import store
from ivr.config import ComplaintSettings
from ivr.db.sql import utc_now
from ivr.phone import normalise_number
from ivr.plugins.feedback import ComplaintRequest, SmsReceived
from ivr.plugins.hookspecs import hookimpl
from ivr.plugins.requests import Disposition, FollowUpOrigin, FollowUpRequest
from ivr.routing.customers import Customer
from ivr.routing.hours import BusinessHours
from ivr.routing.router import await_hook

__all__ = ["Complaints", "has_keyword"]

log = Logger(namespace="ivr.complaints")

#: SMS the desk did not act on for these reasons open no case (spam, not a phone number).
_IGNORED_SMS = frozenset({"rate-limited", "invalid-number"})


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def has_keyword(text: str, keywords: list[str]) -> bool:
    """True if ``text`` holds one of ``keywords`` (any case, full-width letters too)."""
    folded = _fold(text)
    return any(_fold(word).strip() in folded for word in keywords if word.strip())


class Complaints:
    """The complaints service behind the hooks above."""

    def __init__(self, engine: Engine, settings: ComplaintSettings, hours: BusinessHours, hooks: Any,
                 clock: IReactorTime, region: str, now: Callable[[], dt.datetime] = utc_now,
                 hook_deadline: float = 2.0) -> None:
        self.engine = engine
        self.settings = settings
        self.hours = hours
        self.hooks = hooks
        self.clock = clock
        self.region = region
        self.now = now
        self.hook_deadline = hook_deadline
        #: Openings running beside a call or a request (tests and shutdown wait on them).
        self.pending: set[defer.Deferred[Any]] = set()

    # -- the doors ------------------------------------------------------------

    @hookimpl
    def ivr_open_complaint(self, request: ComplaintRequest) -> defer.Deferred[int]:
        return defer.Deferred.fromCoroutine(self.open(request))

    @hookimpl
    def ivr_caller_complains(self, call: Call, customer: Customer, queue: str, reason: str) -> None:
        request = ComplaintRequest(key=f"call:{call.uniqueid}", origin="menu",
                                   e164=normalise_number(call.caller_number, self.region),
                                   uniqueid=call.uniqueid, text=f"menu: {reason}" if reason else "menu")
        self._beside(request)

    @hookimpl
    def ivr_sms_received(self, message: SmsReceived) -> None:
        if message.action in _IGNORED_SMS or not has_keyword(message.text, self.settings.sms_keywords):
            return
        self._beside(ComplaintRequest(key=f"sms:{message.message_id}", origin="sms", e164=message.from_e164,
                                      customer_id=message.customer_id, contact_id=message.contact_id,
                                      uniqueid=message.contact_uniqueid, text=message.text))

    @hookimpl
    def ivr_contact_disposed(self, disposition: Disposition) -> None:
        if disposition.outcome != "complaint":
            return
        self._beside(ComplaintRequest(key=f"disposition:{disposition.uniqueid}", origin="disposition",
                                      contact_id=disposition.contact_id, uniqueid=disposition.uniqueid,
                                      text=disposition.note, agent=disposition.agent))

    # -- opening ------------------------------------------------------------------

    def _beside(self, request: ComplaintRequest) -> None:
        """Open a case without keeping anyone waiting for it."""
        pending: defer.Deferred[Any] = defer.Deferred.fromCoroutine(self.open(request))
        self.pending.add(pending)
        pending.addErrback(lambda failure: log.failure("opening complaint {key} failed", failure,
                                                       key=request.key))
        pending.addBoth(lambda _: self.pending.discard(pending))

    async def open(self, request: ComplaintRequest) -> int:
        """Open (or find) the case for ``request``; a new one asks for its follow-up. Returns its id."""
        now = self.now()
        hours = dt.timedelta(hours=self.settings.response_hours)
        due = self.hours.after_open_time(now, hours) or now + hours
        case = await threads.deferToThread(store.open_case, self.engine, request, due, self.settings.priority,
                                           now)
        if not case.new:
            return case.id
        log.info("complaint #{case} opened ({origin}), answer due {due}", case=case.id, origin=request.origin,
                 due=case.response_due_at.isoformat())
        if case.e164 is None:
            log.warn("complaint #{case}: no phone number to follow up on", case=case.id)
            return case.id
        followup = FollowUpRequest(
            e164=case.e164, origin=FollowUpOrigin.COMPLAINT,
            reason=f"complaint #{case.id} ({request.origin})", customer_id=case.customer_id,
            skill=self.settings.skill, priority=self.settings.priority, due_at=case.response_due_at,
            owner_agent_id=None, contact_id=case.contact_id, text=request.text, key=f"complaint:{case.id}")
        answer = await await_hook(self.hooks.ivr_open_followup(request=followup), self.clock,
                                  self.hook_deadline)
        if isinstance(answer, int) and not isinstance(answer, bool):
            await threads.deferToThread(store.set_followup, self.engine, case.id, answer)
        else:
            log.warn("complaint #{case}: no plugin opened a follow-up (ivr_open_followup)", case=case.id)
        return case.id
