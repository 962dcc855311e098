"""The contact-history and customers commands: timeline, customers import, export, purge (on SQLite)."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ivr.console import printable
from ivr.customers.cli import register_cli as register_customers_cli
from ivr.db import Agent, Contact, Customer, CustomerPhone, make_engine, upgrade
from ivr.history.cli import register_cli as register_history_cli
from ivr.history.export import EXPORT_COLUMNS
from ivr.routing.path import IvrPath

PHONE = "+8613800138000"
OTHER = "+8613900139000"
PATH = [{"kind": "language", "menu": "", "key": "", "value": "zh"},
        {"kind": "menu", "menu": "main", "key": "2", "value": "after-sales"},
        {"kind": "menu", "menu": "after-sales", "key": "0", "value": "queue:after-sales"}]
HOSTILE_NAME = "Evil\x1b[31mRed\r\nInjected\x9b2J"
HOSTILE_NOTES = "called back\x1b]0;pwned\x07 \u202eevil"


class Ivr:
    """The commands on a parser of our own, against one SQLite file."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.db = tmp_path / "history.db"
        self.config = tmp_path / "ivr.toml"
        self.config.write_text('[routing]\nregion = "CN"\n', encoding="utf-8")
        self.capsys = capsys
        parser = argparse.ArgumentParser(prog="ivr")
        commands = parser.add_subparsers(dest="command", required=True)
        register_history_cli(commands)
        register_customers_cli(commands)
        self.parser = parser

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        args = self.parser.parse_args([*argv, "--config", str(self.config), "--url", f"sqlite:///{self.db}"])
        code = args.run(args)
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'history.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def ivr(engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Ivr:
    return Ivr(tmp_path, capsys)


def at(day: int, hour: int = 8, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=dt.UTC)


def add_contact(engine: Engine, uniqueid: str, started: dt.datetime, **values: Any) -> None:
    with Session(engine) as session:
        session.add(Contact(uniqueid=uniqueid, started_at=started, **values))
        session.commit()


def add_customer(engine: Engine, external_id: str, *phones: str, **values: Any) -> int:
    with Session(engine) as session:
        customer = Customer(external_id=external_id, phones=[CustomerPhone(e164=p) for p in phones], **values)
        session.add(customer)
        session.commit()
        return customer.id


def add_agent(engine: Engine, code: str) -> int:
    with Session(engine) as session:
        agent = Agent(code=code, name=f"agent {code}")
        session.add(agent)
        session.commit()
        return agent.id


@pytest.fixture
def calls(engine: Engine) -> int:
    """Customer C-1001 (phone PHONE) with three contacts, and a stranger's call."""
    customer = add_customer(engine, "C-1001", PHONE, name="张伟", vip_tier="vip", language="zh")
    add_contact(engine, "1.1", at(20), caller_number="13800138000", caller_e164=PHONE,
                caller_name="Zhang", status="final", outcome="completed", ivr_path=PATH,
                queue="after-sales", duration_seconds=42.5)
    add_contact(engine, "1.2", at(21, 9, 30), caller_number="13800138000", caller_e164=PHONE,
                caller_name=HOSTILE_NAME, status="final", outcome="abandoned",
                outcome_reason="caller hung up\r\nin menu", notes=HOSTILE_NOTES, disposition="callback")
    # linked to the customer (e.g. a callback from another line), not by the caller's number
    add_contact(engine, "1.3", at(22, 10, 15), direction="outbound", kind="callback",
                caller_number="4001", customer_id=customer, status="final", outcome="answered")
    add_contact(engine, "9.9", at(22), caller_number="13900139000", caller_e164=OTHER, status="final")
    return customer


# ------------------------------------------------------------------ history SUBJECT


