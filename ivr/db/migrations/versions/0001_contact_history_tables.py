"""contact history tables

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("device", sa.String(length=200), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
        sa.UniqueConstraint("code", name=op.f("uq_agents_code")),
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("vip_tier", sa.String(length=32), nullable=False),
        sa.Column("owner_agent_id", sa.Integer(), nullable=True),
        sa.Column("preferred_channel", sa.String(length=16), nullable=False),
        sa.Column("do_not_call", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_agent_id"], ["agents.id"], name=op.f("fk_customers_owner_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("external_id", name=op.f("uq_customers_external_id")),
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.Column("handled_by", sa.String(length=200), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=True),
        sa.Column("caller_number", sa.Text(), nullable=False),
        sa.Column("caller_name", sa.Text(), nullable=False),
        sa.Column("caller_e164", sa.String(length=20), nullable=True),
        sa.Column("called_number", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("ivr_path", sa.JSON(), nullable=False),
        sa.Column("last_step", sa.Text(), nullable=False),
        sa.Column("dtmf", sa.Text(), nullable=False),
        sa.Column("transcript", sa.Text(), nullable=False),
        sa.Column("transcript_confidence", sa.Float(), nullable=True),
        sa.Column("route", sa.String(length=100), nullable=False),
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("outcome_reason", sa.Text(), nullable=False),
        sa.Column("hangup_cause", sa.String(length=32), nullable=False),
        sa.Column("recording_ref", sa.Text(), nullable=False),
        sa.Column("survey_score", sa.SmallInteger(), nullable=True),
        sa.Column("disposition", sa.String(length=64), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name=op.f("fk_contacts_agent_id_agents")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_contacts_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        sa.UniqueConstraint("uniqueid", name=op.f("uq_contacts_uniqueid")),
    )
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contacts_caller_e164"), ["caller_e164"], unique=False)
        batch_op.create_index(batch_op.f("ix_contacts_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_contacts_linkedid"), ["linkedid"], unique=False)
        batch_op.create_index(batch_op.f("ix_contacts_started_at"), ["started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_contacts_status"), ["status"], unique=False)

    op.create_table(
        "customer_phones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("e164", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_phones_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_phones")),
        sa.UniqueConstraint("e164", name=op.f("uq_customer_phones_e164")),
    )
    with op.batch_alter_table("customer_phones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_phones_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "contact_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_events_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_events")),
        sa.UniqueConstraint("contact_id", "seq", name=op.f("uq_contact_events_contact_id")),
    )
    with op.batch_alter_table("contact_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_contact_events_contact_id"), ["contact_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("contact_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contact_events_contact_id"))

    op.drop_table("contact_events")
    with op.batch_alter_table("customer_phones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_phones_customer_id"))

    op.drop_table("customer_phones")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_contacts_status"))
        batch_op.drop_index(batch_op.f("ix_contacts_started_at"))
        batch_op.drop_index(batch_op.f("ix_contacts_linkedid"))
        batch_op.drop_index(batch_op.f("ix_contacts_customer_id"))
        batch_op.drop_index(batch_op.f("ix_contacts_caller_e164"))

    op.drop_table("contacts")
    op.drop_table("customers")
    op.drop_table("agents")
