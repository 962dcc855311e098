"""supervisor audit: who paused, added or removed a queue member from the wallboard

Revision ID: 0008
Revises: 0007

Issue #16: the supervisor's wallboard acts on Asterisk's queues (AMI QueuePause,
QueueAdd, QueueRemove); each action is recorded with who asked, what and how
it went.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "supervisor_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("supervisor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("interface", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_supervisor_actions")),
    )
    with op.batch_alter_table("supervisor_actions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_supervisor_actions_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("supervisor_actions", schema=None, recreate="never") as batch_op:
        batch_op.drop_index(batch_op.f("ix_supervisor_actions_at"))
    op.drop_table("supervisor_actions")
