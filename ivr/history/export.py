"""Contacts of a time range as CSV or JSON lines: ``ivr history export``.

For reporting tools and spreadsheets: one row per contact, oldest first, with
every column of ``contacts`` (calls and SMS alike: transcript, queue outcome,
wait, talk, agent, disposition, notes, recording reference ...) and the linked
customer's external id and agent's code, streamed from the database so
millions of rows need the memory of one batch. Values are written literally:
a hostile name or note is only ever CSV- or JSON-escaped text, and in CSV a
cell a spreadsheet would run as a formula starts with an apostrophe.
A file is written next to its target and renamed at the end, so a failed
export never leaves half a file where a report expects a whole one.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, TextIO, cast

from sqlalchemy import JSON, DateTime, Engine, Table, select

from ivr.console import COMMAND_LINE
from ivr.db.models import Agent, Contact, Customer
from ivr.db.sql import iso
from ivr.errors import ConfigError

__all__ = ["EXPORT_COLUMNS", "export_contacts", "export_to_file"]

_contacts = cast(Table, Contact.__table__)
_customers = cast(Table, Customer.__table__)
_agents = cast(Table, Agent.__table__)

#: Every column of ``contacts``, in the table's order, read from its metadata (a column added by a
#: migration is exported without a change here), then the linked customer's and agent's codes.
_JOINED = {"customer_external_id": _customers.c.external_id, "agent_code": _agents.c.code}
EXPORT_COLUMNS: tuple[str, ...] = tuple(column.name for column in _contacts.columns) + tuple(_JOINED)
_TIMES = frozenset(column.name for column in _contacts.columns if isinstance(column.type, DateTime))
_JSON = frozenset(column.name for column in _contacts.columns if isinstance(column.type, JSON))


#: What a spreadsheet runs as a formula when a cell starts with it.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?[0-9][0-9 ]*")


def _cell(value: Any) -> Any:
    """A CSV cell: text a spreadsheet would run as a formula (``=HYPERLINK(...)`` as a caller name)
    gets a leading apostrophe, so it opens as the text it is; numbers (``+8613800138000``) stay."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def _export_row(row: Any) -> dict[str, Any]:
    """A row as JSON-ready values: times as ISO 8601 in UTC, JSON columns as their values."""
    record = dict(row._mapping)
    for name in _TIMES:
        record[name] = iso(record[name])
    for name in _JSON:
        if record[name] is None:
            record[name] = []
    return record


def export_contacts(engine: Engine, out: TextIO, since: dt.datetime, until: dt.datetime | None,
                    fmt: str, batch: int = 1000) -> int:
    """Write contacts started in [since, until) to ``out`` as CSV or JSON lines; returns the count.

    Rows are streamed (``yield_per``), so an export of millions of contacts needs the
    memory of one batch. Values are written literally (only CSV/JSON escaping).
    """
    joined = [column.label(name) for name, column in _JOINED.items()]
    statement = (select(*_contacts.columns, *joined)
                 .select_from(_contacts.outerjoin(_customers, _contacts.c.customer_id == _customers.c.id)
                              .outerjoin(_agents, _contacts.c.agent_id == _agents.c.id))
                 .where(_contacts.c.started_at >= since)
                 .order_by(_contacts.c.started_at, _contacts.c.id))
    if until is not None:
        statement = statement.where(_contacts.c.started_at < until)
    count = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(EXPORT_COLUMNS)
    with engine.connect() as connection:
        result = connection.execution_options(yield_per=batch).execute(statement)
        for row in result:
            record = _export_row(row)
            if writer is not None:
                for name in _JSON:
                    record[name] = json.dumps(record[name], ensure_ascii=False, separators=(",", ":"))
                writer.writerow([_cell(record[name]) for name in EXPORT_COLUMNS])
            else:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def export_to_file(engine: Engine, path: Path, since: dt.datetime, until: dt.datetime | None,
                   fmt: str) -> int:
    """:func:`export_contacts` into ``path``: written next to it and renamed at the end, so a
    failed export never leaves half a file. ConfigError (naming ``--output``) if it cannot be written."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=folder)
    except OSError as exc:
        raise ConfigError(COMMAND_LINE, "--output", f"cannot write in {str(folder)!r} "
                          f"({exc.strerror or exc})", "pass a file in an existing, writable folder") from None
    try:
        with open(handle, "w", encoding="utf-8", newline="") as out:
            count = export_contacts(engine, out, since, until, fmt)
        try:
            os.replace(temporary, path)
        except OSError as exc:
            raise ConfigError(COMMAND_LINE, "--output", f"cannot write {str(path)!r} ({exc.strerror or exc})",
                              "pass a writable file name (not a folder)") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return count
