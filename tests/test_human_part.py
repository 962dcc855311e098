"""The human part of a call: AMI queue events -> contact records -> the contacts row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from twisted.internet import defer
from twisted.internet.task import Clock

from ivr.ami import ActionResult, AMIMessage
from ivr.db import Agent, Contact
from ivr.history.human_part import HumanPartTracker, device_of, open_human_parts
from ivr.history.recorder import ContactEnd, ContactHumanPart, ContactRecorder, ContactStart
from ivr.routing.router import CallStep

T0 = 1_790_000_000.0  # epoch seconds of the call's start
UID = "1700000000.42"


class _Call:
    uniqueid = UID


class _FakeAMI:
    """Subscriptions by event name; events delivered by the test, CoreShowChannels answered."""

    def __init__(self, live: list[str] | None = None) -> None:
        self.handlers: dict[str, Any] = {}
        self.live = live or []
        self.ready = True

    def subscribe(self, callback: Any, event: str) -> None:
        self.handlers[event] = callback

    def event(self, name: str, **headers: str) -> None:
        self.handlers[name](AMIMessage([("Event", name), ("Uniqueid", UID), *headers.items()]))

    def when_ready(self) -> defer.Deferred[None]:
        return defer.succeed(None)

    def send_action(self, action: str) -> defer.Deferred[ActionResult]:
        assert action == "CoreShowChannels"
        events = tuple(AMIMessage([("Event", "CoreShowChannel"), ("Uniqueid", u)]) for u in self.live)
        return defer.succeed(ActionResult(AMIMessage([("Response", "Success")]), events))


def _tracker() -> tuple[HumanPartTracker, list[ContactHumanPart], Clock, _FakeAMI]:
    records: list[ContactHumanPart] = []
    clock = Clock()
    clock.advance(T0)
    tracker = HumanPartTracker(records.append, clock)
    ami = _FakeAMI()
    tracker.subscribe(ami)
    call: Any = _Call()
    tracker.ivr_call_started(call)
    clock.advance(20)  # 20 s in the menus
    tracker.ivr_call_step(call, CallStep("transfer", value="queue:sales"))
    return tracker, records, clock, ami


def test_an_answered_queue_call_records_agent_wait_talk_and_who_hung_up() -> None:
    tracker, records, clock, ami = _tracker()
    assert records[-1].queue_outcome == "waiting" and records[-1].queue == "sales"
    clock.advance(1)
    ami.event("QueueCallerJoin", Queue="sales", Position="1")
    clock.advance(7)
    ami.event("AgentConnect", Queue="sales", MemberName="1001", Interface="Local/1001@test-agent",
              HoldTime="7")
    talking = records[-1]
    assert (talking.queue_outcome, talking.agent, talking.wait_seconds) == ("talking", "1001", 8.0)
    clock.advance(30)
    ami.event("AgentComplete", Queue="sales", MemberName="1001", HoldTime="7", TalkTime="29",
              Reason="agent")
    done = records[-1]
    assert (done.queue_outcome, done.wait_seconds, done.talk_seconds, done.hangup_by) == (
        "answered", 8.0, 29.0, "agent")
    assert done.ended_at == T0 + 58 and done.duration_seconds == 58.0
    assert not tracker.open
    ami.event("Hangup")  # the channel's own end afterwards changes nothing
    assert records[-1] is done


def test_a_caller_who_hangs_up_while_waiting_abandoned() -> None:
    tracker, records, clock, ami = _tracker()
    ami.event("QueueCallerJoin", Queue="sales")
    clock.advance(12.5)
    ami.event("QueueCallerAbandon", Queue="sales", HoldTime="12")
    assert (records[-1].queue_outcome, records[-1].wait_seconds, records[-1].talk_seconds) == (
        "abandoned", 12.5, None)


def test_queues_that_give_up_are_a_timeout_and_the_owner_answering_directly_counts() -> None:
    tracker, records, clock, ami = _tracker()
    ami.event("QueueCallerJoin", Queue="sales")
    clock.advance(15)
    ami.event("UserEvent", UserEvent="IvrFallback", Reason="queue-TIMEOUT")
    clock.advance(5)
    ami.event("Hangup", Cause="16")
    assert records[-1].queue_outcome == "timeout" and records[-1].wait_seconds == 20.0

    tracker, records, clock, ami = _tracker()
    clock.advance(4)  # the account owner's phone rings first (Dial in [ivr-queue])
    ami.event("DialEnd", DestChannel="PJSIP/1002-0000001f", DialStatus="ANSWER")
    assert (records[-1].queue_outcome, records[-1].agent, records[-1].wait_seconds) == (
        "talking", "PJSIP/1002", 4.0)
    clock.advance(60)
    ami.event("Hangup")
    assert (records[-1].queue_outcome, records[-1].talk_seconds) == ("answered", 60.0)


def test_events_of_calls_this_instance_did_not_hand_off_are_ignored() -> None:
    tracker, records, clock, ami = _tracker()
    count = len(records)
    ami.handlers["AgentConnect"](AMIMessage([("Uniqueid", "999.1"), ("MemberName", "1001")]))
    assert len(records) == count


def test_calls_whose_channel_is_gone_after_a_restart_are_lost_live_ones_are_followed() -> None:
    records: list[ContactHumanPart] = []
    clock = Clock()
    tracker = HumanPartTracker(records.append, clock)
    tracker.ivr_call_step(_Call(), CallStep("transfer", value="queue:sales"))  # type: ignore[arg-type]
    other = "1700000000.43"
    tracker.ivr_call_step(type("C", (), {"uniqueid": other})(), CallStep("transfer", value="queue:vip"))
    ami = _FakeAMI(live=[other])
    tracker.start(ami)  # checks as soon as AMI is logged in
    assert [(r.uniqueid, r.queue_outcome) for r in records[2:]] == [(UID, "lost")]
    assert list(tracker.open) == [other]
    tracker.stop()


def test_device_of_strips_the_channel_suffix() -> None:
    assert device_of("PJSIP/1001-0000000a") == "PJSIP/1001"
    assert device_of("Local/1001@test-agent-0000001b;1") == "Local/1001@test-agent"


def test_the_recorder_writes_the_human_part_and_finds_the_agent_by_code_or_device(
        engine: Engine, tmp_path: Path) -> None:
    with Session(engine) as session:
        session.add(Agent(code="1001", name="Ana", device="Local/1001@test-agent"))
        session.commit()
        agent_id = session.scalars(select(Agent.id)).one()
    recorder = ContactRecorder(engine, tmp_path / "journal", Clock())
    recorder._apply([ContactStart(UID, T0, "ivr-a"), ContactEnd(UID, T0 + 20, "completed", queue="sales",
                                                                   duration_seconds=20.0),
                     ContactHumanPart(UID, "waiting", queue="sales")])
    with Session(engine) as session:
        contact = session.scalars(select(Contact)).one()
        assert (contact.queue_outcome, contact.agent_id, contact.duration_seconds) == ("waiting", None, 20.0)
    recorder._apply([ContactHumanPart(UID, "talking", "sales", "Local/1001@test-agent", 8.0,
                                      answered_at=T0 + 28)])
    recorder._apply([ContactHumanPart(UID, "answered", "sales", "1001", 8.0, 29.0, "agent",
                                      ended_at=T0 + 58, duration_seconds=58.0)])
    with Session(engine) as session:
        contact = session.scalars(select(Contact)).one()
        assert (contact.queue_outcome, contact.agent_id, contact.wait_seconds, contact.talk_seconds,
                contact.hangup_by, contact.duration_seconds, contact.status) == (
            "answered", agent_id, 8.0, 29.0, "agent", 58.0, "final")
        assert contact.answered_at is not None and contact.ended_at is not None
    assert open_human_parts(engine, "ivr-a") == []


def test_open_human_parts_are_read_back_for_the_instance_that_handed_them_off(
        engine: Engine, tmp_path: Path) -> None:
    recorder = ContactRecorder(engine, tmp_path / "journal", Clock())
    recorder._apply([ContactStart(UID, T0, "ivr-a"), ContactEnd(UID, T0 + 20, "completed", queue="sales"),
                     ContactHumanPart(UID, "waiting", queue="sales"),
                     ContactStart("2.2", T0, "ivr-b"), ContactHumanPart("2.2", "waiting", queue="vip")])
    (part,) = open_human_parts(engine, "ivr-a")
    assert (part.uniqueid, part.queue, part.outcome, part.started, part.waiting_since) == (
        UID, "sales", "waiting", T0, T0 + 20)


def test_a_callers_customer_is_found_by_their_number_when_the_call_starts(
        engine: Engine, tmp_path: Path) -> None:
    from ivr.db import Customer, CustomerPhone

    with Session(engine) as session:
        session.add(Customer(name="Zhang Wei", phones=[CustomerPhone(e164="+8613800138000")]))
        session.commit()
        customer_id = session.scalars(select(Customer.id)).one()
    recorder = ContactRecorder(engine, tmp_path / "journal", Clock())
    recorder._apply([ContactStart("3.1", T0, "ivr-a", caller_e164="+8613800138000"),
                     ContactStart("3.2", T0, "ivr-a", caller_e164="+8613900139000"),
                     ContactStart("3.3", T0, "ivr-a", caller_e164=None)])
    with Session(engine) as session:
        found = {u: c for u, c in session.execute(select(Contact.uniqueid, Contact.customer_id))}
    assert found == {"3.1": customer_id, "3.2": None, "3.3": None}


def test_after_a_restart_the_check_waits_for_the_ami_login_not_the_next_interval() -> None:
    records: list[ContactHumanPart] = []
    clock = Clock()
    tracker = HumanPartTracker(records.append, clock, check_interval=30)
    tracker.ivr_call_step(_Call(), CallStep("transfer", value="queue:sales"))  # type: ignore[arg-type]
    ami = _FakeAMI(live=[])
    login: defer.Deferred[None] = defer.Deferred()
    ami.when_ready = lambda: login  # type: ignore[method-assign]
    tracker.start(ami)
    clock.advance(1)
    assert [r.queue_outcome for r in records] == ["waiting"]  # not logged in yet: nothing decided
    login.callback(None)
    assert [r.queue_outcome for r in records] == ["waiting", "lost"]
    tracker.stop()
