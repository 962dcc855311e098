"""Follow-ups: made, done on time or late, still open and overdue; due today for the wallboard.

The ``followups`` table (``ivr.callbacks``): a follow-up is done on time when
it was closed done (reached, unreached after its cadence, or closed by an
agent) by its due time. Every figure here reads it through
:func:`followup_rows` alone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, Subquery, case, func, select

from ivr.db.models import FollowUp
from ivr.db.sql import utc
from ivr.reports.calls import bucket_seconds, bucket_start, local_buckets, local_key, utc_bucket
from ivr.reports.table import Period, Report

__all__ = ["FOLLOWUP_GROUPINGS", "FollowUpsNow", "followup_rows", "followups_now", "followups_report"]

FOLLOWUP_GROUPINGS = ("day", "total")


def followup_rows() -> Subquery:
    """The one place that knows the follow-up table: rows of (created_at, due_at, done_at, state).

    ``state`` is open, done or cancelled; ``done_at`` is when it was done (None otherwise).
    """
    r = FollowUp.__table__.c
    done_at = case((r.state == "done", r.closed_at), else_=None)
    return select(r.created_at.label("created_at"), r.due_at.label("due_at"), done_at.label("done_at"),
                  r.state.label("state")).subquery("followups")


@dataclass(frozen=True, slots=True)
class FollowUpsNow:
    """The wallboard's follow-ups: open and due before the desk's day ends, and open past due."""

    due_today: int
    overdue: int


def followups_now(connection: Connection, now: dt.datetime, end_of_day: dt.datetime) -> FollowUpsNow:
    f = followup_rows().c
    is_open = f.state == "open"
    query = select(func.sum(case((is_open & (f.due_at < utc(end_of_day)) & (f.due_at >= utc(now)), 1),
                                 else_=0)),
                   func.sum(case((is_open & (f.due_at < utc(now)), 1), else_=0)))
    due, overdue = connection.execute(query).one()
    return FollowUpsNow(int(due or 0), int(overdue or 0))



def followups_report(connection: Connection, period: Period, by: str,
                     now: dt.datetime | None = None) -> Report:
    """``ivr report followups``: follow-ups made in the period, by the local day made or in total."""
    now = now or dt.datetime.now(dt.UTC)
    subquery = followup_rows()
    f = subquery.c
    where = [f.created_at >= utc(period.since), f.created_at < utc(period.until)]
    columns = (by, "made", "done_on_time", "done_late", "open", "open_overdue", "cancelled")
    sums = [func.count(), func.sum(case(((f.state == "done") & (f.done_at <= f.due_at), 1), else_=0)),
            func.sum(case(((f.state == "done") & (f.done_at > f.due_at), 1), else_=0)),
            func.sum(case((f.state == "open", 1), else_=0)),
            func.sum(case(((f.state == "open") & (f.due_at < utc(now)), 1), else_=0)),
            func.sum(case((f.state == "cancelled", 1), else_=0))]
    if by == "total":
        row = connection.execute(select(*sums).where(*where)).one()
        return Report("Follow-ups", columns, [("total", *(int(v or 0) for v in row))])
    if by != "day":
        raise ValueError(f"follow-ups are grouped by one of {', '.join(FOLLOWUP_GROUPINGS)}, not {by!r}")
    size = bucket_seconds(period)
    bucket = utc_bucket(connection, f.created_at, size).label("bucket")
    days: dict[str, list[int]] = {day: [0] * 6 for day in local_buckets(period, "day")}
    for row in connection.execute(select(bucket, *sums).where(*where).group_by(bucket)).all():
        day = local_key(bucket_start(row[0], size), period.zone, "day")
        kept = days.setdefault(day, [0] * 6)
        for index, value in enumerate(row[1:]):
            kept[index] += int(value or 0)
    return Report("Follow-ups by day made", columns, [(day, *values) for day, values in days.items()])
