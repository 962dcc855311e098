"""Retention of personal data: ``ivr history purge`` clears what callers said, not that they called.

Transcripts, their confidence and recordings of old contacts are cleared (the
recording files deleted, then their references); the contact itself, its
outcome and its menu path stay, so statistics over years remain possible
while what a caller said is kept only as long as the site's retention period.
Without ``apply`` nothing changes: the admin sees the count first.

Files go before the references, in the same run: if the database update then
fails, the next run finds those files missing (and says so), whereas the
other order could leave files nobody knows about. A file already gone is
reported, never an error; a reference that is not a plain file name in the
recordings folder (:mod:`ivr.history.recording_files`) deletes nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from sqlalchemy import Engine, Table, and_, func, or_, select, update
from twisted.logger import Logger

from ivr.db.models import Contact
from ivr.db.sql import utc_now
from ivr.history.recording_files import RefusedRef, recording_entry, recording_file

__all__ = ["PurgeReport", "purge_pii"]

log = Logger(namespace="ivr.history")

_contacts = cast(Table, Contact.__table__)


@dataclass(frozen=True)
class PurgeReport:
    """How many contacts held a transcript or recording reference before ``cutoff``, and what
    became of their recording files."""

    contacts: int
    recordings: int
    cutoff: dt.datetime
    applied: bool
    #: Recording files deleted (or, without ``applied``, that would be).
    files_deleted: int = 0
    #: References whose file was not there (never recorded, or deleted already).
    files_missing: int = 0
    #: References refused: not a plain file name in the recordings folder; nothing deleted.
    files_refused: int = 0

    def summary(self) -> str:
        """What was done (or would be), for the admin."""
        before = self.cutoff.strftime("%Y-%m-%dT%H:%MZ")
        contacts = f"{self.contacts} contact{'s' if self.contacts != 1 else ''}"
        if self.applied:
            return (f"purged {contacts} started before {before}: transcripts and "
                    f"{self.recordings} recording reference(s) cleared; {self._files('deleted')}")
        return (f"would purge {contacts} started before {before} "
                f"({self.recordings} with a recording reference; {self._files('to delete')}); "
                "nothing changed, run again with --yes to purge")

    def _files(self, verb: str) -> str:
        text = f"{self.files_deleted} recording file(s) {verb}"
        if self.files_missing:
            text += f", {self.files_missing} already missing"
        if self.files_refused:
            text += f", {self.files_refused} reference(s) refused (not a file in the recordings folder)"
        return text


def purge_pii(engine: Engine, older_than_days: int, apply: bool,
              now: dt.datetime | None = None, recordings: Path | None = None) -> PurgeReport:
    """Clear transcripts, their confidence and recording refs of contacts started before
    now - ``older_than_days``, deleting their files in the folder ``recordings`` (None: leave
    files alone): retention of personal data, while the contact itself, its outcome and its
    path stay for statistics. With ``apply`` False nothing is changed."""
    cutoff = (now or utc_now()) - dt.timedelta(days=older_than_days)
    c = _contacts.c
    where = and_(c.started_at < cutoff,
                 or_(c.transcript != "", c.transcript_confidence.is_not(None), c.recording_ref != ""))
    with engine.begin() as connection:
        count = connection.execute(select(func.count()).select_from(_contacts).where(where)).scalar() or 0
        refs = list(connection.execute(select(c.recording_ref).where(where, c.recording_ref != "")).scalars())
        files = _Files()
        if recordings is not None:
            for ref in refs:
                files.handle(recordings, ref, apply)
        if apply and count:
            result = connection.execute(update(_contacts).where(where)
                                        .values(transcript="", transcript_confidence=None, recording_ref=""))
            count = result.rowcount
    return PurgeReport(int(count), len(refs), cutoff, apply, files.deleted, files.missing, files.refused)


class _Files:
    """Counts what happens to each recording file."""

    def __init__(self) -> None:
        self.deleted = self.missing = self.refused = 0

    def handle(self, folder: Path, ref: str, delete: bool) -> None:
        try:
            recording_file(folder, ref)  # a plain name, a regular file in the folder
        except RefusedRef as refused:
            log.warn("purge: not deleting recording_ref {ref!r}: {reason}", ref=ref[:80], reason=str(refused))
            self.refused += 1
            return
        except FileNotFoundError:
            self.missing += 1
            return
        if delete:
            try:  # the folder's own entry: a symlink inside goes, never what it points to
                recording_entry(folder, ref).unlink()
            except FileNotFoundError:  # gone meanwhile
                self.missing += 1
                return
        self.deleted += 1
