"""post-call satisfaction surveys and complaint cases

Revision ID: 0007
Revises: 0006

Issue #14: a survey rates one call (its agent, queue and kind) with a score
of 1..5, buy again and recommend, each answer stored as it is given; a
complaint case has an owner, a priority, a response due time and a status.
Both are also contact rows in the customer's timeline.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "surveys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rated_contact_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("e164", sa.String(length=20), nullable=True),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("rated_kind", sa.String(length=32), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=True),
        sa.Column("buy_again", sa.Boolean(), nullable=True),
        sa.Column("recommend", sa.Boolean(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("followup_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name=op.f("fk_surveys_agent_id_agents")),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], name=op.f("fk_surveys_contact_id_contacts"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_surveys_customer_id_customers")),
        sa.ForeignKeyConstraint(["rated_contact_id"], ["contacts.id"],
                                name=op.f("fk_surveys_rated_contact_id_contacts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surveys")),
        sa.UniqueConstraint("rated_contact_id", name=op.f("uq_surveys_rated_contact_id")),
    )
    with op.batch_alter_table("surveys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_surveys_agent_id"), ["agent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_surveys_started_at"), ["started_at"], unique=False)
        batch_op.create_index("ix_surveys_customer_id_started_at", ["customer_id", "started_at"],
                              unique=False)
        batch_op.create_index("ix_surveys_e164_started_at", ["e164", "started_at"], unique=False)

    op.create_table(
        "complaint_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("e164", sa.String(length=20), nullable=True),
        sa.Column("source_contact_id", sa.Integer(), nullable=True),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("owner_agent_id", sa.Integer(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("response_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("followup_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"],
                                name=op.f("fk_complaint_cases_contact_id_contacts"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_complaint_cases_customer_id_customers")),
        sa.ForeignKeyConstraint(["owner_agent_id"], ["agents.id"],
                                name=op.f("fk_complaint_cases_owner_agent_id_agents")),
        sa.ForeignKeyConstraint(["source_contact_id"], ["contacts.id"],
                                name=op.f("fk_complaint_cases_source_contact_id_contacts"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint_cases")),
        sa.UniqueConstraint("key", name=op.f("uq_complaint_cases_key")),
    )
    with op.batch_alter_table("complaint_cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_complaint_cases_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index("ix_complaint_cases_status_response_due_at", ["status", "response_due_at"],
                              unique=False)


def downgrade() -> None:
    op.drop_table("complaint_cases")
    op.drop_table("surveys")
