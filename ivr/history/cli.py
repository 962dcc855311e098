"""``ivr history``: a customer's timeline, export and purge from the command line.

::

    ivr history SUBJECT [--limit N]               a phone number's or a customer's contacts
    ivr history export --since DATE [--until DATE] --format csv|jsonl [--output FILE]
    ivr history purge --older-than DAYS [--yes]   clear transcripts, delete recordings (retention)

The admin's everyday question is "what happened with this caller", so the
subject comes straight after ``history``; ``export`` and ``purge`` are words
of their own. argparse's subcommands cannot take "any other word" as a
subject, so ``history`` takes its first word and the rest as they are and
hands them to the parser that first word chooses (``show`` spells the
timeline out, for a customer whose external id is ``export``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ivr.console import (
    COMMAND_LINE,
    CommandGroups,
    database_options,
    open_database,
    parse_when,
    positive_int,
    printable,
    run_safely,
    whole_number,
)
from ivr.errors import ConfigError
from ivr.history.export import export_contacts, export_to_file
from ivr.history.purge import purge_pii
from ivr.history.timeline import DEFAULT_LIMIT, timeline

__all__ = ["register_cli"]

_WORDS = "{SUBJECT,export,purge}"
_OVERVIEW = """\
A phone number's or a customer's contacts, or all contacts exported or purged:

  ivr history SUBJECT [--limit N]       a phone number's or a customer's contacts, newest first
  ivr history show SUBJECT [--limit N]  the same, spelled out (a customer whose id is "export")
  ivr history export --since DATE ...   contacts started in a time range, as CSV or JSON lines
  ivr history purge --older-than DAYS   clear transcripts, delete recordings (retention)

Each takes --help, --config FILE (settings) and --url URL (overrides [database] url)."""


@run_safely
def _cli_timeline(args: argparse.Namespace) -> int:
    settings, engine = open_database(args.config, args.url)
    try:
        timeline(engine, args.subject, settings.routing.region, args.limit)
    finally:
        engine.dispose()
    return 0


@run_safely
def _cli_export(args: argparse.Namespace) -> int:
    since = parse_when(args.since, "--since")
    until = parse_when(args.until, "--until", end_of_day=True) if args.until else None
    if until is not None and until <= since:
        raise ConfigError(COMMAND_LINE, "--until", f"{args.until} is not after --since {args.since}",
                          "give an --until later than --since")
    _settings, engine = open_database(args.config, args.url)
    try:
        if not args.output or args.output == "-":
            count = export_contacts(engine, sys.stdout, since, until, args.format)
            sys.stdout.flush()
            target = "stdout"
        else:
            count = export_to_file(engine, Path(args.output), since, until, args.format)
            target = args.output
    finally:
        engine.dispose()
    print(f"exported {count} contact{'s' if count != 1 else ''} to {printable(target)}", file=sys.stderr)
    return 0


@run_safely
def _cli_purge(args: argparse.Namespace) -> int:
    settings, engine = open_database(args.config, args.url)
    folder = settings.recordings.folder
    try:
        report = purge_pii(engine, args.older_than, apply=args.yes, recordings=Path(folder))
    except PermissionError as exc:  # nothing was cleared: the references stay with their files
        raise ConfigError(settings.source, "recordings.folder",
                          f"cannot delete {printable(exc.filename)} ({exc.strerror}); "
                          "no reference was cleared",
                          f"run the purge as a user who may delete files in {printable(folder)} "
                          "(Asterisk's user, or its group with write access)") from None
    finally:
        engine.dispose()
    print(report.summary())
    return 0



def _show_parser(prog: str) -> argparse.ArgumentParser:
    show = argparse.ArgumentParser(
        prog=prog,
        description="Contacts of a phone number (any format; matched in E.164 against callers and "
                    "customers' phones) or of a customer (external id, or '#<id>' for ivr's own id: "
                    "quote it, # starts a shell comment), newest first. An external id is tried before "
                    "a phone number.")
    show.add_argument("subject", metavar="SUBJECT", help="phone number, customer external id, or '#<id>'")
    show.add_argument("--limit", type=positive_int, default=DEFAULT_LIMIT, metavar="N",
                      help="show the newest N contacts (default: %(default)s)")
    database_options(show)
    show.set_defaults(run=_cli_timeline)
    return show


def _export_parser(prog: str) -> argparse.ArgumentParser:
    export = argparse.ArgumentParser(
        prog=prog,
        description="One row per contact started in [--since, --until), oldest first, streamed. "
                    "DATE is YYYY-MM-DD (UTC; --until includes that day) or an ISO date-time "
                    "(no offset means UTC).")
    export.add_argument("--since", required=True, metavar="DATE", help="first day or moment included")
    export.add_argument("--until", metavar="DATE", help="end of the range (default: no end)")
    export.add_argument("--format", required=True, choices=["csv", "jsonl"], help="csv or jsonl")
    export.add_argument("--output", metavar="FILE",
                        help="write here instead of stdout ('-'), via a temporary file renamed at the end")
    database_options(export)
    export.set_defaults(run=_cli_export)
    return export


def _purge_parser(prog: str) -> argparse.ArgumentParser:
    purge = argparse.ArgumentParser(
        prog=prog,
        description="Clears transcript, transcript_confidence and recording_ref of contacts started "
                    "more than DAYS days ago, and deletes their recording files from [recordings] "
                    "folder (a file already missing is reported); the contacts, outcomes and paths "
                    "stay. Without --yes it only counts.")
    purge.add_argument("--older-than", required=True, type=whole_number(0, "days"), metavar="DAYS",
                       help="contacts started more than DAYS days ago")
    purge.add_argument("--yes", action="store_true", help="really clear them (default: only count)")
    database_options(purge)
    purge.set_defaults(run=_cli_purge)
    return purge


class _ByFirstWord:
    """Runs ``ivr history WORD ...``: a command's parser if WORD names one, else ``show`` with WORD
    as the SUBJECT. Each parser exits with status 2 and its own usage on a wrong argument."""

    def __init__(self, history: argparse.ArgumentParser) -> None:
        self.history = history
        self.show = _show_parser(f"{history.prog} [show]")
        self.commands = {"show": self.show, "export": _export_parser(f"{history.prog} export"),
                         "purge": _purge_parser(f"{history.prog} purge")}

    def __call__(self, args: argparse.Namespace) -> int:
        if args.word is None:
            self.history.error(f"the following arguments are required: {_WORDS}")
        parser = self.commands.get(args.word)
        words: list[str] = list(args.rest) if parser is not None else [args.word, *args.rest]
        chosen = (parser or self.show).parse_args(words)
        return int(chosen.run(chosen))


def register_cli(subparsers: CommandGroups) -> None:
    """Add ``history`` (timeline, export, purge) to the ``ivr`` command."""
    history = subparsers.add_parser(
        "history", help="contact history: a customer's timeline, export, purge",
        usage=f"%(prog)s [-h] {_WORDS} ...", description=_OVERVIEW,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    # Optional here only so that a missing word gets the message above, with the usage.
    history.add_argument("word", nargs="?", metavar=_WORDS,
                         help="a phone number, a customer's external id or '#<id>'; or export, purge")
    history.add_argument("rest", nargs=argparse.REMAINDER, metavar="ARGS",
                         help="the subject's options, or the command's (e.g. ivr history export --help)")
    history.set_defaults(run=_ByFirstWord(history))
