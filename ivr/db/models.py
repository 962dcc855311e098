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
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ivr.db.sql import utc_now

__all__ = ["ActiveCall", "Agent", "Base", "CallbackRequest", "ComplaintCase", "Contact", "ContactEvent",
           "Customer", "CustomerPhone", "OptOut", "SmsMessage", "SmsOutbox", "Survey"]

#: Constraint names that are the same on SQLite and PostgreSQL, so migrations can name them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


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
        #: A customer's and an agent's timeline, newest first.
        Index("ix_contacts_customer_id_started_at", "customer_id", "started_at"),
        Index("ix_contacts_agent_id_started_at", "agent_id", "started_at"),
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
    linkedid: Mapped[str | None] = mapped_column(String(64), index=True)
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
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
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
    queue_outcome: Mapped[str] = mapped_column(String(16), default="", index=True)
    #: Seconds until a person answered: the caller in the queue and the owner's phone ringing, or
    #: (outbound) the customer's phone ringing.
    wait_seconds: Mapped[float | None] = mapped_column(Float)
    #: Seconds the caller talked with the person who answered.
    talk_seconds: Mapped[float | None] = mapped_column(Float)
    #: caller, agent or transfer (app_queue's AgentComplete Reason); "" when unknown.
    hangup_by: Mapped[str] = mapped_column(String(16), default="")
    #: The callback request this contact came from (the SMS that asked, the calls that kept it).
    #: No foreign key: callback_requests.contact_id already points back here, and SQLite
    #: cannot add the second half of such a cycle.
    callback_request_id: Mapped[int | None] = mapped_column(Integer, index=True)
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


class CallbackRequest(Base):
    """A promise to call a customer back (from an SMS, the IVR or the API), until it is kept.

    ``message_id`` is unique, so a webhook delivered five times makes one
    request. Instances claim due requests by setting ``status`` to dialing
    with their name in ``locked_by``; a claim older than the lock timeout is
    taken back, so a crashed instance cannot keep one forever.
    """

    __tablename__ = "callback_requests"
    __table_args__ = (
        UniqueConstraint("message_id"),
        #: claim_due: pending ones whose next attempt is due, best priority first.
        Index("ix_callback_requests_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: sms, ivr or api
    source: Mapped[str] = mapped_column(String(16))
    #: The gateway's (or API client's) id of what asked for it; the idempotency key.
    message_id: Mapped[str | None] = mapped_column(String(200))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    e164: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    skill: Mapped[str] = mapped_column(String(64), default="")
    #: What the customer wrote, literally (shown to the agent).
    sms_text: Mapped[str] = mapped_column(Text, default="")
    #: Higher goes first.
    priority: Mapped[int] = mapped_column(Integer, default=0)
    #: pending, dialing, done, failed, cancelled or expired
    status: Mapped[str] = mapped_column(String(16), default="pending")
    #: The follow-up SLA: called back by then, or it is overdue.
    due_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    #: Not dialled before this (opening time, retry backoff).
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    locked_by: Mapped[str | None] = mapped_column(String(200))
    locked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_outcome: Mapped[str] = mapped_column(String(32), default="")
    #: The contact of the last attempt, in the history.
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now,
                                                    onupdate=utc_now)


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
    callback_id: Mapped[int | None] = mapped_column(ForeignKey("callback_requests.id"))


class SmsOutbox(Base):
    """An SMS waiting for a gateway plugin to send it (the default ``ivr_send_sms``)."""

    __tablename__ = "sms_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    to_number: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    #: None until a gateway sent it; unsent rows are the gateway's queue.
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")


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
