"""Whom we must not contact, and the customer's own say: opt out (STOP) and back in (START).

One query (:func:`must_not_call`) is shared by the dial policy, the SMS desk
and the menus' "call me back"; the writes keep ``opt_outs`` (a number that
asked, customer or not), the customer's ``do_not_call`` with its reason, and
the open follow-ups consistent in one transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import Connection, Table, delete, or_, select, update

from ivr.db.models import Customer, CustomerPhone, FollowUp, OptOut
from ivr.db.sql import insert_ignoring

__all__ = ["OPTED_OUT_BY_SMS", "must_not_call", "opt_in", "opt_out"]

_opt_outs = cast(Table, OptOut.__table__)
_customers = cast(Table, Customer.__table__)
_phones = cast(Table, CustomerPhone.__table__)
_followups = cast(Table, FollowUp.__table__)

#: The do-not-call reason an SMS STOP writes; a START clears only this one, never an agent's.
OPTED_OUT_BY_SMS = "opted out by SMS"


def must_not_call(connection: Connection, e164: str) -> bool:
    """True if ``e164`` opted out (``opt_outs``, e.g. an SMS STOP) or its customer is do-not-call."""
    owners = select(_phones.c.customer_id).where(_phones.c.e164 == e164)
    query = select(or_(select(_opt_outs.c.e164).where(_opt_outs.c.e164 == e164).exists(),
                       select(_customers.c.id).where(_customers.c.id.in_(owners),
                                                     _customers.c.do_not_call.is_(True)).exists()))
    return bool(connection.execute(query).scalar())


def opt_out(connection: Connection, e164: str, source: str, message_id: str | None, now: dt.datetime) -> int:
    """``e164`` asked not to be contacted: record it, mark its customer, cancel their open follow-ups.

    Returns how many follow-ups were cancelled. One being dialled right now
    is left to its dispatcher, which asks the dial policy (and so the
    opt-out) before the customer's leg.
    """
    connection.execute(insert_ignoring(connection, _opt_outs, ["e164"])
                       .values(e164=e164, source=source, message_id=message_id, created_at=now))
    owner = select(_phones.c.customer_id).where(_phones.c.e164 == e164).scalar_subquery()
    connection.execute(update(_customers).where(_customers.c.id == owner, _customers.c.do_not_call.is_(False))
                       .values(do_not_call=True, do_not_call_reason=OPTED_OUT_BY_SMS, updated_at=now))
    f = _followups.c
    cancelled = connection.execute(
        update(_followups).where(f.state == "open", f.locked_by.is_(None),
                                 or_(f.e164 == e164, f.customer_id == owner))
        .values(state="cancelled", outcome="opted-out", last_outcome="opted-out", closed_at=now,
                updated_at=now))
    return int(cancelled.rowcount or 0)


def opt_in(connection: Connection, e164: str, now: dt.datetime) -> bool:
    """``e164`` asked to be contacted again (START): undo its own opt-out; True if there was one.

    A do-not-call an agent or an import set for another reason stays: only
    the customer's SMS opt-out is theirs to undo.
    """
    removed = connection.execute(delete(_opt_outs).where(_opt_outs.c.e164 == e164)).rowcount
    owner = select(_phones.c.customer_id).where(_phones.c.e164 == e164).scalar_subquery()
    cleared = connection.execute(
        update(_customers).where(_customers.c.id == owner, _customers.c.do_not_call.is_(True),
                                 _customers.c.do_not_call_reason == OPTED_OUT_BY_SMS)
        .values(do_not_call=False, do_not_call_reason="", updated_at=now)).rowcount
    return bool(removed or cleared)
