"""Loading customers from a CRM's CSV export: ``ivr customers import``.

Routing needs to know who calls (a VIP, a customer's own agent, their
language, do-not-call), and the truth about customers lives in a CRM. Sites
export a CSV from it and load it here, again whenever it changes: lines are
upserted by ``external_id`` and each customer's phones become exactly those
of its line.

A file that cannot be read or has a wrong header changes nothing (ConfigError
naming the file and the fix). A bad line is reported with its number and
skipped; the good ones are written in batches, one transaction each, so a
20,000-line file loads in seconds on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from tqdm import tqdm  # type: ignore[import-untyped]

from ivr.console import quoted
from ivr.db.models import Agent, Customer, CustomerPhone
from ivr.db.sql import chunks, utc_now
from ivr.errors import ConfigError
from ivr.phone import normalise_number

__all__ = ["BATCH_SIZE", "CSV_COLUMNS", "ImportReport", "import_customers"]

CSV_COLUMNS = ("external_id", "name", "phones", "language", "vip_tier", "owner", "do_not_call",
               "preferred_channel")
#: How a customer may prefer to be reached (confirmations and reminders use it).
CHANNELS = ("voice", "sms")
#: Valid lines written per transaction.
BATCH_SIZE = 1000

_customers = cast(Table, Customer.__table__)
_phones = cast(Table, CustomerPhone.__table__)
_agents = cast(Table, Agent.__table__)

_REQUIRED = ("external_id", "name", "phones")
_TIERS = {"": "", "vip": "vip", "hot-lead": "hot-lead"}
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{1,8})*")
_PHONE_SEPARATORS = re.compile(r"[;|]")
_EXTERNAL_ID_MAX = 100
_HEADER_FIX = ("the first line must name the columns: " + ",".join(CSV_COLUMNS)
               + " (language, vip_tier, owner, do_not_call and preferred_channel may be left out)")


@dataclass
class ImportReport:
    """What an import did; ``rejected`` holds (line number, reason), sorted when printed."""

    imported: int = 0
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        text = f"imported {self.imported}, updated {self.updated}, rejected {len(self.rejected)}"
        return f"dry run, nothing changed: would have {text}" if self.dry_run else text


@dataclass(slots=True)
class _Line:
    """One valid CSV line; ``None`` means the column is not in the file (left as it is on update)."""

    number: int
    external_id: str
    name: str
    phones: list[str]
    language: str | None
    vip_tier: str | None
    owner_agent_id: int | None
    owner_given: bool
    do_not_call: bool | None
    preferred_channel: str | None = None


# ------------------------------------------------------------------ the file and its header


def _read_csv(path: Path) -> str:
    """The whole file as text, checked before anything is written: a bad file changes nothing."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read it ({exc.strerror or exc})",
                          "pass an existing, readable CSV file") from None
    try:
        text = data.decode("utf-8-sig")  # Excel's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(source, f"line {line}", "not UTF-8 text",
                          "save the file as CSV UTF-8 (in Excel: Save As, CSV UTF-8)") from None
    if "\x00" in text:
        raise ConfigError(source, "(file)", "contains NUL bytes, so it is not a text CSV file "
                          "(UTF-16?)", "save the file as CSV UTF-8")
    return text


def _first_row(source: str, reader: Iterator[list[str]]) -> list[str]:
    """The first line that is not blank: the header."""
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                return cells
    except csv.Error as exc:
        raise ConfigError(source, "(header)", f"not valid CSV ({exc})",
                          "save the file as CSV UTF-8") from None
    raise ConfigError(source, "(header)", "the file is empty",
                      "the first line must name the columns: " + ",".join(CSV_COLUMNS))


def _header(source: str, row: list[str]) -> list[str]:
    names = [cell.strip().lower() for cell in row]
    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        raise ConfigError(source, "(header)", f"missing column(s) {', '.join(missing)} "
                          f"(the first line has: {', '.join(map(quoted, names)) or 'nothing'})", _HEADER_FIX)
    unknown = [name for name in names if name and name not in CSV_COLUMNS]  # unnamed columns are ignored
    if unknown:
        raise ConfigError(source, "(header)", f"unknown column(s) {', '.join(map(quoted, unknown))}",
                          _HEADER_FIX)
    doubled = sorted({name for name in names if name and names.count(name) > 1})
    if doubled:
        raise ConfigError(source, "(header)", f"column(s) named twice: {', '.join(doubled)}", _HEADER_FIX)
    return names


