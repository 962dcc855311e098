"""What every feature's ``ivr ...`` subcommands share: safe terminal text, the database, arguments.

Each feature registers its own subcommands (``register_cli`` in its ``cli``
module); they all need the same few things, kept here once so they behave
alike:

* text that came from callers or a CRM is printed through :func:`printable`,
  so a hostile caller name cannot drive the admin's terminal;
* :func:`open_database` opens the database of ``--config``/``--url`` and
  refuses, by name, a wrong URL, a missing SQLite file (rather than creating an
  empty one) or a schema this ivr does not know; :func:`connect_database` is
  the same without the schema check (``ivr db``). Their engines turn a missing
  folder, a permission error, a locked or foreign file, or a database server
  that does not answer into a ConfigError naming the file and the fix
  (:mod:`ivr.db.problems`), at connect or in the middle of the command;
* :func:`run_safely` turns a :class:`~ivr.errors.ConfigError` into one
  ``ivr: ...`` line and exit status 2, never a traceback;
* argument types (:func:`positive_int`, :func:`parse_when`) and the shared
  options (:func:`database_options`).

Infrastructure: this module imports only :mod:`ivr.config`, :mod:`ivr.errors`,
:mod:`ivr.db` and libraries, so every feature may use it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import re
import sys
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ivr.config import Settings, load_settings
from ivr.db.problems import guard, sqlite_path, sqlite_reachable
from ivr.db.schema import current_revision, head_revision, make_engine
from ivr.db.sql import utc
from ivr.errors import ConfigError

__all__ = [
    "COMMAND_LINE",
    "CommandGroups",
    "connect_database",
    "database_options",
    "database_source",
    "listing_options",
    "open_database",
    "parse_when",
    "positive_int",
    "whole_number",
    "printable",
    "quoted",
    "redacted_url",
    "require_database_file",
    "run_safely",
]

#: The ``source`` of a :class:`~ivr.errors.ConfigError` about an argument.
COMMAND_LINE = "command line"


class CommandGroups(Protocol):
    """What ``register_cli`` gets: the ``ivr`` parser's subcommands (``add_subparsers()``)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


# ------------------------------------------------------------------ safe terminal text

