"""SMS in the timeline, and the callback chain linked (SQLite and PostgreSQL).

Every inbound SMS (the webhook desk) and every outbound one (the outbox) is a
contact of its customer, written with the message itself; a redelivery makes
no second row. The SMS that asked for a callback, the request and the calls
that keep it all carry the request's id.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from test_followups_store import HOURS, MONDAY_10, NUMBER, Clock, at_once
from test_sms_desk import desk_for, sms
from test_sms_webhook import HOSTILE

from ivr.callbacks import FollowUpStore, SmsDesk
from ivr.callbacks.assign import FreeAgent
from ivr.callbacks.caller_requests import CallerCallbacks
from ivr.callbacks.outbox import SmsOutbox
from ivr.config import CallbackSettings
from ivr.db import Agent, Contact, Customer, CustomerPhone
from ivr.db.models import FollowUp
from ivr.db.models import SmsOutbox as OutboxRow
from ivr.db.sql import write_transaction
from ivr.dialing.consent import opt_out
from ivr.history.links import ContactLinks, link_contact_now
from ivr.history.sms import sms_uniqueid
from ivr.plugins.requests import FollowUpOrigin, FollowUpRequest


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_10)


@pytest.fixture
def desk(engine: Engine, clock: Clock) -> SmsDesk:
    return desk_for(engine, clock)


def add_customer(engine: Engine, name: str = "Wang Fang", number: str = NUMBER) -> int:
    with Session(engine) as session:
        customer = Customer(name=name, phones=[CustomerPhone(e164=number)])
        session.add(customer)
        session.commit()
        return customer.id


def contacts(engine: Engine) -> list[Contact]:
    with Session(engine) as session:
        rows = list(session.scalars(select(Contact).order_by(Contact.id)))
        session.expunge_all()
    return rows


def test_an_inbound_sms_is_a_contact_of_its_customer_linked_to_its_callback(
        engine: Engine, desk: SmsDesk, clock: Clock) -> None:
    customer = add_customer(engine)
    result = desk.receive(sms("gw-1", "2 washer leaks"))
    (contact,) = contacts(engine)
    assert (contact.channel, contact.kind, contact.direction, contact.status) == (
        "sms", "sms", "inbound", "final")
    assert (contact.uniqueid, contact.caller_number, contact.caller_e164, contact.called_number) == (
        "sms-in:gw-1", "13800138000", NUMBER, "10086")
    assert (contact.customer_id, contact.followup_id, contact.transcript) == (
        customer, result.followup_id, "2 washer leaks")
    assert contact.outcome == "callback"
    assert contact.started_at.replace(tzinfo=None) == clock().replace(tzinfo=None)  # received
    with Session(engine) as session:
        assert session.get(FollowUp, result.followup_id).customer_id == customer  # type: ignore[union-attr]


def test_a_redelivered_sms_makes_no_second_contact(engine: Engine, desk: SmsDesk) -> None:
    results = at_once(5, lambda _: desk.receive(sms("gw-77", "1")))
    assert sorted(r.duplicate for r in results) == [False, True, True, True, True]
    assert [c.uniqueid for c in contacts(engine)] == ["sms-in:gw-77"]
    desk.receive(sms("gw-77", "1"))  # later too
    assert len(contacts(engine)) == 1


def test_every_sms_is_a_contact_whatever_was_done_and_a_pending_one_links_the_open_request(
        engine: Engine, clock: Clock) -> None:
    desk = desk_for(engine, clock, min_interval=0.0)
    first = desk.receive(sms("a", "1"))
    clock.advance(seconds=5)
    again = desk.receive(sms("b", "call me please"))
    clock.advance(seconds=5)
    stranger = desk.receive(sms("c", "1", sender="not a number"))
    rows = contacts(engine)
    assert [(c.uniqueid, c.outcome, c.followup_id, c.customer_id) for c in rows] == [
        ("sms-in:a", "callback", first.followup_id, None),
        ("sms-in:b", "already-pending", first.followup_id, None),
        ("sms-in:c", "invalid-number", None, None)]
    assert again.followup_id == first.followup_id and stranger.followup_id is None
    assert rows[2].caller_e164 is None and rows[2].caller_number == "not a number"


def test_hostile_sms_texts_are_stored_literally_as_contacts(engine: Engine, desk: SmsDesk) -> None:
    for index, text in enumerate(HOSTILE):
        desk.receive(sms(f"h{index}", text, sender=f"1380013{index:04d}"))
    assert [c.transcript for c in contacts(engine)] == HOSTILE


def test_long_message_ids_are_hashed_and_never_collide() -> None:
    short = sms_uniqueid("inbound", "gw-1")
    long_a, long_b = sms_uniqueid("inbound", "x" * 200), sms_uniqueid("inbound", "x" * 199 + "y")
    sneaky = sms_uniqueid("inbound", long_a.removeprefix("sms-in:"))  # a short id that looks hashed
    assert short == "sms-in:gw-1" and sms_uniqueid("outbound", "7") == "sms-out:7"
    assert len({short, long_a, long_b, sneaky}) == 4
    assert all(len(u) <= 64 and u.startswith("sms-in:sha256:") for u in (long_a, long_b, sneaky))


def test_an_outbound_sms_is_a_contact_in_the_same_transaction(engine: Engine) -> None:
    customer = add_customer(engine)
    outbox = SmsOutbox(engine)
    assert outbox.store(NUMBER, "We will call you back by 11:00.")
    assert outbox.store("+8613900139000", "<b>not bold</b>")
    with Session(engine) as session:
        queued = list(session.scalars(select(OutboxRow.id).order_by(OutboxRow.id)))
    rows = contacts(engine)
    assert [(c.uniqueid, c.direction, c.kind, c.caller_e164, c.customer_id, c.transcript, c.outcome)
            for c in rows] == [
        (f"sms-out:{queued[0]}", "outbound", "sms", NUMBER, customer, "We will call you back by 11:00.",
         "queued"),
        (f"sms-out:{queued[1]}", "outbound", "sms", "+8613900139000", None, "<b>not bold</b>", "queued")]


@pytest.fixture
def downgradable(engine: Engine) -> Iterator[None]:
    """Unlink agents and callback requests before the engine fixture downgrades: on SQLite migration
    0004's downgrade recreates tables with foreign keys on, which rows pointing at them refuse."""
    yield
    with engine.begin() as connection:
        connection.execute(update(FollowUp).values(contact_id=None))
        connection.execute(update(Contact).values(agent_id=None))


