"""Follow-ups in the database: created once, planned by cadence, claimed by one instance, kept or closed.

Every method here blocks on the database: call it from a worker thread
(``threads.deferToThread``), never on the reactor. Everything that several
``ivr serve`` instances must agree on is decided by the database itself:

- creating by ``request_key`` is ``INSERT ... ON CONFLICT DO NOTHING`` on a
  unique column, so five concurrent copies make one row;
- :meth:`FollowUpStore.claim_due` locks what it takes: ``SELECT ... FOR UPDATE
  SKIP LOCKED`` on PostgreSQL (claimers pass each other by), one writer at a
  time (``BEGIN IMMEDIATE``) on SQLite.

Nothing expires: an open follow-up stays open until it is reached, its
cadence runs out, the customer opts out or an agent closes it. Overdue ones
escalate (:meth:`FollowUpStore.escalate_overdue`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, Literal, cast

from sqlalchemy import Connection, Engine, Select, Table, and_, func, insert, not_, or_, select, update
from twisted.logger import Logger

from ivr.callbacks.assign import Claim, FreeAgent, OwnerState, choose_agent
from ivr.callbacks.cadence import Cadence, StepTimes, parse_cadences
from ivr.callbacks.followup import COLUMNS, FollowUp, Outcome
from ivr.config import CallbackSettings, FollowUpSettings
from ivr.db.models import Agent, Contact, Customer, CustomerPhone
from ivr.db.models import FollowUp as FollowUpRow
from ivr.db.sql import insert_ignoring, utc_now, write_transaction
from ivr.errors import CallbackError, CallbackNotClaimed, ConfigError
from ivr.history.links import ContactLinks, link_contact
from ivr.plugins.requests import FollowUpRequest
from ivr.routing.hours import BusinessHours

__all__ = ["FollowUpStore", "Which"]

log = Logger(namespace="ivr.followups")

_followups = cast(Table, FollowUpRow.__table__)
_agents = cast(Table, Agent.__table__)
_customers = cast(Table, Customer.__table__)
_phones = cast(Table, CustomerPhone.__table__)
_contacts = cast(Table, Contact.__table__)

_CUSTOMER_TRIES = {Outcome.NO_ANSWER, Outcome.BUSY, Outcome.FAILED}
_AGENT_SIDE = {Outcome.AGENT_NO_ANSWER, Outcome.AGENT_BUSY, Outcome.DEFERRED}
#: How many due ones a claim looks at per free agent (some wait for an owner who is busy).
_LOOK_AHEAD = 4

Which = Literal["open", "overdue", "escalated", "all"]


class FollowUpStore:
    """Follow-ups on one engine (SQLite or PostgreSQL), timed by the desk's business hours."""

    def __init__(self, engine: Engine, hours: BusinessHours, settings: CallbackSettings,
                 followups: FollowUpSettings | None = None, now: Callable[[], dt.datetime] = utc_now,
                 source: str = "defaults") -> None:
        self.engine = engine
        self.hours = hours
        self.settings = settings
        self.followups = followups or FollowUpSettings()
        self._now = now
        try:
            self.cadences = parse_cadences(self.followups.cadence)
        except ValueError as exc:
            raise ConfigError(source, "followups.cadence", str(exc),
                              'write origin = "2bh 24h-48h ..." for the origins listed') from None

    def now(self) -> dt.datetime:
        return self._now().astimezone(dt.UTC)

    # -- timing ----------------------------------------------------------------

    def opening(self, when: dt.datetime) -> dt.datetime:
        """The first moment at or after ``when`` the desk is open (``when`` if it never opens)."""
        opening = self.hours.next_opening(when)
        if opening is None:
            log.warn("business hours never open: follow-ups are timed as if the desk were always open")
            return when.astimezone(dt.UTC)
        return opening

    def cadence(self, origin: str) -> Cadence:
        return self.cadences.get(origin) or self.cadences["api"]

    def retry_delay(self, attempts: int) -> dt.timedelta:
        """Backoff after ``attempts`` customer attempts: retry_delay * retry_factor^(attempts-1), capped."""
        s = self.settings
        seconds = s.retry_delay * s.retry_factor ** max(0, attempts - 1)
        return dt.timedelta(seconds=min(seconds, s.retry_max_delay))

    def planned(self, followup: FollowUp) -> list[StepTimes]:
        """The steps still to come after the current one (what will happen if nobody closes it)."""
        if not followup.is_open:
            return []
        return self.cadence(followup.origin).plan(self.hours, followup.cadence_from, followup.step + 1)

    def _owner_until(self, owner: int | None, start: dt.datetime) -> dt.datetime | None:
        if owner is None or self.followups.owner_window <= 0:
            return None
        return start + dt.timedelta(seconds=self.followups.owner_window)

    # -- creating ----------------------------------------------------------------

    def create(self, request: FollowUpRequest) -> tuple[FollowUp, bool]:
        """Store ``request``; returns (the follow-up, True if this call made it).

        With a ``key`` it is idempotent: a copy (even a concurrent one, on
        another instance) gets the first copy's follow-up and False.
        """
        with write_transaction(self.engine) as connection:
            return self.create_in(connection, request)

    def create_in(self, connection: Connection, request: FollowUpRequest) -> tuple[FollowUp, bool]:
        """:meth:`create` inside the caller's write transaction."""
        now = self.now()
        customer = request.customer_id if request.customer_id is not None else self.customer_for(
            connection, request.e164)
        owner = request.owner_agent_id
        if owner is None and customer is not None:
            owner = connection.execute(select(_customers.c.owner_agent_id)
                                       .where(_customers.c.id == customer)).scalar()
        start_from = max(request.start_at, now) if request.start_at is not None else now
        times = self.cadence(request.origin).times(self.hours, start_from, 0)
        due = max(request.due_at, times.start) if request.due_at is not None else times.due
        values = dict(origin=str(request.origin), request_key=request.key, customer_id=customer,
                      e164=request.e164, reason=request.reason, skill=request.skill, text=request.text,
                      priority=self.settings.priority if request.priority is None else request.priority,
                      state="open", outcome="", step=0, cadence_from=start_from, due_at=due, attempts=0,
                      max_attempts=self.settings.max_attempts, next_attempt_at=times.start, last_outcome="",
                      owner_agent_id=owner, owner_until=self._owner_until(owner, times.start),
                      source_contact_id=request.contact_id, created_at=now, updated_at=now)
        if request.key is None:
            created_id = connection.execute(insert(_followups).values(**values)
                                             .returning(_followups.c.id)).scalar_one()
            return self.get_in(connection, created_id), True
        statement = insert_ignoring(connection, _followups, ["request_key"]).values(**values)
        created_id = connection.execute(statement.returning(_followups.c.id)).scalar()
        if created_id is not None:
            return self.get_in(connection, created_id), True
        row = connection.execute(select(*COLUMNS).where(_followups.c.request_key == request.key)).one()
        return FollowUp.from_row(row), False

    # -- claiming ----------------------------------------------------------------

    def claim_due(self, free: Sequence[FreeAgent], instance: str) -> list[Claim]:
        """Give due follow-ups to the ``free`` agents: owners first, then the skill pool.

        Due means open with its next attempt time reached and no claim, or
        claimed longer than ``lock_timeout`` ago (its instance died). One whose
        owner is in their head start (``owner_window``) and not away waits for
        the owner; after it, any free agent with the skill (any free agent if
        none has it) takes it. Taken ones are locked by ``instance`` until
        :meth:`finish` or the lock timeout.
        """
        if not free:
            return []
        now = self.now()
        c = _followups.c
        stale = now - dt.timedelta(seconds=self.settings.lock_timeout)
        due = and_(c.state == "open", or_(and_(c.locked_by.is_(None), c.next_attempt_at <= now),
                                          c.locked_at < stale))
        # Those waiting for a present owner who is not free are left out here, so a long line of
        # them cannot hide the ones the free agents could take.
        owner_busy = select(_agents.c.id).where(
            _agents.c.id == c.owner_agent_id, _agents.c.active.is_(True), _agents.c.away.is_(False),
            _agents.c.code.not_in([agent.code for agent in free])).exists()
        due = and_(due, not_(and_(c.owner_until.is_not(None), c.owner_until > now, owner_busy)))
        with write_transaction(self.engine) as connection:
            ids = self._lock(connection, select(c.id).where(due)
                             .order_by(c.priority.desc(), c.created_at, c.id)
                             .limit(len(free) * _LOOK_AHEAD))
            if not ids:
                return []
            rows = connection.execute(
                select(*COLUMNS, _agents.c.code.label("owner_code"), _agents.c.away.label("owner_away"),
                       _agents.c.active.label("owner_active"))
                .select_from(_followups.outerjoin(_agents, _agents.c.id == c.owner_agent_id))
                .where(c.id.in_(ids)).order_by(c.priority.desc(), c.created_at, c.id)).all()
            left = list(free)
            claims: list[Claim] = []
            for row in rows:
                followup = FollowUp.from_row(row)
                owner = OwnerState(row.owner_code, bool(row.owner_away), bool(row.owner_active)) \
                    if row.owner_code is not None else None
                agent = choose_agent(followup, owner, left, now)
                if agent is None:
                    continue
                left.remove(agent)
                claims.append(Claim(dataclasses.replace(followup, locked_by=instance, locked_at=now),
                                    agent.code))
                if not left:
                    break
            if claims:
                connection.execute(update(_followups).where(c.id.in_([claim.followup.id for claim in claims]))
                                   .values(locked_by=instance, locked_at=now, updated_at=now))
        return claims

    @staticmethod
    def _lock(connection: Connection, query: Select[Any]) -> list[int]:
        """The ids ``query`` selects, row-locked and skipping rows others hold, on PostgreSQL.

        (On SQLite the whole write transaction already holds the one write lock.)
        """
        if connection.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return [int(value) for value in connection.execute(query).scalars()]

    # -- finishing ----------------------------------------------------------------

    def finish(self, followup_id: int, outcome: Outcome | str, instance: str,
               contact_id: int | None = None, contact_uniqueid: str | None = None) -> FollowUp:
        """Record how ``instance``'s attempt at a claimed follow-up ended, and plan what comes next.

        Answered: done (reached), or for the origins in ``continue_after_reached``
        the next step of the cadence. No-answer, busy, failed: an attempt of
        the step used; retried after the backoff (at the next opening), and
        after ``max_attempts`` the next step, or done (unreached) after the
        last. Agent-side outcomes: again after ``agent_retry_delay``, no attempt
        used. Refused or cancelled: cancelled. Raises
        :class:`CallbackNotClaimed` if ``instance`` does not hold it.

        ``contact_uniqueid`` names the attempt's contact: in the same
        transaction the follow-up points at it and it carries the follow-up's
        id and customer (the chain SMS -> follow-up -> calls in the timeline).
        """
        try:
            result = Outcome(outcome)
        except ValueError:
            raise CallbackError(f"{str(outcome)[:40]!r} is not an attempt outcome; use one of "
                                + ", ".join(o.value for o in Outcome)) from None
        now = self.now()
        c = _followups.c
        with write_transaction(self.engine) as connection:
            query = select(*COLUMNS).where(c.id == followup_id)
            if connection.dialect.name == "postgresql":
                query = query.with_for_update()
            row = connection.execute(query).first()
            if row is None:
                raise CallbackError(f"there is no follow-up {followup_id}")
            if row.state != "open" or row.locked_by != instance:
                raise CallbackNotClaimed(followup_id, instance, row.locked_by, row.state)
            followup = FollowUp.from_row(row)
            values: dict[str, Any] = {"last_outcome": result.value, "locked_by": None, "locked_at": None,
                                      "updated_at": now}
            if contact_uniqueid is not None and contact_id is None:
                contact_id = self._link_attempt(connection, contact_uniqueid, followup)
            if contact_id is not None:
                values["contact_id"] = contact_id
            values.update(self._next(followup, result, now))
            connection.execute(update(_followups).where(c.id == followup_id).values(**values))
            return self.get_in(connection, followup_id)

    def _next(self, followup: FollowUp, result: Outcome, now: dt.datetime) -> dict[str, Any]:
        """The columns that say what happens after an attempt that ended with ``result``."""
        if result is Outcome.ANSWERED:
            if followup.origin in self.followups.continue_after_reached:
                return self._advance(followup, now, "reached")
            return {"attempts": followup.attempts + 1, **self._close(now, "done", "reached")}
        if result in _CUSTOMER_TRIES:
            attempts = followup.attempts + 1
            if attempts >= followup.max_attempts:
                return self._advance(followup, now, "unreached")
            return {"attempts": attempts, "next_attempt_at": self.opening(now + self.retry_delay(attempts))}
        if result in _AGENT_SIDE:
            later = now + dt.timedelta(seconds=self.settings.agent_retry_delay)
            return {"next_attempt_at": self.opening(later)}
        return self._close(now, "cancelled", "refused" if result is Outcome.REFUSED else "cancelled")

    def _advance(self, followup: FollowUp, now: dt.datetime, ending: str) -> dict[str, Any]:
        """The next step of the cadence, or done with ``ending`` after the last one."""
        cadence = self.cadence(followup.origin)
        step = followup.step + 1
        if step >= len(cadence.steps):
            return self._close(now, "done", ending)
        times = cadence.times(self.hours, followup.cadence_from, step)
        start = max(times.start, self.opening(now))
        return {"step": step, "attempts": 0, "next_attempt_at": start, "due_at": max(times.due, start),
                "owner_until": self._owner_until(followup.owner_agent_id, start), "escalated_at": None}

    @staticmethod
    def _close(now: dt.datetime, state: str, outcome: str) -> dict[str, Any]:
        return {"state": state, "outcome": outcome, "closed_at": now}

    @staticmethod
    def _link_attempt(connection: Connection, uniqueid: str, followup: FollowUp) -> int | None:
        """Link the attempt's contact to ``followup`` (and its customer); the contact's id."""
        link_contact(connection, uniqueid, ContactLinks(followup.customer_id, followup_id=followup.id))
        found = connection.execute(select(_contacts.c.id).where(_contacts.c.uniqueid == uniqueid)).scalar()
        return int(found) if found is not None else None

    def close(self, followup_id: int, outcome: str = "closed") -> FollowUp:
        """An agent or admin closes an open follow-up: nothing more is planned (``closed``)."""
        now = self.now()
        c = _followups.c
        with write_transaction(self.engine) as connection:
            row = connection.execute(select(c.state).where(c.id == followup_id)).first()
            if row is None:
                raise CallbackError(f"there is no follow-up {followup_id}")
            if row.state != "open":
                raise CallbackError(f"follow-up {followup_id} is already {row.state}")
            connection.execute(update(_followups).where(c.id == followup_id)
                               .values(updated_at=now, **self._close(now, "done", outcome)))
            return self.get_in(connection, followup_id)

    # -- escalating ----------------------------------------------------------------

    def escalate_overdue(self) -> list[FollowUp]:
        """Mark the open follow-ups overdue for longer than ``escalate_after`` as escalated; those."""
        now = self.now()
        c = _followups.c
        cutoff = now - dt.timedelta(seconds=self.followups.escalate_after)
        with write_transaction(self.engine) as connection:
            ids = self._lock(connection, select(c.id).where(c.state == "open", c.escalated_at.is_(None),
                                                            c.due_at < cutoff))
            if not ids:
                return []
            connection.execute(update(_followups).where(c.id.in_(ids))
                               .values(escalated_at=now, updated_at=now))
            rows = connection.execute(select(*COLUMNS).where(c.id.in_(ids)).order_by(c.due_at, c.id)).all()
        return [FollowUp.from_row(row) for row in rows]

    # -- reading ----------------------------------------------------------------

    def get(self, followup_id: int) -> FollowUp | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(*COLUMNS).where(_followups.c.id == followup_id)).first()
        return FollowUp.from_row(row) if row is not None else None

    def get_in(self, connection: Connection, followup_id: int) -> FollowUp:
        return FollowUp.from_row(connection.execute(select(*COLUMNS).where(_followups.c.id == followup_id))
                                 .one())

    def list_followups(self, which: Which = "open", limit: int = 100,
                       owner_agent_id: int | None = None) -> list[FollowUp]:
        """Open, overdue, escalated or all follow-ups (of one owner if given); soonest due first."""
        c = _followups.c
        query = select(*COLUMNS).order_by(c.due_at, c.id).limit(limit)
        if which != "all":
            query = query.where(c.state == "open")
        if which == "overdue":
            query = query.where(c.due_at < self.now())
        if which == "escalated":
            query = query.where(c.escalated_at.is_not(None))
        if owner_agent_id is not None:
            query = query.where(c.owner_agent_id == owner_agent_id)
        with self.engine.connect() as connection:
            return [FollowUp.from_row(row) for row in connection.execute(query)]

    def count_open(self) -> tuple[int, int]:
        """(open follow-ups, of which overdue)."""
        c = _followups.c
        with self.engine.connect() as connection:
            row = connection.execute(select(func.count(), func.count().filter(c.due_at < self.now()))
                                     .where(c.state == "open")).one()
        return int(row[0]), int(row[1])

    def overdue_by_owner(self) -> list[tuple[str, str, int]]:
        """(owner's agent code or "", skill, how many) of the overdue open follow-ups: for /metrics."""
        c = _followups.c
        # Grouped by the plain columns: PostgreSQL would see two COALESCE(..., $n) as different.
        query = (select(_agents.c.code, c.skill, func.count())
                 .select_from(_followups.outerjoin(_agents, _agents.c.id == c.owner_agent_id))
                 .where(c.state == "open", c.due_at < self.now())
                 .group_by(_agents.c.code, c.skill))
        with self.engine.connect() as connection:
            return [(code or "", str(skill), int(count)) for code, skill, count in connection.execute(query)]

    def open_for_number(self, connection: Connection, e164: str) -> FollowUp | None:
        """The oldest open follow-up for ``e164``, if any."""
        c = _followups.c
        row = connection.execute(select(*COLUMNS).where(c.e164 == e164, c.state == "open")
                                 .order_by(c.created_at, c.id).limit(1)).first()
        return FollowUp.from_row(row) if row is not None else None

    def customer_for(self, connection: Connection, e164: str) -> int | None:
        """The id of the customer owning ``e164``, if any."""
        value = connection.execute(select(_phones.c.customer_id).where(_phones.c.e164 == e164)).scalar()
        return int(value) if value is not None else None
