"""Callback requests in the database: created once, claimed by one instance, retried, finished.

Every method here blocks on the database: call it from a worker thread
(``threads.deferToThread``), never on the reactor. Everything that several
``ivr serve`` instances must agree on is decided by the database itself:

- creating by ``message_id`` is ``INSERT ... ON CONFLICT DO NOTHING`` on a
  unique column, so five concurrent copies make one row;
- :meth:`CallbackStore.claim_due` locks what it takes: ``SELECT ... FOR UPDATE
  SKIP LOCKED`` on PostgreSQL (claimers pass each other by), one writer at a
  time (``BEGIN IMMEDIATE``) on SQLite.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import Connection, Engine, Select, Table, and_, func, insert, or_, select, update
from twisted.logger import Logger

from ivr.config import CallbackSettings
from ivr.db.models import CallbackRequest, Contact, Customer, CustomerPhone, OptOut
from ivr.db.sql import insert_ignoring, utc, utc_now, write_transaction
from ivr.dialing.consent import must_not_call
from ivr.errors import CallbackError, CallbackNotClaimed
from ivr.history.links import ContactLinks, link_contact
from ivr.routing.hours import BusinessHours

__all__ = [
    "OPEN_STATUSES",
    "Callback",
    "CallbackStore",
    "NewCallback",
    "Outcome",
    "next_opening",
]

log = Logger(namespace="ivr.callbacks")

_requests = cast(Table, CallbackRequest.__table__)
_opt_outs = cast(Table, OptOut.__table__)
_customers = cast(Table, Customer.__table__)
_phones = cast(Table, CustomerPhone.__table__)
_contacts = cast(Table, Contact.__table__)

#: Requests still to be kept: waiting, or being dialled right now.
OPEN_STATUSES = ("pending", "dialing")


def next_opening(hours: BusinessHours, when: dt.datetime) -> dt.datetime | None:
    """``when`` if the desk is open then, else the next moment it opens (UTC); None if never."""
    return hours.next_opening(when)


class Outcome(enum.StrEnum):
    """How one attempt at a callback ended, as the dispatcher reports it to :meth:`CallbackStore.finish`."""

    #: The customer answered and talked to the agent: done.
    ANSWERED = "answered"
    #: The customer did not answer, was busy, or the call failed: an attempt used, retried with backoff.
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    FAILED = "failed"
    #: No agent answered or none was free, or the dial policy said "not now" (frequency cap):
    #: no attempt used, tried again after ``agent_retry_delay``.
    AGENT_NO_ANSWER = "agent-no-answer"
    AGENT_BUSY = "agent-busy"
    DEFERRED = "deferred"
    #: The dial policy refused the number for good (do-not-call, destination): cancelled.
    REFUSED = "refused"
    CANCELLED = "cancelled"


_CUSTOMER_TRIES = {Outcome.NO_ANSWER, Outcome.BUSY, Outcome.FAILED}
_AGENT_SIDE = {Outcome.AGENT_NO_ANSWER, Outcome.AGENT_BUSY, Outcome.DEFERRED}


@dataclass(frozen=True, slots=True)
class NewCallback:
    """What a new callback request says; ``message_id`` makes creating it idempotent."""

    e164: str
    #: sms, ivr or api
    source: str
    reason: str = ""
    skill: str = ""
    sms_text: str = ""
    message_id: str | None = None
    customer_id: int | None = None
    #: None: ``[callbacks] priority``.
    priority: int | None = None


@dataclass(frozen=True, slots=True)
class Callback:
    """A callback request as stored (times in UTC)."""

    id: int
    source: str
    message_id: str | None
    customer_id: int | None
    e164: str
    reason: str
    skill: str
    sms_text: str
    priority: int
    status: str
    due_at: dt.datetime
    attempts: int
    max_attempts: int
    next_attempt_at: dt.datetime
    locked_by: str | None
    locked_at: dt.datetime | None
    last_outcome: str
    contact_id: int | None
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: Any) -> Callback:
        return cls(row.id, row.source, row.message_id, row.customer_id, row.e164, row.reason, row.skill,
                   row.sms_text, row.priority, row.status, utc(row.due_at), row.attempts, row.max_attempts,
                   utc(row.next_attempt_at), row.locked_by,
                   utc(row.locked_at) if row.locked_at is not None else None, row.last_outcome,
                   row.contact_id, utc(row.created_at))

    def overdue(self, now: dt.datetime) -> bool:
        """Still open after its due time."""
        return self.status in OPEN_STATUSES and self.due_at < now


_COLUMNS = [_requests.c[f.name] for f in dataclasses.fields(Callback)]


class CallbackStore:
    """Callback requests on one engine (SQLite or PostgreSQL), timed by the desk's business hours."""

    def __init__(self, engine: Engine, hours: BusinessHours, settings: CallbackSettings,
                 now: Callable[[], dt.datetime] = utc_now) -> None:
        self.engine = engine
        self.hours = hours
        self.settings = settings
        self._now = now

    def now(self) -> dt.datetime:
        return self._now().astimezone(dt.UTC)

    # -- timing ----------------------------------------------------------------

    def opening(self, when: dt.datetime) -> dt.datetime:
        """The first moment at or after ``when`` the desk is open (``when`` if it never opens)."""
        opening = next_opening(self.hours, when)
        if opening is None:
            log.warn("business hours never open: callbacks are timed as if the desk were always open")
            return when.astimezone(dt.UTC)
        return opening

    def due_times(self, created: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """(first attempt, due): at the next opening, and within the SLA of it."""
        first = self.opening(created)
        return first, first + dt.timedelta(minutes=self.settings.sla_minutes)

    def retry_delay(self, attempts: int) -> dt.timedelta:
        """Backoff after ``attempts`` customer attempts: retry_delay * retry_factor^(attempts-1), capped."""
        s = self.settings
        seconds = s.retry_delay * s.retry_factor ** max(0, attempts - 1)
        return dt.timedelta(seconds=min(seconds, s.retry_max_delay))

    # -- creating ----------------------------------------------------------------

    def create(self, new: NewCallback) -> tuple[Callback, bool]:
        """Store ``new``; returns (the request, True if this call made it).

        With a ``message_id`` it is idempotent: a copy (even a concurrent one,
        on another instance) gets the first copy's request and False.
        """
        with write_transaction(self.engine) as connection:
            return self.create_in(connection, new)

    def create_in(self, connection: Connection, new: NewCallback) -> tuple[Callback, bool]:
        """:meth:`create` inside the caller's write transaction."""
        now = self.now()
        first, due = self.due_times(now)
        values = dict(source=new.source, message_id=new.message_id, customer_id=new.customer_id,
                      e164=new.e164, reason=new.reason, skill=new.skill, sms_text=new.sms_text,
                      priority=self.settings.priority if new.priority is None else new.priority,
                      status="pending", due_at=due, attempts=0, max_attempts=self.settings.max_attempts,
                      next_attempt_at=first, last_outcome="", created_at=now, updated_at=now)
        if new.message_id is None:
            created_id = connection.execute(insert(_requests).values(**values)
                                             .returning(_requests.c.id)).scalar_one()
            return self.get_in(connection, created_id), True
        statement = insert_ignoring(connection, _requests, ["message_id"]).values(**values)
        created_id = connection.execute(statement.returning(_requests.c.id)).scalar()
        if created_id is not None:
            return self.get_in(connection, created_id), True
        row = connection.execute(select(*_COLUMNS).where(_requests.c.message_id == new.message_id)).one()
        return Callback.from_row(row), False

    # -- claiming ----------------------------------------------------------------

    def claim_due(self, limit: int, instance: str) -> list[Callback]:
        """Take up to ``limit`` due requests for ``instance`` to dial: best priority, then oldest.

        Due means pending with its next attempt time reached, or dialing under
        a claim older than ``lock_timeout`` (its instance died). Taken requests
        are ``dialing``, locked by ``instance``; no other claimer can get them
        until :meth:`finish` or the lock timeout. Pending requests more than
        ``expire_hours`` past due are expired on the way.
        """
        if limit < 1:
            return []
        now = self.now()
        c = _requests.c
        stale = now - dt.timedelta(seconds=self.settings.lock_timeout)
        with write_transaction(self.engine) as connection:
            if self.settings.expire_hours > 0:
                cutoff = now - dt.timedelta(hours=self.settings.expire_hours)
                expired = self._lock(connection, select(c.id).where(c.status == "pending", c.due_at < cutoff))
                if expired:
                    connection.execute(update(_requests).where(c.id.in_(expired))
                                       .values(status="expired", last_outcome="expired", updated_at=now))
                    log.warn("{count} callback request(s) expired unanswered", count=len(expired))
            due = or_(and_(c.status == "pending", c.next_attempt_at <= now),
                      and_(c.status == "dialing", c.locked_at < stale))
            ids = self._lock(connection, select(c.id).where(due)
                             .order_by(c.priority.desc(), c.created_at, c.id).limit(limit))
            if not ids:
                return []
            connection.execute(update(_requests).where(c.id.in_(ids))
                               .values(status="dialing", locked_by=instance, locked_at=now, updated_at=now))
            rows = connection.execute(select(*_COLUMNS).where(c.id.in_(ids))
                                      .order_by(c.priority.desc(), c.created_at, c.id)).all()
        return [Callback.from_row(row) for row in rows]

    @staticmethod
    def _lock(connection: Connection, query: Select[Any]) -> list[int]:
        """The ids ``query`` selects, row-locked and skipping rows others hold, on PostgreSQL.

        (On SQLite the whole write transaction already holds the one write lock.)
        """
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return [int(value) for value in connection.execute(query).scalars()]

    # -- finishing ----------------------------------------------------------------

    def finish(self, callback_id: int, outcome: Outcome | str, instance: str,
               contact_id: int | None = None, contact_uniqueid: str | None = None) -> Callback:
        """Record how ``instance``'s attempt at a claimed request ended, and what happens next.

        Answered: done. No-answer, busy, failed: an attempt used; retried after
        the backoff (at the next opening), or failed after ``max_attempts``.
        Agent-side outcomes (no agent answered, deferred): pending again after
        ``agent_retry_delay``, no attempt used. Refused or cancelled: cancelled.
        Raises :class:`CallbackNotClaimed` if ``instance`` does not hold it.

        ``contact_uniqueid`` names the attempt's contact: in the same
        transaction the request points at it and it carries the request's id
        and customer (the chain SMS -> request -> calls in the timeline).
        """
        try:
            result = Outcome(outcome)
        except ValueError:
            raise CallbackError(f"{str(outcome)[:40]!r} is not a callback outcome; use one of "
                                + ", ".join(o.value for o in Outcome)) from None
        now = self.now()
        c = _requests.c
        with write_transaction(self.engine) as connection:
            query = select(*_COLUMNS).where(c.id == callback_id)
            if connection.dialect.name == "postgresql":
                query = query.with_for_update()
            row = connection.execute(query).first()
            if row is None:
                raise CallbackError(f"there is no callback request {callback_id}")
            if row.status != "dialing" or row.locked_by != instance:
                raise CallbackNotClaimed(callback_id, instance, row.locked_by, row.status)
            attempts = row.attempts
            values: dict[str, Any] = {"last_outcome": result.value, "locked_by": None, "locked_at": None,
                                      "updated_at": now}
            if contact_uniqueid is not None and contact_id is None:
                contact_id = self._link_attempt(connection, contact_uniqueid, row)
            if contact_id is not None:
                values["contact_id"] = contact_id
            if result is Outcome.ANSWERED:
                values.update(status="done", attempts=attempts + 1)
            elif result in _CUSTOMER_TRIES:
                attempts += 1
                values["attempts"] = attempts
                if attempts >= row.max_attempts:
                    values["status"] = "failed"
                else:
                    retry_at = self.opening(now + self.retry_delay(attempts))
                    values.update(status="pending", next_attempt_at=retry_at)
            elif result in _AGENT_SIDE:
                later = now + dt.timedelta(seconds=self.settings.agent_retry_delay)
                values.update(status="pending", next_attempt_at=self.opening(later))
            else:
                values["status"] = "cancelled"
            connection.execute(update(_requests).where(c.id == callback_id).values(**values))
            return self.get_in(connection, callback_id)

    @staticmethod
    def _link_attempt(connection: Connection, uniqueid: str, row: Any) -> int | None:
        """Link the attempt's contact to the request ``row`` (and its customer); the contact's id."""
        link_contact(connection, uniqueid, ContactLinks(row.customer_id, callback_request_id=row.id))
        found = connection.execute(select(_contacts.c.id).where(_contacts.c.uniqueid == uniqueid)).scalar()
        return int(found) if found is not None else None

    # -- reading ----------------------------------------------------------------

    def get(self, callback_id: int) -> Callback | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(*_COLUMNS).where(_requests.c.id == callback_id)).first()
        return Callback.from_row(row) if row is not None else None

    def get_in(self, connection: Connection, callback_id: int) -> Callback:
        return Callback.from_row(connection.execute(select(*_COLUMNS).where(_requests.c.id == callback_id))
                                 .one())

    def list_requests(self, which: Literal["open", "overdue", "all"] = "open",
                      limit: int = 100) -> list[Callback]:
        """Open (pending or dialing) requests, only the overdue ones, or all; soonest due first."""
        c = _requests.c
        query = select(*_COLUMNS).order_by(c.due_at, c.id).limit(limit)
        if which in ("open", "overdue"):
            query = query.where(c.status.in_(OPEN_STATUSES))
        if which == "overdue":
            query = query.where(c.due_at < self.now())
        with self.engine.connect() as connection:
            return [Callback.from_row(row) for row in connection.execute(query)]

    def count_open(self) -> tuple[int, int]:
        """(open requests, of which overdue)."""
        c = _requests.c
        with self.engine.connect() as connection:
            row = connection.execute(select(func.count(), func.count().filter(c.due_at < self.now()))
                                     .where(c.status.in_(OPEN_STATUSES))).one()
        return int(row[0]), int(row[1])

    def open_for_number(self, connection: Connection, e164: str) -> Callback | None:
        """The oldest open request for ``e164``, if any."""
        c = _requests.c
        row = connection.execute(select(*_COLUMNS).where(c.e164 == e164, c.status.in_(OPEN_STATUSES))
                                 .order_by(c.created_at, c.id).limit(1)).first()
        return Callback.from_row(row) if row is not None else None

    # -- opting out ----------------------------------------------------------------

    def opt_out(self, e164: str, source: str, message_id: str | None = None) -> int:
        """Record that ``e164`` asked not to be called; returns how many pending requests were cancelled."""
        with write_transaction(self.engine) as connection:
            return self.opt_out_in(connection, e164, source, message_id)

    def opt_out_in(self, connection: Connection, e164: str, source: str, message_id: str | None) -> int:
        """:meth:`opt_out` inside the caller's write transaction.

        The number goes into ``opt_outs`` (customer or not), the customer who
        owns it (if any) gets ``do_not_call``, and its pending requests are
        cancelled. One being dialled right now is left to its dispatcher, which
        asks the dial policy (and so the opt-out) before the customer leg.
        """
        now = self.now()
        connection.execute(insert_ignoring(connection, _opt_outs, ["e164"])
                           .values(e164=e164, source=source, message_id=message_id, created_at=now))
        owners = select(_phones.c.customer_id).where(_phones.c.e164 == e164).scalar_subquery()
        connection.execute(update(_customers).where(_customers.c.id == owners)
                           .values(do_not_call=True, updated_at=now))
        c = _requests.c
        cancelled = connection.execute(update(_requests).where(c.e164 == e164, c.status == "pending")
                                       .values(status="cancelled", last_outcome="opted-out", updated_at=now))
        return int(cancelled.rowcount or 0)

    def is_opted_out(self, e164: str, connection: Connection | None = None) -> bool:
        """True if ``e164`` is in ``opt_outs`` or its customer is do-not-call (a DialPolicy port)."""
        if connection is not None:
            return must_not_call(connection, e164)
        with self.engine.connect() as own:
            return must_not_call(own, e164)

    def customer_for(self, connection: Connection, e164: str) -> int | None:
        """The id of the customer owning ``e164``, if any."""
        value = connection.execute(select(_phones.c.customer_id).where(_phones.c.e164 == e164)).scalar()
        return int(value) if value is not None else None
