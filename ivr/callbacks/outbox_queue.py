"""The SMS outbox as a delivery queue: claimed by one sender, retried with backoff, sent or failed.

Rows come from :mod:`ivr.callbacks.outbox` (``queued``, due now). A sender
:meth:`OutboxQueue.claim` s due ones (``sending``, locked by its instance,
one attempt counted), tries them, and reports :meth:`~OutboxQueue.sent` or
:meth:`~OutboxQueue.failed`: a failure is queued again after the backoff, or
``failed`` for good after ``max_attempts`` (or at once when retrying cannot
help). Each outcome also goes onto the message's contact row, so the
customer's timeline shows queued -> sent or failed.

Several ``ivr serve`` may share one database, as for callbacks
(:meth:`ivr.callbacks.store.FollowUpStore.claim_due`): ``SELECT ... FOR UPDATE
SKIP LOCKED`` on PostgreSQL, one writer (``BEGIN IMMEDIATE``) on SQLite; a
message left ``sending`` longer than ``lock_timeout`` (its instance died) is
taken again. Blocking: call from a worker thread.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine, Row, Table, and_, func, or_, select, update

from ivr.db.models import SmsOutbox
from ivr.db.sql import utc, utc_now, write_transaction
from ivr.history.sms import set_sms_outcome

__all__ = ["STATUSES", "OutboxEntry", "OutboxQueue", "OutgoingSms", "RetryPolicy"]

_outbox = cast(Table, SmsOutbox.__table__)
STATUSES = ("queued", "sending", "sent", "failed")
#: Longest error text kept (Asterisk's messages are short; a gateway's may not be).
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how late a failed send is tried again."""

    max_attempts: int = 5
    delay: float = 30.0
    factor: float = 2.0
    max_delay: float = 3600.0

    def delay_after(self, attempts: int) -> float:
        """Seconds to wait after failed attempt ``attempts``: ``delay * factor**(attempts-1)``, capped."""
        exponent = min(max(attempts - 1, 0), 64)
        return float(min(self.delay * self.factor ** exponent, self.max_delay))


