"""What an inbound SMS does: a callback request, an opt-out, or nothing (stored either way).

:meth:`SmsDesk.receive` handles one message in one write transaction,
serialised per sender (``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped
advisory lock on the sender's number on PostgreSQL), so the rate limits,
counted in the database, hold across instances. The message row is unique on
the gateway's message id: a redelivered copy finds the first and does nothing.
The same transaction makes the message a contact of its customer
(:mod:`ivr.history.sms`), linked to the callback request it asked for.
Blocking: call it from a worker thread.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, Table, func, select, text, update
from twisted.logger import Logger

from ivr.callbacks.store import FollowUpStore
from ivr.config import SmsSettings
from ivr.db.models import SmsMessage
from ivr.db.sql import insert_ignoring, utc, write_transaction
from ivr.dialing.consent import must_not_call, opt_in, opt_out
from ivr.history.sms import SmsContact, record_sms
from ivr.phone import normalise_number
from ivr.plugins.requests import FollowUpOrigin, FollowUpRequest

__all__ = ["ACTED_ON", "InboundSms", "Intent", "SmsDesk", "SmsKeywords", "SmsResult", "normalise_word"]

log = Logger(namespace="ivr.sms")

_messages = cast(Table, SmsMessage.__table__)

#: Actions that count against the sender's rate limits (what was acted on).
ACTED_ON = ("callback", "already-pending", "opt-out", "opt-in", "complaint")

_EDGE = " \t\r\n.,;:!?'\"()[]{}<>-_~。，；：！？、“”‘’（）【】《》"
_WORDS = re.compile(r"[\s.,;:!?。，；：！？、]+")


def normalise_word(word: str) -> str:
    """How keywords are compared: NFKC (full-width digits become digits), case-folded, trimmed."""
    return unicodedata.normalize("NFKC", word).casefold().strip(_EDGE)


@dataclass(frozen=True, slots=True)
class Intent:
    """What a text asks for: ``stop`` (opt out), ``start`` (opt back in) or ``callback`` to ``skill``."""

    kind: str
    skill: str = ""
    keyword: str = ""


class SmsKeywords:
    """Keywords from ``[sms]``: the whole text, or else its first word, is matched."""

    def __init__(self, keywords: Mapping[str, str], stop_words: Sequence[str], default_skill: str,
                 start_words: Sequence[str] = ()) -> None:
        self.skills = {normalise_word(word): skill for word, skill in keywords.items()
                       if normalise_word(word)}
        self.stop_words = frozenset(normalise_word(word) for word in stop_words if normalise_word(word))
        self.start_words = frozenset(normalise_word(word) for word in start_words if normalise_word(word))
        self.default_skill = default_skill

    def classify(self, text: str) -> Intent:
        whole = normalise_word(text)
        first = normalise_word(_WORDS.split(whole, maxsplit=1)[0]) if whole else ""
        for candidate in (whole, first):
            if candidate in self.stop_words:
                return Intent("stop", keyword=candidate)
            if candidate in self.start_words:
                return Intent("start", keyword=candidate)
        for candidate in (whole, first):
            if candidate in self.skills:
                return Intent("callback", self.skills[candidate], candidate)
        return Intent("callback", self.default_skill)


@dataclass(frozen=True, slots=True)
class InboundSms:
    """One message as the gateway sent it (already decoded; text is stored literally)."""

    message_id: str
    from_number: str
    to_number: str
    text: str


@dataclass(frozen=True, slots=True)
class SmsResult:
    """What :meth:`SmsDesk.receive` did. ``reply_to``/``reply_text`` are set when an SMS reply is due."""

    action: str
    duplicate: bool = False
    detail: str = ""
    skill: str = ""
    followup_id: int | None = None
    due_at: dt.datetime | None = None
    reply_to: str | None = None
    reply_text: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The JSON the webhook answers with."""
        return {"status": "ok", "action": self.action, "duplicate": self.duplicate, "detail": self.detail,
                "skill": self.skill or None, "followup_id": self.followup_id,
                "due_at": self.due_at.isoformat() if self.due_at is not None else None}


