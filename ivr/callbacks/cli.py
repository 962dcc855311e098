"""``ivr followups``: open, overdue and escalated follow-ups, what is planned next, and closing one.

::

    ivr followups list [--overdue | --escalated | --all] [--owner CODE] [--limit N]
                       [--config FILE] [--url URL]
    ivr followups plan ID      the steps still planned (each visible before it is due)
    ivr followups close ID     nothing more is planned (an agent or admin decided)

Soonest due first, times in the desk's time zone (``[hours] timezone``). What
customers wrote is printed with control characters replaced, so an SMS cannot
drive the admin's terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
from collections.abc import Iterator
from typing import TextIO

from sqlalchemy import select

from ivr.callbacks.followup import FollowUp
from ivr.callbacks.store import FollowUpStore, Which
from ivr.console import (
    CommandGroups,
    database_options,
    listing_options,
    open_database,
    positive_int,
    printable,
    run_safely,
)
from ivr.db.models import Agent
from ivr.errors import CallbackError, ConfigError
from ivr.routing.hours import BusinessHours

__all__ = ["describe", "print_followups", "register_cli"]

#: Longest part of a reason or SMS text shown on the one line.
TEXT_CHARS = 60


def _age(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{minutes // 1440}d{minutes % 1440 // 60:02d}h"


def _local(when: dt.datetime, zone: dt.tzinfo, form: str = "%Y-%m-%d %H:%M") -> str:
    return when.astimezone(zone).strftime(form)


def describe(followup: FollowUp, now: dt.datetime, zone: dt.tzinfo) -> str:
    """One follow-up on one line: id, state, due, number, skill, origin, step, tries, reason/text."""
    due = _local(followup.due_at, zone)
    if followup.overdue(now):
        due += f" OVERDUE {_age(now - followup.due_at)}"
        if followup.escalated_at is not None:
            due += " ESCALATED"
    state = followup.state if followup.is_open else f"{followup.state} ({followup.outcome})"
    if followup.dialing:
        state = f"dialing by {followup.locked_by}"
    elif followup.is_open and followup.next_attempt_at > now:
        state += f" (next try {_local(followup.next_attempt_at, zone, '%m-%d %H:%M')})"
    words = followup.text or followup.reason
    if len(words) > TEXT_CHARS:
        words = words[:TEXT_CHARS - 1] + "…"
    parts = [f"#{followup.id}", state, f"due {due}", followup.e164, followup.skill or "-", followup.origin,
             f"step {followup.step + 1}", f"{followup.attempts}/{followup.max_attempts} tries"]
    if followup.last_outcome:
        parts.append(f"last {followup.last_outcome}")
    if words:
        parts.append(repr(words))
    return printable("  ".join(parts))


def print_followups(store: FollowUpStore, which: Which, limit: int, out: TextIO | None = None,
                    owner_agent_id: int | None = None) -> int:
    """Print the follow-ups ``which`` (open, overdue, escalated, all); returns how many were shown."""
    out = out if out is not None else sys.stdout
    now = store.now()
    open_count, overdue_count = store.count_open()
    followups = store.list_followups(which, limit, owner_agent_id)
    print(f"{open_count} open follow-up{'s' if open_count != 1 else ''}, {overdue_count} overdue "
          f"(times in {store.hours.zone.key})", file=out)
    for followup in followups:
        print(describe(followup, now, store.hours.zone), file=out)
    if not followups:
        print("nothing to show", file=out)
    return len(followups)


@contextlib.contextmanager
def _opened(args: argparse.Namespace) -> Iterator[FollowUpStore]:
    """The follow-ups of ``--config``/``--url``'s database, closed after the command."""
    settings, engine = open_database(args.config, args.url)
    try:
        hours = BusinessHours.parse(settings.hours.timezone, settings.hours.weekly, settings.hours.holidays,
                                    settings.source)
        yield FollowUpStore(engine, hours, settings.callbacks, settings.followups, source=settings.source)
    finally:
        engine.dispose()


@run_safely
def _cli_list(args: argparse.Namespace) -> int:
    with _opened(args) as store:
        owner = None
        if args.owner is not None:
            with store.engine.connect() as connection:
                owner = connection.execute(select(Agent.id).where(Agent.code == args.owner)).scalar()
            if owner is None:
                raise ConfigError("command line", "--owner", f"no agent {printable(args.owner)!r}",
                                  "give an agent code from `ivr agents list`")
        print_followups(store, args.which, args.limit, owner_agent_id=owner)
    return 0


@run_safely
def _cli_plan(args: argparse.Namespace) -> int:
    with _opened(args) as store:
        followup = store.get(args.id)
        if followup is None:
            raise ConfigError("command line", "ID", f"there is no follow-up {args.id}",
                              "see `ivr followups list`")
        zone = store.hours.zone
        print(describe(followup, store.now(), zone))
        for number, times in enumerate(store.planned(followup), followup.step + 2):
            print(f"  step {number}: from {_local(times.start, zone)}, due {_local(times.due, zone)}")
        if followup.is_open and not store.planned(followup):
            print("  (the last step: done after it)")
    return 0


@run_safely
def _cli_close(args: argparse.Namespace) -> int:
    with _opened(args) as store:
        try:
            closed = store.close(args.id)
        except CallbackError as exc:
            raise ConfigError("command line", "ID", str(exc), "see `ivr followups list --all`") from None
        print(describe(closed, store.now(), store.hours.zone))
    return 0


def register_cli(subparsers: CommandGroups) -> None:
    """Add ``followups list|plan|close`` to the ``ivr`` command."""
    group = subparsers.add_parser("followups",
                                  help="follow-ups: callbacks, leads, recoveries ... until they are done")
    commands = group.add_subparsers(dest="followups_command", required=True)
    listing = commands.add_parser(
        "list", help="open, overdue or escalated follow-ups, soonest due first",
        description="Open follow-ups, soonest due first, with OVERDUE (and ESCALATED) marking those past "
                    "their due time; --overdue or --escalated shows only those, --all also done and "
                    "cancelled ones.")
    listing.add_argument("--owner", metavar="CODE", help="only those of this agent (e.g. 1001)")
    listing_options(listing, {"overdue": "only follow-ups past their due time",
                              "escalated": "only those escalated to supervisors",
                              "all": "every follow-up, whatever its state"})
    listing.set_defaults(run=_cli_list)
    for name, run, text in (("plan", _cli_plan, "the steps still planned for one follow-up"),
                            ("close", _cli_close, "close one follow-up: nothing more is planned")):
        command = commands.add_parser(name, help=text)
        command.add_argument("id", type=positive_int, metavar="ID")
        database_options(command)
        command.set_defaults(run=run)
