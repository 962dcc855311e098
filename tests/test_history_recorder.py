"""The contact-history recorder: batching, idempotent replays, the journal, crash reconciliation.

Killing a real server under load is in tests/test_history_kill.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from asterisk_sim import SimulatedAsterisk
from conftest import TEST_ROUTES, ServeProcess, free_port
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from ivr.db import Contact, ContactEvent, make_engine
from ivr.errors import ConfigError
from ivr.history.journal import Journal
from ivr.history.recorder import ContactEnd, ContactRecorder, ContactStart, ContactStep, Record
from ivr.history.records import journal_line, read_records
from ivr.routing.router import CallStep

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC).timestamp()


def call_records(uniqueid: str, name: str = "Zhang") -> list[Record]:
    return [ContactStart(uniqueid, NOW, "ivr-a", caller_number="13800138000", caller_name=name),
            ContactStep(uniqueid, 1, NOW, CallStep("language", value="zh")),
            ContactStep(uniqueid, 2, NOW, CallStep("menu", "main", "2", "after-sales")),
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
        ContactStep("1.9", 1, started + 1, CallStep("menu", "主菜单", "2", "%s ? :name \\")),
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


def inline(recorder: ContactRecorder) -> ContactRecorder:
    """The writer thread's work done at once, in order, on this thread."""
    recorder._submit = lambda work: succeed(work())  # type: ignore[method-assign, assignment]
    return recorder


def segments(journal: Path) -> list[Path]:
    files = Journal(journal)
    return [files.segment(number) for number in files.numbers()]


def lines(records: list[Record]) -> bytes:
    """Journal lines, as a process that died left them."""
    return b"".join(journal_line(record) for record in records)


def journaled(journal: Path) -> list[Record]:
    """What the journal files hold, oldest first."""
    return [record for path in segments(journal)
            for record in read_records(path.read_bytes(), path)]


