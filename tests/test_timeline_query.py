"""A customer's timeline as people read it: subjects, paging newest first, search (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from ivr.db import Agent, Contact, Customer, CustomerPhone
from ivr.history.query import PAGE_SIZE, customer_subject, number_subject, read_timeline, search

HOME, MOBILE, STRANGER = "+8613800138000", "+8613900139000", "+8613700137000"
START = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.UTC)


def add(session: Session, uniqueid: str, minutes: int, **values: Any) -> None:
    session.add(Contact(uniqueid=uniqueid, started_at=START + dt.timedelta(minutes=minutes), **values))


@pytest.fixture
def people(engine: Engine) -> Iterator[dict[str, int]]:
    """Wang Fang (two phones) with 25 contacts by phone, by link and by SMS; two others; a stranger.

    Afterwards the contacts let go of the agent: on SQLite migration 0004's downgrade (the engine
    fixture's teardown) recreates the agents table with foreign keys on, which those rows refuse.
    """
    with Session(engine) as session:
        agent = Agent(code="1001", name="Ana")
        wang = Customer(name="Wang Fang 王芳", external_id="C-1", vip_tier="vip",
                        phones=[CustomerPhone(e164=HOME), CustomerPhone(e164=MOBILE)])
        other = Customer(name="Li Na", external_id="C-2", phones=[CustomerPhone(e164="+8613600136000")])
        percent = Customer(name="100% _real_ name", external_id="C-3")
        session.add_all([agent, wang, other, percent])
        session.flush()
        for index in range(20):
            add(session, f"home.{index}", index * 10, caller_e164=HOME if index % 2 else MOBILE,
                caller_number="13800138000", ivr_path=[{"kind": "menu", "menu": "main", "key": "2"}],
                agent_id=agent.id, queue="sales", queue_outcome="answered", wait_seconds=12.5,
                talk_seconds=185.0, status="final", outcome="completed")
        for index in range(3):  # linked by customer id only (e.g. a callback dialled on another line)
            add(session, f"linked.{index}", 300 + index, customer_id=wang.id, caller_e164="+8613500135000",
                direction="outbound", kind="callback")
        add(session, "sms-in:1", 400, channel="sms", kind="sms", caller_e164=HOME, transcript="call me")
        add(session, "tie.a", 500, caller_e164=HOME)  # two contacts at the same moment: ordered by id
        add(session, "stranger.1", 100, caller_e164=STRANGER)
        add(session, "li.1", 100, caller_e164="+8613600136000", customer_id=other.id)
        session.commit()
        ids = {"wang": wang.id, "li": other.id, "percent": percent.id, "agent": agent.id}
    yield ids
    with engine.begin() as connection:
        connection.execute(update(Contact).values(agent_id=None))


def test_a_customers_timeline_has_every_phone_and_linked_contact_newest_first(
        engine: Engine, people: dict[str, int]) -> None:
    with Session(engine) as session:
        subject = customer_subject(session, people["wang"])
        assert subject is not None and subject.customer is not None
        assert (subject.customer.name, subject.customer.phones, subject.customer.tier) == (
            "Wang Fang 王芳", (HOME, MOBILE), "vip")
        first = read_timeline(session, subject)
    assert first.total == 25 and len(first.entries) == PAGE_SIZE == 20
    assert [e.uniqueid for e in first.entries[:6]] == [
        "tie.a", "sms-in:1", "linked.2", "linked.1", "linked.0", "home.19"]
    newest = first.entries[-1]
    assert (newest.agent_code, newest.agent_name, newest.path, newest.queue_outcome) == (
        "1001", "Ana", "main:2", "answered")
    assert (newest.wait_seconds, newest.talk_seconds) == (12.5, 185.0)
    assert first.entries[1].is_sms and first.entries[1].transcript == "call me"


def test_pages_follow_each_other_without_gaps_or_repeats_even_when_contacts_arrive(
        engine: Engine, people: dict[str, int]) -> None:
    seen: list[str] = []
    with Session(engine) as session:
        subject = customer_subject(session, people["wang"])
        assert subject is not None
        page = read_timeline(session, subject, limit=7)
        seen += [e.uniqueid for e in page.entries]
        add(session, "new.1", 900, caller_e164=HOME)  # arrives while the agent reads
        session.commit()
        while page.older is not None:
            page = read_timeline(session, subject, before=page.older, limit=7)
            seen += [e.uniqueid for e in page.entries]
    assert len(seen) == len(set(seen)) == 25 and "new.1" not in seen
    assert seen[-1] == "home.0"


def test_ties_in_time_are_ordered_by_id_across_a_page_boundary(engine: Engine,
                                                                people: dict[str, int]) -> None:
    with Session(engine) as session:
        add(session, "tie.b", 500, caller_e164=HOME)
        session.commit()
        subject = customer_subject(session, people["wang"])
        assert subject is not None
        first = read_timeline(session, subject, limit=1)
        second = read_timeline(session, subject, before=first.older, limit=1)
    assert [first.entries[0].uniqueid, second.entries[0].uniqueid] == ["tie.b", "tie.a"]


def test_a_numbers_timeline_includes_its_owners_linked_contacts(engine: Engine,
                                                                 people: dict[str, int]) -> None:
    with Session(engine) as session:
        mine = read_timeline(session, number_subject(session, HOME), limit=200)
        stranger = read_timeline(session, number_subject(session, STRANGER))
        nobody = read_timeline(session, number_subject(session, "+8613100131000"))
    assert mine.subject.customer is not None and mine.subject.customer.id == people["wang"]
    assert mine.total == 15  # 10 from this phone, 3 linked, the SMS, the tie
    assert [e.uniqueid for e in stranger.entries] == ["stranger.1"] and stranger.subject.customer is None
    assert (nobody.total, nobody.entries, nobody.older) == (0, [], None)


def test_unknown_customers_and_bad_cursors_give_nothing(engine: Engine, people: dict[str, int]) -> None:
    with Session(engine) as session:
        assert customer_subject(session, 999_999) is None
        assert customer_subject(session, 2**40) is None
        subject = customer_subject(session, people["wang"])
        assert subject is not None
        assert read_timeline(session, subject, before=2**40).entries == []
        assert read_timeline(session, subject, before=999_999).entries == []


@pytest.mark.parametrize(("typed", "found"), [
    ("138 0013 8000", ["wang"]), ("+86 139-0013-9000", ["wang"]), ("wang", ["wang"]), ("王芳", ["wang"]),
    ("FANG", ["wang"]), ("a", ["percent", "li", "wang"]), ("C-2", ["li"]), ("100%", ["percent"]),
    ("_", ["percent"]), ("%", ["percent"]), ("nobody", []), ("'; DROP TABLE contacts; --", []),
])
def test_search_by_number_in_any_format_name_or_external_id(
        engine: Engine, people: dict[str, int], typed: str, found: list[str]) -> None:
    with Session(engine) as session:
        result = search(session, typed, "CN")
    assert [c.id for c in result.customers] == [people[name] for name in found]


def test_search_by_internal_id_and_a_number_without_a_customer(engine: Engine,
                                                                people: dict[str, int]) -> None:
    with Session(engine) as session:
        by_id = search(session, f"#{people['li']}", "CN")
        stranger = search(session, "137 0013 7000", "CN")
        empty = search(session, "   ", "CN")
    assert [c.name for c in by_id.customers] == ["Li Na"]
    assert (stranger.customers, stranger.number) == ([], STRANGER)
    assert (empty.customers, empty.number) == ([], None)
