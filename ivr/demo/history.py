"""The demo customers' earlier contacts, written once: what the first demo call's card shows.

Contacts are made by calls, and no ``ivr`` command makes past ones, so a fresh
demo would pop a card saying "No earlier contacts" and ``ivr history`` would
be empty. :func:`seed_history` writes a few weeks of believable history for
the customers of ``customers.csv`` with ivr's own models, in the shapes the
server itself records: a hotline call with its IVR path and queue, a
self-service call, one abandoned in the queue, a spoken choice, a
click-to-call, an SMS and the callback it asked for.

Each contact has a fixed uniqueid (``demo-...``), so a second run adds
nothing; times are relative to the first run. Every outbound contact is
more than a day old, so none counts against the dial policy's calls per day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ivr.db.models import Agent, Contact, Customer, CustomerPhone
from ivr.db.sql import utc_now
from ivr.demo import CUSTOMERS_CSV, DEMO_AGENT
from ivr.errors import ConfigError
from ivr.routing.path import IvrPath
from ivr.routing.router import CallStep

__all__ = ["EARLIER_CONTACTS", "EarlierContact", "SeedReport", "seed_history"]

#: The hotline's number (the DID the demo calls arrive on).
HOTLINE = "4000"
#: Seconds a hotline caller spends in the menus before the queue (in the seeded contacts).
MENU_SECONDS = 20.0


@dataclass(frozen=True)
class EarlierContact:
    """One past contact of a demo customer (by external id), ``days_ago`` before the first seeding."""

    uniqueid: str
    customer: str
    days_ago: float
    #: hotline, click-to-call, callback or sms
    kind: str
    outcome: str
    steps: tuple[CallStep, ...] = ()
    queue: str = ""
    #: Who took it (an agent code), if anyone did.
    agent: str = ""
    wait_seconds: float = 0.0
    talk_seconds: float = 0.0
    disposition: str = ""
    notes: str = ""
    #: What the customer wrote (sms) or said (a spoken menu choice).
    text: str = ""


def _sales(key: str = "1") -> tuple[CallStep, ...]:
    return (CallStep("menu", "main", key, "sales"), CallStep("transfer", value="queue:sales"))


_AFTER_SALES_AGENT = (CallStep("menu", "main", "2", "after-sales"),
                      CallStep("menu", "after-sales", "0", "after-sales"),
                      CallStep("transfer", value="queue:after-sales"))
_ANSWERED = (CallStep("agent-leg", value="answered"), CallStep("customer-leg", value="answered"))
_NOT_REACHED = (CallStep("agent-leg", value="answered"), CallStep("customer-leg", value="customer-no-answer"))

EARLIER_CONTACTS: tuple[EarlierContact, ...] = (
    # 王芳, VIP, account owner 1001: a sale, the delivery call, an SMS and its callback.
    EarlierContact("demo-wf-1", "DEMO-001", 26, "hotline", "completed", _sales(), "sales", DEMO_AGENT,
                   8, 312, "sale", "Ordered two AP-300 air purifiers; delivery on Tuesday."),
    EarlierContact("demo-wf-2", "DEMO-001", 19, "click-to-call", "answered", _ANSWERED, agent=DEMO_AGENT,
                   talk_seconds=95, disposition="resolved",
                   notes="Delivery done. She asked about the extended warranty."),
    EarlierContact("demo-wf-3", "DEMO-001", 5, "sms", "callback", text="请明天上午回电，想问一下延保的事。",
                   notes="SMS: 请明天上午回电，想问一下延保的事。"),
    EarlierContact("demo-wf-4", "DEMO-001", 4, "callback", "answered", _ANSWERED, agent=DEMO_AGENT,
                   talk_seconds=240, disposition="follow-up",
                   notes="Sent the extended-warranty quote; she decides by Friday."),
    # James Miller: self-service first, then a repair booked, then gave up waiting.
    EarlierContact("demo-jm-1", "DEMO-002", 33, "hotline", "completed",
                   (CallStep("menu", "main", "2", "after-sales"),
                    CallStep("menu", "after-sales", "1", "ivr-repair-info"))),
    EarlierContact("demo-jm-2", "DEMO-002", 12, "hotline", "completed", _AFTER_SALES_AGENT, "after-sales",
                   DEMO_AGENT, 41, 410, "follow-up",
                   "WM-8 washing machine leaks; technician booked for Friday 10:00."),
    EarlierContact("demo-jm-3", "DEMO-002", 3, "hotline", "hangup", _AFTER_SALES_AGENT, "after-sales",
                   wait_seconds=95),
    # 박지우 (Park Ji-woo): chose by voice, in Korean.
    EarlierContact("demo-pj-1", "DEMO-003", 15, "hotline", "completed",
                   (CallStep("speech", "main", "0", "상담원", 0.93), *_sales("0")), "sales", DEMO_AGENT, 12,
                   180, "resolved", "Wanted the AP-300 manual in Korean; emailed the PDF.", "상담원"),
    # 李娜, a hot lead from the web: called within two hours, reached on the second try.
    EarlierContact("demo-ln-1", "DEMO-004", 2.6, "click-to-call", "customer-no-answer", _NOT_REACHED,
                   agent=DEMO_AGENT, notes="Web lead: air purifiers for her office. No answer."),
    EarlierContact("demo-ln-2", "DEMO-004", 2.5, "click-to-call", "answered", _ANSWERED, agent=DEMO_AGENT,
                   talk_seconds=200, disposition="follow-up",
                   notes="Wants 6 units for an office of 40; sent the brochure and a quote."),
    # Emily Chen: complained about sales calls, now on do-not-call.
    EarlierContact("demo-ec-1", "DEMO-005", 40, "hotline", "completed", _sales(), "sales", DEMO_AGENT, 15,
                   150, "complaint", "Upset about sales calls; asked not to be called again (do-not-call)."),
)


@dataclass(frozen=True)
class SeedReport:
    """How many demo contacts this run added, and how many were there already."""

    added: int
    present: int

    def summary(self) -> str:
        return f"demo history: added {self.added} earlier contacts, {self.present} were there already"


def _row(item: EarlierContact, customer: Customer, e164: str, agent_id: int | None,
         now: dt.datetime) -> Contact:
    """The contact as the server would have recorded it."""
    started = now - dt.timedelta(days=item.days_ago)
    inbound = item.kind in ("hotline", "sms")
    ivr_seconds = MENU_SECONDS if item.kind == "hotline" else 0.0
    seconds = ivr_seconds + item.wait_seconds + item.talk_seconds
    path = IvrPath(list(item.steps))
    spoken = next((step for step in item.steps if step.kind == "speech"), None)
    national = e164[3:] if e164.startswith("+86") else e164  # as a Chinese trunk delivers a mobile's number
    return Contact(
        channel="sms" if item.kind == "sms" else "voice", direction="inbound" if inbound else "outbound",
        kind=item.kind, uniqueid=item.uniqueid, handled_by="demo",
        caller_number=national if inbound else e164, caller_e164=e164,
        called_number=HOTLINE if inbound else e164, customer_id=customer.id, started_at=started,
        answered_at=None if item.kind == "sms" else started, ended_at=started + dt.timedelta(seconds=seconds),
        duration_seconds=seconds if item.kind != "sms" else None, status="final",
        ivr_path=path.to_json(), last_step=path.labels()[-1] if len(path) else "",
        dtmf="".join(step.key for step in item.steps if step.kind == "menu"),
        transcript=item.text, transcript_confidence=spoken.confidence if spoken else None,
        route="hotline" if item.kind == "hotline" else "callback" if not inbound else "",
        queue=item.queue, agent_id=agent_id, outcome=item.outcome, disposition=item.disposition,
        notes=item.notes)


def seed_history(engine: Engine, contacts: Sequence[EarlierContact] = EARLIER_CONTACTS,
                 now: dt.datetime | None = None) -> SeedReport:
    """Add the demo ``contacts`` that are not in the database yet (by uniqueid), in one transaction.

    ConfigError if a customer or the agent they name is missing: the demo's customers
    come from ``ivr customers import`` and its agent from ``ivr agents add``, first.
    """
    now = now or utc_now()
    with Session(engine) as session, session.begin():
        wanted = [c.uniqueid for c in contacts]
        present = set(session.scalars(select(Contact.uniqueid).where(Contact.uniqueid.in_(wanted))))
        added = 0
        for item in contacts:
            if item.uniqueid in present:
                continue
            customer = session.scalars(select(Customer).where(Customer.external_id == item.customer)).first()
            if customer is None:
                raise ConfigError("demo history", item.uniqueid, f"there is no customer {item.customer}",
                                  f"import the demo customers first: ivr customers import {CUSTOMERS_CSV}")
            e164 = session.scalars(select(CustomerPhone.e164).where(CustomerPhone.customer_id == customer.id)
                                   .order_by(CustomerPhone.id)).first()
            if e164 is None:
                raise ConfigError("demo history", item.uniqueid, f"customer {item.customer} has no phone",
                                  f"import the demo customers again: ivr customers import {CUSTOMERS_CSV}")
            agent_id = None
            if item.agent:
                agent_id = session.scalars(select(Agent.id).where(Agent.code == item.agent)).first()
                if agent_id is None:
                    raise ConfigError("demo history", item.uniqueid, f"there is no agent {item.agent}",
                                      f"add the demo agent first: ivr agents add {item.agent} --device ...")
            session.add(_row(item, customer, e164, agent_id, now))
            added += 1
    return SeedReport(added, len(present))
