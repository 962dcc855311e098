"""The recorder's SQL, in each database's own dialect, generated from the tables.

The recorder writes through the driver's own cursor (lists, ``executemany``)
for speed; the statements are built here from ``ivr.db.models`` so a column
is declared in one place.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring as _json_string
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import JSON, Column, DateTime, Table, UniqueConstraint

from ivr.db.models import Agent, Contact, ContactEvent, CustomerPhone
from ivr.errors import ConfigError
from ivr.history.records import END_FIELDS, START_FIELDS, ContactEnd, ContactHumanPart, ContactStart
from ivr.routing.router import CallStep

__all__ = ["DriverSQL", "describe", "step_data"]

_contacts = cast(Table, Contact.__table__)
_events = cast(Table, ContactEvent.__table__)
#: JSON column values, spaced as ivr has always stored them.
_db_json = json.JSONEncoder(ensure_ascii=False).encode


def _unique_key(table: Table) -> list[str]:
    """The columns of the table's one unique constraint: what ON CONFLICT names."""
    (constraint,) = [c for c in table.constraints if isinstance(c, UniqueConstraint)]
    return [column.name for column in constraint.columns]


def _constant_default(column: Column[Any]) -> Any:
    """The value a row gets when an insert leaves ``column`` out, as the driver takes it."""
    default = column.default
    if default is not None and default.is_scalar:
        value = default.arg  # type: ignore[attr-defined]
    elif default is not None and default.is_callable and isinstance(column.type, JSON):
        value = default.arg(None)  # type: ignore[attr-defined]  # a fresh empty list or dict
    else:
        raise TypeError(f"contacts.{column.name}: the recorder cannot write its default {default!r}")
    return _db_json(value) if isinstance(column.type, JSON) else value


#: How ContactEnd's fields are named in the contacts table, where the names differ.
_END_COLUMNS = {"reason": "outcome_reason"}


