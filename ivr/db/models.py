"""SQLAlchemy 2.x models of the contact history.

One ``contacts`` row per interaction (inbound call, click-to-call, callback,
SMS, survey), unique on Asterisk's uniqueid so a replayed write can never
make a second row. Everything a caller sent is stored as text, literally.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ivr.db.sql import utc_now

__all__ = ["OPEN_CONTACTS", "WITH_A_PERSON", "ActiveCall", "Agent", "Base", "ComplaintCase", "Contact",
           "ContactEvent", "Customer", "CustomerChange", "CustomerPhone", "FollowUp", "OptOut", "SmsMessage",
           "SmsOutbox", "SupervisorAction", "Survey"]

#: Constraint names that are the same on SQLite and PostgreSQL, so migrations can name them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: The rows two partial indexes of ``contacts`` hold, in SQL both databases take. A query for
#: these rows says it in the same words, so that the planner sees that the index covers it.
OPEN_CONTACTS = "status = 'open'"
WITH_A_PERSON = "queue_outcome IN ('waiting', 'talking')"


def _partial(name: str, where: str, *columns: str) -> Index:
    """An index of only the rows ``where`` holds, on SQLite and PostgreSQL alike."""
    return Index(name, *columns, sqlite_where=text(where), postgresql_where=text(where))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Agent(Base):
    """A person who takes calls; ``code`` is what the phone system knows them by (e.g. 1001)."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    device: Mapped[str] = mapped_column(String(200), default="")
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: SHA-256 of the agent's API token (never the token itself); None: no API access.
    api_token_hash: Mapped[str | None] = mapped_column(String(128))
    #: agent or supervisor: supervisors see every queue's data and every recording.
    role: Mapped[str] = mapped_column(String(16), default="agent")
    #: Away (holiday, sick): their customers' follow-ups and calls go to the pool at once.
    away: Mapped[bool] = mapped_column(Boolean, default=False)


class Customer(Base):
    """A customer, with routing facts: language, VIP tier, owner, do-not-call."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(16), default="")
    vip_tier: Mapped[str] = mapped_column(String(32), default="")
    owner_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    preferred_channel: Mapped[str] = mapped_column(String(16), default="voice")
    do_not_call: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Why (an agent's note, "sms STOP" ...); kept so a START can tell its own opt-out apart.
    do_not_call_reason: Mapped[str] = mapped_column(Text, default="")
    #: Not contacted (called, texted) before this moment, whatever the reason.
    no_contact_before: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now,
                                                    onupdate=utc_now)

    phones: Mapped[list[CustomerPhone]] = relationship(back_populates="customer",
                                                       cascade="all, delete-orphan")
    owner: Mapped[Agent | None] = relationship()


class CustomerPhone(Base):
    """A customer's phone number in E.164; one number belongs to one customer."""

    __tablename__ = "customer_phones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    e164: Mapped[str] = mapped_column(String(20), unique=True)

    customer: Mapped[Customer] = relationship(back_populates="phones")


