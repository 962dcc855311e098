"""The contact-history recorder: batching, idempotent replays, the journal, crash reconciliation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from asterisk_sim import SimulatedAsterisk
from conftest import TEST_ROUTES, ServeProcess, free_port
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from twisted.internet import reactor as global_reactor
from twisted.internet.task import Clock

from ivr.db import Contact, ContactEvent, make_engine
from ivr.history.recorder import ContactEnd, ContactRecorder, ContactStart, ContactStep, Record

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC).timestamp()


def call_records(uniqueid: str, name: str = "Zhang") -> list[Record]:
    return [ContactStart(uniqueid, NOW, "ivr-a", caller_number="13800138000", caller_name=name),
            ContactStep(uniqueid, 1, NOW, "language", value="zh"),
            ContactStep(uniqueid, 2, NOW, "menu", "main", "2", "after-sales"),
            ContactEnd(uniqueid, NOW, "completed", ivr_path=[{"kind": "menu", "key": "2"}], dtmf="2",
                       queue="after-sales", duration_seconds=12.5)]


def counts(engine: Engine) -> tuple[int, int]:
    with Session(engine) as session:
        return (session.scalar(select(func.count()).select_from(Contact)) or 0,
                session.scalar(select(func.count()).select_from(ContactEvent)) or 0)


def test_a_call_becomes_one_finalised_row_with_its_path(engine: Engine, tmp_path: Path) -> None:
    recorder = ContactRecorder(engine, tmp_path / "journal", Clock())
    recorder._apply(call_records("1.1"))
    with Session(engine) as session:
        contact = session.scalars(select(Contact)).one()
        assert (contact.status, contact.outcome, contact.queue, contact.dtmf) == (
            "final", "completed", "after-sales", "2")
        assert contact.last_step == "menu:main:2:after-sales"
        assert [e.seq for e in contact.events] == [1, 2]


def test_times_text_and_paths_read_back_exactly_as_recorded(engine: Engine, tmp_path: Path) -> None:
    recorder = ContactRecorder(engine, tmp_path / "journal", Clock())
    started = NOW + 0.123456
    path = [{"kind": "menu", "menu": "主菜单", "key": "2", "value": "'; DROP TABLE contacts; --"}]
    recorder._apply([
        ContactStart("1.9", started, "ivr-a", caller_number="+8613800138000", caller_name=HOSTILE_NAME,
                     caller_e164="+8613800138000"),
        ContactStep("1.9", 1, started + 1, "menu", "主菜单", "2", "%s ? :name \\"),
        ContactEnd("1.9", started + 12.5, "completed", "caller chose", ivr_path=path, dtmf="2",
                   duration_seconds=12.5)])
    with Session(engine) as session:
        contact = session.scalars(select(Contact)).one()
        assert as_utc(contact.started_at).timestamp() == pytest.approx(started, abs=1e-6)
        assert as_utc(contact.ended_at).timestamp() == pytest.approx(started + 12.5, abs=1e-6)
        assert (contact.caller_name, contact.ivr_path, contact.outcome_reason) == (
            HOSTILE_NAME, path, "caller chose")
        event = contact.events[0]
        assert event.data == {"menu": "主菜单", "key": "2", "value": "%s ? :name \\"}
        assert as_utc(event.at).timestamp() == pytest.approx(started + 1, abs=1e-6)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive UTC times, PostgreSQL aware ones."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def test_a_call_whose_start_was_lost_still_gets_its_steps_and_end(engine: Engine, tmp_path: Path) -> None:
    recorder = ContactRecorder(engine, tmp_path / "journal", Clock())
    recorder._apply(call_records("1.5")[1:])  # no ContactStart
    with Session(engine) as session:
        contact = session.scalars(select(Contact)).one()
        assert (contact.uniqueid, contact.status, len(contact.events)) == ("1.5", "final", 2)
    recorder._apply(call_records("1.5"))  # the start turns up later (a replay): still one row
    assert counts(engine) == (1, 2)


def test_replaying_the_same_records_never_doubles_anything(engine: Engine, tmp_path: Path) -> None:
    recorder = ContactRecorder(engine, tmp_path / "journal", Clock())
    for _ in range(3):
        recorder._apply(call_records("1.1") + call_records("1.2"))
    assert counts(engine) == (2, 4)


def test_an_outage_goes_to_the_journal_and_is_replayed_in_order(engine: Engine, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    recorder = ContactRecorder(engine, journal, Clock())
    down = make_engine(f"sqlite:///{tmp_path / 'missing' / 'no.db'}")  # its folder does not exist
    recorder.engine = down
    for index in range(50):
        recorder._write(call_records(f"2.{index}"))
    assert recorder.journaled == 200 and len(journal.read_text().splitlines()) == 200
    recorder.engine = engine
    recorder._write(call_records("2.50"))  # goes behind the journal, then everything is replayed
    assert journal.read_text() == ""
    assert counts(engine) == (51, 102)
    with Session(engine) as session:
        assert set(session.scalars(select(Contact.status))) == {"final"}


def test_a_torn_journal_line_from_a_crash_is_skipped(engine: Engine, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    recorder = ContactRecorder(engine, journal, Clock())
    recorder._append_journal(call_records("3.1"))
    with open(journal, "a") as handle:
        handle.write('{"op": "start", "uniqueid": "3.2", "started_')
    recorder._replay_journal()
    assert counts(engine) == (1, 2)


def test_reconcile_marks_only_this_instances_open_calls_interrupted(engine: Engine, tmp_path: Path) -> None:
    recorder = ContactRecorder(engine, tmp_path / "journal", Clock())
    recorder._apply([ContactStart("4.1", NOW, "ivr-a"), ContactStep("4.1", 1, NOW, "menu", "main", "1"),
                     ContactStart("4.2", NOW, "ivr-b")])
    assert recorder.reconcile("ivr-a") == 1
    with Session(engine) as session:
        rows = {c.uniqueid: (c.status, c.last_step) for c in session.scalars(select(Contact))}
    assert rows == {"4.1": ("interrupted", "menu:main:1"), "4.2": ("open", "")}


def test_writes_happen_off_the_reactor_thread(engine: Engine, tmp_path: Path) -> None:
    import threading

    seen: list[str] = []
    recorder = ContactRecorder(engine, tmp_path / "journal", global_reactor)
    original = recorder._apply

    def spy(batch: list[Record]) -> None:
        seen.append(threading.current_thread().name)
        original(batch)

    recorder._apply = spy  # type: ignore[method-assign]
    recorder._pool.start()
    try:
        for record in call_records("5.1"):
            recorder.record(record)
        recorder._flush_now()
        recorder._pool.stop()  # waits for the queued write
    finally:
        if recorder._pool.started:
            recorder._pool.stop()
    assert seen and all(name != threading.main_thread().name for name in seen)
    assert counts(engine) == (1, 2)


HOSTILE_NAME = "'); DELETE FROM contacts; -- \"Ω\" <script>x</script> " + "长" * 400


def test_ivr_serve_records_each_call_once_with_hostile_text_kept_literally() -> None:
    port = free_port()
    server = ServeProcess(port, {"IVR_ROUTING_ROUTES": TEST_ROUTES})
    try:
        for uniqueid in ("6.1", "6.2"):
            with SimulatedAsterisk(port=port) as asterisk:
                asterisk.send_environment("echo", uniqueid=uniqueid, calleridname=HOSTILE_NAME,
                                          callerid="'; DROP TABLE x; --")
                asterisk.expect("SET VARIABLE", "ECHO_NAME", HOSTILE_NAME)
                asterisk.reply("200 result=1")
                asterisk.expect("SET VARIABLE", "IVR_RESULT", "done")
                assert asterisk.wait_closed() == b""
    finally:
        assert server.stop() == 0  # SIGTERM flushes the history before exiting
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        rows = session.scalars(select(Contact).order_by(Contact.uniqueid)).all()
        assert [(c.uniqueid, c.status, c.outcome, c.route) for c in rows] == [
            ("6.1", "final", "completed", "echo"), ("6.2", "final", "completed", "echo")]
        assert rows[0].caller_name == HOSTILE_NAME and rows[0].caller_number == "'; DROP TABLE x; --"
        assert rows[0].caller_e164 is None
    engine.dispose()


def echo_call(port: int, uniqueid: str) -> None:
    with SimulatedAsterisk(port=port) as asterisk:
        asterisk.send_environment("echo", uniqueid=uniqueid, calleridname="Load")
        asterisk.expect("SET VARIABLE", "ECHO_NAME", "Load")
        asterisk.reply("200 result=1")
        asterisk.expect("SET VARIABLE", "IVR_RESULT", "done")
        assert asterisk.wait_closed() == b""


@pytest.mark.postgres
def test_a_postgresql_outage_under_load_is_journaled_and_replayed(postgres_url: str) -> None:
    import time

    from conftest import postgres_sandbox

    assert postgres_sandbox("reset", "ivr_test").returncode == 0
    port = free_port()
    server = ServeProcess(port, {"IVR_ROUTING_ROUTES": TEST_ROUTES, "IVR_DATABASE_URL": postgres_url})
    engine = make_engine(postgres_url)
    try:
        for index in range(30):
            echo_call(port, f"7.{index}")
        assert postgres_sandbox("stop").returncode == 0
        for index in range(30, 60):  # calls go on while the database is down
            echo_call(port, f"7.{index}")
        deadline = time.monotonic() + 10
        while not (server.journal.exists() and server.journal.stat().st_size):
            assert time.monotonic() < deadline, server.output()[-2000:]
            time.sleep(0.1)
        assert postgres_sandbox("start").returncode == 0
        deadline = time.monotonic() + 30  # the writer retries every 5 s
        while True:
            try:
                total, _ = counts(engine)
            except Exception:
                total = 0
            if total == 60 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        with Session(engine) as session:
            rows = session.scalars(select(Contact)).all()
            assert len(rows) == 60 and len({r.uniqueid for r in rows}) == 60
            assert {r.status for r in rows} == {"final"}
        assert "replayed" in server.output()
    finally:
        postgres_sandbox("start")
        server.stop()
        engine.dispose()


def test_customers_in_the_database_are_routed_by_their_tier_language_and_owner() -> None:
    from ivr.db.models import Agent, CustomerPhone
    from ivr.db.models import Customer as CustomerRow

    port = free_port()
    server = ServeProcess(port, {"IVR_ROUTING_AGENTS": "1001=PJSIP/1001"})
    engine = make_engine(f"sqlite:///{server.database}")
    with Session(engine) as session:
        owner = Agent(code="1001", name="Li")
        session.add(CustomerRow(external_id="C-9", name="Ms VIP", language="zh", vip_tier="vip", owner=owner,
                                phones=[CustomerPhone(e164="+8613900000009")]))
        session.commit()
    engine.dispose()
    variables: dict[str, str] = {}
    try:
        with SimulatedAsterisk(port=port) as asterisk:
            asterisk.send_environment("hotline", callerid="13900000009", uniqueid="8.1")
            while "IVR_QUEUE" not in variables:
                argv = asterisk.read_command()
                assert argv is not None, variables
                if argv[:2] == ["SET", "VARIABLE"]:
                    variables[argv[2]] = argv[3]
                # every prompt is answered with key 1: main menu -> sales
                asterisk.reply("200 result=49 endpos=0" if argv[:2] == ["STREAM", "FILE"] and argv[3]
                               else "200 result=1")
    finally:
        server.stop()
    assert variables["CHANNEL(language)"] == "zh"  # known language: no language question
    assert (variables["QUEUE_PRIO"], variables["IVR_CUSTOMER_ID"]) == ("10", "C-9")
    assert variables["IVR_OWNER_DEVICE"] == "PJSIP/1001" and variables["IVR_QUEUE"] == "sales"
