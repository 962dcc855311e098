"""Command-line tools over the contact history: a customer's timeline, CSV import, export, purge.

``register_cli`` adds them to the ``ivr`` command::

    ivr history SUBJECT [--limit N]               a phone number's or a customer's contacts
    ivr history export --since DATE [--until DATE] --format csv|jsonl [--output FILE]
    ivr history purge --older-than DAYS [--yes]   clear transcripts and recording refs (retention)
    ivr customers import FILE.csv [--dry-run]     upsert customers by external_id

Each takes ``--config`` (settings file) and ``--url`` (overrides ``[database] url``).
Everything runs through bound SQLAlchemy Core/ORM statements that work on SQLite and
PostgreSQL alike. Text that came from callers or a CRM is printed with its control
characters replaced (:func:`printable`), so a hostile caller name cannot drive the
admin's terminal.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import functools
import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased
from tqdm import tqdm  # type: ignore[import-untyped]

from ivr.config import Settings, load_settings
from ivr.db.models import Agent, Contact, Customer, CustomerPhone
from ivr.db.schema import current_revision, head_revision, make_engine
from ivr.errors import ConfigError
from ivr.phone import normalise_number

__all__ = [
    "CSV_COLUMNS",
    "EXPORT_COLUMNS",
    "ImportReport",
    "PurgeReport",
    "export_contacts",
    "import_customers",
    "open_history",
    "parse_when",
    "path_text",
    "printable",
    "purge_pii",
    "register_cli",
    "timeline",
]

_contacts = cast(Table, Contact.__table__)
_customers = cast(Table, Customer.__table__)
_phones = cast(Table, CustomerPhone.__table__)
_agents = cast(Table, Agent.__table__)

COMMAND_LINE = "command line"
DEFAULT_LIMIT = 50
BATCH_SIZE = 1000
#: Values per IN (...) list: far below SQLite's and PostgreSQL's bound-parameter limits.
_IN_CHUNK = 500

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


def _quoted(text: str) -> str:
    """A user-supplied value inside a message: repr escapes every control character."""
    return repr(text)


# ------------------------------------------------------------------ shared helpers


def _utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones in its zone."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else _utc(value).isoformat()


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def open_history(config: str | None, url: str | None) -> tuple[Settings, Engine]:
    """Settings and an engine on a contact-history database at the current schema.

    Refuses (ConfigError) a URL that is wrong, a SQLite file that does not exist (rather
    than creating an empty one) and a database whose schema is not this ivr's.
    """
    settings = load_settings(config)
    chosen = url or settings.database.url
    source, key = (COMMAND_LINE, "--url") if url else (settings.source, "database.url")
    shown = _redacted(chosen)
    fix_url = "use sqlite:///path/to/ivr.db or postgresql+psycopg://user@host/dbname"
    try:
        engine = make_engine(chosen)
    except (ArgumentError, ValueError, ImportError) as exc:  # the message could echo a password
        raise ConfigError(source, key, f"{shown!r} is not a usable database URL ({type(exc).__name__})",
                          fix_url) from None
    try:
        if engine.dialect.name == "sqlite":
            database = engine.url.database or ""
            if database and database != ":memory:" and not database.startswith("file:") \
                    and not Path(database).is_file():
                raise ConfigError(source, key, f"no database file {database!r}",
                                  "check the path, or create it with `ivr db upgrade`")
        try:
            revision = current_revision(engine)
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None)
            problem = (str(orig if orig is not None else exc).splitlines() or ["?"])[0]
            raise ConfigError(source, key, f"cannot open {shown} ({problem})",
                              "check that the database server runs and the URL is right") from None
        head = head_revision()
        if revision != head:
            raise ConfigError(source, key,
                              f"the database {shown} is at schema revision {revision or '(empty)'}, "
                              f"this ivr needs {head}", "run `ivr db upgrade` first")
    except BaseException:
        engine.dispose()
        raise
    return settings, engine


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


# ------------------------------------------------------------------ history SUBJECT


def path_text(path: object) -> str:
    """``contacts.ivr_path`` as ``language:zh > main:2 > after-sales:0``.

    A menu step shows the menu and the key pressed; other steps show their kind and
    whatever else they carry (``transfer:queue:after-sales``, ``back:main``).
    """
    if not isinstance(path, list):
        return ""
    parts: list[str] = []
    for step in path:
        if not isinstance(step, dict):
            parts.append(str(step))
            continue
        kind, menu, key, value = (str(step.get(name) or "") for name in ("kind", "menu", "key", "value"))
        if kind == "menu" and menu:
            parts.append(f"{menu}:{key or '-'}")
        else:
            parts.append(":".join(part for part in (kind, menu, key, value) if part) or "?")
    return " > ".join(parts)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


@dataclass(frozen=True)
class _Subject:
    """What ``history SUBJECT`` resolved to: a customer, or a phone number (maybe a customer's)."""

    label: str
    where: Any
    customer: Customer | None = None
    phone: str | None = None


_INTERNAL_ID = re.compile(r"#(\d{1,18})")
_MAX_ID = 2**31 - 1  # an INTEGER column: a larger literal would be an error on PostgreSQL


def _subject_error(problem: str) -> ConfigError:
    return ConfigError(COMMAND_LINE, "SUBJECT", problem,
                       "pass a phone number (+8613800138000 or 13800138000), a customer's external id, "
                       "or '#<id>' for ivr's own customer id (quote it: # starts a shell comment)")


def _resolve(session: Session, subject: str, region: str) -> _Subject:
    """``#<id>``, then an exact external_id, then a phone number: an id is what the admin typed on purpose."""
    text = subject.strip()
    internal = _INTERNAL_ID.fullmatch(text)
    if internal:
        number = int(internal.group(1))
        customer = session.get(Customer, number) if number <= _MAX_ID else None
        if customer is None:
            raise _subject_error(f"no customer has the id #{number}")
        return _customer_subject(customer)
    customer = session.scalars(select(Customer).where(Customer.external_id == text)).first()
    if customer is not None:
        return _customer_subject(customer)
    phone = normalise_number(text, region)
    if phone is None:
        raise _subject_error(f"{_quoted(text)} is neither a phone number nor a known customer id")
    owners = select(CustomerPhone.customer_id).where(CustomerPhone.e164 == phone)
    owner = session.scalars(select(Customer).where(Customer.id.in_(owners))).first()
    return _Subject(phone, or_(Contact.caller_e164 == phone, Contact.customer_id.in_(owners)), owner, phone)


def _customer_subject(customer: Customer) -> _Subject:
    # The recorder only knows the caller's number, so a customer's contacts are also
    # those from any of their phones, not just rows already linked by customer_id.
    phones = select(CustomerPhone.e164).where(CustomerPhone.customer_id == customer.id)
    label = f"customer {customer.external_id} (#{customer.id})" if customer.external_id \
        else f"customer #{customer.id}"
    return _Subject(label, or_(Contact.customer_id == customer.id, Contact.caller_e164.in_(phones)), customer)


def _describe_customer(session: Session, customer: Customer) -> str:
    phones = session.scalars(select(CustomerPhone.e164).where(CustomerPhone.customer_id == customer.id)
                             .order_by(CustomerPhone.id)).all()
    owner = session.scalar(select(Agent.code).where(Agent.id == customer.owner_agent_id)) \
        if customer.owner_agent_id is not None else None
    facts = [f"customer {customer.external_id or '-'} (#{customer.id})"]
    if customer.name:
        facts.append(customer.name)
    if customer.vip_tier:
        facts.append(customer.vip_tier)
    if customer.language:
        facts.append(f"language {customer.language}")
    if owner:
        facts.append(f"owner {owner}")
    if customer.do_not_call:
        facts.append("DO NOT CALL")
    facts.append("phones " + (", ".join(phones) or "-"))
    return printable(", ".join(facts))


def _contact_lines(contact: Contact, customer_ref: str | None, agent_code: str | None) -> list[str]:
    when = _utc(contact.started_at).strftime("%Y-%m-%dT%H:%MZ")
    state = contact.status + (f"/{contact.outcome}" if contact.outcome else "")
    if contact.outcome_reason:
        state += f" ({contact.outcome_reason})"
    head = [when, f"{contact.direction} {contact.kind}", state, _duration(contact.duration_seconds)]
    if contact.queue:
        head.append(f"queue {contact.queue}")
    if agent_code:
        head.append(f"agent {agent_code}")
    lines = ["  ".join(printable(part) for part in head)]
    caller = " ".join(part for part in (contact.caller_number or contact.caller_e164 or "",
                                        f'"{contact.caller_name}"' if contact.caller_name else "") if part)
    if customer_ref:
        caller += f" [customer {customer_ref}]"
    if caller.strip():
        lines.append(f"    caller  {printable(caller.strip())}")
    path = path_text(contact.ivr_path)
    if path:
        lines.append(f"    path    {printable(path)}")
    if contact.disposition:
        lines.append(f"    disposition  {printable(contact.disposition)}")
    if contact.notes:
        lines.append(f"    notes   {printable(contact.notes)}")
    return lines


def timeline(engine: Engine, subject: str, region: str, limit: int = DEFAULT_LIMIT,
             out: TextIO | None = None) -> int:
    """Print ``subject``'s contacts, newest first; returns how many matched (ConfigError if unknown)."""
    out = out if out is not None else sys.stdout
    with Session(engine) as session:
        found = _resolve(session, subject, region)
        if found.customer is not None and found.phone is None:
            print(_describe_customer(session, found.customer), file=out)
        elif found.phone is not None:
            owner = (_describe_customer(session, found.customer) if found.customer is not None
                     else "not a known customer's number")
            print(f"phone {found.phone}: {owner}", file=out)
        total = session.scalar(select(func.count()).select_from(Contact).where(found.where)) or 0
        if not total:
            print(f"no contacts for {printable(found.label)}", file=out)
            return 0
        linked = aliased(Customer)
        rows = session.execute(
            select(Contact, linked.external_id, linked.id, Agent.code)
            .outerjoin(linked, Contact.customer_id == linked.id)
            .outerjoin(Agent, Contact.agent_id == Agent.id)
            .where(found.where)
            .order_by(Contact.started_at.desc(), Contact.id.desc())
            .limit(limit)).all()
        shown = len(rows)
        more = f" (the newest {shown}; --limit {total} shows all)" if shown < total else ""
        print(f"{total} contact{'s' if total != 1 else ''} for {printable(found.label)}, newest first{more}:",
              file=out)
        for contact, external_id, customer_id, agent_code in rows:
            print(file=out)
            ref = None
            if customer_id is not None and (found.customer is None or customer_id != found.customer.id):
                ref = external_id or f"#{customer_id}"
            for line in _contact_lines(contact, ref, agent_code):
                print(line, file=out)
        return int(total)


@run_safely
def _cli_timeline(args: argparse.Namespace) -> int:
    settings, engine = open_history(args.config, args.url)
    try:
        timeline(engine, args.subject, settings.routing.region, args.limit)
    finally:
        engine.dispose()
    return 0


# ------------------------------------------------------------------ customers import

CSV_COLUMNS = ("external_id", "name", "phones", "language", "vip_tier", "owner", "do_not_call")
_REQUIRED = ("external_id", "name", "phones")
_TIERS = {"": "", "vip": "vip", "hot-lead": "hot-lead"}
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]{1,8})*")
_PHONE_SEPARATORS = re.compile(r"[;|]")
_EXTERNAL_ID_MAX = 100


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