# C0 and C1 controls (ESC, CR, LF, TAB, CSI ...), line/paragraph separators and the
# bidirectional overrides that can make a terminal show text other than what is stored.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """``text`` safe for a terminal: every control character becomes U+FFFD.

    Caller names and notes come from outside; an ESC or CR in them must never reach
    the admin's terminal, where it could recolour, hide or overwrite output.
    """
    return _UNSAFE.sub("\ufffd", str(text))


def quoted(text: str) -> str:
    """A user-supplied value inside a message: repr escapes every control character."""
    return repr(text)


def redacted_url(url: str) -> str:
    """``url`` with its password hidden, for messages (they end up in terminals and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


_FIX_URL = "use sqlite:///path/to/ivr.db or postgresql+psycopg://user@host/dbname"


def database_source(settings: Settings, url: str | None = None) -> tuple[str, str]:
    """Where the database URL in use came from, as (source, key) for a ConfigError.

    ``--url`` wins, then ``IVR_DATABASE_URL`` (the environment overrides the file),
    then the settings file (or the defaults).
    """
    if url:
        return COMMAND_LINE, "--url"
    if os.environ.get("IVR_DATABASE_URL"):
        return "environment variable IVR_DATABASE_URL", "database.url"
    return settings.source, "database.url"


def connect_database(config: str | None, url: str | None) -> tuple[Settings, Engine]:
    """Settings and an engine on the database of ``--config``/``--url``, its schema not checked.

    For ``ivr db``, which creates and migrates the schema. The engine is guarded
    (:func:`ivr.db.problems.guard`): a database it cannot open, a missing folder, a
    permission error or a locked SQLite file is a ConfigError naming the file and the fix.
    """
    settings = load_settings(config)
    chosen = url or settings.database.url
    source, key = database_source(settings, url)
    try:
        engine = make_engine(chosen)
    except (ArgumentError, ValueError, ImportError) as exc:  # the message could echo a password
        raise ConfigError(source, key, f"{redacted_url(chosen)!r} is not a usable database URL "
                          f"({type(exc).__name__})", _FIX_URL) from None
    guard(engine, source, key)
    return settings, engine


def open_database(config: str | None, url: str | None) -> tuple[Settings, Engine]:
    """Settings and an engine on the database of ``--config``/``--url``, at the current schema.

    Refuses (ConfigError) a URL that is wrong, a SQLite file that does not exist (rather
    than creating an empty one) and a database whose schema is not this ivr's; the
    engine is guarded as :func:`connect_database`'s.
    """
    settings, engine = connect_database(config, url)
    source, key = database_source(settings, url)
    try:
        _check_database(engine, source, key, redacted_url(url or settings.database.url))
    except BaseException:
        engine.dispose()
        raise
    return settings, engine


def require_database_file(engine: Engine, source: str, key: str) -> None:
    """ConfigError, saying why, if ``engine``'s SQLite file is not there (SQLite would create it empty)."""
    path = sqlite_path(engine.url)
    if path is None:
        return
    unreachable = sqlite_reachable(path, key, writing=False)  # first: is_file() fails where it cannot look
    if unreachable is not None:
        raise ConfigError(source, key, *unreachable)
    if not path.is_file():
        raise ConfigError(source, key, f"no database file {str(path)!r}",
                          "check the path, or create it with `ivr db upgrade`")


def _check_database(engine: Engine, source: str, key: str, shown: str) -> None:
    """ConfigError unless ``engine`` reaches an existing database at this ivr's schema revision."""
    require_database_file(engine, source, key)
    try:
        revision = current_revision(engine)
    except SQLAlchemyError as exc:  # what the guard does not explain: say what the database said
        orig = getattr(exc, "orig", None)
        problem = (str(orig if orig is not None else exc).splitlines() or ["?"])[0]
        raise ConfigError(source, key, f"cannot open {shown} ({problem})",
                          "check that the database server runs and the URL is right") from None
    head = head_revision()
    if revision != head:
        raise ConfigError(source, key,
                          f"the database {shown} is at schema revision {revision or '(empty)'}, "
                          f"this ivr needs {head}", "run `ivr db upgrade` first")


def database_options(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--url``: the options of every command that opens the database."""
    parser.add_argument("--config", metavar="FILE", help="settings file (default: ./ivr.toml if present)")
    parser.add_argument("--url", metavar="URL", help="database URL (overrides [database] url)")


def listing_options(parser: argparse.ArgumentParser, filters: dict[str, str]) -> None:
    """The options of a ``list`` command: one of ``filters`` (``--NAME``: its help; ``args.which`` is
    NAME, or ``open`` without one), ``--limit N`` and the database options."""
    which = parser.add_mutually_exclusive_group()
    for name, text in filters.items():
        which.add_argument(f"--{name}", dest="which", action="store_const", const=name, help=text)
    parser.set_defaults(which="open")
    parser.add_argument("--limit", type=positive_int, default=100, metavar="N",
                        help="show at most N (default: %(default)s)")
    database_options(parser)


# ------------------------------------------------------------------ running a command


def run_safely(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A wrong input ends the command with its message and exit status 2, never a traceback."""

    @functools.wraps(run)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except ConfigError as exc:
            print(f"ivr: {printable(exc)}", file=sys.stderr)
            return 2

    return wrapped


# ------------------------------------------------------------------ argument types


def whole_number(minimum: int, unit: str = "") -> Callable[[str], int]:
    """An argparse ``type``: a whole number of ``minimum`` or more (``--limit``, ``--older-than``)."""
    what = f"a whole number of {unit}" if unit else "a whole number"
    below = "is negative" if minimum == 0 else f"is not {minimum} or more"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} {below}")
        return value

    return parse


#: A whole number of 1 or more (``--limit``).
positive_int = whole_number(1)


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_FIX = "use YYYY-MM-DD or an ISO date-time such as 2026-11-23T08:00 or 2026-11-23T08:00+08:00"


def parse_when(text: str, option: str, end_of_day: bool = False, zone: dt.tzinfo = dt.UTC) -> dt.datetime:
    """An aware UTC datetime from ``YYYY-MM-DD`` or an ISO date-time (naive means in ``zone``).

    A bare date is the start of that day, or with ``end_of_day`` the start of the next,
    so ``--until 2026-11-30`` includes the 30th. ConfigError names ``option`` otherwise.
    """
    value = text.strip()
    try:
        if _DATE.fullmatch(value):
            day = dt.date.fromisoformat(value)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=zone)
            return utc(start + dt.timedelta(days=1) if end_of_day else start)
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(COMMAND_LINE, option, f"{quoted(text)} is not a date", _DATE_FIX) from None
    return utc(moment if moment.tzinfo is not None else moment.replace(tzinfo=zone))