def test_timeline_of_a_phone_newest_first_and_hostile_text_printed_safely(ivr: Ivr, calls: int) -> None:
    code, out, err = ivr("history", "138 0013 8000")  # national format, normalised with region CN
    assert code == 0, err
    assert "3 contacts for +8613800138000, newest first:" in out
    assert "customer C-1001" in out and "张伟" in out
    newest, middle, oldest = (out.index(stamp) for stamp in
                              ("2026-11-22T10:15Z", "2026-11-21T09:30Z", "2026-11-20T08:00Z"))
    assert newest < middle < oldest
    assert "2026-11-22T08:00Z" not in out  # the stranger's call
    assert "language:zh > main:2 > after-sales:0" in out
    assert "final/completed" in out and "queue after-sales" in out and "42.5s" in out
    assert "outbound callback" in out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out and "\x9b" not in out
    assert "\u202e" not in out
    assert "Evil\ufffd[31mRed\ufffd\ufffdInjected" in out
    assert "caller hung up\ufffd\ufffdin menu" in out and "callback" in out
    for line in out.splitlines():  # a CR/LF in a value never starts a line of its own
        assert not line.startswith(("Injected", "in menu"))


def test_timeline_by_external_id_and_internal_id(ivr: Ivr, calls: int) -> None:
    by_external = ivr("history", "C-1001")
    by_internal = ivr("history", f"#{calls}", "--limit", "2")
    assert by_external[0] == by_internal[0] == 0
    assert f"3 contacts for customer C-1001 (#{calls}), newest first:" in by_external[1]
    assert "vip" in by_external[1] and "phones +8613800138000" in by_external[1]
    assert "the newest 2; --limit 3 shows all" in by_internal[1]
    assert "2026-11-20T08:00Z" not in by_internal[1]


def test_timeline_shows_the_human_part_sms_text_and_recording(ivr: Ivr, engine: Engine) -> None:
    customer = add_customer(engine, "C-9", PHONE, name="Li")
    agent = add_agent(engine, "1001")
    add_contact(engine, "q.1", at(20, 9), caller_e164=PHONE, customer_id=customer, agent_id=agent,
                status="final", outcome="completed", queue="sales", queue_outcome="answered",
                wait_seconds=12.5, talk_seconds=185.0, hangup_by="caller", transcript="my washer",
                recording_ref="2026/11/20/q.1.wav", disposition="resolved", notes="fixed by phone",
                followup_id=7)
    add_contact(engine, "sms-in:m1", at(20, 8), channel="sms", kind="sms", caller_e164=PHONE,
                status="final", outcome="callback", transcript="call me\x1b[2J\r\nback <b>now</b>")
    code, out, _ = ivr("history", "C-9")
    assert code == 0
    call, sms = out.split("\n\n")[1:3]
    assert "agent 1001" in call and "queue sales" in call
    assert "answered, waited 12.5s, talked 3m05s, hung up by caller" in call
    assert "said    my washer" in call and "follow-up #7" in call
    assert "disposition resolved" in call and "notes   fixed by phone" in call
    assert "recording 2026/11/20/q.1.wav" in call
    assert "inbound sms  final/callback" in sms
    assert "sms     call me\ufffd[2J\ufffd\ufffdback <b>now</b>" in sms and "\x1b" not in out


def test_unknown_subject_exits_2_and_a_quiet_number_has_no_contacts(ivr: Ivr, calls: int) -> None:
    code, out, err = ivr("history", "nobody\x1b[2J")
    assert code == 2 and out == ""
    assert "is neither a phone number nor a known customer id" in err and "\x1b" not in err
    code, _, err = ivr("history", "#999")
    assert code == 2 and "no customer has the id #999" in err
    code, out, _ = ivr("history", "+8613700137000")
    assert code == 0 and "no contacts for +8613700137000" in out


def test_show_spelled_out_reaches_a_customer_named_like_a_subcommand(ivr: Ivr, engine: Engine) -> None:
    add_customer(engine, "export", OTHER)
    code, out, _ = ivr("history", "show", "export")
    assert code == 0 and "no contacts for customer export" in out


def test_stored_paths_and_printable() -> None:
    assert IvrPath.from_json(PATH).text() == "language:zh > main:2 > after-sales:0"
    assert IvrPath.from_json([{"kind": "transfer", "value": "queue:vip"}, {"kind": "back", "menu": "main"}]
                             ).text() == "transfer:queue:vip > main:back"
    assert IvrPath.from_json(None).text() == ""
    assert printable("a\tb\x00c\x7fd\u2028e") == "a\ufffdb\ufffdc\ufffdd\ufffde"
    assert printable("张伟 😀") == "张伟 😀"