@dataclass(frozen=True, slots=True)
class OutgoingSms:
    """A claimed message. ``attempt`` counts this one (1 for the first)."""

    id: int
    to_number: str
    text: str
    attempt: int


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One outbox row as ``ivr sms outbox`` shows it."""

    id: int
    to_number: str
    text: str
    status: str
    attempts: int
    last_error: str
    created_at: dt.datetime
    sent_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    locked_by: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> OutboxEntry:
        return cls(row.id, row.to_number, row.text, row.status, row.attempts, row.last_error,
                   utc(row.created_at), utc(row.sent_at) if row.sent_at is not None else None,
                   utc(row.next_attempt_at) if row.next_attempt_at is not None else None, row.locked_by)


class OutboxQueue:
    """Claims, retries and finishes outbox messages in the database."""

    def __init__(self, engine: Engine, policy: RetryPolicy = RetryPolicy(), lock_timeout: float = 300.0,
                 now: Callable[[], dt.datetime] = utc_now) -> None:
        self.engine = engine
        self.policy = policy
        self.lock_timeout = lock_timeout
        self.now = now

    def claim(self, limit: int, instance: str) -> list[OutgoingSms]:
        """Take up to ``limit`` due messages for ``instance`` to send, oldest first."""
        if limit < 1:
            return []
        now = self.now()
        c = _outbox.c
        stale = now - dt.timedelta(seconds=self.lock_timeout)
        due = or_(and_(c.status == "queued", or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now)),
                  and_(c.status == "sending", c.locked_at < stale))
        query = select(c.id).where(due).order_by(c.created_at, c.id).limit(limit)
        with write_transaction(self.engine) as connection:
            if connection.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = [int(value) for value in connection.execute(query).scalars()]
            # A message left "sending" by instances that died with it every time fails for good.
            spent = connection.execute(update(_outbox).where(
                c.id.in_(ids), c.status == "sending", c.attempts >= self.policy.max_attempts)
                .values(status="failed", locked_by=None, locked_at=None,
                        last_error="its senders stopped while sending it, every time")
                .returning(c.id)).scalars().all()
            ids = [i for i in ids if i not in set(spent)]
            if not ids:
                return []
            connection.execute(update(_outbox).where(c.id.in_(ids)).values(
                status="sending", locked_by=instance, locked_at=now, attempts=c.attempts + 1))
            rows = connection.execute(select(c.id, c.to_number, c.text, c.attempts).where(c.id.in_(ids))
                                      .order_by(c.created_at, c.id)).all()
        return [OutgoingSms(row.id, row.to_number, row.text, row.attempts) for row in rows]

    def sent(self, outbox_id: int, instance: str) -> bool:
        """Mark a message ``instance`` holds as sent; False if it no longer holds it."""
        now = self.now()
        with write_transaction(self.engine) as connection:
            if not self._release(connection, outbox_id, instance, status="sent", sent_at=now, last_error="",
                                 next_attempt_at=None):
                return False
            set_sms_outcome(connection, "outbound", str(outbox_id), "sent")
        return True

    def failed(self, outbox_id: int, instance: str, error: str, retry: bool = True) -> str:
        """Record a failed attempt: the new status (queued again, or failed), "" if not held.

        ``retry=False`` (a number that can never be sent to, a text too long)
        fails it at once, whatever attempts are left.
        """
        now = self.now()
        error = error[:MAX_ERROR_CHARS]
        c = _outbox.c
        with write_transaction(self.engine) as connection:
            attempts = connection.execute(select(c.attempts).where(
                c.id == outbox_id, c.status == "sending", c.locked_by == instance)).scalar()
            if attempts is None:
                return ""
            if retry and attempts < self.policy.max_attempts:
                later = now + dt.timedelta(seconds=self.policy.delay_after(attempts))
                self._release(connection, outbox_id, instance, status="queued", last_error=error,
                              next_attempt_at=later)
                set_sms_outcome(connection, "outbound", str(outbox_id), "queued",
                                f"attempt {attempts} failed: {error}")
                return "queued"
            self._release(connection, outbox_id, instance, status="failed", last_error=error,
                          next_attempt_at=None)
            set_sms_outcome(connection, "outbound", str(outbox_id), "failed", error)
        return "failed"

    def put_back(self, outbox_id: int, instance: str) -> bool:
        """Give back a claimed message that was not tried (AMI went down first): no attempt used."""
        c = _outbox.c
        with write_transaction(self.engine) as connection:
            return self._release(connection, outbox_id, instance, status="queued", attempts=c.attempts - 1,
                                 next_attempt_at=self.now())

    @staticmethod
    def _release(connection: Any, outbox_id: int, instance: str, **values: Any) -> bool:
        c = _outbox.c
        result = connection.execute(update(_outbox).where(
            c.id == outbox_id, c.status == "sending", c.locked_by == instance).values(
            locked_by=None, locked_at=None, **values))
        return bool(result.rowcount)

    def listing(self, which: str = "open", limit: int = 100) -> list[OutboxEntry]:
        """Messages ``which`` (open: queued or sending; failed; sent; all), newest first."""
        c = _outbox.c
        query = select(_outbox)
        if which == "open":
            query = query.where(c.status.in_(("queued", "sending")))
        elif which in STATUSES:
            query = query.where(c.status == which)
        elif which != "all":
            raise ValueError(f"unknown outbox selection {which!r}")
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(c.created_at.desc(), c.id.desc()).limit(limit)).all()
        return [OutboxEntry.from_row(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """How many messages have each status."""
        c = _outbox.c
        with self.engine.connect() as connection:
            rows = connection.execute(select(c.status, func.count()).group_by(c.status)).all()
        found = {status: int(count) for status, count in rows}
        return {status: found.get(status, 0) for status in STATUSES}
