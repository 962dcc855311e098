"""What the dial policy and the dialer ask the database: agents, do-not-call, recent contacts.

Each method is plain blocking SQLAlchemy; the ``async`` wrappers run it on a
thread pool so the reactor never waits for the database.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session
from twisted.internet import defer, threads

from ivr.db.models import Agent as AgentRow
from ivr.db.models import Contact, Customer, CustomerPhone
from ivr.db.sql import utc
from ivr.dialing.consent import must_not_call
from ivr.dialing.outbound import Agent
from ivr.dialing.policy import DialTarget

__all__ = ["DialDirectory", "OUTBOUND_KINDS"]

#: Contacts that count against a customer's daily cap: the calls and SMS we make, not the ones they make.
OUTBOUND_KINDS = ("click-to-call", "callback", "sms")


class DialDirectory:
    """The dial policy's and the dialer's database look-ups."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def agent(self, code: str) -> Agent | None:
        with Session(self.engine) as session:
            row = session.scalars(select(AgentRow).where(AgentRow.code == code, AgentRow.active)).first()
            return Agent(row.code, row.device) if row is not None else None

    def do_not_call(self, target: DialTarget) -> bool:
        """The customer is do-not-call, or the number opted out (an SMS STOP, customer or not)."""
        with self.engine.connect() as connection:
            return must_not_call(connection, target.e164)

    def contacts_since(self, target: DialTarget, since: dt.datetime) -> int:
        """The calls and SMS we made to ``target``'s customer since ``since``, over all their numbers.

        A number no customer owns counts its own contacts.
        """
        with Session(self.engine) as session:
            customer = session.scalar(select(CustomerPhone.customer_id)
                                      .where(CustomerPhone.e164 == target.e164))
            mine = Contact.caller_e164 == target.e164
            if customer is not None:
                # Values, not a subquery, so that PostgreSQL searches both indexes (ivr.history.query).
                numbers = session.scalars(select(CustomerPhone.e164)
                                          .where(CustomerPhone.customer_id == customer)).all()
                mine = or_(Contact.customer_id == customer, Contact.caller_e164.in_(numbers))
            query = (select(func.count()).select_from(Contact)
                     .where(mine, Contact.direction == "outbound", Contact.kind.in_(OUTBOUND_KINDS),
                            Contact.started_at >= since))
            return int(session.scalar(query) or 0)

    def not_before(self, target: DialTarget) -> dt.datetime | None:
        """The customer's "do not contact before" moment, if they have one."""
        query = (select(Customer.no_contact_before).join(CustomerPhone)
                 .where(CustomerPhone.e164 == target.e164))
        with Session(self.engine) as session:
            value = session.scalar(query)
        return utc(value) if value is not None else None

    # -- off the reactor ---------------------------------------------------

    def when_contactable(self, target: DialTarget) -> defer.Deferred[dt.datetime | None]:
        return threads.deferToThread(self.not_before, target)

    def find_agent(self, code: str) -> defer.Deferred[Agent | None]:
        return threads.deferToThread(self.agent, code)

    def is_do_not_call(self, target: DialTarget) -> defer.Deferred[bool]:
        return threads.deferToThread(self.do_not_call, target)

    def count_contacts_since(self, target: DialTarget, since: dt.datetime) -> defer.Deferred[int]:
        return threads.deferToThread(self.contacts_since, target, since)
