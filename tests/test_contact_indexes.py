"""The contacts table's partial indexes (migration 0009) still serve the queries that need them.

Most calls end in the IVR with no customer record, agent or follow-up, so those indexes hold
only the rows with a value, and ``status`` / ``queue_outcome`` are indexed only for the rows
still open or with a person. A partial index is used only when the planner can prove the
query asks for rows inside it, so each test captures the SQL a feature really sends and asks
the database for its plan (PostgreSQL with sequential scans discouraged, as on a big table).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session
from twisted.internet.task import Clock

from ivr.db import Customer, CustomerPhone
from ivr.dialing import DialTarget
from ivr.dialing.directory import DialDirectory
from ivr.history.human_part import open_human_parts
from ivr.history.query import customer_subject, number_subject, read_timeline
from ivr.history.recorder import ContactRecorder
from ivr.history.records import ContactEnd, ContactHumanPart, ContactStart

T0 = 1_800_000_000.0


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """Every statement sent to the database inside the block, with its parameters."""
    sent: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", seen)


def plan(engine: Engine, statement: str, parameters: Any) -> str:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
            return "\n".join(str(row[-1]) for row in rows)
        connection.exec_driver_sql("SET enable_seqscan = off")
        rows = connection.exec_driver_sql("EXPLAIN " + statement, parameters).all()
        connection.rollback()
        return "\n".join(str(row[0]) for row in rows)


def plans_of(engine: Engine, run: Callable[[], object], touching: str) -> list[str]:
    """The plans of the statements ``run`` sends that mention ``touching``."""
    with statements(engine) as sent:
        run()
    found = [plan(engine, sql, params) for sql, params in sent if touching in sql and "contacts" in sql]
    assert found, f"no statement mentioning {touching!r} was sent"
    return found


def history(engine: Engine, tmp_path: Path) -> ContactRecorder:
    """A few calls: one only in the IVR, one open, one waiting for a person, one from a customer."""
    recorder = ContactRecorder(engine, tmp_path / "journal", Clock())
    recorder._apply([
        ContactStart("1.1", T0, "ivr-a"), ContactEnd("1.1", T0 + 20, "completed"),
        ContactStart("1.2", T0, "ivr-a"),
        ContactStart("1.3", T0, "ivr-a"), ContactEnd("1.3", T0 + 20, "completed", queue="sales"),
        ContactHumanPart("1.3", "waiting", queue="sales"),
        ContactStart("1.4", T0, "ivr-a", caller_number="13800138000", caller_e164="+8613800138000"),
    ])
    return recorder


def test_start_up_finds_an_instances_open_calls_through_the_open_index(engine: Engine,
                                                                       tmp_path: Path) -> None:
    recorder = history(engine, tmp_path)
    (update,) = plans_of(engine, lambda: recorder.reconcile("ivr-a"), "handled_by")
    assert "ix_contacts_open" in update, update


def test_start_up_finds_calls_left_with_a_person_through_their_index(engine: Engine, tmp_path: Path) -> None:
    history(engine, tmp_path)
    parts: list[Any] = []
    (select,) = plans_of(engine, lambda: parts.extend(open_human_parts(engine, "ivr-a")), "handled_by")
    assert "ix_contacts_with_a_person" in select, select
    assert [part.uniqueid for part in parts] == ["1.3"]


def a_customer(engine: Engine) -> int:
    with Session(engine) as session:
        customer = Customer(name="Zhang Wei", phones=[CustomerPhone(e164="+8613800138000")])
        session.add(customer)
        session.commit()
        return customer.id


def searches_both_indexes(plan: str) -> None:
    """The customer's own contacts and those from their numbers, each found through its index."""
    assert "ix_contacts_customer_id_started_at" in plan, plan
    assert "ix_contacts_caller_e164" in plan, plan


def test_a_customers_timeline_reads_the_customer_index(engine: Engine, tmp_path: Path) -> None:
    customer_id = a_customer(engine)
    history(engine, tmp_path)
    with Session(engine) as session:
        by_customer = customer_subject(session, customer_id)
        assert by_customer is not None
        by_number = number_subject(session, "+8613800138000")
        pages: list[Any] = []
        for subject in (by_customer, by_number):
            found = plans_of(engine, lambda s=subject: pages.append(read_timeline(session, s)), "customer_id")
            for counted_or_listed in found:
                searches_both_indexes(counted_or_listed)
    assert [[entry.uniqueid for entry in page.entries] for page in pages] == [["1.4"], ["1.4"]]


def test_the_dialling_cap_counts_a_customers_calls_through_the_indexes(engine: Engine,
                                                                       tmp_path: Path) -> None:
    a_customer(engine)
    history(engine, tmp_path)
    counted: list[int] = []
    since = dt.datetime.fromtimestamp(T0 - 3600, dt.UTC)
    target = DialTarget("+8613800138000")
    (plan,) = plans_of(engine, lambda: counted.append(DialDirectory(engine).contacts_since(target, since)),
                       "customer_id")
    searches_both_indexes(plan)
    assert counted == [0]  # the customer's one call was inbound
