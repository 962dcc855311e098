"""Complaint cases in the database (SQLite and PostgreSQL): opened once per key, linked, listed, moved on."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ivr.cli.main import main
from ivr.complaints.cli import print_cases
from ivr.complaints.store import list_cases, open_case, update_case
from ivr.db import Agent, Contact, Customer, CustomerPhone
from ivr.db.models import ComplaintCase
from ivr.errors import ConfigError
from ivr.history.timeline import timeline
from ivr.plugins.feedback import ComplaintRequest

NOW = dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC)
DUE = NOW + dt.timedelta(hours=2)
HOSTILE = "投诉!\n<script>alert(1)</script> '); DROP TABLE complaint_cases;--"


@pytest.fixture
def world(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        owner = Agent(code="1009", name="Owen")
        customer = Customer(name="Wang Fang", owner=owner, phones=[CustomerPhone(e164="+8613800138000")])
        session.add(customer)
        session.flush()
        call = Contact(uniqueid="1764200000.7", caller_number="13800138000", caller_e164="+8613800138000",
                       customer_id=customer.id, started_at=NOW - dt.timedelta(minutes=5), status="final")
        session.add(call)
        session.commit()
        return {"owner": owner.id, "customer": customer.id, "call": call.id}


def test_a_case_is_opened_once_per_key_with_its_customer_owner_and_call(engine: Engine,
                                                                      world: dict[str, int]) -> None:
    request = ComplaintRequest(key="call:1764200000.7", origin="menu", uniqueid="1764200000.7", text=HOSTILE)
    first = open_case(engine, request, DUE, 10, NOW)
    again = open_case(engine, request, DUE + dt.timedelta(hours=1), 10, NOW)
    assert first.new and not again.new and again.id == first.id
    assert (first.e164, first.customer_id, first.owner_agent_id, first.contact_id) == (
        "+8613800138000", world["customer"], world["owner"], world["call"])
    with Session(engine) as session:
        (case,) = session.scalars(select(ComplaintCase)).all()
        assert (case.status, case.priority, case.text, case.origin) == ("open", 10, HOSTILE, "menu")
        own = session.get(Contact, case.contact_id)
        assert own is not None and (own.kind, own.channel, own.outcome, own.transcript) == (
            "complaint", "case", "open", HOSTILE)


def test_a_case_is_in_the_customers_timeline_and_follows_its_status(engine: Engine,
                                                                   world: dict[str, int]) -> None:
    case = open_case(engine, ComplaintRequest(key="sms:m-1", origin="sms", e164="+8613800138000",
                                              text="投诉 the repair never came"), DUE, 10, NOW)
    assert case.customer_id == world["customer"]  # found by the number
    out = io.StringIO()
    timeline(engine, "+8613800138000", "CN", out=out)
    text = out.getvalue()
    assert "inbound complaint" in text
    assert f"complaint #{case.id} open, answer due 2026-11-27 04:00 UTC" in text
    update_case(engine, case.id, "answered", "called back, replacement sent", NOW + dt.timedelta(hours=1))
    out = io.StringIO()
    timeline(engine, "+8613800138000", "CN", out=out)
    assert f"complaint #{case.id} answered" in out.getvalue() and "replacement sent" in out.getvalue()
    with pytest.raises(ConfigError, match="no complaint case"):
        update_case(engine, 999, "resolved", "", NOW)


def test_the_supervisors_list_shows_open_cases_by_due_time_and_what_is_overdue(
        engine: Engine, world: dict[str, int]) -> None:
    late = open_case(engine, ComplaintRequest(key="a", origin="sms", e164="+8613800138000"), DUE, 10, NOW)
    later = open_case(engine, ComplaintRequest(key="b", origin="menu", e164="+8613900139000"),
                      DUE + dt.timedelta(hours=3), 10, NOW)
    done = open_case(engine, ComplaintRequest(key="c", origin="disposition", e164="+8613900139001"), DUE, 10,
                     NOW)
    update_case(engine, done.id, "resolved", "", NOW)
    check = DUE + dt.timedelta(minutes=30)  # the first case is 30 minutes late, the second not yet due
    assert [c.id for c in list_cases(engine, check)] == [late.id, later.id]
    assert [c.id for c in list_cases(engine, check, overdue_only=True)] == [late.id]
    assert [c.id for c in list_cases(engine, check, include_resolved=True)] == [late.id, later.id, done.id]
    (shown,) = list_cases(engine, check, overdue_only=True)
    assert (shown.owner, shown.customer, shown.overdue) == ("1009", "Wang Fang", True)
    out = io.StringIO()
    assert print_cases(engine, dt.UTC, "overdue", 100, out, now=check) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == "1 complaint case, 1 overdue (times in UTC)"
    assert lines[1].startswith(f"#{late.id}  open  due 2026-11-27 04:00 OVERDUE 0h30m  priority 10")


def test_the_update_command_moves_a_case_on(engine: Engine, world: dict[str, int],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    case = open_case(engine, ComplaintRequest(key="k", origin="sms", e164="+8613800138000"), DUE, 10, NOW)
    url = engine.url.render_as_string(hide_password=False)
    assert main(["complaints", "update", str(case.id), "--status", "resolved", "--note", "refund paid",
                 "--url", url]) == 0
    assert f"complaint #{case.id} is resolved" in capsys.readouterr().out
    assert main(["complaints", "update", "999", "--status", "answered", "--url", url]) == 2
    assert "no complaint case #999" in capsys.readouterr().err
    (shown,) = list_cases(engine, NOW, include_resolved=True)
    assert (shown.status, shown.notes) == ("resolved", "refund paid")
