"""Why the database cannot be used, in an admin's words: which file or folder, and the fix.

SQLite says "unable to open database file" for a missing folder, a file or
folder this user may not use, and a path that is a folder; "database is locked"
when another program holds it; "file is not a database" for anything else at
that path. SQLAlchemy wraps each in a traceback. The admin needs the path and
what to do, so :func:`explain` looks at the error and, for SQLite, at the path
itself (walking its folders as this user) and says which it is.

:func:`guard` makes every such error an engine raises, at connect or in the
middle of a command, a :class:`~ivr.errors.ConfigError` naming the setting, so
each ``ivr`` command ends with one ``ivr:`` line. It is for the short-lived
engines of commands: a server's engine keeps SQLAlchemy's own errors, which
the contact recorder answers by journaling. Errors that are about the data
(an integrity error, a bad statement) are left alone: they are bugs or handled
by their callers.
"""

from __future__ import annotations

import os
import pwd
import sqlite3
import stat
from pathlib import Path

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url

from ivr.errors import ConfigError

__all__ = ["explain", "guard", "sqlite_path", "sqlite_reachable"]

#: SQLite's words for "the file cannot be opened or written as this user".
_CANNOT_OPEN = ("unable to open", "readonly", "read-only", "disk i/o error", "cannot open")


def sqlite_path(url: URL) -> Path | None:
    """The absolute path of a SQLite URL's file, or None (not SQLite, in memory, a ``file:`` URI)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(os.path.abspath(database))


def _user() -> str:
    return _name(os.geteuid())


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _grant(path: Path, mode: str, user: str) -> str:
    """How to let ``user`` use ``path``: a chmod if it is theirs, else its owner runs ivr or a chown."""
    owner = path.stat().st_uid
    if owner == os.geteuid():
        return f"it is {user}'s own: chmod u+{mode} {path}"
    return f"run ivr as its owner {_name(owner)}, or give it to {user}: chown {user} {path}"


def sqlite_reachable(path: Path, key: str, writing: bool = True) -> tuple[str, str] | None:
    """(problem, fix) if this user cannot reach, read or write the SQLite file ``path``, else None.

    Walks the folders from ``/`` down, so a missing folder is told apart from
    one this user may not enter (both look "missing" to a plain ``exists()``).
    SQLite in WAL mode creates ``-wal`` and ``-shm`` files beside the database,
    so writing needs the folder writable too.
    """
    user = _user()
    for folder in reversed(path.parents):
        try:
            info = os.stat(folder)
        except FileNotFoundError:
            return (f"the folder {folder} (for the database file {path}) does not exist",
                    f"create it (mkdir -p {path.parent}) or set {key} to a file in an existing folder")
        except PermissionError:
            return (f"user {user} may not enter {folder.parent}, on the way to the database file {path}",
                    _grant(folder.parent, "x", user))
        if not stat.S_ISDIR(info.st_mode):
            return (f"{folder} is a file, not a folder, so the database file {path} cannot be in it",
                    f"set {key} to a file in a folder")
        if not os.access(folder, os.X_OK):
            return (f"user {user} may not enter {folder}, on the way to the database file {path}",
                    _grant(folder, "x", user))
    if path.is_dir():
        return (f"{path} is a folder, not a database file",
                f"set {key} to a file inside it, e.g. sqlite:///{path / 'ivr.db'}")
    if path.exists() and not os.access(path, os.R_OK | (os.W_OK if writing else 0)):
        return (f"user {user} may not {'read and write' if writing else 'read'} the database file {path}",
                _grant(path, "rw", user))
    if writing and not os.access(path.parent, os.W_OK | os.X_OK):
        return (f"user {user} may not create files in {path.parent}, which SQLite needs beside {path} "
                "(its -wal and -shm files)", _grant(path.parent, "wx", user))
    return None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def explain(url: URL | str, error: BaseException, key: str) -> tuple[str, str] | None:
    """(problem, fix) for an error about where the database is or who holds it; None for any other.

    ``key`` is the setting or option the URL came from (``database.url``, ``--url``),
    named in the fix. Passwords never appear: the URL is shown with it hidden.
    """
    url = make_url(url) if isinstance(url, str) else url
    shown = url.render_as_string(hide_password=True)
    message = _first_line(error)
    lowered = message.lower()
    if isinstance(error, sqlite3.Error):
        if isinstance(error, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)):
            return None
        path = sqlite_path(url)
        where = str(path) if path is not None else shown
        if "locked" in lowered:
            return (f"the database file {where} is locked: another program is writing to it",
                    "let it finish or stop it (another `ivr db upgrade` or `ivr customers import`, or a "
                    "sqlite3 shell with a transaction open), then run this again")
        if "not a database" in lowered or "encrypted" in lowered:
            return (f"{where} is not a SQLite database file",
                    f"set {key} to ivr's database, or move {where} away and create a new one with "
                    "`ivr db upgrade`")
        if "malformed" in lowered:
            return (f"the database file {where} is damaged ({message})",
                    f"restore {where} from a backup, or move it away and run `ivr db upgrade`")
        if any(words in lowered for words in _CANNOT_OPEN):
            found = sqlite_reachable(path, key) if path is not None else None
            if found is not None:
                return found
            return (f"SQLite cannot open the database file {where} ({message})",
                    "check that the disk is not full or read-only and that this user may read and write "
                    "the file and its folder")
        return None
    if type(error).__name__ == "OperationalError" and url.get_backend_name() == "postgresql":
        return (f"cannot use the database {shown} ({message})",
                f"check that the PostgreSQL server runs and that {key} names the right host, port, user "
                "and database")
    return None


def guard(engine: Engine, source: str, key: str) -> None:
    """Make ``engine`` raise ConfigError(source, key, problem, fix) for errors :func:`explain` knows."""

    @event.listens_for(engine, "handle_error")
    def _explained(context: ExceptionContext) -> None:
        found = explain(engine.url, context.original_exception, key)
        if found is not None:
            raise ConfigError(source, key, *found) from None
