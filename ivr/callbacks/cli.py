"""``ivr callbacks list``: pending and overdue callback requests, for admins and team leads.

::

    ivr callbacks list [--overdue | --all] [--limit N] [--config FILE] [--url URL]

Soonest due first, times in the desk's time zone (``[hours] timezone``).
What customers wrote is printed with control characters replaced, so an SMS
cannot drive the admin's terminal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import TextIO

from ivr.callbacks.store import Callback, CallbackStore
from ivr.console import (
    CommandGroups,
    database_options,
    open_database,
    positive_int,
    printable,
    run_safely,
)
from ivr.routing.hours import BusinessHours

__all__ = ["describe", "print_callbacks", "register_cli"]

#: Longest part of a reason or SMS text shown on the one line.
TEXT_CHARS = 60


def _age(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{minutes // 1440}d{minutes % 1440 // 60:02d}h"


def describe(callback: Callback, now: dt.datetime, zone: dt.tzinfo) -> str:
    """One request on one line: id, state, due, number, skill, source, attempts, reason/text."""
    due = callback.due_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if callback.overdue(now):
        due += f" OVERDUE {_age(now - callback.due_at)}"
    state = callback.status
    if callback.status == "dialing" and callback.locked_by:
        state += f" by {callback.locked_by}"
    elif callback.status == "pending" and callback.next_attempt_at > now:
        state += f" (next try {callback.next_attempt_at.astimezone(zone).strftime('%m-%d %H:%M')})"
    words = callback.sms_text or callback.reason
    if len(words) > TEXT_CHARS:
        words = words[:TEXT_CHARS - 1] + "…"
    parts = [f"#{callback.id}", state, f"due {due}", callback.e164, callback.skill or "-", callback.source,
             f"{callback.attempts}/{callback.max_attempts} tries"]
    if callback.last_outcome:
        parts.append(f"last {callback.last_outcome}")
    if words:
        parts.append(repr(words))
    return printable("  ".join(parts))


def print_callbacks(store: CallbackStore, which: str, limit: int, out: TextIO | None = None) -> int:
    """Print the requests ``which`` (open, overdue, all); returns how many were shown."""
    out = out if out is not None else sys.stdout
    now = store.now()
    open_count, overdue_count = store.count_open()
    callbacks = store.list_requests("overdue" if which == "overdue" else "all" if which == "all" else "open",
                                    limit)
    print(f"{open_count} open callback request{'s' if open_count != 1 else ''}, {overdue_count} overdue "
          f"(times in {store.hours.zone.key})", file=out)
    for callback in callbacks:
        print(describe(callback, now, store.hours.zone), file=out)
    if not callbacks:
        print("nothing to show", file=out)
    return len(callbacks)


@run_safely
def _cli_list(args: argparse.Namespace) -> int:
    settings, engine = open_database(args.config, args.url)
    try:
        hours = BusinessHours.parse(settings.hours.timezone, settings.hours.weekly, settings.hours.holidays,
                                    settings.source)
        print_callbacks(CallbackStore(engine, hours, settings.callbacks), args.which, args.limit)
    finally:
        engine.dispose()
    return 0


def register_cli(subparsers: CommandGroups) -> None:
    """Add ``callbacks list`` to the ``ivr`` command."""
    callbacks = subparsers.add_parser("callbacks", help="callback requests (SMS, IVR, API)")
    commands = callbacks.add_subparsers(dest="callbacks_command", required=True)
    listing = commands.add_parser(
        "list", help="pending and overdue callback requests, soonest due first",
        description="Open (pending or being dialled) callback requests, soonest due first, with "
                    "OVERDUE marking those past their due time; --overdue shows only those, --all "
                    "also done, failed, cancelled and expired ones.")
    which = listing.add_mutually_exclusive_group()
    which.add_argument("--overdue", dest="which", action="store_const", const="overdue",
                       help="only requests past their due time")
    which.add_argument("--all", dest="which", action="store_const", const="all",
                       help="every request, whatever its status")
    listing.set_defaults(which="open")
    listing.add_argument("--limit", type=positive_int, default=100, metavar="N",
                         help="show at most N (default: %(default)s)")
    database_options(listing)
    listing.set_defaults(run=_cli_list)
