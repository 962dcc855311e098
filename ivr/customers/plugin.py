"""Built-in plugin: finds callers in the history database's customers table.

It answers ``ivr_lookup_customer`` last (``trylast``), so a site's CRM plugin
wins when it knows the caller. The query runs on Twisted's thread pool; the
routing deadline (300 ms) still applies to it.
"""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload
from twisted.internet import defer, threads

from ivr.db.models import Customer as CustomerRow
from ivr.db.models import CustomerPhone
from ivr.plugins.hookspecs import hookimpl
from ivr.routing.customers import Customer

__all__ = ["CustomerDirectory"]


class CustomerDirectory:
    """Customer lookups against the ``customers`` and ``customer_phones`` tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @hookimpl(trylast=True)
    def ivr_lookup_customer(self, phone: str) -> defer.Deferred[Customer | None]:
        return threads.deferToThread(self.find, phone)

    def find(self, phone: str) -> Customer | None:
        """The customer owning ``phone`` (E.164), or None. Runs on a worker thread."""
        query = (select(CustomerRow).join(CustomerPhone).where(CustomerPhone.e164 == phone)
                 .options(selectinload(CustomerRow.owner)))
        with Session(self.engine) as session:
            row = session.scalars(query).first()
            if row is None:
                return None
            return Customer(phone, True, row.external_id or f"#{row.id}", row.name, row.language,
                            row.vip_tier, row.owner.code if row.owner else "", row.do_not_call,
                            row.owner.device if row.owner and row.owner.active else "")
