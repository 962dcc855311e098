"""Contacts of a time range as CSV or JSON lines: ``ivr history export``.

For reporting tools and spreadsheets: one row per contact, oldest first,
streamed from the database so millions of rows need the memory of one batch.
A file is written next to its target and renamed at the end, so a failed
export never leaves half a file where a report expects a whole one.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any, TextIO, cast

from sqlalchemy import Engine, Table, select

from ivr.console import COMMAND_LINE
from ivr.db.models import Contact, Customer
from ivr.db.sql import iso
from ivr.errors import ConfigError

__all__ = ["EXPORT_COLUMNS", "export_contacts", "export_to_file"]

EXPORT_COLUMNS = ("uniqueid", "started_at", "ended_at", "kind", "direction", "status", "outcome",
                  "outcome_reason", "caller_number", "caller_e164", "caller_name", "queue", "dtmf",
                  "ivr_path", "duration_seconds", "customer_external_id")

_contacts = cast(Table, Contact.__table__)
_customers = cast(Table, Customer.__table__)


def _export_row(row: Any) -> dict[str, Any]:
    return {
        "uniqueid": row.uniqueid, "started_at": iso(row.started_at), "ended_at": iso(row.ended_at),
        "kind": row.kind, "direction": row.direction, "status": row.status, "outcome": row.outcome,
        "outcome_reason": row.outcome_reason, "caller_number": row.caller_number,
        "caller_e164": row.caller_e164, "caller_name": row.caller_name, "queue": row.queue,
        "dtmf": row.dtmf, "ivr_path": row.ivr_path if row.ivr_path is not None else [],
        "duration_seconds": row.duration_seconds, "customer_external_id": row.customer_external_id,
    }


def export_contacts(engine: Engine, out: TextIO, since: dt.datetime, until: dt.datetime | None,
                    fmt: str, batch: int = 1000) -> int:
    """Write contacts started in [since, until) to ``out`` as CSV or JSON lines; returns the count.

    Rows are streamed (``yield_per``), so an export of millions of contacts needs the
    memory of one batch. Values are written literally (only CSV/JSON escaping).
    """
    columns = [_contacts.c[name] for name in EXPORT_COLUMNS if name != "customer_external_id"]
    statement = (select(*columns, _customers.c.external_id.label("customer_external_id"))
                 .select_from(_contacts.outerjoin(_customers, _contacts.c.customer_id == _customers.c.id))
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
                record["ivr_path"] = json.dumps(record["ivr_path"], ensure_ascii=False, separators=(",", ":"))
                writer.writerow(["" if record[name] is None else record[name] for name in EXPORT_COLUMNS])
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
