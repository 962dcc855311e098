"""The contact history: every contact with a customer, in SQLite or PostgreSQL.

This package holds the schema (:mod:`ivr.history.models`) and its Alembic
migrations (:mod:`ivr.history.schema`). The plugin that records calls into it
builds on these (issue #5).
"""

from ivr.history.models import Agent, Base, Contact, ContactEvent, Customer, CustomerPhone
from ivr.history.schema import current_revision, downgrade, head_revision, make_engine, upgrade

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