class Contact(Base):
    """One interaction with a customer, from first ring to final outcome.

    A call is one row per Asterisk uniqueid: the IVR part (path, keys, what
    was said) and then the human part (queue, who answered, wait, talk,
    recording). An SMS is a row too (``channel`` sms, its text in
    ``transcript``), so a customer's timeline is one query.
    """

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("uniqueid"),
        # Partial indexes (migration 0009): most calls never reach a person, a customer record or
        # a follow-up, and end within minutes; they get no entry in the indexes below, so
        # recording a call costs 4 index entries instead of 9. The WHERE clauses are matched by
        # the queries that use them (tests/test_contact_indexes.py checks the plans).
        #: A customer's and an agent's timeline, newest first.
        _partial("ix_contacts_customer_id_started_at", "customer_id IS NOT NULL",
                 "customer_id", "started_at"),
        _partial("ix_contacts_agent_id_started_at", "agent_id IS NOT NULL", "agent_id", "started_at"),
        _partial("ix_contacts_linkedid", "linkedid IS NOT NULL", "linkedid"),
        _partial("ix_contacts_followup_id", "followup_id IS NOT NULL", "followup_id"),
        #: An instance's calls still in ivr when it stopped (reconciled at start-up).
        _partial("ix_contacts_open", OPEN_CONTACTS, "handled_by"),
        #: An instance's calls still with a person when it stopped (picked up again at start-up).
        _partial("ix_contacts_with_a_person", WITH_A_PERSON, "handled_by"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: voice, sms ...
    channel: Mapped[str] = mapped_column(String(16), default="voice")
    #: inbound or outbound
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    #: hotline, click-to-call, callback, sms, survey ...
    kind: Mapped[str] = mapped_column(String(32), default="hotline")
    uniqueid: Mapped[str] = mapped_column(String(64))
    #: The ivr instance that served it: only that instance reconciles it after a crash.
    handled_by: Mapped[str] = mapped_column(String(200), default="")
    linkedid: Mapped[str | None] = mapped_column(String(64))
    caller_number: Mapped[str] = mapped_column(Text, default="")
    caller_name: Mapped[str] = mapped_column(Text, default="")
    caller_e164: Mapped[str | None] = mapped_column(String(20), index=True)
    called_number: Mapped[str] = mapped_column(Text, default="")
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    answered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    #: open while the call is in ivr, final when it ended, interrupted if ivr died first
    status: Mapped[str] = mapped_column(String(16), default="open")
    ivr_path: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    last_step: Mapped[str] = mapped_column(Text, default="")
    #: keys pressed, sensitive ones masked as "*"
    dtmf: Mapped[str] = mapped_column(Text, default="")
    transcript: Mapped[str] = mapped_column(Text, default="")
    transcript_confidence: Mapped[float | None] = mapped_column(Float)
    route: Mapped[str] = mapped_column(String(100), default="")
    queue: Mapped[str] = mapped_column(String(100), default="")
    #: The person who answered: a queue member, the account owner rung directly, or the agent
    #: of a click-to-call or callback.
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    #: The human part: waiting or talking while it lasts, then answered, abandoned, timeout,
    #: callback (left the queue for one) or lost (ended while no ivr was listening); "" for none.
    queue_outcome: Mapped[str] = mapped_column(String(16), default="")
    #: Seconds until a person answered: the caller in the queue and the owner's phone ringing, or
    #: (outbound) the customer's phone ringing.
    wait_seconds: Mapped[float | None] = mapped_column(Float)
    #: Seconds the caller talked with the person who answered.
    talk_seconds: Mapped[float | None] = mapped_column(Float)
    #: caller, agent or transfer (app_queue's AgentComplete Reason); "" when unknown.
    hangup_by: Mapped[str] = mapped_column(String(16), default="")
    #: The follow-up this contact came from or worked on (the SMS that asked, the calls that kept it).
    #: No foreign key: followups.contact_id already points back here, and SQLite
    #: cannot add the second half of such a cycle.
    followup_id: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(32), default="")
    outcome_reason: Mapped[str] = mapped_column(Text, default="")
    hangup_cause: Mapped[str] = mapped_column(String(32), default="")
    recording_ref: Mapped[str] = mapped_column(Text, default="")
    survey_score: Mapped[int | None] = mapped_column(SmallInteger)
    disposition: Mapped[str] = mapped_column(String(64), default="")
    notes: Mapped[str] = mapped_column(Text, default="")

    events: Mapped[list[ContactEvent]] = relationship(back_populates="contact",
                                                      cascade="all, delete-orphan",
                                                      order_by="ContactEvent.id")


