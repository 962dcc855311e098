"""Retention of personal data: ``ivr history purge`` clears what callers said, not that they called.

Transcripts, their confidence and recording references of old contacts are
cleared; the contact itself, its outcome and its menu path stay, so statistics
over years remain possible while what a caller said is kept only as long as
the site's retention period. Without ``apply`` nothing changes: the admin sees
the count first.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Engine, Table, and_, func, or_, select, update

from ivr.db.models import Contact
from ivr.db.sql import utc_now

__all__ = ["PurgeReport", "purge_pii"]

_contacts = cast(Table, Contact.__table__)


@dataclass(frozen=True)
class PurgeReport:
    """How many contacts held a transcript or recording reference before ``cutoff``."""

    contacts: int
    recordings: int
    cutoff: dt.datetime
    applied: bool

    def summary(self) -> str:
        """What was done (or would be), for the admin."""
        before = self.cutoff.strftime("%Y-%m-%dT%H:%MZ")
        contacts = f"{self.contacts} contact{'s' if self.contacts != 1 else ''}"
        if self.applied:
            return (f"purged {contacts} started before {before}: transcripts and "
                    f"{self.recordings} recording reference(s) cleared "
                    "(the recording files themselves are not deleted)")
        return (f"would purge {contacts} started before {before} "
                f"({self.recordings} with a recording reference); nothing changed, "
                "run again with --yes to purge")


def purge_pii(engine: Engine, older_than_days: int, apply: bool,
              now: dt.datetime | None = None) -> PurgeReport:
    """Clear transcripts, their confidence and recording refs of contacts started before
    now - ``older_than_days``: retention of personal data, while the contact itself, its
    outcome and its path stay for statistics. With ``apply`` False nothing is changed."""
    cutoff = (now or utc_now()) - dt.timedelta(days=older_than_days)
    c = _contacts.c
    where = and_(c.started_at < cutoff,
                 or_(c.transcript != "", c.transcript_confidence.is_not(None), c.recording_ref != ""))
    with engine.begin() as connection:
        count = connection.execute(select(func.count()).select_from(_contacts).where(where)).scalar() or 0
        recordings = connection.execute(select(func.count()).select_from(_contacts)
                                        .where(where, c.recording_ref != "")).scalar() or 0
        if apply and count:
            result = connection.execute(update(_contacts).where(where)
                                        .values(transcript="", transcript_confidence=None, recording_ref=""))
            count = result.rowcount
    return PurgeReport(int(count), int(recordings), cutoff, apply)
