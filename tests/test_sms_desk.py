"""Inbound SMS in the database: callbacks, idempotency, rate limits, STOP (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from test_followups_store import HOURS, MONDAY_10, NUMBER, Clock, at_once
from test_sms_webhook import HOSTILE

from ivr.callbacks import FollowUpStore, InboundSms, SmsDesk
from ivr.config import CallbackSettings, SmsSettings
from ivr.db.models import FollowUp, OptOut, SmsMessage

PREMIUM = "+441632960000"  # a number the test's policy refuses


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_10)


def desk_for(engine: Engine, clock: Clock, **sms: object) -> SmsDesk:
    store = FollowUpStore(engine, HOURS, CallbackSettings(), now=clock)
    return SmsDesk(store, dataclasses.replace(SmsSettings(), **sms), "CN",
                   number_allowed=lambda e164: e164 != PREMIUM)


@pytest.fixture
def desk(engine: Engine, clock: Clock) -> SmsDesk:
    return desk_for(engine, clock)


def sms(message_id: str, text: str = "2", sender: str = "13800138000") -> InboundSms:
    return InboundSms(message_id, sender, "10086", text)


def stored(engine: Engine) -> list[tuple[str, str, str]]:
    with Session(engine) as session:
        return [tuple(row) for row in session.execute(  # type: ignore[misc]
            select(SmsMessage.message_id, SmsMessage.action, SmsMessage.text).order_by(SmsMessage.id))]


def callbacks(engine: Engine) -> list[FollowUp]:
    with Session(engine) as session:
        return list(session.scalars(select(FollowUp).order_by(FollowUp.id)))


def test_an_sms_makes_a_callback_with_its_skill_text_and_a_reply(engine: Engine, desk: SmsDesk) -> None:
    result = desk.receive(sms("m1", "2 washer leaks"))
    assert (result.action, result.skill, result.duplicate, result.reply_to) == (
        "callback", "after-sales", False, NUMBER)
    assert result.reply_text == "Thank you, we will call you back by 2026-11-23 12:00."
    (callback,) = callbacks(engine)
    assert (callback.id, callback.origin, callback.skill, callback.text, callback.request_key,
            callback.e164, callback.state) == (result.followup_id, "sms", "after-sales", "2 washer leaks",
                                                "m1", NUMBER, "open")
    assert "'2'" in callback.reason
    assert stored(engine) == [("m1", "callback", "2 washer leaks")]


def test_five_concurrent_copies_make_one_callback_and_one_reply(engine: Engine, desk: SmsDesk) -> None:
    results = at_once(5, lambda _: desk.receive(sms("gw-77", "1")))
    assert sorted(r.duplicate for r in results) == [False, True, True, True, True]
    assert {(r.action, r.followup_id) for r in results} == {("callback", results[0].followup_id)}
    assert [r for r in results if r.reply_text and not r.duplicate] != []
    assert len(callbacks(engine)) == 1
    assert stored(engine) == [("gw-77", "callback", "1")]


def test_rate_limits_store_but_do_not_act(engine: Engine, clock: Clock) -> None:
    desk = desk_for(engine, clock, min_interval=30.0, max_per_day=3)
    assert desk.receive(sms("a", "1")).action == "callback"
    clock.advance(seconds=29)
    limited = desk.receive(sms("b", "2"))
    assert (limited.action, limited.followup_id, limited.reply_text) == ("rate-limited", None, None)
    assert "30 s" in limited.detail
    clock.advance(seconds=2)
    assert desk.receive(sms("c", "2")).action == "already-pending"  # acted on: counts
    clock.advance(seconds=31)
    assert desk.receive(sms("d")).action == "already-pending"
    clock.advance(seconds=31)
    daily = desk.receive(sms("e"))
    assert (daily.action, daily.detail) == ("rate-limited", "more than 3 SMS in 24 h")
    assert desk.receive(sms("f", "1", sender="13900139000")).action == "callback"  # per number
    clock.advance(hours=24)
    assert desk.receive(sms("g")).action == "already-pending"
    assert [action for _, action, _ in stored(engine)] == [
        "callback", "rate-limited", "already-pending", "already-pending", "rate-limited", "callback",
        "already-pending"]
    assert len(callbacks(engine)) == 2


def test_stop_opts_out_cancels_and_is_never_rate_limited(engine: Engine, desk: SmsDesk,
                                                        clock: Clock) -> None:
    first = desk.receive(sms("a", "1"))
    stop = desk.receive(sms("b", "STOP"))  # right after: over the 30 s limit, still honoured
    assert (stop.action, stop.reply_to, stop.reply_text) == (
        "opt-out", NUMBER, "You will not be called by us again. Text START to undo.")
    (callback,) = callbacks(engine)
    assert (callback.id, callback.state) == (first.followup_id, "cancelled")
    clock.advance(minutes=5)
    again = desk.receive(sms("c", "please call me"))
    assert (again.action, again.followup_id, again.reply_text) == ("opted-out", None, None)
    assert len(callbacks(engine)) == 1
    with Session(engine) as session:
        assert session.scalars(select(OptOut.e164)).all() == [NUMBER]


def test_unusable_senders_get_no_callback_and_no_reply(engine: Engine, desk: SmsDesk) -> None:
    for message_id, sender, action in [("x1", "not a number", "invalid-number"),
                                       ("x2", "", "invalid-number"),
                                       ("x3", PREMIUM, "number-not-allowed")]:
        result = desk.receive(sms(message_id, "1", sender=sender))
        assert (result.action, result.followup_id, result.reply_to) == (action, None, None)
    assert callbacks(engine) == []
    assert [action for _, action, _ in stored(engine)] == ["invalid-number", "invalid-number",
                                                            "number-not-allowed"]


def test_hostile_texts_are_stored_literally(engine: Engine, desk: SmsDesk, clock: Clock) -> None:
    for index, text in enumerate(HOSTILE):
        desk.receive(sms(f"h{index}", text, sender=f"1380013{index:04d}"))
    assert [text for _, _, text in stored(engine)] == HOSTILE
    assert [c.text for c in callbacks(engine)] == HOSTILE


def test_replies_show_the_due_time_in_the_desks_zone(engine: Engine, clock: Clock) -> None:
    clock.value = dt.datetime(2026, 11, 28, 22, 0, tzinfo=dt.UTC)  # Sunday 06:00 in Shanghai
    desk = desk_for(engine, clock, reply_callback="Due {due}!")
    assert desk.receive(sms("m")).reply_text == "Due 2026-11-30 11:00!"
    assert desk_for(engine, clock, reply_stop="").receive(sms("s", "stop")).reply_text is None
