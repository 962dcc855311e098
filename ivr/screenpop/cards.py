"""The agent's card: who is calling and why, built on the server, rendered as text by the page.

A :class:`CallContext` is what ivr knows of a call when it hands it to a
person (IVR path, keys, what was said, callback reason or SMS text, when the
caller arrived). :class:`CardBuilder` adds the database's part (the
customer, their last 10 contacts) on a worker thread and returns a
:class:`Card`, a plain JSON-ready value tied to the call's uniqueid and
contact id.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session
from twisted.internet import defer, threads

from ivr.db.models import Agent, Contact, Customer, CustomerPhone

__all__ = ["CallContext", "Card", "CardBuilder", "RECENT_CONTACTS"]

RECENT_CONTACTS = 10


@dataclass
class CallContext:
    """What ivr itself knows of a call on its way to a person."""

    uniqueid: str
    caller_number: str = ""
    caller_name: str = ""
    caller_e164: str | None = None
    language: str = ""
    path: list[str] = field(default_factory=list)
    dtmf: str = ""
    transcript: str = ""
    #: click-to-call / callback: why, and the customer's SMS text.
    kind: str = "hotline"
    reason: str = ""
    sms_text: str = ""
    queue: str = ""
    #: When the caller reached ivr (epoch seconds): the page shows the wait from it.
    arrived_at: float = 0.0


@dataclass
class Card:
    """One call's card for one agent, with its state: ringing, answered, ended."""

    uniqueid: str
    contact: str
    agent: str
    state: str
    call: dict[str, Any]
    customer: dict[str, Any] | None
    recent: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class CardBuilder:
    """Looks the caller up in the database (worker thread) and makes the card."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def build(self, context: CallContext, agent: str) -> defer.Deferred[Card]:
        return threads.deferToThread(self.build_now, context, agent)

    def build_now(self, context: CallContext, agent: str) -> Card:
        customer: dict[str, Any] | None = None
        recent: list[dict[str, Any]] = []
        with Session(self.engine) as session:
            row = None
            if context.caller_e164:
                row = session.scalars(select(Customer).join(CustomerPhone)
                                      .where(CustomerPhone.e164 == context.caller_e164)).first()
            if row is not None:
                owner = session.get(Agent, row.owner_agent_id) if row.owner_agent_id else None
                customer = {"id": row.id, "name": row.name, "tier": row.vip_tier, "language": row.language,
                            "owner": owner.code if owner else "", "do_not_call": row.do_not_call}
            if context.caller_e164 or row is not None:
                mine = [Contact.caller_e164 == context.caller_e164] if context.caller_e164 else []
                if row is not None:
                    mine.append(Contact.customer_id == row.id)
                contacts = session.scalars(
                    select(Contact).where(or_(*mine), Contact.uniqueid != context.uniqueid)
                    .order_by(Contact.started_at.desc()).limit(RECENT_CONTACTS)).all()
                recent = [{"uniqueid": c.uniqueid, "started_at": _iso(c.started_at), "kind": c.kind,
                           "direction": c.direction, "outcome": c.outcome, "queue": c.queue,
                           "disposition": c.disposition, "notes": c.notes} for c in contacts]
        return Card(context.uniqueid, context.uniqueid, agent, "ringing", asdict(context), customer, recent)


def _iso(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.isoformat(timespec="seconds")