class DriverSQL:
    """The recorder's statements in one database's own SQL and parameter style, generated
    from the tables (``ivr.db.models``): a column is declared there once.

    SQLite stores times as SQLAlchemy's SQLite dialect does (ISO text with
    microseconds, UTC), so the ORM reads back what this writes.
    """

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        if dialect == "sqlite":
            mark, json_mark = "?", "?"
            self.time: Callable[[float], Any] = _sqlite_time
        elif dialect == "postgresql":
            mark, json_mark = "%s", "%s::json"
            self.time = _time
        else:
            raise ConfigError("[database]", "url", f"the contact history cannot be kept in {dialect}",
                              "use sqlite:///FILE or postgresql+psycopg://...")
        contacts, events = _contacts.c, _events.c

        def marks(columns: Sequence[Column[Any]]) -> list[str]:
            return [json_mark if isinstance(c.type, JSON) else mark for c in columns]

        self._start(mark, marks)

        # Events: the contact's primary key looked up by uniqueid.
        (link,) = [c for c in _events.columns if c.foreign_keys]
        (key,) = _contacts.primary_key.columns
        event_columns = [events.seq, events.at, events.kind, events.data]
        self.insert_event = (
            f"INSERT INTO {_events.name} ({link.name}, {', '.join(c.name for c in event_columns)}) "
            f"SELECT {key.name}, {', '.join(marks(event_columns))} FROM {_contacts.name} "
            f"WHERE {contacts.uniqueid.name} = {mark} "
            f"ON CONFLICT ({', '.join(_unique_key(_events))}) DO NOTHING")
        where = f"WHERE {contacts.uniqueid.name} = {mark}"
        self.update_last_step = f"UPDATE {_contacts.name} SET {contacts.last_step.name} = {mark} {where}"

        # An end sets its fields' columns, the status and (when the batch has its last step) last_step.
        ended = [n for n in END_FIELDS if n != "uniqueid"]
        end_columns = [contacts[_END_COLUMNS.get(n, n)] for n in ended]
        end_values = _row(ended, end_columns, self.time)
        settings = ", ".join(f"{c.name} = {m}" for c, m in zip(end_columns, marks(end_columns), strict=True))
        last_step = contacts.last_step.name
        self.update_end = (f"UPDATE {_contacts.name} SET {contacts.status.name} = 'final', {settings}, "
                           f"{last_step} = COALESCE({mark}, {last_step}) {where}")

        def end_row(r: ContactEnd, described: str | None) -> list[Any]:
            values = end_values(r)
            values += (described, r.uniqueid)
            return values

        self.end_row = end_row
        self._start_and_end(mark, marks, end_columns, end_values)
        self._human(mark)

    def _start(self, mark: str, marks: Callable[[Sequence[Column[Any]]], list[str]]) -> None:
        """A start's fields are contacts columns of the same names; then every other column that
        has a default, set to it; and the customer who owns the caller's number (a CRM's
        customers have no row here: NULL), found by the database in the same statement."""
        contacts = _contacts.c
        started = [contacts[n] for n in START_FIELDS]
        defaulted = [c for c in _contacts.columns if c.name not in START_FIELDS and c.default is not None]
        defaults = [_constant_default(c) for c in defaulted]
        inserted = started + defaulted
        start_values = _row(START_FIELDS, started, self.time)

        def start_row(r: ContactStart) -> list[Any]:
            values = start_values(r)
            values += defaults
            values.append(r.caller_e164)
            return values

        self.start_row = start_row
        self.insert_contact = (
            f"INSERT INTO {_contacts.name} "
            f"({', '.join(c.name for c in inserted)}, {contacts.customer_id.name}) "
            f"VALUES ({', '.join(marks(inserted))}, {_customer_of(mark)}) "
            f"ON CONFLICT ({', '.join(_unique_key(_contacts))}) DO NOTHING")

    def _start_and_end(self, mark: str, marks: Callable[[Sequence[Column[Any]]], list[str]],
                       end_columns: Sequence[Column[Any]], end_values: Callable[[Any], list[Any]]) -> None:
        """A call whose start and end are in one batch (a call shorter than the batch interval)
        becomes one row in one statement, as the insert then the update would leave it. Should
        the row be there already (a batch applied twice), only what the end sets is set, as the
        update does."""
        contacts = _contacts.c
        started = [contacts[n] for n in START_FIELDS]
        set_by_end = {c.name for c in end_columns} | {contacts.status.name, contacts.last_step.name}
        defaulted = [c for c in _contacts.columns
                     if c.name not in START_FIELDS and c.name not in set_by_end and c.default is not None]
        defaults = [_constant_default(c) for c in defaulted]
        inserted = [*started, *end_columns, contacts.status, contacts.last_step, *defaulted]
        start_values = _row(START_FIELDS, started, self.time)
        no_step = _constant_default(contacts.last_step)
        assert no_step == "", "the statement below reads an empty last_step as 'no step in this batch'"
        table, last_step = _contacts.name, contacts.last_step.name
        updates = ", ".join(f"{c.name} = excluded.{c.name}" for c in end_columns)
        self.insert_final_contact = (
            f"INSERT INTO {table} ({', '.join(c.name for c in inserted)}, {contacts.customer_id.name}) "
            f"VALUES ({', '.join(marks(inserted))}, {_customer_of(mark)}) "
            f"ON CONFLICT ({', '.join(_unique_key(_contacts))}) DO UPDATE SET "
            f"{contacts.status.name} = 'final', {updates}, "
            f"{last_step} = COALESCE(NULLIF(excluded.{last_step}, ''), {table}.{last_step})")

        def final_row(start: ContactStart, end: ContactEnd, described: str | None) -> list[Any]:
            values = start_values(start)
            values += end_values(end)
            values += ("final", no_step if described is None else described)
            values += defaults
            values.append(start.caller_e164)
            return values

        self.final_row = final_row

    def _human(self, mark: str) -> None:
        """The human part: absolute values; an empty one keeps what is stored. The agent is found
        by code or device, so AMI's MemberName and Interface both name them."""
        c = _contacts.c
        agents = cast(Table, Agent.__table__)

        def keep_empty(column: Column[Any]) -> str:
            return f"{column.name} = COALESCE(NULLIF({mark}, ''), {column.name})"

        def keep_none(column: Column[Any]) -> str:
            return f"{column.name} = COALESCE({mark}, {column.name})"

        # NULLIF: an empty agent (a record that only adds times) must not match an agent whose
        # code or device is empty.
        found = (f"(SELECT {agents.c.id.name} FROM {agents.name} "
                 f"WHERE {agents.c.code.name} = NULLIF({mark}, '') "
                 f"OR {agents.c.device.name} = NULLIF({mark}, '') "
                 f"ORDER BY {agents.c.id.name} LIMIT 1)")
        self.update_human = (
            f"UPDATE {_contacts.name} SET {keep_empty(c.queue_outcome)}, {keep_empty(c.queue)}, "
            f"{c.agent_id.name} = COALESCE({found}, {c.agent_id.name}), "
            f"{keep_none(c.wait_seconds)}, {keep_none(c.talk_seconds)}, {keep_empty(c.hangup_by)}, "
            f"{keep_none(c.answered_at)}, {keep_none(c.ended_at)}, {keep_none(c.duration_seconds)} "
            f"WHERE {c.uniqueid.name} = {mark}")
        time_value = self.time

        def human_row(r: ContactHumanPart) -> tuple[Any, ...]:
            def when(epoch: float | None) -> Any:
                return None if epoch is None else time_value(epoch)

            return (r.queue_outcome, r.queue, r.agent, r.agent, r.wait_seconds, r.talk_seconds, r.hangup_by,
                    when(r.answered_at), when(r.ended_at), r.duration_seconds, r.uniqueid)

        self.human_row = human_row

    def durable(self, cursor: Any) -> Any:
        """Make this connection's commits durable (SQLite's WAL synced at commit): a journal
        segment deleted once committed must not come back after a power loss. Returns the
        setting to restore."""
        if self.dialect != "sqlite":
            return None
        previous = cursor.execute("PRAGMA synchronous").fetchone()[0]
        cursor.execute("PRAGMA synchronous=FULL")
        return previous

    def restore(self, cursor: Any, previous: Any) -> None:
        if previous is not None:
            cursor.execute(f"PRAGMA synchronous={int(previous)}")


