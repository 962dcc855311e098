"""``ivr sms outbox``: the SMS ivr sends, and how their delivery went.

::

    ivr sms outbox [--failed | --sent | --all] [--limit N] [--config FILE] [--url URL]

Newest first: id, status (queued with its next try, sending by which
instance, sent, failed), attempts, the number, the last error and the text.
Texts and errors are printed with control characters replaced, so nothing
stored can drive the admin's terminal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import TextIO
from zoneinfo import ZoneInfo

from ivr.callbacks.outbox_queue import OutboxEntry, OutboxQueue
from ivr.console import CommandGroups, listing_options, open_database, printable, run_safely

__all__ = ["describe_sms", "print_outbox", "register_cli"]

#: Longest part of a text or error shown on the one line.
TEXT_CHARS = 60


def _short(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "…"


def describe_sms(entry: OutboxEntry, zone: dt.tzinfo) -> str:
    """One message on one line."""
    state = entry.status
    if entry.status == "queued" and entry.next_attempt_at is not None and entry.attempts:
        state += f" (next try {entry.next_attempt_at.astimezone(zone).strftime('%m-%d %H:%M:%S')})"
    elif entry.status == "sending" and entry.locked_by:
        state += f" by {entry.locked_by}"
    elif entry.status == "sent" and entry.sent_at is not None:
        state += f" {entry.sent_at.astimezone(zone).strftime('%Y-%m-%d %H:%M:%S')}"
    parts = [f"#{entry.id}", state, f"{entry.attempts} tries", entry.to_number,
             f"queued {entry.created_at.astimezone(zone).strftime('%Y-%m-%d %H:%M:%S')}"]
    if entry.last_error and entry.status != "sent":
        parts.append(f"error {_short(entry.last_error)!r}")
    parts.append(repr(_short(entry.text)))
    return printable("  ".join(parts))


def print_outbox(queue: OutboxQueue, which: str, limit: int, zone: dt.tzinfo,
                 out: TextIO | None = None) -> int:
    """Print the messages ``which`` (open, failed, sent, all); returns how many were shown."""
    out = out if out is not None else sys.stdout
    counts = queue.counts()
    print(", ".join(f"{count} {status}" for status, count in counts.items()) + " SMS", file=out)
    entries = queue.listing(which, limit)
    for entry in entries:
        print(describe_sms(entry, zone), file=out)
    if not entries:
        print("nothing to show", file=out)
    return len(entries)


@run_safely
def _cli_outbox(args: argparse.Namespace) -> int:
    settings, engine = open_database(args.config, args.url)
    try:
        print_outbox(OutboxQueue(engine), args.which, args.limit, ZoneInfo(settings.hours.timezone))
    finally:
        engine.dispose()
    return 0


def register_cli(subparsers: CommandGroups) -> None:
    """Add ``sms outbox`` to the ``ivr`` command."""
    sms = subparsers.add_parser("sms", help="SMS ivr sends (replies, confirmations)")
    commands = sms.add_subparsers(dest="sms_command", required=True)
    listing = commands.add_parser(
        "outbox", help="SMS waiting to be sent, and how their delivery went",
        description="SMS in the outbox, newest first: queued (with the next try after a failed one), "
                    "being sent, sent, or failed after the last attempt (with Asterisk's error). "
                    "Without an option: those still to be sent.")
    listing_options(listing, {"failed": "only messages that failed for good", "sent": "only sent messages",
                              "all": "every message"})
    listing.set_defaults(run=_cli_outbox)
