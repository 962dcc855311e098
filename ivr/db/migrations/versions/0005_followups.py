"""follow-ups: callback requests become follow-ups with origin, cadence step, owner and escalation

Revision ID: 0005
Revises: 0004

Issue #15: one concept for every planned contact. ``callback_requests`` is
copied into ``followups`` (pending, dialing and expired requests are open
again: nothing expires silently any more; done and failed are done, reached
or unreached; the customer's account owner becomes the owner) and dropped;
``sms_messages.callback_id`` and ``contacts.callback_request_id`` become
``followup_id``. Agents can be away; customers carry why they must not be
called and a date before which they are not contacted; ``customer_changes``
keeps who changed that from the agent page, and why.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TO_FOLLOWUPS = """
INSERT INTO followups (id, origin, request_key, customer_id, e164, reason, skill, text, priority, state,
                       outcome, step, cadence_from, due_at, attempts, max_attempts,
                       next_attempt_at, locked_by, locked_at,
                       last_outcome, owner_agent_id, contact_id, created_at, updated_at, closed_at)
SELECT r.id, r.source, r.message_id, r.customer_id, r.e164, r.reason, r.skill, r.sms_text, r.priority,
       CASE WHEN r.status IN ('pending', 'dialing', 'expired') THEN 'open'
            WHEN r.status IN ('done', 'failed') THEN 'done' ELSE 'cancelled' END,
       CASE r.status WHEN 'done' THEN 'reached' WHEN 'failed' THEN 'unreached'
            WHEN 'cancelled' THEN CASE WHEN r.last_outcome = 'opted-out' THEN 'opted-out' ELSE 'cancelled' END
            ELSE '' END,
       0, r.created_at, r.due_at, CASE WHEN r.status = 'expired' THEN 0 ELSE r.attempts END, r.max_attempts,
       r.next_attempt_at,
       CASE WHEN r.status = 'dialing' THEN r.locked_by END,
       CASE WHEN r.status = 'dialing' THEN r.locked_at END,
       r.last_outcome, (SELECT c.owner_agent_id FROM customers c WHERE c.id = r.customer_id), r.contact_id,
       r.created_at, r.updated_at,
       CASE WHEN r.status IN ('done', 'failed', 'cancelled') THEN r.updated_at END
FROM callback_requests r
"""

_TO_CALLBACK_REQUESTS = """
INSERT INTO callback_requests (id, source, message_id, customer_id, e164, reason, skill, sms_text, priority,
                               status, due_at, attempts, max_attempts, next_attempt_at, locked_by, locked_at,
                               last_outcome, contact_id, created_at, updated_at)
SELECT f.id, f.origin, f.request_key, f.customer_id, f.e164, f.reason, f.skill, f.text, f.priority,
       CASE WHEN f.state = 'open' AND f.locked_by IS NOT NULL THEN 'dialing'
            WHEN f.state = 'open' THEN 'pending'
            WHEN f.state = 'done' AND f.outcome = 'unreached' THEN 'failed'
            WHEN f.state = 'done' THEN 'done' ELSE 'cancelled' END,
       f.due_at, f.attempts, f.max_attempts, f.next_attempt_at, f.locked_by, f.locked_at, f.last_outcome,
       f.contact_id, f.created_at, f.updated_at
FROM followups f
"""


def _restart_ids(table: str) -> None:
    """After rows were copied with their ids, PostgreSQL's sequence must start past them."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                           f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"))


