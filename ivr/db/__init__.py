"""The database every feature shares: tables, schema migrations and small SQL helpers.

:mod:`ivr.db.models` declares every table once (contacts, customers, agents,
callbacks, SMS, opt-outs, active calls); :mod:`ivr.db.schema` makes engines
and runs the Alembic migrations in ``ivr/db/migrations``; :mod:`ivr.db.sql`
holds the helpers features share (UTC times, write transactions, insert
ignoring conflicts). Infrastructure: nothing here imports a feature.
"""

from ivr.db.models import Agent, Base, Contact, ContactEvent, Customer, CustomerPhone
from ivr.db.schema import current_revision, downgrade, head_revision, make_engine, upgrade

__all__ = [
    "Agent",
    "Base",
    "Contact",
    "ContactEvent",
    "Customer",
    "CustomerPhone",
    "current_revision",
    "downgrade",
    "head_revision",
    "make_engine",
    "upgrade",
]
