# mypy: disable-error-code="no-untyped-call"
# (twisted.trial's assertions are not annotated)
"""The wallboard's one computation, reading QueueStatus, and the audited queue actions (no Asterisk).

A fake AMI answers QueueStatus with the events app_queue sends; the database
is a real SQLite file. The Playwright test (test_e2e_supervisor.py) does the
same against the real sandbox.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select
from twisted.internet import defer, threads
from twisted.internet.task import Clock
from twisted.trial import unittest

from ivr.ami import AMIMessage
from ivr.ami.message import ActionResult, HeaderValue
from ivr.db import Agent, Contact, make_engine, upgrade
from ivr.db.models import SupervisorAction
from ivr.errors import AMIActionError, WebRequestError
from ivr.supervisor.actions import ActionRequest, QueueActions
from ivr.supervisor.board import Wallboard
from ivr.supervisor.live import member_state, read_queue_status

QUEUES = ("sales", "after-sales")


def event(name: str, **headers: str) -> AMIMessage:
    return AMIMessage([("Event", name), *headers.items()])


STATUS = [
    event("QueueParams", Queue="sales", Calls="2"),
    event("QueueMember", Queue="sales", Name="1001", Location="PJSIP/1001", Status="1", Paused="0"),
    event("QueueMember", Queue="sales", Name="1002", Location="PJSIP/1002", Status="2", Paused="0",
          InCall="1"),
    event("QueueMember", Queue="sales", Name="1003", Location="PJSIP/1003", Status="1", Paused="1",
          PausedReason="lunch"),
    event("QueueEntry", Queue="sales", Position="1", Wait="42"),
    event("QueueEntry", Queue="sales", Position="2", Wait="7"),
    event("QueueParams", Queue="after-sales", Calls="0"),
    event("QueueMember", Queue="after-sales", Name="1003", Location="PJSIP/1003", Status="6", Paused="0"),
    event("QueueMember", Queue="after-sales", Name="1004", Location="PJSIP/1004", Status="5", Paused="0"),
    event("QueueParams", Queue="someone-elses", Calls="9"),
    event("QueueEntry", Queue="someone-elses", Position="1", Wait="999"),
]


def scratch(test: unittest.TestCase) -> Path:
    """A temporary folder removed after ``test`` (trial's mktemp() would write into the checkout)."""
    folder = Path(tempfile.mkdtemp(prefix="ivr-wallboard-"))
    test.addCleanup(shutil.rmtree, folder, True)
    return folder


class FakeAMI:
    """Answers QueueStatus with ``STATUS``; counts actions; keeps subscribers."""

    ready = True

    def __init__(self, refuse: str | None = None) -> None:
        self.status = list(STATUS)
        self.sent: list[tuple[str, list[tuple[str, HeaderValue]]]] = []
        self.subscribers: list[tuple[Callable[[AMIMessage], object], str | None]] = []
        self.refuse = refuse

    def queue_status(self, queue: str | None = None,
                     member: str | None = None) -> defer.Deferred[ActionResult]:
        self.sent.append(("QueueStatus", []))
        return defer.succeed(ActionResult(AMIMessage([("Response", "Success")]), tuple(self.status)))

    def send_action(self, action: str, headers: Sequence[tuple[str, HeaderValue]] = (), *,
                    timeout: float | None = None, completion_event: str | None = None
                    ) -> defer.Deferred[ActionResult]:
        self.sent.append((action, list(headers)))
        if self.refuse:
            return defer.fail(AMIActionError(action, self.refuse))
        return defer.succeed(ActionResult(AMIMessage([("Response", "Success")])))

    def subscribe(self, callback: Callable[[AMIMessage], object],
                  name: str | None = None) -> Callable[[], None]:
        self.subscribers.append((callback, name))
        return lambda: None

    def publish(self, message: AMIMessage) -> None:
        for callback, name in self.subscribers:
            if name is None or name.lower() == (message.event or "").lower():
                callback(message)


def test_queue_status_reads_waiting_callers_and_member_states() -> None:
    now = read_queue_status(STATUS, QUEUES)
    assert set(now.queues) == {"sales", "after-sales"}  # a queue ivr does not serve is left out
    sales = now.queues["sales"]
    assert (sales.waiting, sales.longest_wait) == (2, 42)
    assert sales.counts() == {"free": 1, "ringing": 0, "on_call": 1, "paused": 1, "logged_out": 0}
    assert [m.paused_reason for m in sales.members] == ["", "", "lunch"]
    # 1003 is paused in sales but ringing in after-sales: the ring is what the supervisor must see.
    assert now.interfaces() == {"PJSIP/1001": "free", "PJSIP/1002": "on_call", "PJSIP/1003": "ringing",
                                "PJSIP/1004": "logged_out"}
    assert [member_state(s, False, False) for s in "012345678"] == [
        "logged_out", "free", "on_call", "on_call", "logged_out", "logged_out", "ringing", "ringing",
        "on_call"]


def seed(engine: Engine, now: dt.datetime) -> None:
    with engine.begin() as connection:
        connection.execute(insert(Agent), [
            {"code": code, "name": f"Agent {code}", "device": f"PJSIP/{code}", "skills": [], "active": True,
             "role": "agent"} for code in ("1001", "1002", "1003", "1004", "1005")])
        connection.execute(insert(Contact), [
            {"uniqueid": "a", "started_at": now - dt.timedelta(minutes=5), "queue": "sales",
             "queue_outcome": "answered", "wait_seconds": 12.0, "talk_seconds": 60.0},
            {"uniqueid": "b", "started_at": now - dt.timedelta(minutes=4), "queue": "sales",
             "queue_outcome": "abandoned", "wait_seconds": 30.0, "talk_seconds": None},
            {"uniqueid": "c", "started_at": now - dt.timedelta(days=2), "queue": "sales",
             "queue_outcome": "answered", "wait_seconds": 3.0, "talk_seconds": 10.0}])  # not today


class WallboardTests(unittest.TestCase):
    def setUp(self) -> None:
        self.engine = make_engine(f"sqlite:///{scratch(self)}/ivr.db")
        upgrade(self.engine)
        self.addCleanup(self.engine.dispose)
        self.now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)  # the clock the board reads
        seed(self.engine, self.now)
        self.clock = Clock()
        self.clock.advance(self.now.timestamp())
        self.ami = FakeAMI()
        self.board = Wallboard(self.ami, self.engine, self.clock, dt.UTC, 20.0, QUEUES, 2.0)
        self.board.start()
        self.addCleanup(self.board.stop)

    def pages(self, count: int) -> list[list[bytes]]:
        written: list[list[bytes]] = [[] for _ in range(count)]
        for page in written:
            self.board.connect(page.append)
        return written

    @defer.inlineCallbacks
    def test_many_pages_share_one_computation(self) -> Any:
        self.assertIsNone(self.board.tick())  # no page: no AMI action, no query
        self.assertEqual((self.ami.sent, self.board.figure_reads), ([], 0))
        pages = self.pages(3)  # the first page starts a computation at once
        yield self.settle()
        for _ in range(3):  # three ticks of the wallboard's clock
            self.clock.advance(2.0)
            yield self.settle()
        self.assertEqual(len(self.ami.sent), 4)  # one QueueStatus per computation, not per page
        self.assertEqual(self.board.figure_reads, 1)  # no queue event: today's figures were kept
        self.assertTrue(all(page == pages[0] for page in pages))  # the same bytes to every page
        self.assertEqual(len(pages[0]), 4)
        self.ami.publish(event("QueueCallerAbandon", Queue="sales"))
        reads = []
        for _ in range(4):
            self.clock.advance(2.0)
            yield self.settle()
            reads.append(self.board.figure_reads)
        self.assertEqual(reads, [2, 3, 3, 3])  # read again in the 5 s after a queue event, then kept
        self.board.disconnect(pages[1].append)
        self.clock.advance(2.0)
        yield self.settle()
        self.assertEqual((len(pages[0]), len(pages[1])), (9, 8))

    @defer.inlineCallbacks
    def test_the_snapshot_has_queues_agents_and_today(self) -> Any:
        page = self.pages(1)[0]
        yield self.settle()
        lines = page[-1].decode().split("\n")
        self.assertEqual(lines[1], "event: board")
        snapshot = json.loads(lines[2][len("data: "):])
        sales = next(q for q in snapshot["queues"] if q["queue"] == "sales")
        self.assertEqual((sales["waiting"], sales["longest_wait"]), (2, 42))
        self.assertEqual((sales["today"]["offered"], sales["today"]["answered"]), (2, 1))
        today = snapshot["today"]
        self.assertEqual((today["offered"], today["answered"], today["abandoned"]), (2, 1, 1))
        self.assertEqual(today["service_level"], 50.0)  # 1 of 2 answered within 20 s
        self.assertEqual(today["mean_wait"], 21.0)
        states = {a["agent"]: a["state"] for a in snapshot["agents"]}
        self.assertEqual(states, {"1001": "free", "1002": "on_call", "1003": "ringing", "1004": "logged_out",
                                  "1005": "logged_out"})  # 1005 is in no queue
        self.assertEqual(snapshot["states"], {"free": 1, "ringing": 1, "on_call": 1, "paused": 0,
                                              "logged_out": 2})
        self.assertEqual(snapshot["satisfaction"], {"answers": 0, "satisfied_pct": None})  # no survey today
        self.assertEqual(snapshot["complaints_open"], 0)

    def settle(self) -> defer.Deferred[None]:
        """Let the worker threads' results come back (the board's reads run on them)."""
        return threads.deferToThread(lambda: None).addCallback(lambda _: _wait_idle(self.board))


