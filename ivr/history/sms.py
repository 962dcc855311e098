"""SMS as contacts: every message in or out is a row of its customer's timeline, next to the calls.

A message is one ``contacts`` row (``channel`` and ``kind`` sms, its text in
``transcript``, ``started_at`` when it was received or queued), written in
the same transaction as the message itself (``sms_messages`` or
``sms_outbox``). Its ``uniqueid`` derives from the gateway's message id (or
the outbox row's id), so a redelivered message can never make a second row.
The customer is the one owning the number, when there is one; an SMS that
asked for a callback carries that request's id, like the calls that keep it.

Blocking: call inside the caller's write transaction, on a worker thread.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, Table, update

from ivr.db.models import Contact
from ivr.db.sql import insert_ignoring
from ivr.history.links import customer_of_number

__all__ = ["SMS_CHANNEL", "SmsContact", "record_sms", "set_sms_outcome", "sms_uniqueid"]

SMS_CHANNEL = "sms"
#: Keys longer than this (or that look like a hash) are hashed, so the uniqueid fits its 64 characters.
_MAX_KEY = 48
_HASHED = "sha256:"

_contacts = cast(Table, Contact.__table__)


def sms_uniqueid(direction: str, key: str) -> str:
    """The contact uniqueid of the message ``key`` (gateway message id, or outbox id).

    Short keys are kept readable (``sms-in:gw-77``); long ones, and any that
    start like a hashed one, become ``sms-in:sha256:<40 hex>``, so two
    different keys never share a uniqueid.
    """
    prefix = "sms-in:" if direction == "inbound" else "sms-out:"
    if len(key) > _MAX_KEY or key.startswith(_HASHED):
        key = _HASHED + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]
    return prefix + key


@dataclass(frozen=True, slots=True)
class SmsContact:
    """One message, as the timeline shows it. ``number`` is the customer's side, as written."""

    key: str
    direction: str
    number: str
    e164: str | None
    text: str
    at: dt.datetime
    #: The service's side: the number the customer texted (inbound), "" when unknown.
    service_number: str = ""
    #: What was done: the SMS desk's action (callback, opt-out, rate-limited ...) or queued.
    outcome: str = ""
    outcome_reason: str = ""
    followup_id: int | None = None
    #: None: the customer owning ``e164``, if any.
    customer_id: int | None = None


def record_sms(connection: Connection, sms: SmsContact) -> int | None:
    """Insert ``sms`` as a contact; its id, or None if that message already has its row."""
    customer = sms.customer_id if sms.customer_id is not None else customer_of_number(connection, sms.e164)
    statement = insert_ignoring(connection, _contacts, ["uniqueid"]).values(
        uniqueid=sms_uniqueid(sms.direction, sms.key), channel=SMS_CHANNEL, kind=SMS_CHANNEL,
        direction=sms.direction, handled_by="", caller_number=sms.number, caller_e164=sms.e164,
        called_number=sms.service_number, customer_id=customer, started_at=sms.at, ended_at=sms.at,
        status="final", transcript=sms.text, outcome=sms.outcome, outcome_reason=sms.outcome_reason,
        followup_id=sms.followup_id)
    inserted = connection.execute(statement.returning(_contacts.c.id)).scalar()
    return int(inserted) if inserted is not None else None


def set_sms_outcome(connection: Connection, direction: str, key: str, outcome: str, reason: str = "") -> None:
    """Say how a message went (an outbound one: queued, then sent or failed) on its contact row."""
    connection.execute(update(_contacts).where(_contacts.c.uniqueid == sms_uniqueid(direction, key))
                       .values(outcome=outcome, outcome_reason=reason))
