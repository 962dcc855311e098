"""The SMS outbox as a delivery queue, and the sender that drains it with AMI MessageSend.

The queue runs on SQLite and PostgreSQL (the engine fixture); the sender talks
to a simulated Asterisk (test_ami's AMIProtocol on a StringTransport) with a
fake Clock, so retries and backoff are checked without waiting.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from test_ami import Asterisk, successResultOf, wire
from test_followups_store import at_once
from twisted.internet import defer
from twisted.internet.task import Clock

from ivr.ami.actions import MAX_MESSAGE_BODY_BYTES
from ivr.ami.message import AMIMessage
from ivr.callbacks.outbox import SmsOutbox
from ivr.callbacks.outbox_queue import OutboxQueue, RetryPolicy
from ivr.callbacks.sms_sender import SipSmsSender, destination_for
from ivr.config import SipSmsSettings
from ivr.db.models import Contact
from ivr.db.models import SmsOutbox as OutboxRow
from ivr.db.sql import utc

START = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)
NUMBER = "+8613800138000"
POLICY = RetryPolicy(max_attempts=3, delay=10.0, factor=2.0, max_delay=15.0)
SETTINGS = SipSmsSettings(enabled=True, destination="pjsip:loop/sip:{digits}@127.0.0.1:5060",
                          from_uri="sip:95555@127.0.0.1", max_attempts=3, retry_delay=10.0,
                          retry_factor=2.0, retry_max_delay=15.0, poll_interval=1.0, batch=5)


def inline(function: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
    """deferToThread's stand-in: the work runs now (the tests' Clock drives everything)."""
    return defer.maybeDeferred(function, *args)


def clock_now(clock: Clock) -> Callable[[], dt.datetime]:
    return lambda: START + dt.timedelta(seconds=clock.seconds())


def queue_text(engine: Engine, text: str, to: str = NUMBER) -> int:
    SmsOutbox(engine, now=lambda: START).store(to, text)
    with Session(engine) as session:
        return max(session.scalars(select(OutboxRow.id)))


def row(engine: Engine, outbox_id: int) -> OutboxRow:
    with Session(engine) as session:
        found = session.get(OutboxRow, outbox_id)
        assert found is not None
        session.expunge(found)
        return found


def contact_outcome(engine: Engine, outbox_id: int) -> tuple[str, str]:
    with Session(engine) as session:
        contact = session.scalars(select(Contact).where(Contact.uniqueid == f"sms-out:{outbox_id}")).one()
        return contact.outcome, contact.outcome_reason


# -- the queue ------------------------------------------------------------------


def test_a_queued_message_is_claimed_once_and_marked_sent_on_its_timeline_contact(engine: Engine) -> None:
    clock = Clock()
    queue = OutboxQueue(engine, POLICY, now=clock_now(clock))
    outbox_id = queue_text(engine, "we will call you by 11:00")
    assert contact_outcome(engine, outbox_id) == ("queued", "")
    (claimed,) = queue.claim(10, "a")
    assert (claimed.id, claimed.to_number, claimed.text, claimed.attempt) == (
        outbox_id, NUMBER, "we will call you by 11:00", 1)
    assert queue.claim(10, "b") == []  # held by a
    assert queue.sent(outbox_id, "b") is False  # b does not hold it
    assert queue.sent(outbox_id, "a") is True
    stored = row(engine, outbox_id)
    assert (stored.status, stored.attempts, stored.locked_by) == ("sent", 1, None)
    assert stored.sent_at is not None
    assert contact_outcome(engine, outbox_id) == ("sent", "")
    assert queue.counts() == {"queued": 0, "sending": 0, "sent": 1, "failed": 0}
    assert queue.claim(10, "a") == []


def test_a_failed_send_waits_for_its_backoff_then_fails_for_good_after_the_last_try(engine: Engine) -> None:
    clock = Clock()
    queue = OutboxQueue(engine, POLICY, now=clock_now(clock))
    outbox_id = queue_text(engine, "reply")
    waits = []
    for attempt in (1, 2):
        (claimed,) = queue.claim(10, "a")
        assert claimed.attempt == attempt
        assert queue.failed(outbox_id, "a", "Asterisk refused MessageSend") == "queued"
        stored = row(engine, outbox_id)
        assert stored.next_attempt_at is not None
        waits.append((utc(stored.next_attempt_at) - clock_now(clock)()).total_seconds())
        assert contact_outcome(engine, outbox_id) == (
            "queued", f"attempt {attempt} failed: Asterisk refused MessageSend")
        clock.advance(waits[-1] - 1)
        assert queue.claim(10, "a") == []  # not before its time
        clock.advance(1)
    assert waits == [10.0, 15.0]  # 10 s, then 20 s capped at 15 s
    queue.claim(10, "a")
    assert queue.failed(outbox_id, "a", "Asterisk refused MessageSend") == "failed"
    stored = row(engine, outbox_id)
    assert (stored.status, stored.attempts) == ("failed", 3)
    assert stored.last_error == "Asterisk refused MessageSend"
    assert contact_outcome(engine, outbox_id) == ("failed", "Asterisk refused MessageSend")
    clock.advance(3600)
    assert queue.claim(10, "a") == []
    assert [e.id for e in queue.listing("failed")] == [outbox_id]
    assert queue.listing("open") == []


def test_a_message_that_cannot_be_sent_fails_at_once(engine: Engine) -> None:
    queue = OutboxQueue(engine, POLICY)
    outbox_id = queue_text(engine, "x", to="not a number")
    queue.claim(1, "a")
    assert queue.failed(outbox_id, "a", "the recipient is not a phone number", retry=False) == "failed"
    assert row(engine, outbox_id).attempts == 1


def test_a_message_left_sending_by_a_dead_instance_is_taken_back_after_the_lock_timeout(
        engine: Engine) -> None:
    clock = Clock()
    queue = OutboxQueue(engine, POLICY, lock_timeout=60, now=clock_now(clock))
    outbox_id = queue_text(engine, "reply")
    queue.claim(1, "dead")
    clock.advance(59)
    assert queue.claim(1, "alive") == []
    clock.advance(2)
    (claimed,) = queue.claim(1, "alive")
    assert (claimed.id, claimed.attempt) == (outbox_id, 2)
    assert queue.sent(outbox_id, "dead") is False  # the late answer of the dead one changes nothing
    assert queue.sent(outbox_id, "alive") is True


def test_concurrent_senders_never_take_the_same_message(engine: Engine) -> None:
    queue = OutboxQueue(engine, POLICY)
    ids = {queue_text(engine, f"m{i}") for i in range(12)}
    taken = at_once(4, lambda i: [sms.id for sms in queue.claim(5, f"instance-{i}")])
    flat = [outbox_id for batch in taken for outbox_id in batch]
    assert len(flat) == len(set(flat)) == 12 and set(flat) == ids


# -- the sender over a simulated Asterisk ------------------------------------------


def message_sends(peer: Asterisk) -> list[AMIMessage]:
    return [m for m in peer.sent() if m["Action"] == "MessageSend"]


def sender_for(engine: Engine, **settings: Any) -> tuple[SipSmsSender, Asterisk, OutboxQueue]:
    peer = Asterisk()
    peer.login()
    config = dataclasses.replace(SETTINGS, **settings)
    queue = OutboxQueue(engine, RetryPolicy(config.max_attempts, config.retry_delay, config.retry_factor,
                                            config.retry_max_delay), now=clock_now(peer.clock))
    return SipSmsSender(queue, peer.protocol, peer.clock, "a", config, in_thread=inline), peer, queue


def test_the_sender_sends_the_text_intact_as_base64_and_marks_it_sent(engine: Engine) -> None:
    sender, peer, _ = sender_for(engine)
    text = '谢谢，我们会在 11:00 前回电。\nReply "STOP", to opt out | 退订'
    outbox_id = queue_text(engine, text)
    sender.start()
    peer.clock.advance(1)
    (action,) = message_sends(peer)
    assert action["Destination"] == "pjsip:loop/sip:8613800138000@127.0.0.1:5060"
    assert action["From"] == "sip:95555@127.0.0.1"
    assert base64.b64decode(action["Base64Body"]).decode() == text
    assert "Body" not in action
    assert row(engine, outbox_id).status == "sending"
    peer.feed(wire(Response="Success", ActionID=action["ActionID"], Message="Message successfully sent"))
    assert row(engine, outbox_id).status == "sent"
    assert contact_outcome(engine, outbox_id) == ("sent", "")
    assert sender.sent == 1
    sender.stop()


def test_a_refused_send_is_retried_after_the_backoff_then_failed(engine: Engine) -> None:
    sender, peer, queue = sender_for(engine)
    outbox_id = queue_text(engine, "reply")
    sender.start()
    tries = []
    for _ in range(40):  # polled every second
        peer.clock.advance(1)
        for action in message_sends(peer):
            tries.append(peer.clock.seconds())
            peer.feed(wire(Response="Error", ActionID=action["ActionID"], Message="Message failed to send."))
    assert tries == [1.0, 11.0, 26.0]  # first look at 1 s; then 10 s later; then 20 s capped at 15 s
    stored = row(engine, outbox_id)
    assert (stored.status, stored.attempts) == ("failed", 3)
    assert stored.last_error == "Asterisk refused MessageSend: Message failed to send."
    assert contact_outcome(engine, outbox_id)[0] == "failed"
    peer.clock.advance(100)
    assert message_sends(peer) == []  # failed is final
    assert queue.counts()["failed"] == 1 and sender.failed_attempts == 3
    sender.stop()


def test_a_lost_connection_is_a_failed_attempt_retried_later(engine: Engine) -> None:
    sender, peer, _ = sender_for(engine)
    outbox_id = queue_text(engine, "reply")
    d = defer.Deferred.fromCoroutine(sender.tick())
    assert len(message_sends(peer)) == 1
    peer.lose()
    assert successResultOf(d) == 1
    stored = row(engine, outbox_id)
    assert (stored.status, stored.attempts) == ("queued", 1)
    assert stored.last_error.startswith("AMI: ")


def test_messages_of_a_batch_not_tried_before_the_connection_went_are_put_back_unused(
        engine: Engine) -> None:
    sender, peer, _ = sender_for(engine)
    first, second = queue_text(engine, "one"), queue_text(engine, "two")
    d = defer.Deferred.fromCoroutine(sender.tick())
    assert len(message_sends(peer)) == 1  # the first is on its way
    peer.lose()
    assert successResultOf(d) == 2
    assert (row(engine, first).status, row(engine, first).attempts) == ("queued", 1)  # it may have left
    assert (row(engine, second).status, row(engine, second).attempts) == ("queued", 0)  # it never did


def test_nothing_is_claimed_while_asterisk_is_not_logged_in(engine: Engine) -> None:
    sender, peer, _ = sender_for(engine)
    outbox_id = queue_text(engine, "reply")
    peer.lose()
    assert successResultOf(defer.Deferred.fromCoroutine(sender.tick())) == 0
    assert (row(engine, outbox_id).status, row(engine, outbox_id).attempts) == ("queued", 0)


@pytest.mark.parametrize("number", ["123@evil.example.com", "+86 138", "sip:1@x", "1\r\nAction: Originate",
                                    "pjsip:other/sip:1@h", ""])
def test_a_hostile_number_never_reaches_asterisk_and_fails_at_once(engine: Engine, number: str) -> None:
    sender, peer, _ = sender_for(engine)
    outbox_id = queue_text(engine, "reply", to=number)
    assert successResultOf(defer.Deferred.fromCoroutine(sender.tick())) == 1
    assert message_sends(peer) == []
    stored = row(engine, outbox_id)
    assert (stored.status, stored.last_error) == ("failed", "the recipient is not a phone number")


def test_a_text_too_long_for_messagesend_fails_at_once_without_an_action(engine: Engine) -> None:
    sender, peer, _ = sender_for(engine)
    fits = queue_text(engine, "话" * (MAX_MESSAGE_BODY_BYTES // 3))
    too_long = queue_text(engine, "话" * (MAX_MESSAGE_BODY_BYTES // 3 + 1))
    d = defer.Deferred.fromCoroutine(sender.tick())
    (action,) = message_sends(peer)
    assert len(base64.b64decode(action["Base64Body"])) == MAX_MESSAGE_BODY_BYTES // 3 * 3
    peer.feed(wire(Response="Success", ActionID=action["ActionID"]))
    assert successResultOf(d) == 2
    assert row(engine, fits).status == "sent"
    assert row(engine, too_long).status == "failed" and "MessageSend carries at most" in row(
        engine, too_long).last_error


def test_destinations_take_only_numbers() -> None:
    template = "pjsip:trunk/sip:{digits}@sms.example.com;user=phone"
    assert destination_for(template, "+8613800138000") == (
        "pjsip:trunk/sip:8613800138000@sms.example.com;user=phone")
    assert destination_for("pjsip:t/sip:{number}@h", "8613800138000") == "pjsip:t/sip:+8613800138000@h"
    assert destination_for(template, "13800138000@evil") is None
    assert destination_for(template, "12") is None


def test_the_cli_shows_failed_messages_with_their_error_and_text_made_harmless(engine: Engine) -> None:
    import io
    from zoneinfo import ZoneInfo

    from ivr.callbacks.sms_cli import print_outbox

    clock = Clock()
    queue = OutboxQueue(engine, POLICY, now=clock_now(clock))
    sent = queue_text(engine, "sent one")
    failed = queue_text(engine, "bad\x1b[31m one\nsecond line")
    queue.claim(10, "a")
    queue.sent(sent, "a")
    queue.failed(failed, "a", "Asterisk refused MessageSend: Message failed to send.", retry=False)
    out = io.StringIO()
    assert print_outbox(queue, "failed", 10, ZoneInfo("Asia/Shanghai"), out) == 1
    header, line = out.getvalue().splitlines()
    assert header == "0 queued, 0 sending, 1 sent, 1 failed SMS"
    assert line.startswith(f"#{failed}  failed  1 tries  {NUMBER}  queued 2026-11-23 10:00:00")
    assert "error 'Asterisk refused MessageSend: Message failed to send.'" in line
    assert "\x1b" not in line and "\n" not in line
    out = io.StringIO()
    assert print_outbox(queue, "all", 10, ZoneInfo("Asia/Shanghai"), out) == 2
