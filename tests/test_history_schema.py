"""The contact-history schema: migrations up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivr.db import Base, Contact, ContactEvent, Customer, CustomerPhone, make_engine
from ivr.db.schema import current_revision, downgrade, head_revision, upgrade

TABLES = {"agents", "customers", "customer_phones", "contacts", "contact_events"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'ivr.db'}")
    else:
        engine = make_engine(request.getfixturevalue("postgres_url"))
        downgrade(engine)  # a clean ivr_test, whatever an earlier run left
    yield engine
    downgrade(engine)
    engine.dispose()


def test_migrations_go_up_and_down(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert TABLES <= set(inspect(engine).get_table_names())
    downgrade(engine)
    assert current_revision(engine) is None
    assert not TABLES & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_migrations_match_the_models(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


HOSTILE = ["Robert'); DROP TABLE contacts;--", '"quoted" \\\\ back\\\\slash', "line\nbreak\r\n",
           "<script>alert(1)</script>", "张伟 VIP", "x" * 1500]


def test_hostile_text_is_stored_literally_and_uniqueid_is_unique(engine: Engine) -> None:
    upgrade(engine)
    with Session(engine) as session:
        customer = Customer(name=HOSTILE[4], phones=[CustomerPhone(e164="+8613800138000")])
        session.add(customer)
        for index, value in enumerate(HOSTILE):
            session.add(Contact(uniqueid=f"1700000000.{index}", caller_name=value, caller_number=value,
                                notes=value,
                                events=[ContactEvent(kind="menu", data={"key": value})]))
        session.commit()
    with Session(engine) as session:
        stored = session.scalars(select(Contact).order_by(Contact.id)).all()
        assert [c.caller_name for c in stored] == HOSTILE
        assert [c.events[0].data["key"] for c in stored] == HOSTILE
        session.add(Contact(uniqueid="1700000000.0"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_callback_requests_become_follow_ups_and_come_back(engine: Engine) -> None:
    """0005 keeps every callback request: open ones stay open (expired ones too: nothing expires
    silently), the SMS and the contacts that pointed at them point at the follow-ups, and the
    customer's account owner owns them; going down restores the requests."""
    upgrade(engine, "0004")
    at = "2026-11-02 09:00:00+00:00"
    with engine.begin() as c:
        c.exec_driver_sql("INSERT INTO agents (id, code, name, device, skills, active, role) "
                          "VALUES (7, '1007', 'Owner', 'PJSIP/1007', '[]', true, 'agent')")
        c.exec_driver_sql(f"INSERT INTO customers (id, name, language, vip_tier, owner_agent_id, "
                          f"preferred_channel, do_not_call, created_at, updated_at) "
                          f"VALUES (3, 'C', 'en', '', 7, 'voice', false, '{at}', '{at}')")
        for n, status in enumerate(["pending", "dialing", "expired", "done", "failed", "cancelled"], 1):
            c.exec_driver_sql(
                f"INSERT INTO callback_requests (id, source, message_id, customer_id, e164, reason, skill, "
                f"sms_text, priority, status, due_at, attempts, max_attempts, next_attempt_at, locked_by, "
                f"locked_at, last_outcome, created_at, updated_at) "
                f"VALUES ({n}, 'sms', 'm{n}', 3, '+4420700{n}', "
                f"'', 'sales', 'call me', 0, '{status}', '{at}', 1, 3, '{at}', 'x', '{at}', "
                f"'{'opted-out' if status == 'cancelled' else ''}', '{at}', '{at}')")
        c.exec_driver_sql(f"INSERT INTO sms_messages (message_id, from_number, to_number, text, "
                          f"received_at, action, detail, skill, callback_id) "
                          f"VALUES ('m1', '+442070001', '95555', 'call me', "
                          f"'{at}', 'callback', '', 'sales', 1)")
        c.exec_driver_sql(f"INSERT INTO contacts (channel, direction, kind, uniqueid, handled_by, "
                          f"caller_number, caller_name, called_number, started_at, status, ivr_path, "
                          f"last_step, dtmf, transcript, route, queue, queue_outcome, hangup_by, "
                          f"callback_request_id, outcome, outcome_reason, hangup_cause, recording_ref, "
                          f"disposition, notes) VALUES ('voice', 'outbound', "
                          f"'callback', 'u1', '', '', '', '', '{at}', 'final', '[]', '', '', '', '', '', '', "
                          f"'', 4, '', '', '', '', '', '')")
    upgrade(engine)
    with engine.connect() as c:
        rows = c.exec_driver_sql("SELECT id, state, outcome, locked_by, owner_agent_id, text, request_key "
                                 "FROM followups ORDER BY id").all()
        assert [(r[1], r[2]) for r in rows] == [("open", ""), ("open", ""), ("open", ""), ("done", "reached"),
                                                ("done", "unreached"), ("cancelled", "opted-out")]
        assert [r[3] for r in rows[:3]] == [None, "x", None]  # only a live claim stays claimed
        assert {r[4] for r in rows} == {7} and rows[0][5:] == ("call me", "m1")
        assert c.exec_driver_sql("SELECT followup_id FROM sms_messages").scalar() == 1
        assert c.exec_driver_sql("SELECT followup_id FROM contacts").scalar() == 4
    with engine.begin() as c:  # new follow-ups are numbered after the copied ones
        c.exec_driver_sql(f"INSERT INTO followups (origin, e164, reason, skill, text, priority, state, "
                          f"outcome, step, cadence_from, due_at, attempts, max_attempts, next_attempt_at, "
                          f"last_outcome, created_at, updated_at) "
                          f"VALUES ('lead', '+4420', '', '', '', 0, 'open', '', 0, '{at}', "
                          f"'{at}', 0, 3, "
                          f"'{at}', '', '{at}', '{at}')")
        assert c.exec_driver_sql("SELECT MAX(id) FROM followups").scalar() == 7
    downgrade(engine, "0004")
    with engine.connect() as c:
        statuses = c.exec_driver_sql("SELECT status FROM callback_requests ORDER BY id").scalars().all()
        assert statuses == ["pending", "dialing", "pending", "done", "failed", "cancelled", "pending"]
        assert c.exec_driver_sql("SELECT callback_id FROM sms_messages").scalar() == 1
        assert c.exec_driver_sql("SELECT callback_request_id FROM contacts").scalar() == 4
