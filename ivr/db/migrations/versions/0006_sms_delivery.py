"""SMS delivery: a status per outbox message, retried with backoff, claimed by one instance

Revision ID: 0006
Revises: 0005

Issue #15: the outbox is drained through Asterisk (AMI MessageSend). Each
message is queued, sending (claimed by one ``ivr serve``: ``locked_by`` and
``locked_at``, taken back when that instance died), sent or failed, with its
next attempt time. Messages already marked sent stay sent; the rest queue.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sms_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=False,
                                      server_default="queued"))
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("locked_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_sms_outbox_status_next_attempt_at", ["status", "next_attempt_at"])
    outbox = sa.table("sms_outbox", sa.column("status", sa.String()), sa.column("sent_at", sa.DateTime()),
                      sa.column("created_at", sa.DateTime()), sa.column("next_attempt_at", sa.DateTime()))
    op.execute(outbox.update().where(outbox.c.sent_at.is_not(None)).values(status="sent"))
    op.execute(outbox.update().where(outbox.c.sent_at.is_(None)).values(next_attempt_at=outbox.c.created_at))


def downgrade() -> None:
    # Natively (SQLite 3.35+ drops columns), like 0004: no table rebuild.
    with op.batch_alter_table("sms_outbox", schema=None, recreate="never") as batch_op:
        batch_op.drop_index("ix_sms_outbox_status_next_attempt_at")
        batch_op.drop_column("locked_at")
        batch_op.drop_column("locked_by")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("status")
