"""A customer's timeline, read for people: who they are, and every contact, newest first, a page at a time.

The agent page (JSON) and ``ivr history`` (text) read the same contacts with
the same fields through this module, so they never disagree about what a
customer's history is. A customer's contacts are the rows linked to them
*and* the rows from any of their phone numbers (the recorder knows a
caller's number before anyone knows who they are); a number's contacts also
include those linked to the customer who owns it.

Pages are newest first and keyed by the last contact shown (``before``), not
by an offset, so contacts arriving while an agent reads never shift the next
page. Blocking: call from a worker thread, never on the reactor.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session, aliased, selectinload

from ivr.db.models import Agent, Contact, Customer, CustomerPhone
from ivr.db.sql import utc
from ivr.phone import normalise_number
from ivr.routing.path import IvrPath

__all__ = ["MAX_PAGE", "PAGE_SIZE", "CustomerSummary", "SearchResult", "Subject", "TimelineEntry",
           "TimelinePage", "customer_subject", "number_subject", "read_timeline", "search"]

#: Contacts on one page of the agent page's timeline.
PAGE_SIZE = 20
#: The most contacts one request may ask for.
MAX_PAGE = 200
#: Customers one search returns at most.
SEARCH_LIMIT = 20
_MAX_ID = 2**31 - 1  # an INTEGER column: a larger literal would be an error on PostgreSQL
_INTERNAL_ID = re.compile(r"#(\d{1,18})")


@dataclass(frozen=True)
class CustomerSummary:
    """What the timeline's heading says about a customer."""

    id: int
    external_id: str
    name: str
    tier: str
    language: str
    owner: str
    do_not_call: bool
    phones: tuple[str, ...]
    preferred_channel: str = "voice"
    do_not_call_reason: str = ""

    @classmethod
    def of(cls, row: Customer) -> CustomerSummary:
        """From a row loaded with its phones and owner."""
        return cls(row.id, row.external_id or "", row.name, row.vip_tier, row.language,
                   row.owner.code if row.owner is not None else "", row.do_not_call,
                   tuple(p.e164 for p in sorted(row.phones, key=lambda p: p.id)), row.preferred_channel,
                   row.do_not_call_reason)

    @property
    def ref(self) -> str:
        """``C-1001 (#42)``, or ``#42`` without an external id."""
        return f"{self.external_id} (#{self.id})" if self.external_id else f"#{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "external_id": self.external_id, "name": self.name, "tier": self.tier,
                "language": self.language, "owner": self.owner, "do_not_call": self.do_not_call,
                "do_not_call_reason": self.do_not_call_reason, "preferred_channel": self.preferred_channel,
                "phones": list(self.phones)}


@dataclass(frozen=True)
class Subject:
    """Whose timeline: a customer (all their numbers), or a number (and the customer owning it)."""

    label: str
    where: ColumnElement[bool]
    customer: CustomerSummary | None = None
    number: str | None = None


def _load_customers(session: Session, where: ColumnElement[bool], limit: int) -> list[CustomerSummary]:
    rows = session.scalars(select(Customer).where(where)
                           .options(selectinload(Customer.phones), selectinload(Customer.owner))
                           .order_by(Customer.name, Customer.id).limit(limit)).all()
    return [CustomerSummary.of(row) for row in rows]


def customer_subject(session: Session, customer_id: int) -> Subject | None:
    """The timeline of customer ``customer_id``, or None if there is no such customer."""
    if not 0 < customer_id <= _MAX_ID:
        return None
    found = _load_customers(session, Customer.id == customer_id, 1)
    if not found:
        return None
    summary = found[0]
    # Values, not a subquery: PostgreSQL cannot search an index for "x IN (SELECT ...)" inside
    # an OR, and read every contact instead (tests/test_contact_indexes.py).
    return Subject(f"customer {summary.ref}",
                   or_(Contact.customer_id == customer_id, Contact.caller_e164.in_(summary.phones)), summary)


def number_subject(session: Session, e164: str) -> Subject:
    """The timeline of the number ``e164`` (E.164), with its owner's linked contacts."""
    owners = session.scalars(select(CustomerPhone.customer_id).where(CustomerPhone.e164 == e164)
                             .order_by(CustomerPhone.customer_id)).all()
    found = _load_customers(session, Customer.id.in_(owners), 1)
    return Subject(e164, or_(Contact.caller_e164 == e164, Contact.customer_id.in_(owners)),
                   found[0] if found else None, e164)


