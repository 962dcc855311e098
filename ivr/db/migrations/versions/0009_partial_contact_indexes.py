"""partial contact indexes: a call that only went through the IVR writes 4 index entries, not 9

Revision ID: 0009
Revises: 0008

Issue #18: most calls end in the IVR, have no customer record, agent, follow-up
or linked call, and are open only for the minutes they last. The indexes on
those columns now hold only the rows that have a value (``IS NOT NULL``), and
the whole-column indexes on ``status`` and ``queue_outcome`` became indexes of
an instance's calls still open, and still with a person: the only questions
asked of those columns through an index (at start-up, after a crash). Reports
filter by ``started_at`` first, which keeps its full index.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

#: Index name, the rows it holds (literally as ivr.db.models says), its columns.
PARTIAL = [
    ("ix_contacts_customer_id_started_at", "customer_id IS NOT NULL", ["customer_id", "started_at"]),
    ("ix_contacts_agent_id_started_at", "agent_id IS NOT NULL", ["agent_id", "started_at"]),
    ("ix_contacts_linkedid", "linkedid IS NOT NULL", ["linkedid"]),
    ("ix_contacts_followup_id", "followup_id IS NOT NULL", ["followup_id"]),
]
#: The whole-column indexes 0009 replaces with partial ones on the instance, and those.
REPLACED = [("ix_contacts_status", ["status"]), ("ix_contacts_queue_outcome", ["queue_outcome"])]
ADDED = [
    ("ix_contacts_open", "status = 'open'", ["handled_by"]),
    ("ix_contacts_with_a_person", "queue_outcome IN ('waiting', 'talking')", ["handled_by"]),
]


def _create(name: str, where: str, columns: list[str]) -> None:
    op.create_index(name, "contacts", columns, sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def upgrade() -> None:
    for name, where, columns in PARTIAL:
        op.drop_index(name, table_name="contacts")
        _create(name, where, columns)
    for name, _ in REPLACED:
        op.drop_index(name, table_name="contacts")
    for name, where, columns in ADDED:
        _create(name, where, columns)


def downgrade() -> None:
    for name, _, _ in ADDED:
        op.drop_index(name, table_name="contacts")
    for name, columns in REPLACED:
        op.create_index(name, "contacts", columns)
    for name, _, columns in PARTIAL:
        op.drop_index(name, table_name="contacts")
        op.create_index(name, "contacts", columns)
