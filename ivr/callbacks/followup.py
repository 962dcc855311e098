"""A follow-up as the store hands it out, and how one attempt at it ended."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table

from ivr.db.models import FollowUp as FollowUpRow
from ivr.db.sql import utc

__all__ = ["COLUMNS", "FollowUp", "Outcome"]


class Outcome(enum.StrEnum):
    """How one attempt ended, as the dispatcher reports it to :meth:`FollowUpStore.finish`."""

    #: The customer answered and talked to the agent.
    ANSWERED = "answered"
    #: The customer did not answer, was busy, or the call failed: an attempt of this step used.
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


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return utc(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A follow-up as stored (times in UTC); ``owner`` is the owner's agent code."""

    id: int
    origin: str
    request_key: str | None
    customer_id: int | None
    e164: str
    reason: str
    skill: str
    text: str
    priority: int
    state: str
    outcome: str
    step: int
    cadence_from: dt.datetime
    due_at: dt.datetime
    attempts: int
    max_attempts: int
    next_attempt_at: dt.datetime
    locked_by: str | None
    locked_at: dt.datetime | None
    last_outcome: str
    owner_agent_id: int | None
    owner_until: dt.datetime | None
    escalated_at: dt.datetime | None
    contact_id: int | None
    source_contact_id: int | None
    created_at: dt.datetime
    closed_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: Any) -> FollowUp:
        values = {f.name: getattr(row, f.name) for f in dataclasses.fields(cls)}
        for name in ("cadence_from", "due_at", "next_attempt_at", "created_at"):
            values[name] = utc(values[name])
        for name in ("locked_at", "owner_until", "escalated_at", "closed_at"):
            values[name] = _aware(values[name])
        return cls(**values)

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def dialing(self) -> bool:
        """Claimed by an instance that is calling it right now."""
        return self.is_open and self.locked_by is not None

    def overdue(self, now: dt.datetime) -> bool:
        """Still open after its due time."""
        return self.is_open and self.due_at < now


_table = cast(Table, FollowUpRow.__table__)
#: The columns :meth:`FollowUp.from_row` reads, in a SELECT.
COLUMNS = [_table.c[f.name] for f in dataclasses.fields(FollowUp)]