async def _idle(board: Wallboard) -> None:
    from twisted.internet import reactor, task

    while board._busy:
        await task.deferLater(reactor, 0.01, lambda: None)


def _wait_idle(board: Wallboard) -> defer.Deferred[None]:
    return defer.Deferred.fromCoroutine(_idle(board))


class QueueActionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.engine = make_engine(f"sqlite:///{scratch(self)}/ivr.db")
        upgrade(self.engine)
        self.addCleanup(self.engine.dispose)
        seed(self.engine, dt.datetime.now(dt.UTC))

    def audit(self) -> list[tuple[str, ...]]:
        with self.engine.connect() as connection:
            a = SupervisorAction
            query = select(a.supervisor, a.action, a.queue, a.agent, a.interface, a.result, a.detail)
            return [tuple(row) for row in connection.execute(query.order_by(a.id)).all()]

    @defer.inlineCallbacks
    def test_pause_add_and_remove_send_ami_actions_and_are_audited(self) -> Any:
        ami = FakeAMI()
        actions = QueueActions(ami, self.engine, QUEUES)
        for body in ({"action": "pause", "agent": "1001", "reason": "coaching"},
                     {"action": "add", "agent": "1002", "queue": "after-sales"},
                     {"action": "remove", "agent": "1002", "queue": "after-sales"}):
            yield defer.Deferred.fromCoroutine(actions.act("9001", ActionRequest.parse(body, QUEUES)))
        self.assertEqual(ami.sent, [
            ("QueuePause", [("Interface", "PJSIP/1001"), ("Paused", "true"), ("Reason", "coaching")]),
            ("QueueAdd", [("Interface", "PJSIP/1002"), ("Queue", "after-sales"), ("MemberName", "1002"),
                          ("Paused", "false")]),
            ("QueueRemove", [("Interface", "PJSIP/1002"), ("Queue", "after-sales")])])
        self.assertEqual(self.audit(), [
            ("9001", "pause", "", "1001", "PJSIP/1001", "ok", ""),
            ("9001", "add", "after-sales", "1002", "PJSIP/1002", "ok", ""),
            ("9001", "remove", "after-sales", "1002", "PJSIP/1002", "ok", "")])

    @defer.inlineCallbacks
    def test_a_refusal_is_a_409_and_audited_as_failed(self) -> Any:
        actions = QueueActions(FakeAMI(refuse="Interface not found"), self.engine, QUEUES)
        request = ActionRequest.parse({"action": "unpause", "agent": "1003", "queue": "sales"}, QUEUES)
        with self.assertRaises(WebRequestError) as raised:
            yield defer.Deferred.fromCoroutine(actions.act("9001", request))
        self.assertEqual(raised.exception.status, 409)
        self.assertEqual(self.audit(), [("9001", "unpause", "sales", "1003", "PJSIP/1003", "failed",
                                         "Interface not found")])

    @defer.inlineCallbacks
    def test_an_unknown_agent_is_404_and_nothing_is_sent(self) -> Any:
        ami = FakeAMI()
        request = ActionRequest.parse({"action": "pause", "agent": "PJSIP/evil"}, QUEUES)
        with self.assertRaises(WebRequestError) as raised:
            yield defer.Deferred.fromCoroutine(QueueActions(ami, self.engine, QUEUES).act("9001", request))
        self.assertEqual((raised.exception.status, ami.sent, self.audit()), (404, [], []))

    def test_hostile_requests_are_refused_before_anything_happens(self) -> None:
        for body in ({"action": "reboot", "agent": "1001"}, {"action": "add", "agent": "1001"},
                     {"action": "add", "agent": "1001", "queue": "default"},
                     {"action": "pause", "agent": "1001", "reason": "x\r\nAction: Originate"},
                     {"action": "pause", "agent": ["1001"]},
                     {"action": "pause", "agent": "1001", "reason": 5}):
            with self.assertRaises(WebRequestError) as raised:
                ActionRequest.parse(body, QUEUES)
            self.assertEqual(raised.exception.status, 400, body)