# ------------------------------------------------------------------ customers import

HEADER = "external_id,name,phones,language,vip_tier,owner,do_not_call\n"


def customers(engine: Engine) -> dict[str, tuple[str, str, str, str | None, bool, list[str]]]:
    with Session(engine) as session:
        found = {}
        for customer in session.scalars(select(Customer)):
            owner = customer.owner.code if customer.owner else None
            phones = sorted(p.e164 for p in customer.phones)
            found[customer.external_id or ""] = (customer.name, customer.language, customer.vip_tier, owner,
                                                 customer.do_not_call, phones)
        return found


def test_import_loads_good_lines_and_reports_each_bad_one(ivr: Ivr, engine: Engine, tmp_path: Path) -> None:
    add_agent(engine, "1001")
    add_customer(engine, "OLD-1", "+8613700137000")
    lines = [
        "C1,Alice,13800138000;+86 139 0013 9000,en,vip,1001,yes",  # 2 good
        ",No Id,13800138001,,,,",                                   # 3
        "C3,Bad Phone,12ab,,,,",                                    # 4
        "C4,Taken,13700137000,,,,",                                 # 5 phone of OLD-1
        "C5,Gold,13800138005,,gold,,",                              # 6
        "C6,Maybe,13800138006,,,,maybe",                            # 7
        "C1,Again,13800138007,,,,",                                 # 8 duplicate external_id
        "C8,Ghost owner,13800138008,,,9999,",                       # 9
        "C9,Shares,13800138000,,,,",                                # 10 phone also on line 2
        "C10,Bob,13800138010|13800138011,zh,hot-lead,,0",          # 11 good
        "C11,Short row,13800138012",                                # 12
    ]
    file = tmp_path / "customers.csv"
    file.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = ivr("customers", "import", str(file))
    assert code == 1, err
    expected = {3: "missing external_id", 4: "unparseable phone '12ab'",
                5: "phone +8613700137000 already belongs to customer 'OLD-1'",
                6: "unknown vip_tier 'gold'", 7: "bad do_not_call 'maybe'",
                8: "duplicate external_id 'C1' (first on line 2)", 9: "unknown owner agent '9999'",
                10: "phone +8613800138000 is also on line 2", 12: "has 3 field(s), the header has 7"}
    reported = [line for line in out.splitlines() if ": line " in line]
    assert len(reported) == len(expected)
    for number, reason in expected.items():
        assert any(f"customers.csv: line {number}: " in line and reason in line for line in reported), number
    assert out.splitlines()[-1] == "imported 2, updated 0, rejected 9"
    loaded = customers(engine)
    assert loaded["C1"] == ("Alice", "en", "vip", "1001", True, ["+8613800138000", "+8613900139000"])
    assert loaded["C10"] == ("Bob", "zh", "hot-lead", None, False, ["+8613800138010", "+8613800138011"])
    assert set(loaded) == {"OLD-1", "C1", "C10"}


def test_reimport_updates_and_replaces_phones(ivr: Ivr, engine: Engine, tmp_path: Path) -> None:
    add_agent(engine, "1001")
    first = tmp_path / "first.csv"
    first.write_text(HEADER + "C1,Alice,13800138000;13800138001,en,vip,1001,true\n"
                     "C2,Bob,13800138002,,,,false\n", encoding="utf-8")
    assert ivr("customers", "import", str(first))[:2] == (0, "imported 2, updated 0, rejected 0\n")
    # No language/vip_tier/owner/do_not_call columns: those stay as they are.
    second = tmp_path / "second.csv"
    second.write_text("name,external_id,phones\nAlice Li,C1,13800138001|13800138009\nCarol,C3,13800138003\n",
                      encoding="utf-8")
    code, out, _ = ivr("customers", "import", str(second))
    assert (code, out) == (0, "imported 1, updated 1, rejected 0\n")
    loaded = customers(engine)
    assert loaded["C1"] == ("Alice Li", "en", "vip", "1001", True, ["+8613800138001", "+8613800138009"])
    assert loaded["C3"] == ("Carol", "", "", None, False, ["+8613800138003"])
    # The phone C1 gave up may now go to someone else.
    third = tmp_path / "third.csv"
    third.write_text(HEADER + "C2,Bob,13800138000,,,,no\n", encoding="utf-8")
    assert ivr("customers", "import", str(third))[:2] == (0, "imported 0, updated 1, rejected 0\n")
    assert customers(engine)["C2"][5] == ["+8613800138000"]