def test_a_record_is_in_the_journal_file_the_moment_it_is_recorded(engine: Engine, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    recorder = ContactRecorder(engine, journal, Clock())
    hostile = [ContactStart("1.7", NOW, "ivr-a", caller_name="\u2028\ud800" + HOSTILE_NAME)]
    for record in call_records("1.6") + hostile:
        recorder.record(record)
        assert journaled(journal)[-1] == record  # no flush, no writer: written by record() itself
    assert counts(engine) == (0, 0)


SIGKILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from ivr.db import make_engine
from ivr.history.recorder import ContactRecorder
from test_history_recorder import call_records

recorder = ContactRecorder(make_engine(sys.argv[1]), Path(sys.argv[2]), Clock(), flush_interval=3600)
for uniqueid in ("1.1", "1.2"):
    for record in call_records(uniqueid):
        recorder.record(record)
recorder.record(call_records("1.3")[0])  # a call still in progress
os.kill(os.getpid(), signal.SIGKILL)  # at once: nothing flushed, no exit handler
"""


def test_records_survive_a_sigkill_the_moment_record_returns(engine: Engine, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    killed = subprocess.run([sys.executable, "-c", SIGKILLED_WRITER,
                             engine.url.render_as_string(hide_password=False), str(journal)],
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                            capture_output=True, text=True, timeout=60)
    assert killed.returncode == -9, killed.stderr
    restarted = ContactRecorder(engine, journal, Clock())
    assert restarted.reconcile("ivr-a") == 1
    with Session(engine) as session:
        rows = {c.uniqueid: (c.status, c.outcome, len(c.events)) for c in session.scalars(select(Contact))}
    assert rows == {"1.1": ("final", "completed", 2), "1.2": ("final", "completed", 2),
                    "1.3": ("interrupted", "interrupted", 0)}
    assert segments(journal) == []  # replayed, then deleted


def test_committed_segments_are_deleted_so_the_journal_stays_small(engine: Engine, tmp_path: Path) -> None:
    journal, clock = tmp_path / "journal", Clock()
    recorder = inline(ContactRecorder(engine, journal, clock, segment_seconds=1.0))

    def call(uniqueid: str) -> None:
        for record in call_records(uniqueid):
            recorder.record(record)
        recorder._flush_now()

    call("2.1")
    clock.advance(0.5)
    call("2.2")  # written; the segment is younger than a second: kept
    assert len(segments(journal)) == 1
    clock.advance(0.5)
    call("2.3")  # a second old: sealed with this batch, and deleted once it is written
    assert segments(journal) == []
    call("2.4")  # a new segment
    assert len(segments(journal)) == 1
    clock.advance(5)
    recorder._tick()  # idle: sealed, and deleted as its records are in
    assert segments(journal) == []
    assert counts(engine) == (4, 8) and recorder.written == 16


def test_an_outage_keeps_records_in_the_journal_until_a_replay_writes_them_in_order(
        engine: Engine, tmp_path: Path) -> None:
    journal, clock = tmp_path / "journal", Clock()
    recorder = inline(ContactRecorder(engine, journal, clock))
    recorder.engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'no.db'}")  # its folder does not exist
    for index in range(50):
        for record in call_records(f"3.{index}"):
            recorder.record(record)
        recorder._flush_now(seal=index % 10 == 0)
    assert recorder._backlog and recorder.journaled == 200 and len(journaled(journal)) == 200
    recorder._tick()  # still down: nothing lost, nothing written
    recorder.engine = engine
    for record in call_records("3.50"):
        recorder.record(record)
    recorder._flush_now()  # the database is back, but this batch must not overtake the journal
    assert counts(engine) == (0, 0)
    recorder._tick()
    assert counts(engine) == (51, 102) and not recorder._backlog
    assert segments(journal) == []
    with Session(engine) as session:
        assert set(session.scalars(select(Contact.status))) == {"final"}


def test_only_the_commit_before_a_segment_is_deleted_waits_for_the_disk(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal, clock = tmp_path / "journal", Clock()
    recorder = inline(ContactRecorder(engine, journal, clock))
    durable: list[int] = []
    durable_commit = recorder._sql.durable
    monkeypatch.setattr(recorder._sql, "durable", lambda cursor: durable.append(len(segments(journal)))
                        or durable_commit(cursor))
    for index in range(5):
        for record in call_records(f"4.{index}"):
            recorder.record(record)
        recorder._flush_now()  # younger than a second: an ordinary commit
    clock.advance(1)
    recorder.record(call_records("4.5")[0])
    recorder._flush_now()  # seals: a durable commit, then the segment goes
    assert durable == [1] and segments(journal) == [] and counts(engine) == (6, 10)


def test_a_record_the_database_refuses_is_kept_aside_and_its_batch_written(engine: Engine,
                                                                          tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    recorder = inline(ContactRecorder(engine, journal, Clock()))
    refused = ContactStart("4.9", NOW, "ivr-a", caller_name="\ud800")  # neither driver can encode it
    for record in call_records("4.8") + [refused] + call_records("4.9")[1:]:
        recorder.record(record)
    recorder._flush_now(seal=True)
    assert counts(engine) == (2, 4) and recorder.rejected == 1 and not recorder._backlog
    rejected = journal.with_name("journal.rejected").read_bytes()
    assert read_records(rejected, journal) == [refused]
    assert segments(journal) == []


def test_a_torn_journal_line_from_a_crash_is_skipped(engine: Engine, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    written = lines(call_records("5.1"))
    (tmp_path / "journal.00000007").write_bytes(written + written[:25])
    recorder = ContactRecorder(engine, journal, Clock())
    recorder.reconcile("ivr-a")
    assert counts(engine) == (1, 2)


def test_a_journal_from_an_older_ivr_is_replayed(engine: Engine, tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    old = [{"op": "start", "uniqueid": "5.2", "started_at": NOW, "handled_by": "ivr-a",
            "caller_name": "李\u2028"},
           {"op": "step", "uniqueid": "5.2", "seq": 1, "at": NOW, "kind": "menu", "menu": "main", "key": "1",
            "value": "", "confidence": None},
           {"op": "end", "uniqueid": "5.2", "ended_at": NOW, "outcome": "completed"}]
    journal.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in old), encoding="utf-8")
    ContactRecorder(engine, journal, Clock()).reconcile("ivr-a")
    with Session(engine) as session:
        contact = session.scalars(select(Contact)).one()
        assert (contact.caller_name, contact.status, contact.last_step) == (
            "李\u2028", "final", "menu:main:1")
    assert not journal.exists()


def test_a_live_recorders_segment_is_not_replayed_by_another(engine: Engine, tmp_path: Path) -> None:
    """``ivr call`` and ``ivr serve`` share the journal's path: neither takes the other's open segment."""
    journal = tmp_path / "journal"
    serving = ContactRecorder(engine, journal, Clock())
    for record in call_records("6.1"):
        serving.record(record)
    other = ContactRecorder(engine, journal, Clock())
    other.reconcile("ivr-b")
    assert counts(engine) == (0, 0) and len(segments(journal)) == 1
    serving._syncer.hand_over(serving._journal.seal())  # sealed (unlocked), as if its process died
    other.reconcile("ivr-b")
    assert counts(engine) == (1, 2) and segments(journal) == []


def test_what_a_dead_process_left_is_written_by_a_running_recorder(engine: Engine, tmp_path: Path) -> None:
    """A crashed ``ivr call`` leaves its segment: ``ivr serve``'s next tick writes it, in order."""
    journal = tmp_path / "journal"
    recorder = inline(ContactRecorder(engine, journal, Clock()))
    for record in call_records("6.2"):
        recorder.record(record)
    recorder._flush_now()
    assert counts(engine) == (1, 2) and not recorder._backlog
    (tmp_path / "journal.00000099").write_bytes(lines(call_records("6.3")))
    recorder._tick()
    assert counts(engine) == (2, 4) and not recorder._backlog
    assert segments(journal) == []


def test_a_short_lived_recorder_leaves_nothing_behind(engine: Engine, tmp_path: Path) -> None:
    """``ivr call`` stops within seconds: it writes what an earlier crash left before it exits."""
    journal = tmp_path / "journal"
    (tmp_path / "journal.00000007").write_bytes(lines(call_records("6.4")))
    recorder = inline(ContactRecorder(engine, journal, Clock()))
    assert recorder._backlog
    for record in call_records("6.5"):
        recorder.record(record)
    recorder._flush_now()  # behind the left-over records: not written yet
    assert counts(engine) == (0, 0)
    Deferred.fromCoroutine(recorder.stop())
    assert counts(engine) == (2, 4) and segments(journal) == []


def test_the_syncer_syncs_new_data_once_and_never_a_committed_segment(
        engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(os, "fdatasync", synced.append)
    journal = tmp_path / "journal"
    recorder = inline(ContactRecorder(engine, journal, Clock()))
    syncer = recorder._syncer
    recorder.record(call_records("7.1")[0])
    active = recorder._journal.fd
    syncer.sync()
    syncer.sync()  # nothing new
    assert synced == [active]
    recorder._flush_now(seal=True)  # committed, so deleted: its file is closed unsynced
    recorder.engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'no.db'}")
    recorder.record(call_records("7.2")[0])
    waiting = recorder._journal.fd
    recorder._flush_now(seal=True)  # the database is down: this one is kept, so synced
    syncer.sync()
    assert synced == [active, waiting]
    with pytest.raises(OSError):
        os.fstat(waiting)  # closed by the syncer


def test_an_unwritable_journal_stops_the_start(engine: Engine, tmp_path: Path) -> None:
    recorder = ContactRecorder(engine, tmp_path / "missing" / "journal", Clock())
    with pytest.raises(ConfigError, match="journal"):
        recorder.start()


def test_a_failed_journal_write_keeps_the_record_for_the_database(engine: Engine, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = inline(ContactRecorder(engine, tmp_path / "journal", Clock()))

    def full(data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(recorder._journal, "append", full)
    for record in call_records("8.1"):
        recorder.record(record)
    recorder._flush_now()
    assert recorder.journal_errors == 4 and counts(engine) == (1, 2)


def test_the_start_insert_sets_every_column_as_the_orm_would(engine: Engine, tmp_path: Path) -> None:
    """The raw statement is generated from the table: its defaults are the model's."""
    ContactRecorder(engine, tmp_path / "journal", Clock())._apply(
        [ContactStart("9.1", NOW, "ivr-a", caller_number="1", caller_e164="+1", route="r")])
    with Session(engine) as session:
        session.add(Contact(uniqueid="9.2", started_at=dt.datetime.fromtimestamp(NOW, dt.UTC),
                            handled_by="ivr-a", caller_number="1", caller_e164="+1", route="r"))
        session.commit()
        raw, orm = (session.scalars(select(Contact).where(Contact.uniqueid == u)).one()
                    for u in ("9.1", "9.2"))
        columns = [c.key for c in Contact.__table__.columns if c.key not in ("id", "uniqueid")]
        assert {c: getattr(raw, c) for c in columns} == {c: getattr(orm, c) for c in columns}


def test_a_call_in_one_batch_is_the_row_its_records_make_in_separate_batches(
        engine: Engine, tmp_path: Path) -> None:
    """Start and end in one batch are written as one statement: the row must be the same."""
    recorder = ContactRecorder(engine, tmp_path / "journal", Clock())
    whole = call_records("2.1")
    recorder._apply(whole)
    recorder._apply([whole[0], ContactStart("2.2", NOW, "ivr-a", caller_number="13800138000")])
    for record in call_records("2.3"):  # each record in a batch of its own
        recorder._apply([record])
    start, end = call_records("2.4")[0], call_records("2.4")[-1]
    recorder._apply([start])
    recorder._apply([start, end])  # the start was in already (a replay): the end still lands
    with Session(engine) as session:
        rows = {c.uniqueid: c for c in session.scalars(select(Contact))}
        columns = [c.key for c in Contact.__table__.columns if c.key not in ("id", "uniqueid")]
        one, separate, replayed = ({c: getattr(rows[u], c) for c in columns} for u in ("2.1", "2.3", "2.4"))
        assert one == separate
        assert {**one, "last_step": ""} == replayed  # no step was recorded for 2.4
        assert rows["2.2"].status == "open"
    recorder._apply(whole + whole)  # applied twice: nothing doubles, nothing changes
    assert counts(engine) == (4, 4)


def test_reconcile_marks_only_this_instances_open_calls_interrupted(engine: Engine, tmp_path: Path) -> None:
    recorder = ContactRecorder(engine, tmp_path / "journal", Clock())
    recorder._apply([ContactStart("4.1", NOW, "ivr-a"),
                     ContactStep("4.1", 1, NOW, CallStep("menu", "main", "1")),
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

    def spy(batch: list[Record], durable: bool = False) -> None:
        seen.append(threading.current_thread().name)
        original(batch, durable)

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
        while "wait in the journal" not in server.output():  # the writer saw the outage
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


def test_the_history_hears_of_a_call_before_any_other_plugin(tmp_path: Path) -> None:
    """Its start is journaled before a slow plugin's hook can hold the call (and its end
    before the session closes), whatever order the plugins were registered in."""
    import pluggy

    from ivr.history.plugin import ContactHistory
    from ivr.plugins import hookspecs
    from ivr.plugins.hookspecs import hookimpl
    from ivr.routing.router import CallOutcome, notify

    heard: list[str] = []

    class Recorder:
        def record(self, record: Record) -> None:
            heard.append(f"history {type(record).__name__}")

    class Other:
        @hookimpl
        def ivr_call_started(self, call: object) -> None:
            heard.append("other started")

        @hookimpl
        def ivr_call_ended(self, call: object, outcome: CallOutcome) -> None:
            heard.append("other ended")

    plugins = pluggy.PluginManager("ivr")
    plugins.add_hookspecs(hookspecs)
    plugins.register(ContactHistory(Recorder(), "ivr-a"), name="ivr.plugins.contact_history")  # type: ignore[arg-type]
    plugins.register(Other(), name="other")  # registered last: pluggy would call it first
    call = type("FakeCall", (), {"uniqueid": "10.1", "caller_number": "", "caller_name": "", "dnid": "",
                                 "extension": "s", "script": "echo"})()
    clock = Clock()
    Deferred.fromCoroutine(notify(plugins.hook, "ivr_call_started", clock, 1.0, call=call))
    Deferred.fromCoroutine(notify(plugins.hook, "ivr_call_ended", clock, 1.0, call=call,
                                  outcome=CallOutcome("completed")))
    assert heard == ["history ContactStart", "other started", "history ContactEnd", "other ended"]
