"""A generated contact history of realistic shape, for reports, charts and their benchmark.

``python -m ivr.demo.contacts --url URL --contacts 1000000 --days 180``

Calls arrive on a call centre's day (few at night, peaks at 10:00 and 15:00,
quieter weekends) in the desk's time zone; callers go to the sales,
after-sales, vip and ivr-fallback queues or finish in self-service; a busy
hour has longer waits and more callers who give up; talk times are
log-normal (median about 3 minutes); some calls are rated (``survey_score``);
agents also call customers back (outbound contacts) and customers text
(SMS contacts), each text asking for a call back (a follow-up due within 2
hours: most kept on time, some late, a few still open or expired). The
agents (codes ``2001``...) are added if missing.

Deterministic for a given seed and ``now`` (:func:`generate_contacts`): tests generate a small
history and check the reports against plain SQL counts of the same rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, insert, select

from ivr.db.models import Agent, Contact, FollowUp
from ivr.db.sql import utc_now

__all__ = ["GeneratedHistory", "generate_contacts", "main"]

#: Relative call volume per local hour of the day (0..23).
HOURLY = (1, 1, 1, 1, 1, 2, 4, 10, 30, 60, 80, 75, 50, 45, 70, 80, 70, 55, 35, 25, 18, 12, 6, 3)
#: Relative volume per weekday (Monday first).
DAILY = (1.0, 1.0, 0.95, 0.95, 0.9, 0.55, 0.4)
#: Queue shares of calls handed to people.
QUEUES = (("sales", 0.45), ("after-sales", 0.40), ("vip", 0.10), ("ivr-fallback", 0.05))
BATCH = 5000
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True, slots=True)
class GeneratedHistory:
    contacts: int
    agents: int
    seconds: float


def _agents(engine: Engine, count: int) -> list[int]:
    """Ids of the generated agents ``2001``..., added if missing."""
    codes = [str(2001 + n) for n in range(count)]
    with engine.begin() as connection:
        have = set(connection.scalars(select(Agent.code).where(Agent.code.in_(codes))).all())
        missing = [{"code": code, "name": f"Agent {code}", "device": f"PJSIP/{code}",
                    "skills": ["sales", "after-sales"], "active": True, "role": "agent"}
                   for code in codes if code not in have]
        if missing:
            connection.execute(insert(Agent), missing)
        rows = connection.execute(select(Agent.id, Agent.code).where(Agent.code.in_(codes))).all()
    by_code = {code: ident for ident, code in rows}
    return [by_code[code] for code in codes]


def _arrivals(rng: random.Random, count: int, days: int, now: dt.datetime,
              zone: dt.tzinfo) -> list[dt.datetime]:
    """``count`` arrival times over the ``days`` before ``now``, shaped by hour and weekday."""
    start_day = (now.astimezone(zone) - dt.timedelta(days=days)).date()
    weights: list[float] = []
    slots: list[tuple[dt.date, int]] = []
    for offset in range(days + 1):
        day = start_day + dt.timedelta(days=offset)
        for hour in range(24):
            slots.append((day, hour))
            weights.append(HOURLY[hour] * DAILY[day.weekday()])
    times: list[dt.datetime] = []
    for day, hour in rng.choices(slots, weights, k=count):
        local = dt.datetime(day.year, day.month, day.day, hour, tzinfo=zone) + dt.timedelta(
            seconds=rng.random() * 3600)
        moment = local.astimezone(dt.UTC)
        if moment < now:
            times.append(moment)
    return sorted(times)


def _contact(rng: random.Random, number: int, started: dt.datetime, agents: list[int],
             busy: float, prefix: str) -> dict[str, Any]:
    """One contact starting at ``started``; ``busy`` (0..1) is how loaded its hour is."""
    roll = rng.random()
    row: dict[str, Any] = {
        "uniqueid": f"{prefix}{number}", "channel": "voice", "direction": "inbound", "kind": "hotline",
        "handled_by": "generated", "caller_number": f"139{rng.randrange(10**8):08d}", "caller_name": "",
        "caller_e164": None, "started_at": started, "status": "final", "queue": "", "queue_outcome": "",
        "agent_id": None, "wait_seconds": None, "talk_seconds": None, "answered_at": None,
        "outcome": "completed", "survey_score": None, "ivr_path": [], "route": "hotline", "hangup_by": "",
    }
    row["caller_e164"] = "+86" + row["caller_number"]
    ivr_seconds = 15 + rng.random() * 40
    if roll < 0.05:  # an SMS
        row.update(channel="sms", kind="sms", route="", outcome="received")
        row["ended_at"], row["duration_seconds"] = started, 0.0
        row["followup"] = _followup(rng, number, started, row["caller_e164"], prefix)
        return row
    if roll < 0.17:  # an agent calls a customer (click-to-call or a callback)
        agent = rng.choice(agents)
        rang = 5 + rng.expovariate(1 / 12)
        picked = rng.random() < 0.7
        talk = rng.lognormvariate(math.log(150), 0.7) if picked else None
        row.update(direction="outbound", kind=rng.choice(("click-to-call", "callback")), route="",
                   agent_id=agent, wait_seconds=round(rang, 1),
                   talk_seconds=round(talk, 1) if talk else None,
                   outcome="answered" if picked else "no-answer")
        if picked:
            row["answered_at"] = started + dt.timedelta(seconds=rang)
        total = rang + (talk or 0)
        row["ended_at"], row["duration_seconds"] = started + dt.timedelta(seconds=total), round(total, 1)
        return row
    if roll < 0.33:  # self-service: the IVR answered it
        row["ended_at"], row["duration_seconds"] = started + dt.timedelta(seconds=ivr_seconds), \
            round(ivr_seconds, 1)
        return row
    queue = rng.choices([q for q, _ in QUEUES], [w for _, w in QUEUES])[0]
    patience = rng.expovariate(1 / 150)  # how long this caller is willing to wait
    wait = rng.expovariate(1 / (5 + 35 * busy * busy))  # the queue's wait at this hour
    if queue == "vip":
        wait /= 3
    row["queue"] = queue
    if wait > patience:
        outcome = "abandoned" if rng.random() < 0.9 else rng.choice(("timeout", "callback", "lost"))
        row.update(queue_outcome=outcome, wait_seconds=round(patience, 1), hangup_by="caller")
        total = ivr_seconds + patience
    else:
        talk = rng.lognormvariate(math.log(180), 0.6)
        row.update(queue_outcome="answered", wait_seconds=round(wait, 1), talk_seconds=round(talk, 1),
                   agent_id=rng.choice(agents), hangup_by=rng.choice(("caller", "agent")))
        row["answered_at"] = started + dt.timedelta(seconds=ivr_seconds + wait)
        if rng.random() < 0.2:
            row["survey_score"] = rng.choices((1, 2, 3, 4, 5), (45, 30, 12, 8, 5))[0]
        total = ivr_seconds + wait + talk
    row["ended_at"], row["duration_seconds"] = started + dt.timedelta(seconds=total), round(total, 1)
    return row


def _followup(rng: random.Random, number: int, asked: dt.datetime, e164: str, prefix: str) -> dict[str, Any]:
    """The follow-up an SMS asked for: due 2 h later; reached (on time or late), open, or given up
    (unreached)."""
    due = asked + dt.timedelta(hours=2)
    roll = rng.random()
    outcome = "reached" if roll < 0.85 else "" if roll < 0.95 else "unreached"
    closed = asked + dt.timedelta(seconds=rng.expovariate(1 / 4000)) if outcome == "reached" else \
        due + dt.timedelta(days=2) if outcome else None
    return {"origin": "sms", "request_key": f"{prefix}sms-{number}", "e164": e164, "reason": "sms",
            "skill": "sales", "text": "", "priority": 0, "state": "done" if outcome else "open",
            "outcome": outcome, "step": 0, "cadence_from": asked, "due_at": due, "next_attempt_at": asked,
            "attempts": 1, "max_attempts": 3, "last_outcome": "", "created_at": asked,
            "updated_at": closed or asked, "closed_at": closed}


def _rows(rng: random.Random, times: list[dt.datetime], agents: list[int], zone: dt.tzinfo,
          prefix: str) -> Iterator[dict[str, Any]]:
    peak = max(HOURLY)
    for number, started in enumerate(times):
        busy = HOURLY[started.astimezone(zone).hour] / peak
        yield _contact(rng, number, started, agents, busy, prefix)


def generate_contacts(engine: Engine, contacts: int, days: int = 180, *, now: dt.datetime | None = None,
                      zone: dt.tzinfo = SHANGHAI, agents: int = 40, seed: int = 16,
                      prefix: str = "gen-", progress: bool = False) -> GeneratedHistory:
    """Write about ``contacts`` contacts over the ``days`` before ``now`` (those that would fall after
    ``now`` on its own day are dropped); uniqueids are ``prefix`` + a number."""
    began = time.perf_counter()
    rng = random.Random(seed)
    now = now or utc_now()
    ids = _agents(engine, agents)
    times = _arrivals(rng, contacts, days, now, zone)
    batch: list[dict[str, Any]] = []
    followups: list[dict[str, Any]] = []
    written = 0
    with engine.begin() as connection:
        for row in _rows(rng, times, ids, zone, prefix):
            followup = row.pop("followup", None)
            if followup is not None:
                followups.append(followup)
            batch.append(row)
            if len(batch) == BATCH:
                connection.execute(insert(Contact), batch)
                if followups:
                    connection.execute(insert(FollowUp), followups)
                written += len(batch)
                batch, followups = [], []
                if progress and written % 100_000 == 0:
                    print(f"{written:,} contacts ({time.perf_counter() - began:.0f} s)", file=sys.stderr)
        if batch:
            connection.execute(insert(Contact), batch)
            written += len(batch)
        if followups:
            connection.execute(insert(FollowUp), followups)
    return GeneratedHistory(written, len(ids), time.perf_counter() - began)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ivr.demo.contacts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="database URL (its schema must be upgraded)")
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--agents", type=int, default=40)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--timezone", default="Asia/Shanghai")
    args = parser.parse_args(argv)
    from ivr.db.schema import make_engine

    engine = make_engine(args.url)
    try:
        made = generate_contacts(engine, args.contacts, args.days, zone=ZoneInfo(args.timezone),
                                 agents=args.agents, seed=args.seed, progress=True)
    finally:
        engine.dispose()
    print(f"{made.contacts:,} contacts by {made.agents} agents in {made.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