def test_import_with_bom_and_chinese_names(ivr: Ivr, engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "excel.csv"
    file.write_text("External_ID,Name,Phones\r\n客户-1,张伟,13800138000\r\n"
                    "C2,\"李, 娜 \"\"小李\"\"\",13800138002\r\n", encoding="utf-8-sig")
    assert file.read_bytes().startswith(b"\xef\xbb\xbf")
    code, out, err = ivr("customers", "import", str(file))
    assert code == 0, out + err
    loaded = customers(engine)
    assert loaded["客户-1"][0] == "张伟" and loaded["C2"][0] == '李, 娜 "小李"'


def test_dry_run_checks_everything_and_changes_nothing(ivr: Ivr, engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "customers.csv"
    file.write_text(HEADER + "C1,Alice,13800138000,,,,\nC2,Bob,nope,,,,\n", encoding="utf-8")
    code, out, _ = ivr("customers", "import", str(file), "--dry-run")
    assert code == 1
    assert "line 3: unparseable phone 'nope'" in out
    assert out.splitlines()[-1] == "dry run, nothing changed: would have imported 1, updated 0, rejected 1"
    assert customers(engine) == {}


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read it"),
    (b"", "the file is empty"),
    (b"id,name,number\n1,a,13800138000\n", "missing column(s) external_id, phones"),
    (b"external_id,name,phones,vip_teir\n", "unknown column(s) 'vip_teir'"),
    (b"external_id,name,phones\nC1,\xff\xfe,13800138000\n", "line 2: not UTF-8 text"),
])
def test_an_unreadable_file_or_header_exits_2_and_changes_nothing(
        ivr: Ivr, engine: Engine, tmp_path: Path, content: bytes | None, problem: str) -> None:
    file = tmp_path / "customers.csv"
    if content is not None:
        file.write_bytes(content)
    code, out, err = ivr("customers", "import", str(file))
    assert code == 2 and out == ""
    assert str(file) in err and problem in err
    assert customers(engine) == {}


def test_a_20k_line_import(ivr: Ivr, engine: Engine, tmp_path: Path) -> None:
    count = 20_000
    file = tmp_path / "big.csv"
    with open(file, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "name", "phones", "language", "vip_tier", "owner", "do_not_call"])
        for index in range(count):
            writer.writerow([f"C{index}", f"客户 {index}", f"+86138{index:08d};+86139{index:08d}", "zh",
                             "vip" if index % 10 == 0 else "", "", "no"])
    started = time.perf_counter()
    code, out, _ = ivr("customers", "import", str(file))
    first = time.perf_counter() - started
    assert (code, out) == (0, f"imported {count}, updated 0, rejected 0\n")
    started = time.perf_counter()
    code, out, _ = ivr("customers", "import", str(file))
    again = time.perf_counter() - started
    assert (code, out) == (0, f"imported 0, updated {count}, rejected 0\n")
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(CustomerPhone)) == 2 * count
    with ivr.capsys.disabled():
        print(f"\n20k-line import: {count / first:,.0f} lines/s new, {count / again:,.0f} lines/s re-import")


# ------------------------------------------------------------------ history export

NASTY = 'Wang "the boss", Jr.\nsecond line\r\nthird, with 逗号'