# ------------------------------------------------------------------ one line


class _LineChecker:
    """Checks one CSV line at a time, remembering the file's external ids and phones so far.

    Only rules that need no database live here (owners come from a preloaded agent list);
    a phone owned by another customer is checked per batch against the database.
    """

    def __init__(self, columns: list[str], region: str, agents: dict[str, int]) -> None:
        self.columns = columns
        self.region = region
        self.agents = agents
        self.external_ids: dict[str, int] = {}
        self.phones: dict[str, tuple[int, str]] = {}

    def check(self, number: int, cells: list[str]) -> _Line | str:
        """A valid line, or the reason it is rejected (every problem found, joined by '; ')."""
        if len(cells) != len(self.columns):
            return f"has {len(cells)} field(s), the header has {len(self.columns)}"
        if any("\x00" in cell for cell in cells):
            return "contains a NUL character"
        row = dict(zip(self.columns, cells, strict=True))
        problems: list[str] = []
        external_id = row["external_id"].strip()
        self._check_external_id(number, external_id, problems)
        phones = self._phones(number, row["phones"], external_id, problems)
        language = row["language"].strip() if "language" in row else None
        if language and (len(language) > 16 or not _LANGUAGE.fullmatch(language)):
            problems.append(f"bad language {quoted(language)} (use a code such as en, zh or zh_TW)")
        vip_tier = self._vip_tier(row, problems)
        owner_id = self._owner(row, problems)
        do_not_call = self._do_not_call(row, problems)
        # An empty cell is the default; every line then has the column, as executemany needs.
        channel = ((row["preferred_channel"].strip().lower() or "voice")
                   if "preferred_channel" in row else None)
        if channel is not None and channel not in CHANNELS:
            problems.append(f"bad preferred_channel {quoted(row['preferred_channel'])} (use voice or sms)")
        if problems:
            return "; ".join(problems)
        return _Line(number, external_id, row["name"].strip(), phones, language, vip_tier, owner_id,
                     "owner" in row, do_not_call, channel)

    def _check_external_id(self, number: int, external_id: str, problems: list[str]) -> None:
        if not external_id:
            problems.append("missing external_id")
        elif len(external_id) > _EXTERNAL_ID_MAX:
            problems.append(f"external_id longer than {_EXTERNAL_ID_MAX} characters")
        elif external_id.startswith("#"):
            problems.append("external_id may not start with '#' (`ivr history '#N'` means ivr's own id N)")
        elif external_id in self.external_ids:
            problems.append(f"duplicate external_id {quoted(external_id)} (first on line "
                            f"{self.external_ids[external_id]})")
        else:
            self.external_ids[external_id] = number

    def _phones(self, number: int, cell: str, external_id: str, problems: list[str]) -> list[str]:
        """The line's phones in E.164, each once; one on an earlier line of another customer is a problem."""
        phones: list[str] = []
        raw_phones = [part.strip() for part in _PHONE_SEPARATORS.split(cell) if part.strip()]
        if not raw_phones:
            problems.append("no phone number")
        for raw in raw_phones:
            phone = normalise_number(raw, self.region)
            if phone is None:
                problems.append(f"unparseable phone {quoted(raw)}")
            elif phone not in phones:
                phones.append(phone)
        for phone in phones:
            first = self.phones.get(phone)
            if first is not None and first[1] != external_id:
                problems.append(f"phone {phone} is also on line {first[0]} (external_id {quoted(first[1])})")
            elif first is None and external_id:
                self.phones[phone] = (number, external_id)
        return phones

    @staticmethod
    def _vip_tier(row: dict[str, str], problems: list[str]) -> str | None:
        if "vip_tier" not in row:
            return None
        vip_tier = _TIERS.get(row["vip_tier"].strip().lower())
        if vip_tier is None:
            problems.append(f"unknown vip_tier {quoted(row['vip_tier'])} (use '', vip or hot-lead)")
        return vip_tier

    def _owner(self, row: dict[str, str], problems: list[str]) -> int | None:
        code = row.get("owner", "").strip()
        if not code:
            return None
        owner_id = self.agents.get(code)
        if owner_id is None:
            problems.append(f"unknown owner agent {quoted(code)} (add the agent first, or leave owner empty)")
        return owner_id

    @staticmethod
    def _do_not_call(row: dict[str, str], problems: list[str]) -> bool | None:
        if "do_not_call" not in row:
            return None
        do_not_call = _BOOLEANS.get(row["do_not_call"].strip().lower())
        if do_not_call is None:
            problems.append(f"bad do_not_call {quoted(row['do_not_call'])} (use true/false, yes/no or 1/0)")
        return do_not_call