def _header(source: str, row: list[str]) -> list[str]:
    names = [cell.strip().lower() for cell in row]
    fix = "the first line must name the columns: " + ",".join(CSV_COLUMNS) + \
        " (language, vip_tier, owner and do_not_call may be left out)"
    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        raise ConfigError(source, "(header)", f"missing column(s) {', '.join(missing)} "
                          f"(the first line has: {', '.join(map(_quoted, names)) or 'nothing'})", fix)
    unknown = [name for name in names if name and name not in CSV_COLUMNS]  # unnamed columns are ignored
    if unknown:
        raise ConfigError(source, "(header)", f"unknown column(s) {', '.join(map(_quoted, unknown))}", fix)
    doubled = sorted({name for name in names if name and names.count(name) > 1})
    if doubled:
        raise ConfigError(source, "(header)", f"column(s) named twice: {', '.join(doubled)}", fix)
    return names


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
        if not external_id:
            problems.append("missing external_id")
        elif len(external_id) > _EXTERNAL_ID_MAX:
            problems.append(f"external_id longer than {_EXTERNAL_ID_MAX} characters")
        elif external_id.startswith("#"):
            problems.append("external_id may not start with '#' (`ivr history '#N'` means ivr's own id N)")
        elif external_id in self.external_ids:
            problems.append(f"duplicate external_id {_quoted(external_id)} (first on line "
                            f"{self.external_ids[external_id]})")
        else:
            self.external_ids[external_id] = number

        phones: list[str] = []
        raw_phones = [part.strip() for part in _PHONE_SEPARATORS.split(row["phones"]) if part.strip()]
        if not raw_phones:
            problems.append("no phone number")
        for raw in raw_phones:
            phone = normalise_number(raw, self.region)
            if phone is None:
                problems.append(f"unparseable phone {_quoted(raw)}")
            elif phone not in phones:
                phones.append(phone)
        for phone in phones:
            first = self.phones.get(phone)
            if first is not None and first[1] != external_id:
                problems.append(f"phone {phone} is also on line {first[0]} (external_id {_quoted(first[1])})")
            elif first is None and external_id:
                self.phones[phone] = (number, external_id)

        language = row["language"].strip() if "language" in row else None
        if language and (len(language) > 16 or not _LANGUAGE.fullmatch(language)):
            problems.append(f"bad language {_quoted(language)} (use a code such as en, zh or zh_TW)")
        vip_tier = None
        if "vip_tier" in row:
            vip_tier = _TIERS.get(row["vip_tier"].strip().lower())
            if vip_tier is None:
                problems.append(f"unknown vip_tier {_quoted(row['vip_tier'])} (use '', vip or hot-lead)")
        owner_id = None
        if "owner" in row and (code := row["owner"].strip()):
            owner_id = self.agents.get(code)
            if owner_id is None:
                problems.append(f"unknown owner agent {_quoted(code)} "
                                "(add the agent first, or leave owner empty)")
        do_not_call = None
        if "do_not_call" in row:
            do_not_call = _BOOLEANS.get(row["do_not_call"].strip().lower())
            if do_not_call is None:
                problems.append(f"bad do_not_call {_quoted(row['do_not_call'])} "
                                "(use true/false, yes/no or 1/0)")
        if problems:
            return "; ".join(problems)
        return _Line(number, external_id, row["name"].strip(), phones, language, vip_tier, owner_id,
                     "owner" in row, do_not_call)


