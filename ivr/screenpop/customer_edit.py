"""``POST /agent/customer``: what an agent may change on a customer from their page.

``{"customer": 42, "preferred_channel": "sms"}`` sets how the customer
likes to be reached (confirmations and reminders use it);
``{"customer": 42, "do_not_call": true, "reason": "asked on the phone"}``
marks them do-not-call with the agent's reason; only a supervisor may clear
it (``"do_not_call": false``, a reason is kept too). Every change adds a
``customer_changes`` row (who, when, old and new value, why): the audit
trail.
``{"customer": 42, "no_contact_before": "2026-12-01"}`` (desk date; only a
supervisor clears it with null): no call we place and no SMS we start
(confirmations) reaches them before that day; a reply to their own SMS still does. Session and
``X-CSRF-Token`` as every POST of the page; answers the customer's new state.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from twisted.internet import threads
from twisted.logger import Logger
from twisted.web import server

from ivr.db.models import Agent, Customer, CustomerChange
from ivr.db.sql import iso, utc_now
from ivr.errors import WebRequestError
from ivr.web.resources import JsonResource, read_json_object
from ivr.web.sessions import SessionSigner

__all__ = ["CHANNELS", "CustomerEdit"]

log = Logger(namespace="ivr.web")

#: How a customer may prefer to be reached.
CHANNELS = ("voice", "sms")
#: What each change leaves a ``customer_changes`` row for.
_AUDITED = ("do_not_call", "preferred_channel", "no_contact_before")


def _text(value: object) -> str:
    if isinstance(value, dt.datetime):
        return iso(value) or ""
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
_MAX_REASON = 200


class CustomerEdit(JsonResource):
    """Preferred channel and do-not-call, changed by an agent."""

    def __init__(self, signer: SessionSigner, engine: Engine, zone: dt.tzinfo = dt.UTC) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.signer = signer
        self.engine = engine
        self.zone = zone

    async def handle_POST(self, request: server.Request) -> tuple[int, object]:
        session = self.signer.of_request(request)
        if session is None:
            raise WebRequestError(401, "log in first")
        if not self.signer.csrf_ok(request, session):
            raise WebRequestError(403, "missing or wrong CSRF token")
        body = read_json_object(request)
        customer = body.get("customer")
        if not isinstance(customer, int) or isinstance(customer, bool):
            raise WebRequestError(400, "customer must be a customer id")
        values: dict[str, Any] = {}
        channel = body.get("preferred_channel")
        if channel is not None:
            if channel not in CHANNELS:
                raise WebRequestError(400, "preferred_channel must be one of " + ", ".join(CHANNELS))
            values["preferred_channel"] = channel
        if "do_not_call" in body:
            values.update(self._do_not_call(body, session.agent))
        if "no_contact_before" in body:
            values["no_contact_before"] = self._date(body["no_contact_before"])
        if not values:
            raise WebRequestError(400, "nothing to change: give preferred_channel, do_not_call or "
                                       "no_contact_before")
        reason = body.get("reason", "")
        return 200, await threads.deferToThread(self._save, customer, session.agent, values,
                                                reason.strip() if isinstance(reason, str) else "")

    def _date(self, value: object) -> dt.datetime | None:
        """A desk date (``YYYY-MM-DD``) as the UTC moment that day starts; None clears it."""
        if value is None:
            return None
        try:
            day = dt.date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise WebRequestError(400, "no_contact_before must be a date such as 2026-12-01, or null")
        return dt.datetime(day.year, day.month, day.day, tzinfo=self.zone).astimezone(dt.UTC)

    @staticmethod
    def _do_not_call(body: dict[str, Any], agent: str) -> dict[str, Any]:
        wanted, reason = body.get("do_not_call"), body.get("reason", "")
        if not isinstance(wanted, bool):
            raise WebRequestError(400, "do_not_call must be true or false")
        if not isinstance(reason, str) or len(reason) > _MAX_REASON or (wanted and not reason.strip()):
            raise WebRequestError(400, f"a do-not-call needs a reason of at most {_MAX_REASON} characters")
        stamp = utc_now().strftime("%Y-%m-%d %H:%M UTC")
        return {"do_not_call": wanted,
                "do_not_call_reason": f"{reason.strip()} (agent {agent}, {stamp})" if wanted else ""}

    def _save(self, customer_id: int, agent: str, values: dict[str, Any],
              reason: str) -> dict[str, object]:
        """Change the customer and add one ``customer_changes`` row per field changed, in one transaction."""
        with Session(self.engine) as session:
            role = session.scalar(select(Agent.role).where(Agent.code == agent, Agent.active))
            if role is None:
                raise WebRequestError(403, "this agent is not active")
            if values.get("do_not_call") is False and role != "supervisor":
                raise WebRequestError(403, "only a supervisor may clear a do-not-call")
            if "no_contact_before" in values and values["no_contact_before"] is None and role != "supervisor":
                raise WebRequestError(403, "only a supervisor may clear a do-not-contact-before date")
            customer = session.get(Customer, customer_id, with_for_update=True)
            if customer is None:
                raise WebRequestError(404, "no such customer")
            now = dt.datetime.now(dt.UTC)
            for field in _AUDITED:
                if field in values and _text(getattr(customer, field)) != _text(values[field]):
                    session.add(CustomerChange(customer_id=customer_id, at=now, agent=agent, field=field,
                                               old=_text(getattr(customer, field)), new=_text(values[field]),
                                               reason=reason))
            if values.get("do_not_call") is True and customer.do_not_call:
                values = {k: v for k, v in values.items() if k != "do_not_call_reason"}  # keep the first why
            for field, value in values.items():
                setattr(customer, field, value)
            customer.updated_at = now
            state: dict[str, object] = {
                "customer": customer_id, "preferred_channel": customer.preferred_channel,
                "do_not_call": customer.do_not_call, "do_not_call_reason": customer.do_not_call_reason,
                "no_contact_before": iso(customer.no_contact_before)}
            session.commit()
        log.info("agent {agent} changed customer {customer}: {changes}", agent=agent, customer=customer_id,
                 changes=", ".join(f"{k}={v!r}" for k, v in sorted(values.items())))
        return state
