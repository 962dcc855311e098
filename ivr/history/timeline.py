"""A customer's (or a phone number's) contacts, newest first: ``ivr history SUBJECT``.

The admin types whatever they have at hand: ``#<id>`` (ivr's own customer id),
a CRM's external id, or a phone number in any format. The contacts and their
fields are read by :mod:`ivr.history.query`, as the agent page reads them:
calls (IVR path, what was said, queue outcome, agent, wait and talk) and SMS
(their text), with disposition, notes and the recording reference.
Everything that came from callers, SMS senders, agents or a CRM is printed
through :func:`~ivr.console.printable`.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ivr.console import COMMAND_LINE, printable, quoted
from ivr.db.models import Customer
from ivr.errors import ConfigError
from ivr.history.query import (
    CustomerSummary,
    Subject,
    TimelineEntry,
    customer_subject,
    number_subject,
    read_timeline,
)
from ivr.phone import normalise_number

__all__ = ["DEFAULT_LIMIT", "contact_lines", "duration", "timeline"]

#: Contacts shown unless ``--limit`` says otherwise.
DEFAULT_LIMIT = 50

_INTERNAL_ID = re.compile(r"#(\d{1,18})")


def _subject_error(problem: str) -> ConfigError:
    return ConfigError(COMMAND_LINE, "SUBJECT", problem,
                       "pass a phone number (+8613800138000 or 13800138000), a customer's external id, "
                       "or '#<id>' for ivr's own customer id (quote it: # starts a shell comment)")


def _resolve(session: Session, subject: str, region: str) -> Subject:
    """``#<id>``, then an exact external_id, then a phone number: an id is what the admin typed on purpose."""
    text = subject.strip()
    internal = _INTERNAL_ID.fullmatch(text)
    if internal:
        number = int(internal.group(1))
        found = customer_subject(session, number)
        if found is None:
            raise _subject_error(f"no customer has the id #{number}")
        return found
    customer_id = session.scalar(select(Customer.id).where(Customer.external_id == text))
    if customer_id is not None:
        found = customer_subject(session, customer_id)
        if found is not None:
            return found
    phone = normalise_number(text, region)
    if phone is None:
        raise _subject_error(f"{quoted(text)} is neither a phone number nor a known customer id")
    return number_subject(session, phone)


def _describe_customer(customer: CustomerSummary) -> str:
    facts = [f"customer {customer.external_id or '-'} (#{customer.id})"]
    if customer.name:
        facts.append(customer.name)
    if customer.tier:
        facts.append(customer.tier)
    if customer.language:
        facts.append(f"language {customer.language}")
    if customer.owner:
        facts.append(f"owner {customer.owner}")
    if customer.do_not_call:
        facts.append("DO NOT CALL")
    facts.append("phones " + (", ".join(customer.phones) or "-"))
    return printable(", ".join(facts))


def duration(seconds: float | None) -> str:
    """``42.5s``, ``3m05s``, ``1h02m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _human_part(entry: TimelineEntry) -> str:
    """``answered, waited 12.0s, talked 3m05s, hung up by caller``: the part after the IVR."""
    parts = [entry.queue_outcome] if entry.queue_outcome else []
    if entry.wait_seconds is not None:
        parts.append(f"waited {duration(entry.wait_seconds)}")
    if entry.talk_seconds is not None:
        parts.append(f"talked {duration(entry.talk_seconds)}")
    if entry.hangup_by:
        parts.append(f"hung up by {entry.hangup_by}")
    return ", ".join(parts)


def contact_lines(entry: TimelineEntry, customer_ref: str | None = None) -> list[str]:
    """One contact as the lines ``ivr history`` prints (every value made printable)."""
    state = entry.status + (f"/{entry.outcome}" if entry.outcome else "")
    if entry.outcome_reason:
        state += f" ({entry.outcome_reason})"
    head = [entry.started_at.strftime("%Y-%m-%dT%H:%MZ"), f"{entry.direction} {entry.kind}", state]
    if not entry.is_sms:
        head.append(duration(entry.duration_seconds))
    if entry.queue:
        head.append(f"queue {entry.queue}")
    if entry.agent_code:
        head.append(f"agent {entry.agent_code}")
    lines = ["  ".join(printable(part) for part in head)]
    caller = " ".join(part for part in (entry.caller_number or entry.caller_e164 or "",
                                        f'"{entry.caller_name}"' if entry.caller_name else "") if part)
    if customer_ref:
        caller += f" [customer {customer_ref}]"
    details = [("caller", caller.strip()), ("path", entry.path),
               ("sms" if entry.is_sms else "said", entry.transcript), ("human", _human_part(entry)),
               ("follow-up", f"#{entry.followup_id}" if entry.followup_id else ""),
               ("disposition", entry.disposition), ("notes", entry.notes),
               ("recording", entry.recording_ref)]
    lines += [f"    {label:<7} {printable(value)}" for label, value in details if value]
    return lines


def _print_heading(found: Subject, out: TextIO) -> None:
    """Who the subject is: the customer's facts, or the number and its owner if any."""
    if found.number is None and found.customer is not None:
        print(_describe_customer(found.customer), file=out)
    elif found.number is not None:
        owner = (_describe_customer(found.customer) if found.customer is not None
                 else "not a known customer's number")
        print(f"phone {found.number}: {owner}", file=out)


def timeline(engine: Engine, subject: str, region: str, limit: int = DEFAULT_LIMIT,
             out: TextIO | None = None) -> int:
    """Print ``subject``'s contacts, newest first; returns how many matched (ConfigError if unknown)."""
    out = out if out is not None else sys.stdout
    with Session(engine) as session:
        found = _resolve(session, subject, region)
        _print_heading(found, out)
        page = read_timeline(session, found, limit=limit)
    if not page.total:
        print(f"no contacts for {printable(found.label)}", file=out)
        return 0
    shown = len(page.entries)
    more = f" (the newest {shown}; --limit {page.total} shows all)" if shown < page.total else ""
    print(f"{page.total} contact{'s' if page.total != 1 else ''} for {printable(found.label)}, "
          f"newest first{more}:", file=out)
    mine = found.customer.id if found.customer is not None else None
    for entry in page.entries:
        print(file=out)
        ref = None
        if entry.customer_id is not None and entry.customer_id != mine:
            ref = entry.customer_external_id or f"#{entry.customer_id}"
        for line in contact_lines(entry, ref):
            print(line, file=out)
    return page.total