@dataclass
class _BatchResult:
    imported: int = 0
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _apply_batch(connection: Connection, lines: Sequence[_Line]) -> _BatchResult:
    """Upsert ``lines`` by external_id and set each one's phones to exactly those of its line."""
    result = _BatchResult()
    existing: dict[str, int] = {}
    for chunk in _chunks([line.external_id for line in lines]):
        existing.update((ext, cid) for cid, ext in connection.execute(
            select(_customers.c.id, _customers.c.external_id).where(_customers.c.external_id.in_(chunk))))
    owners: dict[str, tuple[int, str | None]] = {}
    for chunk in _chunks([phone for line in lines for phone in line.phones]):
        owners.update((e164, (cid, ext)) for e164, cid, ext in connection.execute(
            select(_phones.c.e164, _phones.c.customer_id, _customers.c.external_id)
            .join(_customers, _phones.c.customer_id == _customers.c.id)
            .where(_phones.c.e164.in_(chunk))))

    accepted: list[_Line] = []
    for line in lines:
        own_id = existing.get(line.external_id)
        taken = [f"phone {phone} already belongs to customer "
                 f"{_quoted(owners[phone][1] or '#' + str(owners[phone][0]))}"
                 for phone in line.phones if phone in owners and owners[phone][0] != own_id]
        if taken:
            result.rejected.append((line.number, "; ".join(taken)))
        else:
            accepted.append(line)
    if not accepted:
        return result

    now = dt.datetime.now(dt.UTC)
    new = [line for line in accepted if line.external_id not in existing]
    old = [line for line in accepted if line.external_id in existing]
    if new:
        connection.execute(insert(_customers), [{
            "external_id": line.external_id, "name": line.name, "language": line.language or "",
            "vip_tier": line.vip_tier or "", "owner_agent_id": line.owner_agent_id,
            "preferred_channel": "voice", "do_not_call": bool(line.do_not_call),
            "created_at": now, "updated_at": now} for line in new])
        for chunk in _chunks([line.external_id for line in new]):
            existing.update((ext, cid) for cid, ext in connection.execute(
                select(_customers.c.id, _customers.c.external_id)
                .where(_customers.c.external_id.in_(chunk))))
    if old:
        # Every line of a file has the same columns, so every parameter set has the same keys.
        params: list[dict[str, Any]] = []
        for line in old:
            values: dict[str, Any] = {"b_id": existing[line.external_id], "name": line.name,
                                      "updated_at": now}
            if line.language is not None:
                values["language"] = line.language
            if line.vip_tier is not None:
                values["vip_tier"] = line.vip_tier
            if line.owner_given:
                values["owner_agent_id"] = line.owner_agent_id
            if line.do_not_call is not None:
                values["do_not_call"] = line.do_not_call
            params.append(values)
        connection.execute(update(_customers).where(_customers.c.id == bindparam("b_id")), params)

    # Phones: the file is the truth for each of its customers; change only what differs.
    ids = [existing[line.external_id] for line in accepted]
    current: dict[int, set[str]] = {cid: set() for cid in ids}
    for chunk in _chunks([existing[line.external_id] for line in old]):
        for cid, e164 in connection.execute(
                select(_phones.c.customer_id, _phones.c.e164).where(_phones.c.customer_id.in_(chunk))):
            current[cid].add(e164)
    dropped: list[str] = []
    added: list[dict[str, Any]] = []
    for line in accepted:
        cid = existing[line.external_id]
        dropped.extend(current[cid] - set(line.phones))
        added.extend({"customer_id": cid, "e164": phone}
                     for phone in line.phones if phone not in current[cid])
    for chunk in _chunks(dropped):
        connection.execute(delete(_phones).where(_phones.c.e164.in_(chunk)))
    if added:
        connection.execute(insert(_phones), added)
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


