"""Whom we must not contact: one query, shared by the dial policy and the callback desk."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Connection, Table, or_, select

from ivr.db.models import Customer, CustomerPhone, OptOut

__all__ = ["must_not_call"]

_opt_outs = cast(Table, OptOut.__table__)
_customers = cast(Table, Customer.__table__)
_phones = cast(Table, CustomerPhone.__table__)


def must_not_call(connection: Connection, e164: str) -> bool:
    """True if ``e164`` opted out (``opt_outs``, e.g. an SMS STOP) or its customer is do-not-call."""
    owners = select(_phones.c.customer_id).where(_phones.c.e164 == e164)
    query = select(or_(select(_opt_outs.c.e164).where(_opt_outs.c.e164 == e164).exists(),
                       select(_customers.c.id).where(_customers.c.id.in_(owners),
                                                     _customers.c.do_not_call.is_(True)).exists()))
    return bool(connection.execute(query).scalar())
