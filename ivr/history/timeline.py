"""A customer's (or a phone number's) contacts, newest first: ``ivr history SUBJECT``.

The admin types whatever they have at hand: ``#<id>`` (ivr's own customer id),
a CRM's external id, or a phone number in any format. The recorder only knows
the caller's number, so a customer's contacts are both the rows linked to them
and those from any of their phones. Everything that came from callers or a CRM
is printed through :func:`~ivr.console.printable`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, TextIO

from sqlalchemy import Engine, func, or_, select
from sqlalchemy.orm import Session, aliased

from ivr.console import COMMAND_LINE, printable, quoted
from ivr.db.models import Agent, Contact, Customer, CustomerPhone
from ivr.db.sql import utc
from ivr.errors import ConfigError
from ivr.phone import normalise_number
from ivr.routing.path import IvrPath

__all__ = ["DEFAULT_LIMIT", "timeline"]

#: Contacts shown unless ``--limit`` says otherwise.
DEFAULT_LIMIT = 50

_INTERNAL_ID = re.compile(r"#(\d{1,18})")
_MAX_ID = 2**31 - 1  # an INTEGER column: a larger literal would be an error on PostgreSQL


@dataclass(frozen=True)
class _Subject:
    """What ``history SUBJECT`` resolved to: a customer, or a phone number (maybe a customer's)."""

    label: str
    where: Any
    customer: Customer | None = None
    phone: str | None = None


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
        raise _subject_error(f"{quoted(text)} is neither a phone number nor a known customer id")
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


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _contact_lines(contact: Contact, customer_ref: str | None, agent_code: str | None) -> list[str]:
    when = utc(contact.started_at).strftime("%Y-%m-%dT%H:%MZ")
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
    path = IvrPath.from_json(contact.ivr_path).text()
    if path:
        lines.append(f"    path    {printable(path)}")
    if contact.disposition:
        lines.append(f"    disposition  {printable(contact.disposition)}")
    if contact.notes:
        lines.append(f"    notes   {printable(contact.notes)}")
    return lines


def _print_heading(session: Session, found: _Subject, out: TextIO) -> None:
    """Who the subject is: the customer's facts, or the number and its owner if any."""
    if found.customer is not None and found.phone is None:
        print(_describe_customer(session, found.customer), file=out)
    elif found.phone is not None:
        owner = (_describe_customer(session, found.customer) if found.customer is not None
                 else "not a known customer's number")
        print(f"phone {found.phone}: {owner}", file=out)


def timeline(engine: Engine, subject: str, region: str, limit: int = DEFAULT_LIMIT,
             out: TextIO | None = None) -> int:
    """Print ``subject``'s contacts, newest first; returns how many matched (ConfigError if unknown)."""
    out = out if out is not None else sys.stdout
    with Session(engine) as session:
        found = _resolve(session, subject, region)
        _print_heading(session, found, out)
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