def import_customers(engine: Engine, path: Path, region: str, dry_run: bool = False,
                     batch_size: int = BATCH_SIZE, progress: bool | None = None) -> ImportReport:
    """Load a customers CSV: good lines are upserted by external_id, bad ones reported.

    ConfigError if the file cannot be read or its header is wrong (nothing is changed
    then). ``progress=None`` shows a bar on stderr only when it is a terminal.
    """
    source = str(path)
    text = _read_csv(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                header = cells
                break
    except csv.Error as exc:
        raise ConfigError(source, "(header)", f"not valid CSV ({exc})",
                          "save the file as CSV UTF-8") from None
    if header is None:
        raise ConfigError(source, "(header)", "the file is empty",
                          "the first line must name the columns: " + ",".join(CSV_COLUMNS))
    columns = _header(source, header)
    with engine.connect() as connection:
        agents = {code: agent_id
                  for code, agent_id in connection.execute(select(_agents.c.code, _agents.c.id))}
    checker = _LineChecker(columns, region, agents)
    report = ImportReport(dry_run=dry_run)
    batch: list[_Line] = []
    total_lines = text.count("\n") + (0 if text.endswith("\n") else 1)
    bar = tqdm(total=total_lines, initial=reader.line_num, unit=" lines", desc="customers import",
               file=sys.stderr, disable=None if progress is None else not progress, leave=False)
    try:
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
    finally:
        bar.close()
    report.rejected.sort()
    return report


@run_safely
def _cli_import(args: argparse.Namespace) -> int:
    settings, engine = open_history(args.config, args.url)
    try:
        report = import_customers(engine, Path(args.file), settings.routing.region, dry_run=args.dry_run)
    finally:
        engine.dispose()
    for number, reason in report.rejected:
        print(f"{printable(args.file)}: line {number}: {printable(reason)}")
    print(report.summary())
    return 1 if report.rejected else 0


# ------------------------------------------------------------------ history export

EXPORT_COLUMNS = ("uniqueid", "started_at", "ended_at", "kind", "direction", "status", "outcome",
                  "outcome_reason", "caller_number", "caller_e164", "caller_name", "queue", "dtmf",
                  "ivr_path", "duration_seconds", "customer_external_id")
_DATE_FIX = "use YYYY-MM-DD or an ISO date-time such as 2026-11-23T08:00 or 2026-11-23T08:00+08:00"


def parse_when(text: str, option: str, end_of_day: bool = False) -> dt.datetime:
    """An aware UTC datetime from ``YYYY-MM-DD`` or an ISO date-time (naive means UTC).

    A bare date is the start of that day, or with ``end_of_day`` the start of the next,
    so ``--until 2026-11-30`` includes the 30th.
    """
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = dt.date.fromisoformat(value)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return start + dt.timedelta(days=1) if end_of_day else start
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(COMMAND_LINE, option, f"{_quoted(text)} is not a date", _DATE_FIX) from None
    return _utc(moment)


def _export_row(row: Any) -> dict[str, Any]:
    return {
        "uniqueid": row.uniqueid, "started_at": _iso(row.started_at), "ended_at": _iso(row.ended_at),
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


@run_safely
def _cli_export(args: argparse.Namespace) -> int:
    since = parse_when(args.since, "--since")
    until = parse_when(args.until, "--until", end_of_day=True) if args.until else None
    if until is not None and until <= since:
        raise ConfigError(COMMAND_LINE, "--until", f"{args.until} is not after --since {args.since}",
                          "give an --until later than --since")
    settings, engine = open_history(args.config, args.url)
    try:
        if not args.output or args.output == "-":
            count = export_contacts(engine, sys.stdout, since, until, args.format)
            sys.stdout.flush()
            target = "stdout"
        else:
            count = _export_to_file(engine, Path(args.output), since, until, args.format)
            target = args.output
    finally:
        engine.dispose()
    print(f"exported {count} contact{'s' if count != 1 else ''} to {printable(target)}", file=sys.stderr)
    return 0


def _export_to_file(engine: Engine, path: Path, since: dt.datetime, until: dt.datetime | None,
                    fmt: str) -> int:
    """Write next to ``path`` and rename at the end, so a failed export never leaves half a file."""
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


# ------------------------------------------------------------------ history purge


@dataclass(frozen=True)
class PurgeReport:
    """How many contacts held a transcript or recording reference before ``cutoff``."""

    contacts: int
    recordings: int
    cutoff: dt.datetime
    applied: bool


def purge_pii(engine: Engine, older_than_days: int, apply: bool,
              now: dt.datetime | None = None) -> PurgeReport:
    """Clear transcripts, their confidence and recording refs of contacts started before
    now - ``older_than_days``: retention of personal data, while the contact itself, its
    outcome and its path stay for statistics. With ``apply`` False nothing is changed."""
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=older_than_days)
    c = _contacts.c
    where = and_(c.started_at < cutoff,
                 or_(c.transcript != "", c.transcript_confidence.is_not(None), c.recording_ref != ""))
    with engine.begin() as connection:
        count = connection.execute(select(func.count()).select_from(_contacts).where(where)).scalar() or 0
        recordings = connection.execute(select(func.count()).select_from(_contacts)
                                        .where(where, c.recording_ref != "")).scalar() or 0
        if apply and count:
            result = connection.execute(update(_contacts).where(where)
                                        .values(transcript="", transcript_confidence=None, recording_ref=""))
            count = result.rowcount
    return PurgeReport(int(count), int(recordings), cutoff, apply)


@run_safely
def _cli_purge(args: argparse.Namespace) -> int:
    _settings, engine = open_history(args.config, args.url)
    try:
        report = purge_pii(engine, args.older_than, apply=args.yes)
    finally:
        engine.dispose()
    before = report.cutoff.strftime("%Y-%m-%dT%H:%MZ")
    contacts = f"{report.contacts} contact{'s' if report.contacts != 1 else ''}"
    if report.applied:
        print(f"purged {contacts} started before {before}: transcripts and "
              f"{report.recordings} recording reference(s) cleared "
              "(the recording files themselves are not deleted)")
    else:
        print(f"would purge {contacts} started before {before} "
              f"({report.recordings} with a recording reference); nothing changed, "
              "run again with --yes to purge")
    return 0


# ------------------------------------------------------------------ argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not 1 or more")
    return value


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


class _AnyName(dict[str, argparse.ArgumentParser]):
    """argparse checks a subcommand name with ``in``; every word may be a SUBJECT here."""

    def __contains__(self, _name: object) -> bool:
        return True


if TYPE_CHECKING:
    _SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # not subscriptable at run time
    _SubParsers = argparse._SubParsersAction


class _SubjectOrCommand(_SubParsers):
    """``history SUBJECT`` next to ``history export`` and ``history purge``: a first word
    that names no subcommand is the SUBJECT of ``history show`` (which also works spelled
    out, for a customer whose external id is "export")."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.choices = _AnyName()

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        words = [values] if isinstance(values, str) else list(values or [])
        if words and words[0] not in self._name_parser_map:
            words.insert(0, "show")
        super().__call__(parser, namespace, words, option_string)


def database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="settings file (default: ./ivr.toml if present)")
    parser.add_argument("--url", metavar="URL", help="database URL (overrides [database] url)")


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``history`` (timeline, export, purge) and ``customers import`` to the ``ivr`` command."""
    history = subparsers.add_parser(
        "history", help="contact history: a customer's timeline, export, purge",
        description="ivr history SUBJECT shows a phone number's or a customer's contacts; "
                    "ivr history export|purge work on all contacts.")
    commands = history.add_subparsers(dest="history_command", required=True, action=_SubjectOrCommand,
                                      metavar="{SUBJECT,export,purge}")
    show = commands.add_parser(
        "show", prog=f"{history.prog} [show]",
        help="[show] SUBJECT: a phone number's or customer's contacts, newest first",
        description="Contacts of a phone number (any format; matched in E.164 against callers and "
                    "customers' phones) or of a customer (external id, or '#<id>' for ivr's own id: "
                    "quote it, # starts a shell comment), newest first. An external id is tried before "
                    "a phone number.")
    show.add_argument("subject", metavar="SUBJECT", help="phone number, customer external id, or '#<id>'")
    show.add_argument("--limit", type=positive_int, default=DEFAULT_LIMIT, metavar="N",
                      help="show the newest N contacts (default: %(default)s)")
    database_options(show)
    show.set_defaults(run=_cli_timeline)

    export = commands.add_parser(
        "export", help="contacts started in a time range, as CSV or JSON lines",
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

    purge = commands.add_parser(
        "purge", help="clear transcripts and recording references of old contacts (retention)",
        description="Clears transcript, transcript_confidence and recording_ref of contacts started "
                    "more than DAYS days ago; the contacts, outcomes and paths stay. Without --yes "
                    "it only counts. Recording files are not deleted by this.")
    purge.add_argument("--older-than", required=True, type=_days, metavar="DAYS",
                       help="contacts started more than DAYS days ago")
    purge.add_argument("--yes", action="store_true", help="really clear them (default: only count)")
    database_options(purge)
    purge.set_defaults(run=_cli_purge)

    customers = subparsers.add_parser("customers", help="customer records (routing facts)")
    customer_commands = customers.add_subparsers(dest="customers_command", required=True)
    load = customer_commands.add_parser(
        "import", help="create or update customers from a CSV file",
        description="CSV (UTF-8, BOM allowed) with a header: external_id,name,phones"
                    "[,language,vip_tier,owner,do_not_call]. phones: one or more numbers separated by ; "
                    "or |. vip_tier: empty, vip or hot-lead. owner: code of an existing agent. "
                    "do_not_call: true/false, yes/no, 1/0 (empty: false). Lines are upserted by "
                    "external_id; a customer's phones become exactly those of its line; a column left "
                    "out of the header is left as it is on existing customers. Bad lines are reported "
                    "with their number and skipped. Exit status: 0 all loaded, 1 some rejected, "
                    "2 unreadable file or header.")
    load.add_argument("file", metavar="FILE.csv", help="the CSV file")
    load.add_argument("--dry-run", action="store_true", help="check everything, change nothing")
    database_options(load)
    load.set_defaults(run=_cli_import)