@pytest.fixture
def range_calls(engine: Engine) -> None:
    customer = add_customer(engine, "C-7", PHONE)
    add_contact(engine, "e.0", at(9, 23, 59), caller_name="too early")
    add_contact(engine, "e.1", at(10, 0, 0), caller_name=NASTY, caller_number="13800138000",
                caller_e164=PHONE, customer_id=customer, ivr_path=PATH, duration_seconds=12.5,
                ended_at=at(10, 0, 1), status="final", outcome="completed", dtmf="20")
    add_contact(engine, "e.2", at(12, 23, 59), caller_name="张伟")
    add_contact(engine, "e.3", at(13, 0, 0), caller_name="too late")


def test_export_csv_round_trips_hostile_names(ivr: Ivr, range_calls: None, tmp_path: Path) -> None:
    output = tmp_path / "out.csv"
    code, out, err = ivr("history", "export", "--since", "2026-11-10", "--until", "2026-11-12",
                         "--format", "csv", "--output", str(output))
    assert code == 0 and out == "" and "exported 2 contacts" in err
    with open(output, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["uniqueid"] for row in rows] == ["e.1", "e.2"]
    first = rows[0]
    assert first["caller_name"] == NASTY
    assert json.loads(first["ivr_path"]) == PATH and " " not in first["ivr_path"]
    assert first["started_at"] == "2026-11-10T00:00:00+00:00"
    assert first["ended_at"] == "2026-11-10T00:01:00+00:00"
    assert (first["duration_seconds"], first["customer_external_id"], first["dtmf"]) == ("12.5", "C-7", "20")
    assert (rows[1]["ended_at"], rows[1]["duration_seconds"], rows[1]["customer_external_id"]) == ("", "", "")
    assert list(tmp_path.glob("*.partial")) == []


def test_export_jsonl_to_stdout(ivr: Ivr, range_calls: None) -> None:
    code, out, err = ivr("history", "export", "--since", "2026-11-10T00:00", "--until",
                         "2026-11-13T08:00+08:00", "--format", "jsonl")
    assert code == 0 and "exported 2 contacts to stdout" in err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["uniqueid"] for r in records] == ["e.1", "e.2"]
    assert records[0]["caller_name"] == NASTY and records[0]["ivr_path"] == PATH
    assert records[1]["ended_at"] is None and "张伟" in out  # ensure_ascii=False
    assert len(out.splitlines()) == 2  # newlines inside values are escaped


