"""``ivr complaints``: the supervisors' list of complaint cases, and moving a case on.

::

    ivr complaints list [--overdue | --all] [--limit N] [--config FILE] [--url URL]
    ivr complaints update CASE --status answered|resolved [--note TEXT]

Open cases first, soonest due first, OVERDUE marked; times in the desk's
zone. What customers wrote is printed with control characters replaced.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import TextIO

from sqlalchemy import Engine

from ivr.complaints.store import STATUSES, CaseView, list_cases, update_case
from ivr.config import Settings
from ivr.console import (
    CommandGroups,
    database_options,
    listing_options,
    open_database,
    positive_int,
    printable,
    run_safely,
)
from ivr.db.sql import utc_now
from ivr.routing.hours import BusinessHours

__all__ = ["describe", "print_cases", "register_cli"]

TEXT_CHARS = 60


def describe(case: CaseView, now: dt.datetime, zone: dt.tzinfo) -> str:
    """One case on one line: id, status, due (OVERDUE), priority, number, customer, owner, origin, text."""
    due = case.response_due_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if case.overdue:
        late = int((now - case.response_due_at).total_seconds() // 60)
        due += f" OVERDUE {late // 60}h{late % 60:02d}m"
    words = case.text if len(case.text) <= TEXT_CHARS else case.text[:TEXT_CHARS - 1] + "…"
    parts = [f"#{case.id}", case.status, f"due {due}", f"priority {case.priority}", case.e164 or "-",
             case.customer or "-", f"owner {case.owner or '-'}", case.origin]
    if words:
        parts.append(repr(words))
    return printable("  ".join(parts))


def print_cases(engine: Engine, zone: dt.tzinfo, which: str, limit: int, out: TextIO | None = None,
                now: dt.datetime | None = None) -> int:
    """Print the cases ``which`` (open: not resolved; overdue; all); returns how many were shown."""
    out = out if out is not None else sys.stdout
    now = now or utc_now()
    cases = list_cases(engine, now, overdue_only=which == "overdue", include_resolved=which == "all",
                       limit=limit)
    overdue = sum(1 for case in cases if case.overdue)
    print(f"{len(cases)} complaint case{'s' if len(cases) != 1 else ''}, {overdue} overdue "
          f"(times in {getattr(zone, 'key', zone)})", file=out)
    for case in cases:
        print(describe(case, now, zone), file=out)
    if not cases:
        print("nothing to show", file=out)
    return len(cases)


def _zone(settings: Settings) -> dt.tzinfo:
    hours = settings.hours
    return BusinessHours.parse(hours.timezone, hours.weekly, hours.holidays, settings.source).zone


@run_safely
def _cli_list(args: argparse.Namespace) -> int:
    settings, engine = open_database(args.config, args.url)
    try:
        print_cases(engine, _zone(settings), args.which, args.limit)
    finally:
        engine.dispose()
    return 0


@run_safely
def _cli_update(args: argparse.Namespace) -> int:
    _, engine = open_database(args.config, args.url)
    try:
        update_case(engine, args.case, args.status, args.note, utc_now())
    finally:
        engine.dispose()
    print(f"complaint #{args.case} is {args.status}")
    return 0


def register_cli(subparsers: CommandGroups) -> None:
    """Add ``complaints list`` and ``complaints update`` to the ``ivr`` command."""
    complaints = subparsers.add_parser("complaints", help="complaint cases (menus, SMS, dispositions)")
    commands = complaints.add_subparsers(dest="complaints_command", required=True)
    listing = commands.add_parser(
        "list", help="open and overdue complaint cases, soonest due first",
        description="Complaint cases not yet resolved, open ones first and soonest due first, with "
                    "OVERDUE marking open cases past their response time; --overdue shows only those, "
                    "--all also resolved ones.")
    listing_options(listing, {"overdue": "only open cases past their response time",
                              "all": "resolved ones too"})
    listing.set_defaults(run=_cli_list)
    moving = commands.add_parser("update", help="mark a case answered or resolved, with a note")
    moving.add_argument("case", type=positive_int, metavar="CASE", help="the case id (#N in the list)")
    moving.add_argument("--status", required=True, choices=[s for s in STATUSES if s != "open"])
    moving.add_argument("--note", default="", help="what was done (added to the case's notes)")
    database_options(moving)
    moving.set_defaults(run=_cli_update)
