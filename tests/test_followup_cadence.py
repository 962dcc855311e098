"""A follow-up's life on a fake clock: the lead cadence across closing hours and holidays, the owner
first, escalation; and the cadence text admins write.

Every database test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ivr.callbacks import FollowUp, FollowUpStore, Outcome, parse_cadence
from ivr.callbacks.assign import FreeAgent
from ivr.config import CallbackSettings, FollowUpSettings
from ivr.db import Customer, CustomerPhone
from ivr.db.models import Agent
from ivr.errors import CallbackError, ConfigError
from ivr.plugins.requests import FollowUpOrigin, FollowUpRequest
from ivr.routing.hours import BusinessHours

SHANGHAI = ZoneInfo("Asia/Shanghai")
WEEKDAYS = {day: "09:00-12:00 13:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri")}
#: 2026-11-25 (a Wednesday) is a holiday.
HOURS = BusinessHours.parse("Asia/Shanghai", WEEKDAYS, ["2026-11-25"], "test")
NUMBER = "+8613800138000"


def local(day: int, hour: int, minute: int = 0, month: int = 11) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(dt.UTC)


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.value = start

    def __call__(self) -> dt.datetime:
        return self.value


@pytest.fixture
def clock() -> Clock:
    return Clock(local(23, 10))  # Monday 10:00


@pytest.fixture
def store(engine: Engine, clock: Clock) -> FollowUpStore:
    return FollowUpStore(engine, HOURS, CallbackSettings(max_attempts=2, retry_delay=600),
                         FollowUpSettings(owner_window=600), now=clock)


def lead(store: FollowUpStore, key: str = "web-1", **fields: object) -> FollowUp:
    followup, _ = store.create(FollowUpRequest(NUMBER, FollowUpOrigin.LEAD, key=key, **fields))  # type: ignore[arg-type]
    return followup


def attempt(store: FollowUpStore, clock: Clock, outcome: Outcome, agent: str = "2001") -> FollowUp:
    """Move the clock to the next attempt, let ``agent`` take it, and end it with ``outcome``."""
    current = store.list_followups("open")[0]
    clock.value = max(clock.value, current.next_attempt_at)
    (claim,) = store.claim_due([FreeAgent(agent)], "ivr-a")
    return store.finish(claim.followup.id, outcome, "ivr-a")


def test_a_lead_at_ten_on_a_business_day_is_due_by_noon(store: FollowUpStore) -> None:
    followup = lead(store)
    assert (followup.next_attempt_at, followup.due_at) == (local(23, 10), local(23, 12))
    feb_22 = dt.datetime(2027, 2, 22, 9, tzinfo=SHANGHAI).astimezone(dt.UTC)
    assert [(s.start, s.due) for s in store.planned(followup)] == [
        (local(24, 10), local(25, 10)),  # 24 h-48 h: from Tuesday 10:00, due Wednesday 10:00 (wall time)
        (local(30, 9), local(30, 10)),  # 6 d is Sunday: from Monday's opening, due by 7 d
        (local(22, 10, month=12), local(23, 10, month=12)),  # 29-30 d
        (feb_22, feb_22),  # 89-90 d end on a weekend: at Monday's opening
    ]


def test_the_whole_lead_cadence_on_a_fake_clock(store: FollowUpStore, clock: Clock) -> None:
    """Not reached twice in step 1 -> step 2 within 48 h; reached -> the cadence goes on (a lead is
    followed until an agent closes it); each step opens at business hours, never on the holiday."""
    followup = lead(store)
    first = attempt(store, clock, Outcome.NO_ANSWER)
    assert (first.step, first.attempts) == (0, 1)
    assert first.next_attempt_at == local(23, 10, 10)  # the backoff
    second = attempt(store, clock, Outcome.BUSY)  # two tries used: the next step is planned
    assert (second.step, second.attempts, second.state) == (1, 0, "open")
    assert second.next_attempt_at == local(24, 10) and second.due_at == local(25, 10)
    assert second.due_at - followup.created_at <= dt.timedelta(hours=48)
    reached = attempt(store, clock, Outcome.ANSWERED)
    assert clock() == local(24, 10)
    assert (reached.step, reached.state, reached.last_outcome) == (2, "open", "answered")
    # 6 d-7 d after Monday 10:00 is Sunday 29th 10:00 .. Monday 30th 10:00; the desk opens Monday 09:00.
    assert (reached.next_attempt_at, reached.due_at) == (local(30, 9), local(30, 10))
    third = attempt(store, clock, Outcome.ANSWERED)
    assert (third.step, third.next_attempt_at) == (3, local(22, 10, month=12))  # 29 d: Tuesday 22 Dec
    fourth = attempt(store, clock, Outcome.ANSWERED)
    assert (fourth.step, fourth.next_attempt_at) == (4, dt.datetime(2027, 2, 22, 9, tzinfo=SHANGHAI)
                                                     .astimezone(dt.UTC))  # 89 d is a Saturday
    done = attempt(store, clock, Outcome.ANSWERED)
    assert (done.state, done.outcome) == ("done", "reached")
    assert store.planned(done) == []


def test_a_lead_after_closing_time_waits_for_the_next_business_morning(store: FollowUpStore,
                                                                        clock: Clock) -> None:
    clock.value = local(24, 17, 30)  # Tuesday 17:30; Wednesday is a holiday
    followup = lead(store)
    assert followup.next_attempt_at == local(24, 17, 30)
    assert followup.due_at == local(26, 10, 30)  # 30 min on Tuesday, 90 min from Thursday 09:00


def test_a_callback_is_done_when_reached_and_an_agent_can_close_a_lead(store: FollowUpStore,
                                                                       clock: Clock) -> None:
    store.create(FollowUpRequest(NUMBER, FollowUpOrigin.SMS, key="sms-1"))
    reached = attempt(store, clock, Outcome.ANSWERED)
    assert (reached.state, reached.outcome) == ("done", "reached")
    followup = lead(store, key="web-2")
    closed = store.close(followup.id)
    assert (closed.state, closed.outcome, closed.closed_at) == ("done", "closed", clock())
    with pytest.raises(CallbackError, match="already done"):
        store.close(followup.id)


def test_a_dated_disposition_starts_at_its_date(store: FollowUpStore, clock: Clock) -> None:
    friday_3pm = local(27, 15)
    followup, _ = store.create(FollowUpRequest(NUMBER, FollowUpOrigin.DISPOSITION, start_at=friday_3pm))
    assert (followup.next_attempt_at, followup.due_at) == (friday_3pm, local(27, 17))
    assert store.claim_due([FreeAgent("2001")], "ivr-a") == []  # not before Friday


def owned_customer(engine: Engine, away: bool = False) -> tuple[int, int]:
    """A customer owned by agent 1001 (and a pool agent 2001); (customer id, owner id)."""
    with Session(engine) as session:
        owner = Agent(code="1001", device="PJSIP/1001", skills=["sales"], away=away)
        session.add_all([owner, Agent(code="2001", device="PJSIP/2001", skills=["sales"])])
        session.flush()
        customer = Customer(name="Wang", owner_agent_id=owner.id, phones=[CustomerPhone(e164=NUMBER)])
        session.add(customer)
        session.commit()
        return customer.id, owner.id


def test_the_owner_gets_it_first_then_the_pool_after_the_head_start(store: FollowUpStore, engine: Engine,
                                                                    clock: Clock) -> None:
    customer, owner = owned_customer(engine)
    followup, _ = store.create(FollowUpRequest(NUMBER, FollowUpOrigin.SMS, skill="sales", key="s"))
    assert (followup.customer_id, followup.owner_agent_id) == (customer, owner)
    pool = [FreeAgent("2001", ("sales",))]
    assert store.claim_due(pool, "ivr-a") == []  # the owner is busy: it waits for them
    (mine,) = store.claim_due([*pool, FreeAgent("1001", ("sales",))], "ivr-a")
    assert mine.agent == "1001"  # the owner, though listed after a pool agent
    store.finish(mine.followup.id, Outcome.AGENT_NO_ANSWER, "ivr-a")  # the owner did not pick up
    clock.value = local(23, 10, 11)  # the 10-minute head start is over: the pool, even if the owner is free
    (taken,) = store.claim_due([FreeAgent("1001", ("sales",)), *pool], "ivr-a")
    assert taken.agent == "2001"


def test_many_waiting_for_a_busy_owner_never_hide_one_the_pool_can_take(store: FollowUpStore, engine: Engine,
                                                                        clock: Clock) -> None:
    owned_customer(engine)
    for n in range(12):  # a long line for the owner, all older than the pool's one
        store.create(FollowUpRequest(NUMBER, FollowUpOrigin.SMS, skill="sales", key=f"owned-{n}"))
    clock.value = local(23, 10, 1)
    pool_one, _ = store.create(FollowUpRequest("+8613900139000", FollowUpOrigin.SMS, skill="sales",
                                               key="pool"))
    (taken,) = store.claim_due([FreeAgent("2001", ("sales",))], "ivr-a")
    assert (taken.followup.id, taken.agent) == (pool_one.id, "2001")


def test_an_owner_marked_away_does_not_hold_their_customers_back(store: FollowUpStore,
                                                                 engine: Engine) -> None:
    owned_customer(engine, away=True)
    store.create(FollowUpRequest(NUMBER, FollowUpOrigin.SMS, skill="sales", key="s"))
    (taken,) = store.claim_due([FreeAgent("2001", ("sales",))], "ivr-a")
    assert taken.agent == "2001"


def test_cadence_text_is_checked() -> None:
    assert len(parse_cadence("2bh 24h-48h, 6d-7d").steps) == 3
    for wrong in ("", "2x", "48h-24h", "soon"):
        with pytest.raises(ValueError):
            parse_cadence(wrong)


def test_a_wrong_cadence_in_the_settings_is_a_config_error(engine: Engine) -> None:
    with pytest.raises(ConfigError, match="followups.cadence"):
        FollowUpStore(engine, HOURS, CallbackSettings(), FollowUpSettings(cadence={"leads": "2bh"}))


def test_the_cli_lists_plans_and_closes_a_follow_up(store: FollowUpStore, engine: Engine,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from ivr.cli import main

    url = ["--url", engine.url.render_as_string(hide_password=False)]
    owned_customer(engine)
    followup = lead(store, reason="web lead\x1b[2J")
    assert main(["followups", "list", "--owner", "1001", *url]) == 0
    listed = capsys.readouterr().out
    assert f"#{followup.id}  open" in listed and "lead  step 1" in listed and "\x1b" not in listed
    assert main(["followups", "list", "--owner", "9999", *url]) == 2
    assert "no agent '9999'" in capsys.readouterr().err
    assert main(["followups", "plan", str(followup.id), *url]) == 0
    planned = capsys.readouterr().out.splitlines()
    assert len(planned) == 5 and planned[1].startswith("  step 2: from ") and "step 5" in planned[4]
    assert main(["followups", "close", str(followup.id), *url]) == 0
    assert "done (closed)" in capsys.readouterr().out
    assert main(["followups", "close", str(followup.id), *url]) == 2
    assert "already done" in capsys.readouterr().err
    assert main(["followups", "plan", "999", *url]) == 2


def test_overdue_follow_ups_are_counted_by_owner_and_skill(store: FollowUpStore, engine: Engine,
                                                           clock: Clock) -> None:
    owned_customer(engine)
    store.create(FollowUpRequest(NUMBER, FollowUpOrigin.SMS, skill="sales", key="owned"))
    store.create(FollowUpRequest("+8613900139000", FollowUpOrigin.SMS, skill="sales", key="pool-1"))
    store.create(FollowUpRequest("+8613700137000", FollowUpOrigin.API, skill="", key="pool-2"))
    assert store.overdue_by_owner() == []  # due in 2 business hours
    clock.value = local(24, 10)
    assert sorted(store.overdue_by_owner()) == [("", "", 1), ("", "sales", 1), ("1001", "sales", 1)]