@dataclass(frozen=True)
class SearchResult:
    """Customers matching a search (by number, name, external id or ``#id``), and the number searched."""

    customers: list[CustomerSummary]
    #: The search as an E.164 number, when it is one (it may have contacts without a customer).
    number: str | None = None


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with LIKE's own characters taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search(session: Session, text: str, region: str, limit: int = SEARCH_LIMIT) -> SearchResult:
    """Customers for what an agent typed: a number in any format, a name (part of it, any case),
    an external id, or ``#<id>``. The owner of the number comes first."""
    text = text.strip()[:200]
    if not text:
        return SearchResult([])
    internal = _INTERNAL_ID.fullmatch(text)
    if internal:
        subject = customer_subject(session, int(internal.group(1)))
        return SearchResult([subject.customer] if subject is not None and subject.customer else [])
    number = normalise_number(text, region)
    found: list[CustomerSummary] = []
    if number is not None:
        owners = select(CustomerPhone.customer_id).where(CustomerPhone.e164 == number)
        found = _load_customers(session, Customer.id.in_(owners), limit)
    by_name = or_(Customer.name.ilike(_like(text), escape="\\"), Customer.external_id == text)
    seen = {c.id for c in found}
    found += [c for c in _load_customers(session, by_name, limit) if c.id not in seen]
    return SearchResult(found[:limit], number)


@dataclass(frozen=True)
class TimelineEntry:
    """One contact with everything people read about it (times in UTC)."""

    id: int
    uniqueid: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    channel: str
    kind: str
    direction: str
    status: str
    outcome: str
    outcome_reason: str
    caller_number: str
    caller_name: str
    caller_e164: str | None
    queue: str
    queue_outcome: str
    agent_code: str
    agent_name: str
    wait_seconds: float | None
    talk_seconds: float | None
    duration_seconds: float | None
    hangup_by: str
    #: The IVR path as text (``language:zh > main:2``).
    path: str
    dtmf: str
    #: What the caller said (a call), or the message (an SMS).
    transcript: str
    disposition: str
    notes: str
    recording_ref: str
    followup_id: int | None
    customer_id: int | None
    #: The linked customer's external id ("" if none or none linked).
    customer_external_id: str = ""

    @classmethod
    def of(cls, contact: Contact, agent_code: str | None, agent_name: str | None,
           external_id: str | None) -> TimelineEntry:
        return cls(
            contact.id, contact.uniqueid, utc(contact.started_at),
            utc(contact.ended_at) if contact.ended_at is not None else None, contact.channel, contact.kind,
            contact.direction, contact.status, contact.outcome, contact.outcome_reason,
            contact.caller_number, contact.caller_name, contact.caller_e164, contact.queue,
            contact.queue_outcome, agent_code or "", agent_name or "", contact.wait_seconds,
            contact.talk_seconds, contact.duration_seconds, contact.hangup_by,
            IvrPath.from_json(contact.ivr_path).text(), contact.dtmf, contact.transcript,
            contact.disposition, contact.notes, contact.recording_ref, contact.followup_id,
            contact.customer_id, external_id or "")

    @property
    def is_sms(self) -> bool:
        return self.channel == "sms"


@dataclass(frozen=True)
class TimelinePage:
    """Contacts of a subject, newest first; ``older`` is the ``before`` of the next page (None: no more)."""

    subject: Subject
    total: int
    entries: Sequence[TimelineEntry]
    older: int | None


def read_timeline(session: Session, subject: Subject, before: int | None = None,
                  limit: int = PAGE_SIZE) -> TimelinePage:
    """A page of ``subject``'s contacts, newest first, after the contact ``before`` if given."""
    limit = max(1, min(limit, MAX_PAGE))
    total = session.scalar(select(func.count()).select_from(Contact).where(subject.where)) or 0
    linked = aliased(Customer)
    query = (select(Contact, Agent.code, Agent.name, linked.external_id)
             .outerjoin(Agent, Contact.agent_id == Agent.id)
             .outerjoin(linked, Contact.customer_id == linked.id)
             .where(subject.where)
             .order_by(Contact.started_at.desc(), Contact.id.desc())
             .limit(limit + 1))
    if before is not None:
        if not 0 < before <= _MAX_ID:
            return TimelinePage(subject, int(total), [], None)
        anchor = select(Contact.started_at).where(Contact.id == before).scalar_subquery()
        query = query.where(or_(Contact.started_at < anchor,
                                and_(Contact.started_at == anchor, Contact.id < before)))
    rows = session.execute(query).all()
    entries = [TimelineEntry.of(contact, code, name, external) for contact, code, name, external in rows]
    older = entries[limit - 1].id if len(entries) > limit else None
    return TimelinePage(subject, int(total), entries[:limit], older)
