"""Callback requests in the database: due times, idempotent creation, exclusive claims, retries.

Every database test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ivr.callbacks import CallbackStore, NewCallback, Outcome, next_opening
from ivr.callbacks.cli import print_callbacks
from ivr.config import CallbackSettings
from ivr.db import Customer, CustomerPhone, make_engine, upgrade
from ivr.db.models import CallbackRequest, OptOut
from ivr.db.schema import downgrade
from ivr.dialing.claims import ClaimsTable
from ivr.errors import CallbackError, CallbackNotClaimed
from ivr.routing.hours import BusinessHours

T = TypeVar("T")

SHANGHAI = dt.timezone(dt.timedelta(hours=8))
#: Monday 2026-11-23 10:00 in Shanghai: the desk is open.
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
WEEKDAYS = {day: "09:00-12:00 13:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri")}
HOURS = BusinessHours.parse("Asia/Shanghai", WEEKDAYS, ["2026-11-25"], "test")
NUMBER = "+8613800138000"


class Clock:
    """The store's idea of now, moved by the test."""

    def __init__(self, start: dt.datetime) -> None:
        self.value = start.astimezone(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.value

    def advance(self, **delta: float) -> None:
        self.value += dt.timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(MONDAY_10)


@pytest.fixture
def store(engine: Engine, clock: Clock) -> CallbackStore:
    return CallbackStore(engine, HOURS, CallbackSettings(), now=clock)


def at_once(count: int, work: Callable[[int], T]) -> list[T]:
    """Run ``work(i)`` in ``count`` threads released together; their results in order (errors raised)."""
    barrier = threading.Barrier(count)
    results: list[T | None] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def rows(engine: Engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(CallbackRequest)) or 0


# ------------------------------------------------------------------ due times (no database)


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


@pytest.mark.parametrize(("asked", "opens"), [
    (local(2026, 11, 23, 10), local(2026, 11, 23, 10)),        # open: now
    (local(2026, 11, 23, 12, 30), local(2026, 11, 23, 13)),    # lunch break
    (local(2026, 11, 23, 18), local(2026, 11, 24, 9)),         # closing time is closed
    (local(2026, 11, 24, 20), local(2026, 11, 26, 9)),         # the 25th is a holiday
    (local(2026, 11, 28, 10), local(2026, 11, 30, 9)),         # Saturday -> Monday
    (local(2026, 11, 23, 3), local(2026, 11, 23, 9)),          # before opening
])
def test_next_opening_follows_hours_and_holidays(asked: dt.datetime, opens: dt.datetime) -> None:
    assert next_opening(HOURS, asked) == opens.astimezone(dt.UTC)


def test_hours_that_never_open_have_no_opening() -> None:
    closed = BusinessHours.parse("Asia/Shanghai", {day: "" for day in WEEKDAYS}, [], "test")
    assert next_opening(closed, MONDAY_10) is None


def test_due_time_is_the_sla_after_the_next_opening(engine: Engine, clock: Clock) -> None:
    store = CallbackStore(engine, HOURS, CallbackSettings(sla_minutes=90), now=clock)
    clock.value = local(2026, 11, 28, 22).astimezone(dt.UTC)  # Saturday night
    callback, created = store.create(NewCallback(NUMBER, "sms", message_id="sat"))
    assert created
    assert callback.next_attempt_at == local(2026, 11, 30, 9).astimezone(dt.UTC)
    assert callback.due_at == local(2026, 11, 30, 10, 30).astimezone(dt.UTC)
    assert store.claim_due(5, "ivr-a") == []  # not before Monday's opening
    clock.value = callback.next_attempt_at
    assert [c.id for c in store.claim_due(5, "ivr-a")] == [callback.id]


# ------------------------------------------------------------------ creating


def test_five_concurrent_copies_of_a_message_make_one_request(store: CallbackStore, engine: Engine) -> None:
    new = NewCallback(NUMBER, "sms", reason="SMS", skill="sales", sms_text="call me", message_id="gw-1")
    results = at_once(5, lambda _: store.create(new))
    assert sum(created for _, created in results) == 1
    assert len({callback.id for callback, _ in results}) == 1
    assert rows(engine) == 1


def test_requests_without_a_message_id_are_each_stored(store: CallbackStore, engine: Engine) -> None:
    first, _ = store.create(NewCallback(NUMBER, "ivr"))
    second, _ = store.create(NewCallback(NUMBER, "ivr"))
    assert first.id != second.id and rows(engine) == 2


# ------------------------------------------------------------------ claiming


def test_due_requests_go_by_priority_then_age(store: CallbackStore, clock: Clock) -> None:
    made = {}
    for name, priority in [("old-low", 0), ("old-high", 5), ("new-high", 5), ("new-low", 0)]:
        made[name], _ = store.create(NewCallback(NUMBER, "api", message_id=name, priority=priority))
        clock.advance(seconds=1)
    claimed = store.claim_due(3, "ivr-a")
    assert [c.message_id for c in claimed] == ["old-high", "new-high", "old-low"]
    assert {(c.status, c.locked_by) for c in claimed} == {("dialing", "ivr-a")}
    assert [c.message_id for c in store.claim_due(3, "ivr-b")] == ["new-low"]
    assert store.claim_due(3, "ivr-b") == []


def test_two_claimers_in_parallel_never_take_the_same_request(store: CallbackStore) -> None:
    made = {store.create(NewCallback(NUMBER, "api", message_id=f"m{i}"))[0].id for i in range(60)}

    def drain(index: int) -> list[int]:
        taken: list[int] = []
        while batch := store.claim_due(2, f"ivr-{index}"):
            taken.extend(c.id for c in batch)
        return taken

    first, second = at_once(2, drain)
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(made)


@pytest.mark.postgres
def test_postgresql_claimers_skip_rows_another_holds_instead_of_waiting(postgres_url: str,
                                                                        clock: Clock) -> None:
    # A claimer that waited for the held row would fail after 5 s instead of hanging the test.
    engine = make_engine(postgres_url, connect_args={"options": "-c lock_timeout=5000"})
    downgrade(engine)
    upgrade(engine)
    try:
        store = CallbackStore(engine, HOURS, CallbackSettings(), now=clock)
        first, _ = store.create(NewCallback(NUMBER, "api", message_id="first", priority=9))
        second, _ = store.create(NewCallback(NUMBER, "api", message_id="second"))
        with engine.connect() as other:  # another instance, mid-claim on the best request
            other.execute(select(CallbackRequest.id).where(CallbackRequest.id == first.id).with_for_update())
            assert [c.id for c in store.claim_due(5, "ivr-b")] == [second.id]
            other.rollback()
        assert [c.id for c in store.claim_due(5, "ivr-b")] == [first.id]
    finally:
        downgrade(engine)
        engine.dispose()


def test_a_claim_held_past_the_lock_timeout_is_taken_back(engine: Engine, clock: Clock) -> None:
    store = CallbackStore(engine, HOURS, CallbackSettings(lock_timeout=600), now=clock)
    callback, _ = store.create(NewCallback(NUMBER, "sms", message_id="m"))
    assert store.claim_due(1, "ivr-a")
    clock.advance(seconds=599)
    assert store.claim_due(1, "ivr-b") == []
    clock.advance(seconds=2)
    assert [c.locked_by for c in store.claim_due(1, "ivr-b")] == ["ivr-b"]
    with pytest.raises(CallbackNotClaimed):
        store.finish(callback.id, Outcome.ANSWERED, "ivr-a")  # ivr-a came back too late
    assert store.finish(callback.id, Outcome.ANSWERED, "ivr-b").status == "done"


# ------------------------------------------------------------------ finishing


def test_no_answers_are_retried_with_backoff_then_fail(store: CallbackStore, clock: Clock) -> None:
    callback, _ = store.create(NewCallback(NUMBER, "sms", message_id="m"))
    waits = []
    for outcome in (Outcome.NO_ANSWER, Outcome.BUSY):
        (claimed,) = store.claim_due(1, "ivr-a")
        after = store.finish(claimed.id, outcome, "ivr-a", contact_id=None)
        assert (after.status, after.last_outcome, after.locked_by) == ("pending", outcome.value, None)
        waits.append(after.next_attempt_at - clock())
        assert store.claim_due(1, "ivr-a") == []  # not before the backoff
        clock.value = after.next_attempt_at
    assert waits == [dt.timedelta(minutes=10), dt.timedelta(minutes=20)]
    (claimed,) = store.claim_due(1, "ivr-a")
    final = store.finish(claimed.id, "no-answer", "ivr-a")
    assert (final.status, final.attempts) == ("failed", 3)
    assert store.claim_due(1, "ivr-a") == []


def test_a_retry_that_would_fall_after_closing_waits_for_the_next_opening(store: CallbackStore,
                                                                          clock: Clock) -> None:
    clock.value = local(2026, 11, 23, 17, 55).astimezone(dt.UTC)
    store.create(NewCallback(NUMBER, "sms", message_id="m"))
    (claimed,) = store.claim_due(1, "ivr-a")
    after = store.finish(claimed.id, Outcome.NO_ANSWER, "ivr-a")
    assert after.next_attempt_at == local(2026, 11, 24, 9).astimezone(dt.UTC)


def test_agent_side_failures_use_no_attempt(store: CallbackStore, clock: Clock) -> None:
    store.create(NewCallback(NUMBER, "sms", message_id="m"))
    for _ in range(5):
        (claimed,) = store.claim_due(1, "ivr-a")
        after = store.finish(claimed.id, Outcome.AGENT_NO_ANSWER, "ivr-a")
        assert (after.status, after.attempts) == ("pending", 0)
        assert after.next_attempt_at == clock() + dt.timedelta(seconds=60)
        clock.value = after.next_attempt_at
    (claimed,) = store.claim_due(1, "ivr-a")
    assert store.finish(claimed.id, Outcome.ANSWERED, "ivr-a").status == "done"


def test_finish_refuses_what_it_cannot_do(store: CallbackStore) -> None:
    callback, _ = store.create(NewCallback(NUMBER, "sms", message_id="m"))
    with pytest.raises(CallbackNotClaimed):
        store.finish(callback.id, Outcome.ANSWERED, "ivr-a")  # pending, never claimed
    store.claim_due(1, "ivr-a")
    with pytest.raises(CallbackNotClaimed):
        store.finish(callback.id, Outcome.ANSWERED, "ivr-b")
    with pytest.raises(CallbackError, match="not a callback outcome"):
        store.finish(callback.id, "hung-up-happy", "ivr-a")
    with pytest.raises(CallbackError, match="no callback request"):
        store.finish(callback.id + 1000, Outcome.ANSWERED, "ivr-a")
    assert store.finish(callback.id, Outcome.REFUSED, "ivr-a").status == "cancelled"


def test_pending_requests_expire_long_after_their_due_time(engine: Engine, clock: Clock) -> None:
    store = CallbackStore(engine, HOURS, CallbackSettings(expire_hours=24, sla_minutes=60), now=clock)
    callback, _ = store.create(NewCallback(NUMBER, "sms", message_id="m"))
    clock.value = callback.due_at + dt.timedelta(hours=24, seconds=1)
    assert store.claim_due(5, "ivr-a") == []
    expired = store.get(callback.id)
    assert expired is not None and expired.status == "expired"


# ------------------------------------------------------------------ listing


def test_open_and_overdue_requests_are_listed(store: CallbackStore, clock: Clock) -> None:
    early, _ = store.create(NewCallback(NUMBER, "sms", message_id="early", sms_text="2\nplease\x1b[2J"))
    clock.advance(minutes=100)
    late, _ = store.create(NewCallback("+8613900139000", "api", message_id="late"))
    done, _ = store.create(NewCallback("+8613700137000", "api", message_id="done", priority=99))
    (claimed,) = store.claim_due(1, "ivr-a")
    store.finish(claimed.id, Outcome.ANSWERED, "ivr-a")
    clock.advance(minutes=30)  # early is 10 minutes overdue
    assert [c.id for c in store.list_requests("open")] == [early.id, late.id]
    assert [c.id for c in store.list_requests("overdue")] == [early.id]
    assert {c.id for c in store.list_requests("all")} == {early.id, late.id, done.id}
    assert store.count_open() == (2, 1)

    import io
    out = io.StringIO()
    assert print_callbacks(store, "open", 10, out) == 2
    text = out.getvalue()
    assert "2 open callback requests, 1 overdue" in text
    assert f"#{early.id}  pending  due 2026-11-23 12:00 OVERDUE 10m  {NUMBER}" in text
    assert "\x1b" not in text and "\n" not in text.strip().splitlines()[1]


# ------------------------------------------------------------------ opting out


def test_opting_out_cancels_pending_requests_and_marks_the_customer(engine: Engine,
                                                                     store: CallbackStore) -> None:
    with Session(engine) as session:
        session.add(Customer(name="Zhang", phones=[CustomerPhone(e164=NUMBER)]))
        session.commit()
    pending, _ = store.create(NewCallback(NUMBER, "sms", message_id="m"))
    other, _ = store.create(NewCallback("+8613900139000", "sms", message_id="o"))
    assert store.opt_out(NUMBER, "sms", "stop-1") == 1
    assert store.opt_out(NUMBER, "sms", "stop-2") == 0  # twice is fine
    assert [c.id for c in store.list_requests("open")] == [other.id]
    assert store.is_opted_out(NUMBER)
    with Session(engine) as session:
        assert session.scalars(select(Customer.do_not_call)).one() is True
        assert session.scalars(select(OptOut.message_id)).all() == ["stop-1"]
    assert not store.is_opted_out("+8613900139000")
    store.opt_out("+8613900139000", "sms")  # not a customer: recorded all the same
    assert store.is_opted_out("+8613900139000")
    cancelled = store.get(pending.id)
    assert cancelled is not None and (cancelled.status, cancelled.last_outcome) == ("cancelled", "opted-out")


# ------------------------------------------------------------------ one agent per customer


def test_one_agent_per_customer_across_concurrent_claims(engine: Engine, clock: Clock) -> None:
    active = ClaimsTable(engine, stale_after=dt.timedelta(hours=1), now=clock)
    answers = at_once(5, lambda i: active.claim(NUMBER, f"100{i}", "click-to-call", "ivr-a") or "")
    winners = [f"100{i}" for i, answer in enumerate(answers) if answer == ""]
    assert len(winners) == 1
    assert {answer for answer in answers if answer} == {winners[0]}
    assert active.holder(NUMBER) == winners[0]
    assert active.claim(NUMBER, winners[0], "click-to-call", "ivr-a") == winners[0]  # a double click
    assert not active.release(NUMBER, "9999")  # not theirs to release
    assert active.release(NUMBER, winners[0])
    assert active.holder(NUMBER) is None
    assert active.claim(NUMBER, "2001", "callback", "ivr-b") is None


def test_a_stale_claim_is_taken_over(engine: Engine, clock: Clock) -> None:
    active = ClaimsTable(engine, stale_after=dt.timedelta(hours=1), now=clock)
    assert active.claim(NUMBER, "1001", "callback", "ivr-dead") is None
    clock.advance(minutes=61)
    assert active.holder(NUMBER) is None
    assert active.claim(NUMBER, "1002", "callback", "ivr-b") is None
    assert active.holder(NUMBER) == "1002"
