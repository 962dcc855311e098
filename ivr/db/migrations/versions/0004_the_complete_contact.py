"""the complete contact: who answered, waits and talk, the callback it came from; agent roles

Revision ID: 0004
Revises: 0003

Issue #13: a contact records the human part of a call (queue outcome, agent,
seconds waited and talked, who hung up) and its origin (the callback
request); timelines by customer and by agent are read by time, newest first.
Agents get a role (agent or supervisor) for who may hear which recording.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=False, server_default="agent"))
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queue_outcome", sa.String(length=16), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("wait_seconds", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("talk_seconds", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("hangup_by", sa.String(length=16), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("callback_request_id", sa.Integer(), nullable=True))
        batch_op.drop_index(batch_op.f("ix_contacts_customer_id"))
        batch_op.create_index("ix_contacts_customer_id_started_at", ["customer_id", "started_at"])
        batch_op.create_index("ix_contacts_agent_id_started_at", ["agent_id", "started_at"])
        batch_op.create_index(batch_op.f("ix_contacts_queue_outcome"), ["queue_outcome"])
        batch_op.create_index(batch_op.f("ix_contacts_callback_request_id"), ["callback_request_id"])


def downgrade() -> None:
    # Natively (SQLite 3.35+ drops columns), never by rebuilding the tables: contacts and agents
    # are pointed at by other tables' rows, and a rebuild drops the old table.
    with op.batch_alter_table("contacts", schema=None, recreate="never") as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_callback_request_id"))
        batch_op.drop_index(batch_op.f("ix_contacts_queue_outcome"))
        batch_op.drop_index("ix_contacts_agent_id_started_at")
        batch_op.drop_index("ix_contacts_customer_id_started_at")
        batch_op.create_index(batch_op.f("ix_contacts_customer_id"), ["customer_id"], unique=False)
        batch_op.drop_column("callback_request_id")
        batch_op.drop_column("hangup_by")
        batch_op.drop_column("talk_seconds")
        batch_op.drop_column("wait_seconds")
        batch_op.drop_column("queue_outcome")
    with op.batch_alter_table("agents", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("role")