class SmsDesk:
    """Turns inbound SMS into follow-ups, opt-outs and opt-ins, within the rate limits."""

    def __init__(self, store: FollowUpStore, settings: SmsSettings, region: str,
                 number_allowed: Callable[[str], bool] | None = None,
                 complaint_words: Sequence[str] = ()) -> None:
        self.store = store
        self.settings = settings
        self.region = region
        self.keywords = SmsKeywords(settings.keywords, settings.stop_words, settings.default_skill,
                                    settings.start_words)
        #: The dial policy's number check (premium-rate, foreign ...): a callback to a number it
        #: refuses is never created, and no reply is sent there.
        self.number_allowed = number_allowed
        #: Words that make a message a complaint (``[complaints] sms_keywords``): the complaints
        #: service opens its case and its own follow-up (``ivr_sms_received``), so the desk makes none.
        self.complaint_words = tuple(unicodedata.normalize("NFKC", w).casefold().strip()
                                     for w in complaint_words if w.strip())

    def receive(self, message: InboundSms) -> SmsResult:
        """Store ``message`` and act on it, once per message id."""
        e164 = normalise_number(message.from_number, self.region)
        with write_transaction(self.store.engine) as connection:
            if connection.dialect.name == "postgresql":
                # One sender's messages one at a time, so counting then acting is exact.
                connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                                   {"key": "ivr-sms:" + (e164 or message.from_number[:64])})
            now = self.store.now()
            row_id = connection.execute(
                insert_ignoring(connection, _messages, ["message_id"])
                .values(message_id=message.message_id, from_number=message.from_number, from_e164=e164,
                        to_number=message.to_number, text=message.text, received_at=now, action="",
                        detail="", skill="")
                .returning(_messages.c.id)).scalar()
            if row_id is None:
                return self._duplicate(connection, message.message_id)
            result = self._act(connection, message, e164, now)
            connection.execute(update(_messages).where(_messages.c.id == row_id)
                               .values(action=result.action, detail=result.detail, skill=result.skill,
                                       followup_id=result.followup_id))
            record_sms(connection, SmsContact(
                message.message_id, "inbound", message.from_number, e164, message.text, now,
                service_number=message.to_number, outcome=result.action, outcome_reason=result.detail,
                followup_id=result.followup_id))
        if result.action == "rate-limited":
            log.info("SMS {message_id} from {sender} not acted on: {detail}", message_id=message.message_id,
                     sender=e164, detail=result.detail)
        return result

    def _duplicate(self, connection: Connection, message_id: str) -> SmsResult:
        c = _messages.c
        row = connection.execute(select(c.action, c.detail, c.skill, c.followup_id)
                                 .where(c.message_id == message_id)).one()
        due = None
        if row.followup_id is not None:
            first = self.store.get_in(connection, row.followup_id)
            due = first.due_at
        return SmsResult(row.action, True, row.detail, row.skill, row.followup_id, due)

    def _act(self, connection: Connection, message: InboundSms, e164: str | None,
             now: dt.datetime) -> SmsResult:
        if e164 is None:
            return SmsResult("invalid-number", detail="the sender is not a phone number")
        intent = self.keywords.classify(message.text)
        if intent.kind == "stop":
            cancelled = opt_out(connection, e164, "sms", message.message_id, now)
            log.info("{sender} opted out by SMS; {count} open follow-up(s) cancelled", sender=e164,
                     count=cancelled)
            return self._reply(SmsResult("opt-out", detail=f"{cancelled} open follow-up(s) cancelled"),
                               e164, self.settings.reply_stop)
        if intent.kind == "start":
            undone = opt_in(connection, e164, now)
            log.info("{sender} opted back in by SMS", sender=e164)
            return self._reply(SmsResult("opt-in",
                                         detail="opt-out undone" if undone else "was not opted out"),
                               e164, self.settings.reply_start)
        if must_not_call(connection, e164):
            return SmsResult("opted-out", detail="the sender opted out of calls")
        if self.number_allowed is not None and not self.number_allowed(e164):
            return SmsResult("number-not-allowed", detail="the dial policy does not allow calling the sender")
        limited = self._over_limit(connection, e164, now)
        if limited:
            return SmsResult("rate-limited", detail=limited, skill=intent.skill)
        folded = unicodedata.normalize("NFKC", message.text).casefold()
        if any(word in folded for word in self.complaint_words):
            return self._reply(SmsResult("complaint", detail="a complaint: the complaints service takes it"),
                               e164, self.settings.reply_complaint)
        existing = self.store.open_for_number(connection, e164)
        if existing is not None:
            pending = SmsResult("already-pending", detail="a follow-up of this number is already open",
                                skill=existing.skill, followup_id=existing.id, due_at=existing.due_at)
            return self._reply(pending, e164, self.settings.reply_pending)
        reason = f"SMS keyword {intent.keyword!r}" if intent.keyword else "SMS"
        followup, _created = self.store.create_in(connection, FollowUpRequest(
            e164=e164, origin=FollowUpOrigin.SMS, reason=reason, skill=intent.skill, text=message.text,
            key=message.message_id))
        return self._reply(SmsResult("callback", skill=intent.skill, followup_id=followup.id,
                                     due_at=followup.due_at), e164, self.settings.reply_callback)

    def _over_limit(self, connection: Connection, e164: str, now: dt.datetime) -> str:
        """Why ``e164`` may not be acted on now ("" if it may): counted over every instance's rows."""
        c = _messages.c
        day_ago = now - dt.timedelta(days=1)
        recent = select(func.count(), func.max(c.received_at)).where(
            c.from_e164 == e164, c.action.in_(ACTED_ON), c.received_at > day_ago)
        count, latest = connection.execute(recent).one()
        if count and latest is not None and self.settings.min_interval > 0 \
                and utc(latest) > now - dt.timedelta(seconds=self.settings.min_interval):
            return f"more than 1 SMS in {self.settings.min_interval:g} s"
        if count >= self.settings.max_per_day:
            return f"more than {self.settings.max_per_day} SMS in 24 h"
        return ""

    def _reply(self, result: SmsResult, e164: str, template: str) -> SmsResult:
        """``result`` with an SMS reply to ``e164`` from ``template`` ({due}: local time), if there is one."""
        if not template:
            return result
        due = result.due_at
        shown = due.astimezone(self.store.hours.zone).strftime("%Y-%m-%d %H:%M") if due is not None else ""
        return dataclasses.replace(result, reply_to=e164, reply_text=template.format(due=shown))
