"""Complaint cases in the database: open one (once per key), list them, move them on.

Each case is a ``complaint_cases`` row and a contact row (kind complaint,
channel case, uniqueid ``complaint:<id>``) whose outcome is the case's status,
so it sits in the customer's timeline next to the call or SMS it came from.

Blocking: call from a worker thread (the plugin and the web resource use
``threads.deferToThread``), or from the CLI.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, Engine, Table, select, update
from sqlalchemy.orm import Session, aliased

from ivr.db.models import Agent, ComplaintCase, Contact, Customer
from ivr.db.sql import insert_ignoring, utc, write_transaction
from ivr.errors import ConfigError
from ivr.history.links import customer_of_number
from ivr.plugins.feedback import ComplaintRequest

__all__ = ["STATUSES", "CaseView", "OpenedCase", "list_cases", "open_case", "set_followup", "update_case"]

STATUSES = ("open", "answered", "resolved")
KIND = "complaint"
_cases = cast(Table, ComplaintCase.__table__)
_contacts = cast(Table, Contact.__table__)
_customers = cast(Table, Customer.__table__)


@dataclass(frozen=True, slots=True)
class OpenedCase:
    id: int
    #: False when the key had a case already (the same SMS delivered twice).
    new: bool
    e164: str | None
    customer_id: int | None
    owner_agent_id: int | None
    contact_id: int | None
    response_due_at: dt.datetime


@dataclass(frozen=True, slots=True)
class CaseView:
    """One case as supervisors read it (times in UTC)."""

    id: int
    status: str
    origin: str
    priority: int
    created_at: dt.datetime
    response_due_at: dt.datetime
    overdue: bool
    e164: str
    customer: str
    owner: str
    text: str
    notes: str

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "status": self.status, "origin": self.origin, "priority": self.priority,
                "created_at": self.created_at.isoformat(),
                "response_due_at": self.response_due_at.isoformat(),
                "overdue": self.overdue, "e164": self.e164, "customer": self.customer, "owner": self.owner,
                "text": self.text, "notes": self.notes}


def _summary(case_id: int, status: str, due: dt.datetime) -> str:
    return f"complaint #{case_id} {status}, answer due {utc(due):%Y-%m-%d %H:%M} UTC"


def _source(connection: Connection, request: ComplaintRequest) -> tuple[int | None, str | None, int | None]:
    """The contact the complaint came from, and the number and customer it knows."""
    if request.contact_id is not None:
        where = _contacts.c.id == request.contact_id
    elif request.uniqueid:
        where = _contacts.c.uniqueid == request.uniqueid
    else:
        return None, None, None
    row = connection.execute(select(_contacts.c.id, _contacts.c.caller_e164, _contacts.c.customer_id)
                             .where(where)).first()
    return (row[0], row[1], row[2]) if row is not None else (None, None, None)


def open_case(engine: Engine, request: ComplaintRequest, due: dt.datetime, priority: int,
              now: dt.datetime) -> OpenedCase:
    """The case for ``request.key``: opened now (with its timeline row) or the one opened before."""
    with write_transaction(engine) as connection:
        contact_id, contact_e164, contact_customer = _source(connection, request)
        e164 = request.e164 or contact_e164
        customer = request.customer_id or contact_customer or customer_of_number(connection, e164)
        owner = (connection.execute(select(_customers.c.owner_agent_id).where(_customers.c.id == customer))
                 .scalar() if customer is not None else None)
        case_id = connection.execute(
            insert_ignoring(connection, _cases, ["key"]).values(
                key=request.key[:200], origin=request.origin[:16], customer_id=customer, e164=e164,
                source_contact_id=contact_id, owner_agent_id=owner, priority=priority, status="open",
                response_due_at=due, text=request.text, notes="", created_at=now, updated_at=now)
            .returning(_cases.c.id)).scalar()
        if case_id is None:
            row = connection.execute(select(_cases).where(_cases.c.key == request.key[:200])).one()
            return OpenedCase(row.id, False, row.e164, row.customer_id, row.owner_agent_id,
                              row.source_contact_id, utc(row.response_due_at))
        own = connection.execute(
            insert_ignoring(connection, _contacts, ["uniqueid"]).values(
                uniqueid=f"complaint:{case_id}", channel="case", kind=KIND, direction="inbound",
                handled_by="", caller_number=e164 or "", caller_e164=e164, customer_id=customer,
                started_at=now, ended_at=now, status="final", route=request.origin[:100], outcome="open",
                outcome_reason=_summary(int(case_id), "open", due), transcript=request.text)
            .returning(_contacts.c.id)).scalar()
        connection.execute(update(_cases).where(_cases.c.id == case_id).values(contact_id=own))
    return OpenedCase(int(case_id), True, e164, customer, owner, contact_id, due)


def set_followup(engine: Engine, case_id: int, followup_id: int) -> None:
    with write_transaction(engine) as connection:
        connection.execute(update(_cases).where(_cases.c.id == case_id).values(followup_id=followup_id))


def update_case(engine: Engine, case_id: int, status: str, note: str, now: dt.datetime) -> None:
    """Move a case on (answered, resolved) and add a note; its timeline row follows."""
    if status not in STATUSES:
        raise ConfigError("command line", "--status", f"{status!r} is not a case status",
                          "use " + ", ".join(STATUSES))
    with write_transaction(engine) as connection:
        row = connection.execute(select(_cases).where(_cases.c.id == case_id)).first()
        if row is None:
            raise ConfigError("command line", "CASE", f"there is no complaint case #{case_id}",
                              "pass an id that `ivr complaints list` shows")
        notes = "\n".join(part for part in (row.notes, note) if part)
        values: dict[str, object] = {"status": status, "notes": notes, "updated_at": now}
        if status == "answered" and row.answered_at is None:
            values["answered_at"] = now
        if status == "resolved":
            values["resolved_at"] = now
            if row.answered_at is None:
                values["answered_at"] = now
        connection.execute(update(_cases).where(_cases.c.id == case_id).values(values))
        if row.contact_id is not None:
            connection.execute(update(_contacts).where(_contacts.c.id == row.contact_id).values(
                outcome=status, outcome_reason=_summary(case_id, status, row.response_due_at), notes=notes))


def list_cases(engine: Engine, now: dt.datetime, overdue_only: bool = False, include_resolved: bool = False,
               limit: int = 200) -> list[CaseView]:
    """Cases by urgency: open ones first by due time; ``overdue_only``: open and past due."""
    owner = aliased(Agent)
    query = (select(ComplaintCase, owner.code, Customer.name, Customer.external_id)
             .outerjoin(owner, ComplaintCase.owner_agent_id == owner.id)
             .outerjoin(Customer, ComplaintCase.customer_id == Customer.id))
    if overdue_only:
        query = query.where(ComplaintCase.status == "open", ComplaintCase.response_due_at < now)
    elif not include_resolved:
        query = query.where(ComplaintCase.status != "resolved")
    query = query.order_by((ComplaintCase.status != "open"), ComplaintCase.response_due_at,
                           ComplaintCase.priority.desc(), ComplaintCase.id).limit(limit)
    with Session(engine) as session:
        rows = session.execute(query).all()
    views = []
    for case, code, name, external in rows:
        due = utc(case.response_due_at)
        who = " ".join(part for part in (name or "", f"({external})" if external else "") if part)
        views.append(CaseView(case.id, case.status, case.origin, case.priority, utc(case.created_at), due,
                              case.status == "open" and due < now, case.e164 or "",
                              who or (f"#{case.customer_id}" if case.customer_id else ""), code or "",
                              case.text, case.notes))
    return views