class ContactEvent(Base):
    """Something that happened during a contact (a step, a transfer, a note), in order."""

    __tablename__ = "contact_events"
    #: (contact, seq) is unique, so replaying a journal never doubles an event.
    __table_args__ = (UniqueConstraint("contact_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Look-ups by contact use the (contact_id, seq) unique index; no second index.
    contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    contact: Mapped[Contact] = relationship(back_populates="events")


class FollowUp(Base):
    """A planned contact with a customer, kept until it is done: one concept for every origin.

    An SMS "call me", a menu's "call me back", a web lead, an agent's
    disposition with a date, a survey recovery or a complaint each make one
    follow-up. It has a cadence (its origin's steps: e.g. within 2 business
    hours, then 48 hours, 7, 30 and 90 days), an owner who gets it first, and
    a state: open until it is done (reached, or the cadence ran out) or
    cancelled (opted out, refused, closed by an agent). Overdue is not a
    state: an open follow-up past ``due_at`` is overdue, and escalates.

    ``request_key`` is unique, so a webhook delivered five times makes one
    follow-up. Instances claim due ones with their name in ``locked_by``; a
    claim older than the lock timeout is taken back, so a crashed instance
    cannot keep one forever.
    """

    __tablename__ = "followups"
    __table_args__ = (
        UniqueConstraint("request_key"),
        #: claim_due: open ones whose next attempt is due.
        Index("ix_followups_state_next_attempt_at", "state", "next_attempt_at"),
        #: Overdue lists and escalation: open ones by due time.
        Index("ix_followups_state_due_at", "state", "due_at"),
        #: An agent's "my follow-ups".
        Index("ix_followups_owner_agent_id_state_due_at", "owner_agent_id", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: sms, ivr, api, lead, disposition, survey or complaint (ivr.plugins.requests.FollowUpOrigin)
    origin: Mapped[str] = mapped_column(String(16))
    #: What asked for it (a gateway's message id, a call's uniqueid ...); the idempotency key.
    request_key: Mapped[str | None] = mapped_column(String(200))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    e164: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    skill: Mapped[str] = mapped_column(String(64), default="")
    #: What the customer wrote or said, literally (shown to the agent).
    text: Mapped[str] = mapped_column(Text, default="")
    #: Higher goes first.
    priority: Mapped[int] = mapped_column(Integer, default=0)
    #: open, done or cancelled
    state: Mapped[str] = mapped_column(String(16), default="open")
    #: How it ended: reached, unreached (the cadence ran out), closed (by an agent),
    #: opted-out, refused, cancelled; "" while open.
    outcome: Mapped[str] = mapped_column(String(32), default="")
    #: Which step of the origin's cadence is planned now (0: the first contact).
    step: Mapped[int] = mapped_column(Integer, default=0)
    #: When the cadence counts from: when it was asked for, or the date an agent set.
    cadence_from: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    #: This step's deadline: contacted by then, or it is overdue.
    due_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    #: Customer attempts in this step (no-answer, busy), and how many a step may use.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    #: Not dialled before this (the step's start, opening time, retry backoff).
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    locked_by: Mapped[str | None] = mapped_column(String(200))
    locked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_outcome: Mapped[str] = mapped_column(String(32), default="")
    #: Who makes the contact: the customer's account owner (or who the asker named); None: the pool.
    owner_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    #: Until then only the owner may take it; after, any agent with the skill.
    owner_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: When it was escalated to the supervisors for being overdue (None: not escalated).
    escalated_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: The contact of the last attempt, in the history.
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    #: The contact it came from (the rated call, the complaint's call), if any.
    source_contact_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now,
                                                    onupdate=utc_now)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class CustomerChange(Base):
    """Who changed what on a customer from the agent page, and why: the do-not-call audit trail.

    Rows are only ever added, so a do-not-call cleared by a supervisor still
    shows who set it, when and why.
    """

    __tablename__ = "customer_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    #: The agent's code (from the session).
    agent: Mapped[str] = mapped_column(String(64))
    #: do_not_call, preferred_channel or no_contact_before
    field: Mapped[str] = mapped_column(String(32))
    old: Mapped[str] = mapped_column(Text, default="")
    new: Mapped[str] = mapped_column(Text, default="")
    reason: Mapped[str] = mapped_column(Text, default="")


class SmsMessage(Base):
    """An SMS that reached the webhook, stored literally with what was done about it.

    Unique on the gateway's ``message_id``: a redelivery finds the first copy.
    Rate limits count these rows, so every instance sees the same counts.
    """

    __tablename__ = "sms_messages"
    __table_args__ = (
        UniqueConstraint("message_id"),
        #: Rate limits: a sender's messages in the last seconds/day.
        Index("ix_sms_messages_from_e164_received_at", "from_e164", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200))
    from_number: Mapped[str] = mapped_column(Text, default="")
    #: ``from_number`` in E.164, or None if it is not a phone number.
    from_e164: Mapped[str | None] = mapped_column(String(20))
    to_number: Mapped[str] = mapped_column(Text, default="")
    text: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    #: callback, already-pending, opt-out, opted-out, rate-limited, invalid-number, number-not-allowed
    action: Mapped[str] = mapped_column(String(32), default="")
    #: Why, in a few words (e.g. which limit was hit).
    detail: Mapped[str] = mapped_column(Text, default="")
    skill: Mapped[str] = mapped_column(String(64), default="")
    followup_id: Mapped[int | None] = mapped_column(ForeignKey("followups.id"))


class SmsOutbox(Base):
    """An SMS to send (the default ``ivr_send_sms`` queues it) and how its delivery goes.

    ``status``: queued (waiting for ``next_attempt_at``), sending (claimed by
    ``locked_by``), sent, or failed (after the last attempt; ``last_error`` says why).
    """

    __tablename__ = "sms_outbox"
    __table_args__ = (
        #: The sender's look for due messages.
        Index("ix_sms_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    to_number: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    #: None until it was sent.
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="queued", server_default="queued")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: The ``ivr serve`` instance sending it now, and since when.
    locked_by: Mapped[str | None] = mapped_column(String(200))
    locked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class OptOut(Base):
    """A number that asked not to be called (an SMS STOP), customer or not yet."""

    __tablename__ = "opt_outs"

    e164: Mapped[str] = mapped_column(String(20), primary_key=True)
    #: sms, api, admin ...
    source: Mapped[str] = mapped_column(String(16), default="sms")
    #: The message that asked for it, if any.
    message_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class ActiveCall(Base):
    """The one agent on a call with a customer right now.

    The primary key is the customer's number, so claiming is an insert: the
    first agent's insert wins and a second agent's fails, atomically on
    every instance sharing the database. The row goes when the call ends.
    """

    __tablename__ = "active_calls"

    e164: Mapped[str] = mapped_column(String(20), primary_key=True)
    #: The agent's code (e.g. 1001).
    agent: Mapped[str] = mapped_column(String(64))
    #: click-to-call or callback
    kind: Mapped[str] = mapped_column(String(32), default="")
    #: The ivr instance that placed the call: it releases the claim.
    instance: Mapped[str] = mapped_column(String(200), default="")
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class SupervisorAction(Base):
    """What a supervisor did to the queues from the wallboard (pause, add, remove), and how it went.

    Written before the AMI action is sent and completed with its result, so an
    action whose answer never came still shows who asked for it.
    """

    __tablename__ = "supervisor_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    #: The supervisor's agent code (from the session).
    supervisor: Mapped[str] = mapped_column(String(64))
    #: pause, unpause, add or remove
    action: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(100), default="")
    #: The agent acted on (code) and the queue interface it stands for.
    agent: Mapped[str] = mapped_column(String(64), default="")
    interface: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    #: pending until Asterisk answered, then ok or failed
    result: Mapped[str] = mapped_column(String(16), default="pending")
    #: Asterisk's message when it refused.
    detail: Mapped[str] = mapped_column(Text, default="")


class Survey(Base):
    """A post-call satisfaction survey: the call it rates and the answers given so far.

    One per rated call (unique ``rated_contact_id``). Each answer is written as
    soon as it is given, so a caller who hangs up keeps what they answered.
    The survey is also a contact of its own (``contact_id``, kind survey) in
    the customer's timeline; the rated call's ``contacts.survey_score`` carries
    the score.
    """

    __tablename__ = "surveys"
    __table_args__ = (
        UniqueConstraint("rated_contact_id"),
        #: "surveyed within min_days": a customer's and a number's surveys by time.
        Index("ix_surveys_customer_id_started_at", "customer_id", "started_at"),
        Index("ix_surveys_e164_started_at", "e164", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The call being rated, and the survey's own contact row (its timeline entry).
    rated_contact_id: Mapped[int] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    e164: Mapped[str | None] = mapped_column(String(20))
    #: Who and what is rated: the agent, the queue ("" for none) and the rated call's kind
    #: (hotline, click-to-call, callback).
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    queue: Mapped[str] = mapped_column(String(100), default="")
    rated_kind: Mapped[str] = mapped_column(String(32), default="")
    language: Mapped[str] = mapped_column(String(16), default="")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now, index=True)
    #: 1 very satisfied ... 5 very dissatisfied; None: not answered.
    score: Mapped[int | None] = mapped_column(SmallInteger)
    buy_again: Mapped[bool | None] = mapped_column(Boolean)
    recommend: Mapped[bool | None] = mapped_column(Boolean)
    #: offered (no answer yet), partial, complete
    status: Mapped[str] = mapped_column(String(16), default="offered")
    #: The recovery follow-up a score of 4 or 5 opened (its id from ivr_open_followup).
    followup_id: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now,
                                                    onupdate=utc_now)


class ComplaintCase(Base):
    """A customer's complaint: who owns it, by when it must be answered, and where it stands.

    Opened from a menu option, an SMS keyword or an agent's ``complaint``
    disposition; ``key`` (unique) makes opening idempotent (the SMS's message
    id, the disposed call's uniqueid). The case is also a contact row
    (``contact_id``, kind complaint) in the customer's timeline.
    """

    __tablename__ = "complaint_cases"
    __table_args__ = (
        UniqueConstraint("key"),
        #: The supervisors' list: open cases by due time.
        Index("ix_complaint_cases_status_response_due_at", "status", "response_due_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    #: menu, sms, disposition, api
    origin: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    e164: Mapped[str | None] = mapped_column(String(20))
    #: The contact the complaint came from (the call, the SMS).
    source_contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    #: The case's own row in the customer's timeline.
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    owner_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    #: Higher goes first.
    priority: Mapped[int] = mapped_column(Integer, default=0)
    #: open, answered, resolved
    status: Mapped[str] = mapped_column(String(16), default="open")
    response_due_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    #: What the customer wrote or the agent noted, literally.
    text: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    followup_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    answered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now,
                                                    onupdate=utc_now)
