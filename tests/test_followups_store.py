"""Follow-ups in the database: due times, idempotent creation, exclusive claims, retries, cadence steps.

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

from ivr.callbacks import FollowUp, FollowUpStore, Outcome
from ivr.callbacks.assign import FreeAgent
from ivr.callbacks.cli import print_followups
from ivr.config import CallbackSettings, FollowUpSettings
from ivr.db import Customer, CustomerPhone, make_engine, upgrade
from ivr.db.models import FollowUp as FollowUpRow
from ivr.db.models import OptOut
from ivr.db.schema import downgrade
from ivr.dialing.claims import ClaimsTable
from ivr.dialing.consent import must_not_call, opt_in, opt_out
from ivr.errors import CallbackError, CallbackNotClaimed
from ivr.plugins.requests import FollowUpOrigin, FollowUpRequest
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


#: Callbacks from SMS and the API: one step (within 2 business hours), so retries end it.
ONE_STEP = FollowUpSettings(cadence={"sms": "2bh", "api": "2bh", "ivr": "2bh"})


@pytest.fixture
def store(engine: Engine, clock: Clock) -> FollowUpStore:
    return FollowUpStore(engine, HOURS, CallbackSettings(), ONE_STEP, now=clock)


def new(number: str = NUMBER, origin: str = "sms", key: str | None = None,
        **fields: object) -> FollowUpRequest:
    return FollowUpRequest(number, FollowUpOrigin(origin), key=key, **fields)  # type: ignore[arg-type]


def claim(store: FollowUpStore, agents: int, instance: str) -> list[FollowUp]:
    """What ``agents`` free pool agents (no owners involved) get from ``claim_due``."""
    return [c.followup for c in store.claim_due([FreeAgent(f"90{i}") for i in range(agents)], instance)]


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
        return session.scalar(select(func.count()).select_from(FollowUpRow)) or 0


# ------------------------------------------------------------------ due times


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=SHANGHAI)


def test_an_sms_on_saturday_night_is_due_two_business_hours_after_monday_opening(store: FollowUpStore,
                                                                                 clock: Clock) -> None:
    clock.value = local(2026, 11, 28, 22).astimezone(dt.UTC)  # Saturday night
    callback, created = store.create(new(key="sat"))
    assert created
    assert callback.next_attempt_at == local(2026, 11, 30, 9).astimezone(dt.UTC)
    assert callback.due_at == local(2026, 11, 30, 11).astimezone(dt.UTC)
    assert claim(store, 5, "ivr-a") == []  # not before Monday's opening
    clock.value = callback.next_attempt_at
    assert [c.id for c in claim(store, 5, "ivr-a")] == [callback.id]


# ------------------------------------------------------------------ creating


def test_five_concurrent_copies_of_a_message_make_one_request(store: FollowUpStore, engine: Engine) -> None:
    request = new(reason="SMS", skill="sales", text="call me", key="gw-1")
    results = at_once(5, lambda _: store.create(request))
    assert sum(created for _, created in results) == 1
    assert len({callback.id for callback, _ in results}) == 1
    assert rows(engine) == 1


def test_requests_without_a_key_are_each_stored(store: FollowUpStore, engine: Engine) -> None:
    first, _ = store.create(new(origin="ivr"))
    second, _ = store.create(new(origin="ivr"))
    assert first.id != second.id and rows(engine) == 2


# ------------------------------------------------------------------ claiming


def test_due_requests_go_by_priority_then_age(store: FollowUpStore, clock: Clock) -> None:
    made = {}
    for name, priority in [("old-low", 0), ("old-high", 5), ("new-high", 5), ("new-low", 0)]:
        made[name], _ = store.create(new(origin="api", key=name, priority=priority))
        clock.advance(seconds=1)
    claimed = claim(store, 3, "ivr-a")
    assert [c.request_key for c in claimed] == ["old-high", "new-high", "old-low"]
    assert {(c.state, c.locked_by) for c in claimed} == {("open", "ivr-a")}
    assert [c.request_key for c in claim(store, 3, "ivr-b")] == ["new-low"]
    assert claim(store, 3, "ivr-b") == []


def test_two_claimers_in_parallel_never_take_the_same_request(store: FollowUpStore) -> None:
    made = {store.create(new(origin="api", key=f"m{i}"))[0].id for i in range(60)}

    def drain(index: int) -> list[int]:
        taken: list[int] = []
        while batch := claim(store, 2, f"ivr-{index}"):
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
        store = FollowUpStore(engine, HOURS, CallbackSettings(), ONE_STEP, now=clock)
        first, _ = store.create(new(origin="api", key="first", priority=9))
        second, _ = store.create(new(origin="api", key="second"))
        with engine.connect() as other:  # another instance, mid-claim on the best request
            other.execute(select(FollowUpRow.id).where(FollowUpRow.id == first.id).with_for_update())
            assert [c.id for c in claim(store, 5, "ivr-b")] == [second.id]
            other.rollback()
        assert [c.id for c in claim(store, 5, "ivr-b")] == [first.id]
    finally:
        downgrade(engine)
        engine.dispose()


def test_a_claim_held_past_the_lock_timeout_is_taken_back(engine: Engine, clock: Clock) -> None:
    store = FollowUpStore(engine, HOURS, CallbackSettings(lock_timeout=600), ONE_STEP, now=clock)
    callback, _ = store.create(new(key="m"))
    assert claim(store, 1, "ivr-a")
    clock.advance(seconds=599)
    assert claim(store, 1, "ivr-b") == []
    clock.advance(seconds=2)
    assert [c.locked_by for c in claim(store, 1, "ivr-b")] == ["ivr-b"]
    with pytest.raises(CallbackNotClaimed):
        store.finish(callback.id, Outcome.ANSWERED, "ivr-a")  # ivr-a came back too late
    assert store.finish(callback.id, Outcome.ANSWERED, "ivr-b").state == "done"


# ------------------------------------------------------------------ finishing


def test_no_answers_are_retried_with_backoff_then_end_the_last_step_unreached(store: FollowUpStore,
                                                                              clock: Clock) -> None:
    callback, _ = store.create(new(key="m"))
    waits = []
    for outcome in (Outcome.NO_ANSWER, Outcome.BUSY):
        (claimed,) = claim(store, 1, "ivr-a")
        after = store.finish(claimed.id, outcome, "ivr-a", contact_id=None)
        assert (after.state, after.last_outcome, after.locked_by) == ("open", outcome.value, None)
        waits.append(after.next_attempt_at - clock())
        assert claim(store, 1, "ivr-a") == []  # not before the backoff
        clock.value = after.next_attempt_at
    assert waits == [dt.timedelta(minutes=10), dt.timedelta(minutes=20)]
    (claimed,) = claim(store, 1, "ivr-a")
    final = store.finish(claimed.id, "no-answer", "ivr-a")
    assert (final.state, final.outcome) == ("done", "unreached")
    assert claim(store, 1, "ivr-a") == []


def test_a_retry_that_would_fall_after_closing_waits_for_the_next_opening(store: FollowUpStore,
                                                                          clock: Clock) -> None:
    clock.value = local(2026, 11, 23, 17, 55).astimezone(dt.UTC)
    store.create(new(key="m"))
    (claimed,) = claim(store, 1, "ivr-a")
    after = store.finish(claimed.id, Outcome.NO_ANSWER, "ivr-a")
    assert after.next_attempt_at == local(2026, 11, 24, 9).astimezone(dt.UTC)


def test_agent_side_failures_use_no_attempt(store: FollowUpStore, clock: Clock) -> None:
    store.create(new(key="m"))
    for _ in range(5):
        (claimed,) = claim(store, 1, "ivr-a")
        after = store.finish(claimed.id, Outcome.AGENT_NO_ANSWER, "ivr-a")
        assert (after.state, after.attempts) == ("open", 0)
        assert after.next_attempt_at == clock() + dt.timedelta(seconds=60)
        clock.value = after.next_attempt_at
    (claimed,) = claim(store, 1, "ivr-a")
    assert store.finish(claimed.id, Outcome.ANSWERED, "ivr-a").outcome == "reached"


def test_finish_refuses_what_it_cannot_do(store: FollowUpStore) -> None:
    callback, _ = store.create(new(key="m"))
    with pytest.raises(CallbackNotClaimed):
        store.finish(callback.id, Outcome.ANSWERED, "ivr-a")  # pending, never claimed
    claim(store, 1, "ivr-a")
    with pytest.raises(CallbackNotClaimed):
        store.finish(callback.id, Outcome.ANSWERED, "ivr-b")
    with pytest.raises(CallbackError, match="not an attempt outcome"):
        store.finish(callback.id, "hung-up-happy", "ivr-a")
    with pytest.raises(CallbackError, match="no follow-up"):
        store.finish(callback.id + 1000, Outcome.ANSWERED, "ivr-a")
    refused = store.finish(callback.id, Outcome.REFUSED, "ivr-a")
    assert (refused.state, refused.outcome) == ("cancelled", "refused")


def test_nothing_expires_an_overdue_follow_up_stays_open_and_escalates(engine: Engine, clock: Clock) -> None:
    store = FollowUpStore(engine, HOURS, CallbackSettings(), FollowUpSettings(escalate_after=1800), now=clock)
    followup, _ = store.create(new(key="m"))
    clock.value = followup.due_at + dt.timedelta(minutes=29)
    assert store.escalate_overdue() == []  # overdue, not yet for long
    clock.advance(minutes=2)
    (escalated,) = store.escalate_overdue()
    assert escalated.id == followup.id and escalated.escalated_at == clock()
    assert store.escalate_overdue() == []  # once
    clock.advance(days=30)
    assert [f.id for f in claim(store, 1, "ivr-a")] == [followup.id]  # still open, still dialled
    assert [f.id for f in store.list_followups("escalated")] == [followup.id]


# ------------------------------------------------------------------ listing


def test_open_and_overdue_follow_ups_are_listed(store: FollowUpStore, clock: Clock) -> None:
    early, _ = store.create(new(key="early", text="2\nplease\x1b[2J"))
    clock.advance(minutes=100)
    late, _ = store.create(new("+8613900139000", "api", key="late"))
    done, _ = store.create(new("+8613700137000", "api", key="done", priority=99))
    (claimed,) = claim(store, 1, "ivr-a")
    store.finish(claimed.id, Outcome.ANSWERED, "ivr-a")
    clock.advance(minutes=30)  # early is 10 minutes overdue
    assert [c.id for c in store.list_followups("open")] == [early.id, late.id]
    assert [c.id for c in store.list_followups("overdue")] == [early.id]
    assert {c.id for c in store.list_followups("all")} == {early.id, late.id, done.id}
    assert store.count_open() == (2, 1)

    import io
    out = io.StringIO()
    assert print_followups(store, "open", 10, out) == 2
    text = out.getvalue()
    assert "2 open follow-ups, 1 overdue" in text
    assert f"#{early.id}  open  due 2026-11-23 12:00 OVERDUE 10m  {NUMBER}  -  sms  step 1" in text
    assert "\x1b" not in text and "\n" not in text.strip().splitlines()[1]


# ------------------------------------------------------------------ opting out


def test_opting_out_cancels_open_follow_ups_and_start_undoes_only_its_own(engine: Engine,
                                                                           store: FollowUpStore,
                                                                           clock: Clock) -> None:
    with Session(engine) as session:
        session.add(Customer(name="Zhang", phones=[CustomerPhone(e164=NUMBER)]))
        session.commit()
    pending, _ = store.create(new(key="m"))
    other, _ = store.create(new("+8613900139000", key="o"))

    def stop(number: str, message: str | None) -> int:
        with engine.begin() as connection:
            return opt_out(connection, number, "sms", message, clock())

    def start(number: str) -> bool:
        with engine.begin() as connection:
            return opt_in(connection, number, clock())

    def refused(number: str) -> bool:
        with engine.connect() as connection:
            return must_not_call(connection, number)

    assert stop(NUMBER, "stop-1") == 1
    assert stop(NUMBER, "stop-2") == 0  # twice is fine
    assert [c.id for c in store.list_followups("open")] == [other.id]
    assert refused(NUMBER)
    with Session(engine) as session:
        assert session.scalars(select(Customer.do_not_call)).one() is True
        assert session.scalars(select(OptOut.message_id)).all() == ["stop-1"]
    assert not refused("+8613900139000")
    stop("+8613900139000", None)  # not a customer: recorded all the same
    assert refused("+8613900139000")
    cancelled = store.get(pending.id)
    assert cancelled is not None and (cancelled.state, cancelled.outcome) == ("cancelled", "opted-out")

    assert start(NUMBER) and not refused(NUMBER)  # START: contactable again
    assert not start(NUMBER)  # nothing left to undo
    with Session(engine) as session:  # an agent's do-not-call is not the customer's to undo by SMS
        customer = session.scalars(select(Customer)).one()
        customer.do_not_call, customer.do_not_call_reason = True, "abusive to agents (agent 1001)"
        session.commit()
    assert not start(NUMBER) and refused(NUMBER)


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