def test_export_has_every_contacts_column_from_the_table(ivr: Ivr, engine: Engine, tmp_path: Path) -> None:
    assert EXPORT_COLUMNS == (*[column.name for column in Contact.__table__.columns], "customer_external_id",
                              "agent_code")
    customer = add_customer(engine, "C-5", PHONE)
    agent = add_agent(engine, "1001")
    formula = '=HYPERLINK("http://evil.example","click")'
    add_contact(engine, "x.1", at(10, 9), caller_name=formula, caller_e164=PHONE, customer_id=customer,
                agent_id=agent, queue_outcome="answered", wait_seconds=3.5, talk_seconds=61.0,
                hangup_by="agent", transcript="-1 hostile\r\nsaid", disposition="sale", notes="@SUM(A1)",
                recording_ref="x.1.wav", followup_id=3, channel="voice")
    output = tmp_path / "all.csv"
    code, _, _ = ivr("history", "export", "--since", "2026-11-10", "--format", "csv", "--output", str(output))
    assert code == 0
    with open(output, encoding="utf-8", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert list(row) == list(EXPORT_COLUMNS)
    assert (row["queue_outcome"], row["wait_seconds"], row["talk_seconds"], row["hangup_by"]) == (
        "answered", "3.5", "61.0", "agent")
    assert (row["disposition"], row["recording_ref"], row["followup_id"], row["agent_code"]) == (
        "sale", "x.1.wav", "3", "1001")
    assert (row["customer_external_id"], row["caller_e164"]) == ("C-5", PHONE)  # a number stays a number
    # What a spreadsheet would run as a formula opens as text.
    assert (row["caller_name"], row["notes"]) == ("'" + formula, "'@SUM(A1)")
    assert row["transcript"] == "'-1 hostile\r\nsaid"
    code, out, _ = ivr("history", "export", "--since", "2026-11-10", "--format", "jsonl")
    (record,) = [json.loads(line) for line in out.splitlines()]
    assert set(record) == set(EXPORT_COLUMNS)
    assert (record["caller_name"], record["notes"], record["agent_code"]) == (formula, "@SUM(A1)", "1001")
    assert record["started_at"] == "2026-11-10T09:00:00+00:00" and record["ivr_path"] == []


@pytest.mark.parametrize("since", ["yesterday", "2026-13-01", "2026-11-31", ""])
def test_a_bad_date_exits_2(ivr: Ivr, since: str) -> None:
    code, out, err = ivr("history", "export", "--since", since, "--format", "csv")
    assert code == 2 and out == ""
    assert "--since" in err and "is not a date" in err and "YYYY-MM-DD" in err


def test_until_before_since_exits_2(ivr: Ivr) -> None:
    code, _, err = ivr("history", "export", "--since", "2026-11-10", "--until", "2026-11-01",
                       "--format", "csv")
    assert code == 2 and "--until" in err


# ------------------------------------------------------------------ history purge


def test_purge_counts_without_yes_and_clears_only_old_pii(ivr: Ivr, engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    for uniqueid, age in (("old.1", 100), ("old.2", 40), ("new.1", 5)):
        add_contact(engine, uniqueid, now - dt.timedelta(days=age), transcript=f"my card is {uniqueid}",
                    transcript_confidence=0.9, recording_ref=f"rec/{uniqueid}.wav", outcome="completed",
                    ivr_path=PATH, caller_name="Zhang")
    add_contact(engine, "old.clean", now - dt.timedelta(days=200))

    def rows() -> dict[str, tuple[str, float | None, str, str, list[dict[str, str]]]]:
        with Session(engine) as session:
            return {c.uniqueid: (c.transcript, c.transcript_confidence, c.recording_ref, c.outcome,
                                 c.ivr_path) for c in session.scalars(select(Contact))}

    before = rows()
    code, out, _ = ivr("history", "purge", "--older-than", "30")
    assert code == 0 and "would purge 2 contacts" in out and "--yes" in out
    assert rows() == before
    code, out, _ = ivr("history", "purge", "--older-than", "30", "--yes")
    assert code == 0 and "purged 2 contacts" in out and "2 recording reference(s) cleared" in out
    after = rows()
    assert after["old.1"] == after["old.2"] == ("", None, "", "completed", PATH)
    assert after["new.1"] == before["new.1"]
    assert after["old.clean"] == before["old.clean"]
    assert ivr("history", "purge", "--older-than", "30", "--yes")[1].startswith("purged 0 contacts")


# ------------------------------------------------------------------ the database


def test_a_missing_database_or_schema_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ivr = Ivr(tmp_path, capsys)
    code, _, err = ivr("history", "purge", "--older-than", "1")
    assert code == 2 and "no database file" in err and not ivr.db.exists()
    make_engine(f"sqlite:///{ivr.db}").dispose()
    ivr.db.touch()
    code, _, err = ivr("history", "purge", "--older-than", "1")
    assert code == 2 and "ivr db upgrade" in err



def test_import_reads_the_preferred_channel(ivr: Ivr, engine: Engine, tmp_path: Path) -> None:
    file = tmp_path / "channels.csv"
    file.write_text("external_id,name,phones,preferred_channel\nC1,Ann,13800138000,SMS\nC2,Ben,13800138001,\n"
                    "C3,Cat,13800138002,fax\n", encoding="utf-8")
    code, out, _ = ivr("customers", "import", str(file))
    assert code == 1 and "line 4: bad preferred_channel 'fax' (use voice or sms)" in out
    with Session(engine) as session:
        found = dict(session.execute(select(Customer.external_id, Customer.preferred_channel)).all())
    assert found == {"C1": "sms", "C2": "voice"}
    file.write_text("external_id,name,phones,preferred_channel\nC2,Ben,13800138001,sms\n", encoding="utf-8")
    assert ivr("customers", "import", str(file))[:2] == (0, "imported 0, updated 1, rejected 0\n")
    with Session(engine) as session:
        assert session.scalar(select(Customer.preferred_channel).where(Customer.external_id == "C2")) == "sms"