def add_call(engine: Engine, uniqueid: str, **values: object) -> None:
    with Session(engine) as session:
        session.add(Contact(uniqueid=uniqueid, caller_e164=NUMBER, **values))
        session.commit()


def test_links_fill_customer_agent_and_request_and_never_overwrite(engine: Engine,
                                                                   downgradable: None) -> None:
    customer = add_customer(engine)
    with Session(engine) as session:
        session.add(Agent(code="1001"))
        session.commit()
    add_call(engine, "out-1", direction="outbound", kind="callback")
    assert link_contact_now(engine, "out-1", ContactLinks(agent_code="1001", followup_id=7))
    assert link_contact_now(engine, "out-1", ContactLinks(customer_id=999_999, agent_code="nobody",
                                                          followup_id=8))
    assert not link_contact_now(engine, "not-there", ContactLinks(followup_id=7))
    (row,) = contacts(engine)
    assert (row.customer_id, row.followup_id) == (customer, 7)  # by its number; kept after
    with Session(engine) as session:
        assert session.get(Agent, row.agent_id).code == "1001"  # type: ignore[union-attr]


def test_finishing_an_attempt_links_its_contact_both_ways(engine: Engine, clock: Clock,
                                                         downgradable: None) -> None:
    store = FollowUpStore(engine, HOURS, CallbackSettings(), now=clock)
    customer = add_customer(engine)
    request, _ = store.create(FollowUpRequest(NUMBER, FollowUpOrigin.API, customer_id=customer))
    (claimed,) = store.claim_due([FreeAgent("1001")], "me")
    add_call(engine, "ivr-out-1", direction="outbound", kind="callback")
    done = store.finish(claimed.followup.id, "answered", "me", contact_uniqueid="ivr-out-1")
    (contact,) = contacts(engine)
    assert (done.state, done.contact_id) == ("done", contact.id)
    assert (contact.followup_id, contact.customer_id) == (request.id, customer)


@pytest.mark.parametrize("known", [True, False])
def test_a_caller_who_asks_for_a_callback_in_the_menu_is_linked_to_the_request(
        engine: Engine, clock: Clock, known: bool) -> None:
    customer = add_customer(engine) if known else None
    add_call(engine, "1700000000.5", kind="hotline")
    plugin = CallerCallbacks(FollowUpStore(engine, HOURS, CallbackSettings(), now=clock), "CN")
    assert plugin.store_request("1700000000.5", NUMBER, "after-sales", "main:9")
    assert plugin.store_request("1700000000.5", NUMBER, "after-sales", "main:9")  # idempotent
    with Session(engine) as session:
        (request,) = session.scalars(select(FollowUp)).all()
    (call,) = contacts(engine)
    assert (request.request_key, request.customer_id) == ("ivr:1700000000.5", customer)
    assert (call.followup_id, call.customer_id) == (request.id, customer)


def test_a_caller_who_opted_out_gets_no_callback_promise(engine: Engine, clock: Clock) -> None:
    add_call(engine, "1700000000.6", kind="hotline")
    with write_transaction(engine) as connection:
        opt_out(connection, NUMBER, "sms", "stop-1", clock())
    plugin = CallerCallbacks(FollowUpStore(engine, HOURS, CallbackSettings(), now=clock), "CN")
    assert not plugin.store_request("1700000000.6", NUMBER, "after-sales", "main:9")
    with Session(engine) as session:
        assert session.scalars(select(FollowUp)).all() == []
