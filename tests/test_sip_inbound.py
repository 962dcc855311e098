"""Inbound SMS over SIP MESSAGE: IvrSmsIn UserEvents decoded, checked and handed to the SMS desk.

The events are built the way [ivr-sms-in] raises them (every value base64);
the desk, the callback store and the outbox are the real ones, on SQLite and
PostgreSQL (the engine fixture).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pluggy
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from test_ami import successResultOf
from test_followups_store import MONDAY_10, NUMBER, Clock
from test_sms_desk import callbacks, desk_for, stored
from test_sms_sender import inline
from twisted.internet import defer
from twisted.internet.task import Clock as ReactorClock

from ivr.ami.message import AMIMessage
from ivr.callbacks.outbox import SmsOutbox
from ivr.callbacks.sip_inbound import (
    BadSmsEvent,
    SipSmsInbound,
    is_sms_event,
    parse_sms_event,
    sender_number,
)
from ivr.db.models import SmsOutbox as OutboxRow
from ivr.plugins import hookspecs
from ivr.plugins.hookspecs import hookimpl

CALL_ID = "6499f6cb-af2d-4bf8-a46c-13410c21227f 44217 MESSAGE"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def sms_event(body: str, sender: str = '"Customer" <sip:+8613800138000@127.0.0.1>', to: str = "95555",
              message_id: str = CALL_ID, channel: str = "Message/ast_msg_queue",
              **raw: str) -> AMIMessage:
    headers = {"Event": "UserEvent", "Channel": channel, "Context": "ivr-sms-in", "UserEvent": "IvrSmsIn",
               "Id": b64(message_id), "From": b64(sender), "To": b64(to), "Body": b64(body), **raw}
    return AMIMessage([(k, v) for k, v in headers.items() if v is not None])


class InlineOutbox(SmsOutbox):
    """The built-in outbox, storing at once instead of on a worker thread (no reactor runs here)."""

    @hookimpl(trylast=True)
    def ivr_send_sms(self, to: str, text: str) -> bool:  # type: ignore[override]
        return self.store(to, text)


def hooks_with_outbox(engine: Engine, now: Callable[..., Any]) -> Any:
    manager = pluggy.PluginManager("ivr")
    manager.add_hookspecs(hookspecs)
    manager.register(InlineOutbox(engine, now=now), name="ivr.callbacks.outbox")
    return manager.hook


def outbox(engine: Engine) -> list[tuple[str, str, str]]:
    with Session(engine) as session:
        rows = session.scalars(select(OutboxRow).order_by(OutboxRow.id))
        return [(r.to_number, r.text, r.status) for r in rows]


# -- decoding ---------------------------------------------------------------------


def test_a_hostile_body_arrives_literally() -> None:
    body = 'call me, "now" | 请回电\r\nline2 <script>alert(1)</script>; DROP TABLE x;--'
    message = parse_sms_event(sms_event(body, sender='"Bob, <x> \\"q\\"" <sip:+8613800138000@h;tag=1>'), 4000)
    assert (message.text, message.from_number, message.to_number) == (body, "+8613800138000", "95555")
    assert message.message_id == "sip:" + CALL_ID


@pytest.mark.parametrize(("header", "number"), [
    ("<sip:%2B8613800138000@carrier.example;user=phone>", "+8613800138000"),
    ("sips:13800138000@h", "13800138000"),
    ("tel:+8613800138000", "+8613800138000"),
    ('"x" <sip:10086@h>', "10086"),
])
def test_the_sender_is_the_user_part_of_from(header: str, number: str) -> None:
    assert sender_number(header) == number


@pytest.mark.parametrize("header", ["<http://evil.example/1@h>", "<sip:@h>", "plain words", "<sip:1%0a2@h>",
                                    "<sip:" + "1" * 65 + "@h>"])
def test_a_from_that_is_no_sender_is_refused(header: str) -> None:
    with pytest.raises(BadSmsEvent):
        sender_number(header)


def test_events_that_are_not_base64_are_refused() -> None:
    event = sms_event("hi", Body="not base64!!")
    with pytest.raises(BadSmsEvent, match="Body is not base64"):
        parse_sms_event(event, 4000)


def test_long_or_odd_ids_are_hashed_into_one_stable_id() -> None:
    first = parse_sms_event(sms_event("hi", message_id="x" * 500), 4000).message_id
    assert first == parse_sms_event(sms_event("hi", message_id="x" * 500), 4000).message_id
    assert first.startswith("sip:sha256:") and len(first) <= 200


def test_only_asterisks_message_channel_raises_sms() -> None:
    assert is_sms_event(sms_event("hi"))
    assert not is_sms_event(sms_event("hi", channel="PJSIP/loop-00000001"))  # a call's dialplan
    headers = [(k, v) for k, v in sms_event("hi").headers if k != "Channel"]  # AMI action UserEvent
    assert not is_sms_event(AMIMessage(headers))


# -- to the desk ------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_10)


def inbound_for(engine: Engine, clock: Clock, **kwargs: Any) -> tuple[SipSmsInbound, ReactorClock]:
    reactor = ReactorClock()
    desk = desk_for(engine, clock)
    inbound = SipSmsInbound(desk, hooks_with_outbox(engine, clock), reactor,
                            in_thread=kwargs.pop("in_thread", inline), **kwargs)
    return inbound, reactor


def test_call_me_makes_one_callback_and_a_reply_with_the_due_time_even_when_redelivered(
        engine: Engine, clock: Clock) -> None:
    inbound, _ = inbound_for(engine, clock)
    first = inbound.on_event(sms_event("call me, please"))
    assert first is not None
    result = successResultOf(first)
    assert result is not None and (result.action, result.duplicate) == ("callback", False)
    again = inbound.on_event(sms_event("call me, please"))  # the carrier delivers it again
    assert again is not None
    result = successResultOf(again)
    assert result is not None and (result.action, result.duplicate) == ("callback", True)
    (request,) = callbacks(engine)
    assert (request.e164, request.origin, request.text, request.request_key) == (
        NUMBER, "sms", "call me, please", "sip:" + CALL_ID)
    assert stored(engine) == [("sip:" + CALL_ID, "callback", "call me, please")]
    assert outbox(engine) == [(NUMBER, "Thank you, we will call you back by 2026-11-23 12:00.", "queued")]


def test_events_that_are_no_sms_reach_nothing(engine: Engine, clock: Clock) -> None:
    inbound, _ = inbound_for(engine, clock)
    assert inbound.on_event(sms_event("call me", channel="PJSIP/loop-1")) is None
    assert inbound.on_event(sms_event("call me", From="%%%")) is None
    other = AMIMessage([("Event", "UserEvent"), ("UserEvent", "IvrHangup"), ("Channel", "Message/x")])
    assert inbound.on_event(other) is None
    assert stored(engine) == [] and callbacks(engine) == [] and inbound.received == 0


def test_a_message_the_database_could_not_take_is_tried_again(engine: Engine, clock: Clock) -> None:
    failures = [RuntimeError("database down"), RuntimeError("still down")]

    def flaky(function: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        if failures and getattr(function, "__name__", "") == "receive":
            return defer.fail(failures.pop(0))
        return inline(function, *args)

    inbound, reactor = inbound_for(engine, clock, in_thread=flaky, retry_delays=(1.0, 5.0))
    taken = inbound.on_event(sms_event("call me"))
    assert taken is not None and not taken.called
    reactor.advance(1)
    assert not taken.called and callbacks(engine) == []
    reactor.advance(5)
    assert taken.called and len(callbacks(engine)) == 1
