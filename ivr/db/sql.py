"""Small SQL helpers every feature shares, in one place.

SQLite and PostgreSQL differ in three ways that matter to us: SQLite hands
back naive datetimes (we store UTC), it needs ``BEGIN IMMEDIATE`` to be the
only writer from a transaction's first statement, and each dialect spells
``INSERT ... ON CONFLICT DO NOTHING`` through its own insert construct.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["IN_CHUNK", "chunks", "insert_ignoring", "iso", "utc", "utc_now", "write_transaction"]

#: Values per ``IN (...)`` list: well under SQLite's 32,766 bound parameters.
IN_CHUNK = 500

_Item = TypeVar("_Item")


def utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware UTC datetime: SQLite hands back naive ones (stored as UTC),
    PostgreSQL aware ones in the session's zone."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utc_now() -> dt.datetime:
    """Now, aware, in UTC: the default clock of everything that stores times."""
    return dt.datetime.now(dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    """``value`` in UTC as ISO 8601, or None."""
    return None if value is None else utc(value).isoformat()


def chunks(items: Sequence[_Item], size: int = IN_CHUNK) -> Iterator[Sequence[_Item]]:
    """``items`` in slices of at most ``size``, for ``IN (...)`` lists."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that may write: ``BEGIN IMMEDIATE`` on SQLite, so there it is the only writer
    from its first statement (a deferred one that reads first can fail on upgrading to write in
    WAL mode); an ordinary READ COMMITTED transaction on PostgreSQL. Commits on success."""
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield connection
        connection.commit()


def insert_ignoring(connection: Connection, table: Table, conflict: Sequence[str]) -> Any:
    """``INSERT ... ON CONFLICT (conflict) DO NOTHING`` in the connection's dialect."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(conflict))