def _customer_of(mark: str) -> str:
    """The customer who owns the caller's number (a CRM's customers have no row here: NULL)."""
    phones = cast(Table, CustomerPhone.__table__)
    return f"(SELECT {phones.c.customer_id.name} FROM {phones.name} WHERE {phones.c.e164.name} = {mark})"


def _row(names: Sequence[str], columns: Sequence[Column[Any]],
         time_value: Callable[[float], Any]) -> Callable[[Any], list[Any]]:
    """A record's ``names`` as the driver takes them for ``columns``: times and JSON converted."""
    get = attrgetter(*names)
    conversions = [(index, time_value if isinstance(column.type, DateTime) else _db_json)
                   for index, column in enumerate(columns) if isinstance(column.type, DateTime | JSON)]

    def row(record: Any) -> list[Any]:
        values = list(get(record))
        for index, convert in conversions:
            values[index] = convert(values[index])
        return values

    return row


def _time(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _sqlite_time(epoch: float) -> str:
    seconds, micro = divmod(round(epoch * 1_000_000), 1_000_000)
    return f"{_sqlite_second(seconds)}.{micro:06d}"


@functools.lru_cache(maxsize=256)
def _sqlite_second(seconds: int) -> str:
    """Records of one batch share a handful of seconds: format each once."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


def step_data(step: CallStep) -> str:
    """The event's JSON, as json.dumps would write it, at a third of the cost (C string escaping)."""
    data = (f'{{"menu": {_json_string(step.menu)}, "key": {_json_string(step.key)}, '
            f'"value": {_json_string(step.value)}')
    return data + ("}" if step.confidence is None else f', "confidence": {float(step.confidence)!r}}}')


def describe(step: CallStep) -> str:
    return ":".join(part for part in (step.kind, step.menu, step.key, step.value) if part)