def upgrade() -> None:
    op.create_table(
        "followups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("request_key", sa.String(length=200), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("e164", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("skill", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("cadence_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_by", sa.String(length=200), nullable=True),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_outcome", sa.String(length=32), nullable=False),
        sa.Column("owner_agent_id", sa.Integer(), nullable=True),
        sa.Column("owner_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("source_contact_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"],
                                name=op.f("fk_followups_contact_id_contacts")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_followups_customer_id_customers")),
        sa.ForeignKeyConstraint(["owner_agent_id"], ["agents.id"],
                                name=op.f("fk_followups_owner_agent_id_agents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_followups")),
        sa.UniqueConstraint("request_key", name=op.f("uq_followups_request_key")),
    )
    with op.batch_alter_table("followups", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_followups_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_followups_e164"), ["e164"], unique=False)
        batch_op.create_index("ix_followups_state_next_attempt_at", ["state", "next_attempt_at"],
                              unique=False)
        batch_op.create_index("ix_followups_state_due_at", ["state", "due_at"], unique=False)
        batch_op.create_index("ix_followups_owner_agent_id_state_due_at",
                              ["owner_agent_id", "state", "due_at"], unique=False)
    op.execute(sa.text(_TO_FOLLOWUPS))
    _restart_ids("followups")

    # sms_messages has no rows pointing at it, so SQLite may rebuild it to swap the foreign key.
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("followup_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_sms_messages_followup_id_followups"), "followups",
                                    ["followup_id"], ["id"])
    op.execute(sa.text("UPDATE sms_messages SET followup_id = callback_id"))
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.drop_constraint("fk_sms_messages_callback_id_callback_requests", type_="foreignkey")
        batch_op.drop_column("callback_id")

    # contacts is pointed at by other tables: renamed in place, never rebuilt.
    with op.batch_alter_table("contacts", schema=None, recreate="never") as batch_op:
        batch_op.drop_index("ix_contacts_callback_request_id")
        batch_op.alter_column("callback_request_id", new_column_name="followup_id")
        batch_op.create_index(batch_op.f("ix_contacts_followup_id"), ["followup_id"], unique=False)
    op.drop_table("callback_requests")

    with op.batch_alter_table("agents", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("away", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("customers", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("do_not_call_reason", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("no_contact_before", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "customer_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("old", sa.Text(), nullable=False),
        sa.Column("new", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_customer_changes_customer_id_customers"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_changes")),
    )
    with op.batch_alter_table("customer_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_changes_customer_id"), ["customer_id"], unique=False)


def downgrade() -> None:
    op.drop_table("customer_changes")
    with op.batch_alter_table("customers", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("no_contact_before")
        batch_op.drop_column("do_not_call_reason")
    with op.batch_alter_table("agents", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("away")

    op.create_table(
        "callback_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("e164", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("skill", sa.String(length=64), nullable=False),
        sa.Column("sms_text", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_by", sa.String(length=200), nullable=True),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_outcome", sa.String(length=32), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"],
                                name=op.f("fk_callback_requests_contact_id_contacts")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_callback_requests_customer_id_customers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_requests")),
        sa.UniqueConstraint("message_id", name=op.f("uq_callback_requests_message_id")),
    )
    with op.batch_alter_table("callback_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_callback_requests_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_callback_requests_e164"), ["e164"], unique=False)
        batch_op.create_index("ix_callback_requests_status_next_attempt_at", ["status", "next_attempt_at"],
                              unique=False)
    op.execute(sa.text(_TO_CALLBACK_REQUESTS))
    _restart_ids("callback_requests")

    with op.batch_alter_table("contacts", schema=None, recreate="never") as batch_op:
        batch_op.drop_index("ix_contacts_followup_id")
        batch_op.alter_column("followup_id", new_column_name="callback_request_id")
        batch_op.create_index("ix_contacts_callback_request_id", ["callback_request_id"], unique=False)
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("callback_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_sms_messages_callback_id_callback_requests", "callback_requests",
                                    ["callback_id"], ["id"])
    op.execute(sa.text("UPDATE sms_messages SET callback_id = followup_id"))
    with op.batch_alter_table("sms_messages", schema=None) as batch_op:
        batch_op.drop_constraint("fk_sms_messages_followup_id_followups", type_="foreignkey")
        batch_op.drop_column("followup_id")
    op.drop_table("followups")
