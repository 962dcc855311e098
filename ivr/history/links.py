"""What a contact learns after its row is written: its customer, its agent, its callback request.

The call recorder writes a contact from what the call itself knows (numbers,
path, outcome). Who the customer is, which agent took an outbound call and
which callback request it keeps are known to the dialer and the callback
dispatcher; they write them here, onto the row the recorder made, by the
contact's uniqueid. Every write is idempotent (setting the same values
twice changes nothing) and never overwrites a link already made, so the
dialer's write and the dispatcher's may arrive in either order.

Blocking: call from a worker thread, never on the reactor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, func, literal, select, update

from ivr.db.models import Agent, Contact, CustomerPhone
from ivr.db.sql import write_transaction

__all__ = ["ContactLinks", "customer_of_number", "link_contact", "link_contact_now"]

_contacts = cast(Table, Contact.__table__)
_phones = cast(Table, CustomerPhone.__table__)
_agents = cast(Table, Agent.__table__)


@dataclass(frozen=True, slots=True)
class ContactLinks:
    """Links to write onto a contact; None (or "") leaves that link as it is.

    Without ``customer_id`` the customer owning the contact's number (if any)
    is linked, the way the built-in customer lookup finds callers.
    """

    customer_id: int | None = None
    #: The agent's code (e.g. 1001), resolved to ``agents.id`` in the same statement.
    agent_code: str = ""
    followup_id: int | None = None


def customer_of_number(connection: Connection, e164: str | None) -> int | None:
    """The id of the customer owning ``e164``, or None (also for no number)."""
    if not e164:
        return None
    value = connection.execute(select(_phones.c.customer_id).where(_phones.c.e164 == e164)).scalar()
    return int(value) if value is not None else None


def link_contact(connection: Connection, uniqueid: str, links: ContactLinks) -> bool:
    """Write ``links`` onto the contact ``uniqueid`` inside the caller's transaction.

    Returns False if there is no such contact (yet): the recorder may still
    hold its start, e.g. in its journal while the database was down.
    """
    c = _contacts.c
    by_number = (select(_phones.c.customer_id).where(_phones.c.e164 == c.caller_e164)
                 .scalar_subquery())
    given: Any = literal(links.customer_id) if links.customer_id is not None else by_number
    values: dict[str, Any] = {"customer_id": func.coalesce(c.customer_id, given)}
    if links.agent_code:
        agent = select(_agents.c.id).where(_agents.c.code == links.agent_code).scalar_subquery()
        values["agent_id"] = func.coalesce(c.agent_id, agent)
    if links.followup_id is not None:
        values["followup_id"] = func.coalesce(c.followup_id,
                                                      literal(links.followup_id))
    result = connection.execute(update(_contacts).where(c.uniqueid == uniqueid).values(**values))
    return bool(result.rowcount)


def link_contact_now(engine: Engine, uniqueid: str, links: ContactLinks) -> bool:
    """:func:`link_contact` in a transaction of its own."""
    with write_transaction(engine) as connection:
        return link_contact(connection, uniqueid, links)