# ------------------------------------------------------------------ one batch


@dataclass
class _BatchResult:
    imported: int = 0
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _customer_ids(connection: Connection, external_ids: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for chunk in chunks(external_ids):
        found.update((ext, cid) for cid, ext in connection.execute(
            select(_customers.c.id, _customers.c.external_id).where(_customers.c.external_id.in_(chunk))))
    return found


def _phone_owners(connection: Connection, phones: Sequence[str]) -> dict[str, tuple[int, str | None]]:
    owners: dict[str, tuple[int, str | None]] = {}
    for chunk in chunks(phones):
        owners.update((e164, (cid, ext)) for e164, cid, ext in connection.execute(
            select(_phones.c.e164, _phones.c.customer_id, _customers.c.external_id)
            .join(_customers, _phones.c.customer_id == _customers.c.id)
            .where(_phones.c.e164.in_(chunk))))
    return owners


def _untaken(connection: Connection, lines: Sequence[_Line], existing: dict[str, int],
             result: _BatchResult) -> list[_Line]:
    """The lines none of whose phones belongs to another customer already; the others are rejected."""
    owners = _phone_owners(connection, [phone for line in lines for phone in line.phones])
    accepted: list[_Line] = []
    for line in lines:
        own_id = existing.get(line.external_id)
        taken = [f"phone {phone} already belongs to customer "
                 f"{quoted(owners[phone][1] or '#' + str(owners[phone][0]))}"
                 for phone in line.phones if phone in owners and owners[phone][0] != own_id]
        if taken:
            result.rejected.append((line.number, "; ".join(taken)))
        else:
            accepted.append(line)
    return accepted


def _insert_customers(connection: Connection, new: Sequence[_Line], now: dt.datetime,
                      existing: dict[str, int]) -> None:
    """Insert ``new`` and add their ids to ``existing``."""
    connection.execute(insert(_customers), [{
        "external_id": line.external_id, "name": line.name, "language": line.language or "",
        "vip_tier": line.vip_tier or "", "owner_agent_id": line.owner_agent_id,
        "preferred_channel": line.preferred_channel or "voice", "do_not_call": bool(line.do_not_call),
        "created_at": now, "updated_at": now} for line in new])
    existing.update(_customer_ids(connection, [line.external_id for line in new]))


def _update_customers(connection: Connection, old: Sequence[_Line], now: dt.datetime,
                      existing: dict[str, int]) -> None:
    """Update ``old``, leaving a column the file does not have as it is."""
    # Every line of a file has the same columns, so every parameter set has the same keys.
    params: list[dict[str, Any]] = []
    for line in old:
        values: dict[str, Any] = {"b_id": existing[line.external_id], "name": line.name, "updated_at": now}
        if line.language is not None:
            values["language"] = line.language
        if line.vip_tier is not None:
            values["vip_tier"] = line.vip_tier
        if line.owner_given:
            values["owner_agent_id"] = line.owner_agent_id
        if line.do_not_call is not None:
            values["do_not_call"] = line.do_not_call
        if line.preferred_channel is not None:
            values["preferred_channel"] = line.preferred_channel
        params.append(values)
    connection.execute(update(_customers).where(_customers.c.id == bindparam("b_id")), params)


def _replace_phones(connection: Connection, accepted: Sequence[_Line], old: Sequence[_Line],
                    existing: dict[str, int]) -> None:
    """The file is the truth for each of its customers' phones; change only what differs."""
    current: dict[int, set[str]] = {existing[line.external_id]: set() for line in accepted}
    for ids in chunks([existing[line.external_id] for line in old]):
        for cid, e164 in connection.execute(
                select(_phones.c.customer_id, _phones.c.e164).where(_phones.c.customer_id.in_(ids))):
            current[cid].add(e164)
    dropped: list[str] = []
    added: list[dict[str, Any]] = []
    for line in accepted:
        cid = existing[line.external_id]
        dropped.extend(current[cid] - set(line.phones))
        added.extend({"customer_id": cid, "e164": phone}
                     for phone in line.phones if phone not in current[cid])
    for phones in chunks(dropped):
        connection.execute(delete(_phones).where(_phones.c.e164.in_(phones)))
    if added:
        connection.execute(insert(_phones), added)


def _apply_batch(connection: Connection, lines: Sequence[_Line]) -> _BatchResult:
    """Upsert ``lines`` by external_id and set each one's phones to exactly those of its line."""
    result = _BatchResult()
    existing = _customer_ids(connection, [line.external_id for line in lines])
    accepted = _untaken(connection, lines, existing, result)
    if not accepted:
        return result
    now = utc_now()
    new = [line for line in accepted if line.external_id not in existing]
    old = [line for line in accepted if line.external_id in existing]
    if new:
        _insert_customers(connection, new, now, existing)
    if old:
        _update_customers(connection, old, now, existing)
    _replace_phones(connection, accepted, old, existing)
    result.imported, result.updated = len(new), len(old)
    return result


def _write_batch(engine: Engine, lines: Sequence[_Line], report: ImportReport) -> None:
    """One transaction per batch; if the database refuses it (e.g. a concurrent import
    took an external id or phone), retry its lines one by one so only the culprits fail."""
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                result = _apply_batch(connection, lines)
            except BaseException:
                transaction.rollback()
                raise
            if report.dry_run:
                transaction.rollback()
            else:
                transaction.commit()
    except IntegrityError as exc:
        if len(lines) == 1:
            problem = str(exc.orig if exc.orig is not None else exc).splitlines()[0]
            report.rejected.append((lines[0].number, f"the database refused it ({problem})"))
            return
        for line in lines:
            _write_batch(engine, [line], report)
        return
    report.imported += result.imported
    report.updated += result.updated
    report.rejected.extend(result.rejected)


# ------------------------------------------------------------------ the whole file


def _load_lines(engine: Engine, reader: Any, checker: _LineChecker, report: ImportReport,
                batch_size: int, bar: Any) -> None:
    """Check every line after the header and write the valid ones a batch at a time."""
    batch: list[_Line] = []
    done = reader.line_num
    while True:
        first = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field over csv's size limit
            report.rejected.append((first, f"not valid CSV ({exc})"))
            continue
        if not any(cell.strip() for cell in cells):
            continue
        checked = checker.check(first, cells)
        if isinstance(checked, str):
            report.rejected.append((first, checked))
        else:
            batch.append(checked)
        if len(batch) >= batch_size:
            _write_batch(engine, batch, report)
            batch = []
        if len(batch) == 0 or reader.line_num - done >= batch_size:
            bar.update(reader.line_num - done)
            done = reader.line_num
    if batch:
        _write_batch(engine, batch, report)
    bar.update(reader.line_num - done)


def import_customers(engine: Engine, path: Path, region: str, dry_run: bool = False,
                     batch_size: int = BATCH_SIZE, progress: bool | None = None) -> ImportReport:
    """Load a customers CSV: good lines are upserted by external_id, bad ones reported.

    ConfigError if the file cannot be read or its header is wrong (nothing is changed
    then). ``progress=None`` shows a bar on stderr only when it is a terminal.
    """
    source = str(path)
    text = _read_csv(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    columns = _header(source, _first_row(source, reader))
    with engine.connect() as connection:
        agents = {code: agent_id
                  for code, agent_id in connection.execute(select(_agents.c.code, _agents.c.id))}
    report = ImportReport(dry_run=dry_run)
    total_lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    bar = tqdm(total=total_lines, initial=reader.line_num, unit=" lines", desc="customers import",
               file=sys.stderr, disable=None if progress is None else not progress, leave=False)
    try:
        _load_lines(engine, reader, _LineChecker(columns, region, agents), report, batch_size, bar)
    finally:
        bar.close()
    report.rejected.sort()
    return report
