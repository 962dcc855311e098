"""The contact-frequency cap counts a customer, not a number: every number of theirs, calls and SMS alike;
and a customer's "do not contact before" date holds off every contact until it passes.

Runs on SQLite and PostgreSQL, against the dial policy wired to the database as ``ivr serve`` wires it.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, update
from sqlalchemy.orm import Session
from twisted.internet import defer

from ivr.db import Contact, Customer, CustomerPhone
from ivr.db.sql import write_transaction
from ivr.dialing.directory import DialDirectory
from ivr.dialing.policy import DialDecision, DialPolicy, DialReason, DialRequest
from ivr.history.sms import SmsContact, record_sms

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
HOME, MOBILE, STRANGER = "+8613800138000", "+8613900139000", "+8613700137000"


def policy(engine: Engine, now: dt.datetime = NOW) -> DialPolicy:
    directory = DialDirectory(engine)
    return DialPolicy(contacts_since=directory.contacts_since, active_agent=None,
                      do_not_call=directory.do_not_call, not_before=directory.not_before, region="CN",
                      max_attempts=3, now=lambda: now)


def decide(engine: Engine, number: str, now: dt.datetime = NOW) -> DialDecision:
    result: list[DialDecision] = []
    defer.ensureDeferred(policy(engine, now).decide(DialRequest(number))).addCallback(result.append)
    assert result, "the policy answers at once with blocking ports"
    return result[0]


def customer_with_two_numbers(engine: Engine) -> int:
    with Session(engine) as session:
        customer = Customer(name="Zhang", phones=[CustomerPhone(e164=HOME), CustomerPhone(e164=MOBILE)])
        session.add(customer)
        session.commit()
        return customer.id


def called(engine: Engine, uniqueid: str, number: str, kind: str, at: dt.datetime) -> None:
    with Session(engine) as session:
        session.add(Contact(uniqueid=uniqueid, caller_e164=number, direction="outbound", kind=kind,
                            started_at=at))
        session.commit()


def texted(engine: Engine, key: str, number: str, at: dt.datetime) -> None:
    with write_transaction(engine) as connection:
        record_sms(connection, SmsContact(key, "outbound", number, number, "we will call you by 12:00", at))


def test_the_fourth_contact_in_a_day_across_two_numbers_and_an_sms_is_refused(engine: Engine) -> None:
    customer_with_two_numbers(engine)
    called(engine, "c1", HOME, "callback", NOW - dt.timedelta(hours=5))
    called(engine, "c2", MOBILE, "click-to-call", NOW - dt.timedelta(hours=3))
    assert decide(engine, HOME).allowed  # two so far
    texted(engine, "s1", HOME, NOW - dt.timedelta(hours=1))
    refused = decide(engine, MOBILE)
    assert (refused.reason, refused.attempts) == (DialReason.FREQUENCY_CAP, 3)
    assert decide(engine, HOME).reason is DialReason.FREQUENCY_CAP
    assert decide(engine, STRANGER).allowed  # someone else's count is their own
    assert decide(engine, HOME, NOW + dt.timedelta(hours=20)).allowed  # a rolling day: the first has left it


def test_inbound_contacts_do_not_count(engine: Engine) -> None:
    customer_with_two_numbers(engine)
    for n in range(5):
        with Session(engine) as session:
            session.add(Contact(uniqueid=f"in{n}", caller_e164=HOME, direction="inbound", kind="hotline",
                                started_at=NOW - dt.timedelta(minutes=n)))
            session.commit()
    assert decide(engine, MOBILE).allowed


def test_do_not_contact_before_holds_every_number_until_the_date(engine: Engine) -> None:
    customer = customer_with_two_numbers(engine)
    with Session(engine) as session:
        session.execute(update(Customer).where(Customer.id == customer)
                        .values(no_contact_before=NOW + dt.timedelta(days=2)))
        session.commit()
    refused = decide(engine, MOBILE)
    assert refused.reason is DialReason.NOT_BEFORE and "2026-11-25 10:00 UTC" in refused.message
    assert refused.http_status == 429
    assert decide(engine, HOME, NOW + dt.timedelta(days=2, seconds=1)).allowed
