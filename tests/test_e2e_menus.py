"""Menus and routing through the real sandbox Asterisk: DTMF walks, priorities, hours."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asterisk_harness import AMI, Event, Sandbox
from conftest import TEST_ROUTES, TESTS, ServeProcess, free_port
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr.db import Contact, make_engine

pytestmark = pytest.mark.asterisk


@pytest.fixture(scope="module")
def menus_server() -> Iterator[ServeProcess]:
    """ivr serve with a CRM stand-in plugin, on its own port."""
    server = ServeProcess(free_port(), {"IVR_PLUGINS_FOLDER": str(TESTS / "e2e_plugins")})
    yield server
    server.stop()


def queued(ami: AMI, number: str, timeout: float = 60) -> Event:
    return ami.wait_for(lambda e: e.get("UserEvent") == "IvrQueue" and e.get("CallerIDNum") == number,
                        timeout=timeout)


def test_caller_walks_three_levels_by_dtmf_into_the_right_queue(
        sandbox: Sandbox, ami: AMI, menus_server: ServeProcess) -> None:
    number = "13700000003"
    # language: 2 (zh) -> main menu: 2 (after-sales) -> after-sales menu: 0 (a person);
    # then "connecting" and "this call may be recorded" before the caller joins the queue
    ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",
                  {"IVR_AGI_PORT": str(menus_server.port), "DIGITS": "2WWWWW2WW0", "PRE_WAIT": "1",
                   "POST_WAIT": "15"}, caller_id=f'"Walker" <{number}>')
    event = queued(ami, number)
    assert event["Queue"] == "after-sales"
    assert event["Path"] == "language:zh>main:2>after-sales:0"
    assert event["Language"] == "zh" and event["Priority"] == "0"
    assert event["Contact"] == event["Uniqueid"]
    join = ami.wait_for(lambda e: e.get("Event") == "QueueCallerJoin" and e.get("CallerIDNum") == number,
                        timeout=10)
    assert join["Queue"] == "after-sales"


def test_a_vip_caller_gets_a_higher_queue_priority_and_their_language(
        sandbox: Sandbox, ami: AMI, menus_server: ServeProcess) -> None:
    number = "13900000001"  # known to the CRM stand-in as a Chinese-speaking VIP
    ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",
                  {"IVR_AGI_PORT": str(menus_server.port), "DIGITS": "1", "PRE_WAIT": "3",
                   "POST_WAIT": "8"}, caller_id=f'"VIP" <{number}>')
    event = queued(ami, number)
    assert (event["Queue"], event["Priority"], event["Customer"]) == ("sales", "10", "VIP-1")
    assert event["Language"] == "zh" and event["Path"] == "main:1"  # no language question


def test_closed_hours_play_the_closed_message(sandbox: Sandbox, ami: AMI, tmp_path: Path) -> None:
    closed = ",".join(f"{day}=" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"))
    server = ServeProcess(free_port(), {"IVR_HOURS_WEEKLY": closed})
    number = "13700000004"
    recording = f"/tmp/ivr-test-closed-{number}.wav"
    try:
        ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",
                      {"IVR_AGI_PORT": str(server.port), "RECORD_TO": recording, "POST_WAIT": "15"},
                      caller_id=f'"Night" <{number}>')
        event = ami.wait_for(lambda e: e.get("UserEvent") == "IvrClosed" and e.get("CallerIDNum") == number,
                             timeout=20)
        assert event["Script"] == "hotline"
        done = ami.wait_for(lambda e: e.get("UserEvent") == "IvrAgiDone" and e.get("CallerIDNum") == number,
                            timeout=40)
        assert done["Status"] == "HANGUP"  # ivr hung up after the message: no dead air, no fallback
    finally:
        server.stop()
    assert not [e for e in ami.events
                if e.get("UserEvent") == "IvrFallback" and e.get("CallerIDNum") == number]
    time.sleep(0.5)


def readme_example() -> str:
    text = (TESTS.parent / "README.md").read_text()
    block = text.split("<!-- plugin-example -->", 1)[1].split("<!-- /plugin-example -->", 1)[0]
    return block.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_plugin_example_works_through_a_real_call(
        sandbox: Sandbox, ami: AMI, tmp_path: Path) -> None:
    code = readme_example()
    assert len(code.strip().splitlines()) <= 16
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "billing.py").write_text(code)
    server = ServeProcess(free_port(), cwd=tmp_path)  # ./plugins is loaded by default
    number = "13700000005"
    try:
        ami.originate("Local/billing@test-route", "test-caller", "dtmf",
                      {"IVR_AGI_PORT": str(server.port), "DIGITS": "WWW0", "PRE_WAIT": "1",
                       "POST_WAIT": "8"}, caller_id=f'"Billing" <{number}>')
        event = queued(ami, number)
    finally:
        server.stop()
    assert (event["Queue"], event["Path"]) == ("sales", "billing-main:0")


def contact_rows(database: Path, **where: str) -> list[Contact]:
    engine = make_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as session:
            query = select(Contact)
            for column, value in where.items():
                query = query.where(getattr(Contact, column) == value)
            rows = list(session.scalars(query))
            session.expunge_all()
            return rows
    finally:
        engine.dispose()


def wait_for_rows(database: Path, count: int, timeout: float = 10.0, **where: str) -> list[Contact]:
    deadline = time.monotonic() + timeout
    while True:
        rows = contact_rows(database, **where)
        if len(rows) >= count and all(r.status != "open" for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_the_walk_is_one_contact_row_with_its_path_and_outcome(
        sandbox: Sandbox, ami: AMI, menus_server: ServeProcess) -> None:
    number = "13700000006"
    ami.originate("Local/4000@ivr-hotline", "test-caller", "dtmf",
                  {"IVR_AGI_PORT": str(menus_server.port), "DIGITS": "1WWWWW2WW0", "PRE_WAIT": "1",
                   "POST_WAIT": "8"}, caller_id=f'"History" <{number}>')
    uniqueid = queued(ami, number)["Uniqueid"]
    [row] = wait_for_rows(menus_server.database, 1, uniqueid=uniqueid)
    assert (row.status, row.outcome, row.queue, row.route) == ("final", "completed", "after-sales", "hotline")
    assert row.caller_e164 == "+8613700000006" and row.dtmf == "20"
    assert [(s["kind"], s["menu"], s["key"]) for s in row.ivr_path] == [
        ("language", "", ""), ("menu", "main", "2"), ("menu", "after-sales", "0"), ("transfer", "", "")]


def test_kill_9_during_20_real_calls_loses_and_doubles_nothing(sandbox: Sandbox, ami: AMI) -> None:
    port = free_port()
    server = ServeProcess(port, {"IVR_ROUTING_ROUTES": TEST_ROUTES, "IVR_SERVER_INSTANCE": "kill-test"})
    numbers = [f"1360000{index:04d}" for index in range(20)]
    for number in numbers:
        ami.originate("Local/slow@test-route", "test-caller", "hangup-after",
                      {"IVR_AGI_PORT": str(port), "HANGUP_AFTER": "20"}, caller_id=f'"Kill" <{number}>')
    deadline = time.monotonic() + 30
    while len(contact_rows(server.database, status="open")) < 20:  # 20 live calls, each recorded
        assert time.monotonic() < deadline, contact_rows(server.database)
        time.sleep(0.2)
    server.stop(signal.SIGKILL)
    restarted = ServeProcess(port, {"IVR_ROUTING_ROUTES": TEST_ROUTES, "IVR_SERVER_INSTANCE": "kill-test"},
                             keep_database=server.database)
    restarted.stop()
    rows = contact_rows(server.database)
    assert len(rows) == 20 and len({r.uniqueid for r in rows}) == 20
    assert {r.caller_number for r in rows} == set(numbers)
    assert {(r.status, r.outcome) for r in rows} == {("interrupted", "interrupted")}
    assert "marked 20 call(s) left open by an earlier run as interrupted" in restarted.output()
