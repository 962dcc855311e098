"""The survey's database side: the call it rates, whether to ask, and each answer as it comes.

A survey is a ``surveys`` row (unique per rated call) and a contact row of its
own (kind survey, uniqueid ``survey:<rated call's uniqueid>``) so it shows in
the customer's timeline with a one-line summary of the answers. Each answer
is committed on its own, with the rated call's ``contacts.survey_score``, so
a caller who hangs up keeps what they answered.

Blocking: the plugin calls these on a worker thread (``threads.deferToThread``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Engine, Table, func, or_, select, update

from ivr.db.models import Agent, Contact, Customer, Survey
from ivr.db.sql import insert_ignoring, utc, write_transaction
from ivr.dialing.consent import must_not_call
from ivr.dialing.directory import OUTBOUND_KINDS
from ivr.plugins.feedback import SCORE
from ivr.survey.questions import LEVELS

__all__ = ["SURVEY_KIND", "RatedCall", "SurveyIds", "finish", "ineligible", "open_survey", "rated_call",
           "save_answer", "set_followup", "summary", "survey_uniqueid"]

SURVEY_KIND = "survey"
_contacts = cast(Table, Contact.__table__)
_surveys = cast(Table, Survey.__table__)
#: Columns of the yes/no questions.
_YES_NO = ("buy_again", "recommend")


@dataclass(frozen=True, slots=True)
class RatedCall:
    """The call a survey rates, as the contact history has it."""

    contact_id: int
    uniqueid: str
    kind: str
    direction: str
    e164: str | None
    customer_id: int | None
    agent_id: int | None
    agent_code: str
    queue: str
    queue_outcome: str
    #: The customer's account owner (recovery goes to them first), if any.
    owner_agent_id: int | None
    #: The customer's language ("" if unknown).
    language: str = ""


@dataclass(frozen=True, slots=True)
class SurveyIds:
    survey_id: int
    contact_id: int


def survey_uniqueid(rated_uniqueid: str) -> str:
    return f"survey:{rated_uniqueid}"[:64]


def rated_call(engine: Engine, uniqueid: str) -> RatedCall | None:
    """The contact of the call ``uniqueid`` with its agent and the customer's owner, or None."""
    query = (select(Contact.id, Contact.uniqueid, Contact.kind, Contact.direction, Contact.caller_e164,
                    Contact.customer_id, Contact.agent_id, Agent.code, Contact.queue, Contact.queue_outcome,
                    Customer.owner_agent_id, Customer.language)
             .outerjoin(Agent, Contact.agent_id == Agent.id)
             .outerjoin(Customer, Contact.customer_id == Customer.id)
             .where(Contact.uniqueid == uniqueid))
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    return RatedCall(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7] or "", row[8], row[9],
                     row[10], row[11] or "")


def ineligible(engine: Engine, rated: RatedCall, now: dt.datetime, min_days: float,
               max_contacts_per_day: int) -> str | None:
    """Why this caller must not be asked now (a short code), or None to ask.

    Only a call a person answered is rated; never a number that opted out or a
    do-not-call customer; never the same customer or number twice within
    ``min_days``; never one already contacted ``max_contacts_per_day`` times
    today by us (outbound calls and surveys).
    """
    if rated.agent_id is None:
        return "no-agent"
    if rated.e164 is None:
        return "no-number"
    since_survey = now - dt.timedelta(days=min_days)
    since_day = now - dt.timedelta(days=1)
    same = Survey.e164 == rated.e164
    if rated.customer_id is not None:
        same = or_(same, Survey.customer_id == rated.customer_id)
    recent = select(func.count()).select_from(Survey).where(same, Survey.started_at >= since_survey)
    contacted = (select(func.count()).select_from(Contact)
                 .where(Contact.caller_e164 == rated.e164, Contact.started_at >= since_day,
                        or_(Contact.kind == SURVEY_KIND,
                            (Contact.direction == "outbound") & Contact.kind.in_(OUTBOUND_KINDS))))
    with engine.connect() as connection:
        if must_not_call(connection, rated.e164):
            return "opted-out"
        if connection.execute(recent).scalar():
            return "surveyed-recently"
        if int(connection.execute(contacted).scalar() or 0) >= max_contacts_per_day:
            return "frequency-cap"
    return None


def open_survey(engine: Engine, rated: RatedCall, language: str, handled_by: str,
                now: dt.datetime) -> SurveyIds | None:
    """Start the survey of ``rated`` (its row and its contact); None if that call has one already."""
    with write_transaction(engine) as connection:
        inserted = connection.execute(
            insert_ignoring(connection, _contacts, ["uniqueid"]).values(
                uniqueid=survey_uniqueid(rated.uniqueid), channel="voice", kind=SURVEY_KIND,
                direction=rated.direction, handled_by=handled_by, caller_number=rated.e164 or "",
                caller_e164=rated.e164, customer_id=rated.customer_id, started_at=now, status="open",
                route=SURVEY_KIND, outcome_reason=_rates(rated))
            .returning(_contacts.c.id)).scalar()
        if inserted is None:
            return None
        survey = connection.execute(
            insert_ignoring(connection, _surveys, ["rated_contact_id"]).values(
                rated_contact_id=rated.contact_id, contact_id=int(inserted), customer_id=rated.customer_id,
                e164=rated.e164, agent_id=rated.agent_id, queue=rated.queue, rated_kind=rated.kind,
                language=language, started_at=now, status="offered", updated_at=now)
            .returning(_surveys.c.id)).scalar()
        if survey is None:
            return None
    return SurveyIds(int(survey), int(inserted))


def _rates(rated: RatedCall) -> str:
    parts = [f"agent {rated.agent_code}" if rated.agent_code else "", f"queue {rated.queue}" if rated.queue
             else rated.kind]
    return "rates " + ", ".join(p for p in parts if p)


def summary(score: int | None, buy_again: bool | None, recommend: bool | None) -> str:
    """``score 2 (satisfied), buy again yes, recommend yes``: the answers given so far."""
    parts = []
    if score is not None:
        parts.append(f"score {score} ({LEVELS.get(score, '?')})")
    for label, value in (("buy again", buy_again), ("recommend", recommend)):
        if value is not None:
            parts.append(f"{label} {'yes' if value else 'no'}")
    return ", ".join(parts) or "no answer"


def save_answer(engine: Engine, survey_id: int, name: str, value: str, complete: bool,
                now: dt.datetime, said: str = "") -> None:
    """Store one answer now (and the score on the rated call; the survey's contact gets a summary).

    ``said`` is what the caller said to answer it, if they spoke (kept in the survey contact's
    transcript)."""
    if name == SCORE:
        stored: int | bool = int(value)
    elif name in _YES_NO:
        stored = value == "yes"
    else:
        raise ValueError(f"unknown survey question {name!r}")
    with write_transaction(engine) as connection:
        connection.execute(update(_surveys).where(_surveys.c.id == survey_id)
                           .values({name: stored, "status": "complete" if complete else "partial",
                                    "updated_at": now}))
        row = connection.execute(select(_surveys.c.rated_contact_id, _surveys.c.contact_id, _surveys.c.score,
                                        _surveys.c.buy_again, _surveys.c.recommend)
                                 .where(_surveys.c.id == survey_id)).one()
        rated, own, score, buy_again, recommend = row
        if name == SCORE:  # on the rated call only: a mean over contacts must not count it twice
            connection.execute(update(_contacts).where(_contacts.c.id == rated).values(survey_score=stored))
        if own is not None:
            values: dict[str, object] = {"notes": summary(score, buy_again, recommend)}
            if said:
                before = connection.execute(select(_contacts.c.transcript)
                                            .where(_contacts.c.id == own)).scalar()
                values["transcript"] = " | ".join(part for part in (before, said) if part)
            connection.execute(update(_contacts).where(_contacts.c.id == own).values(values))


def finish(engine: Engine, survey_id: int, outcome: str, now: dt.datetime) -> None:
    """End the survey's contact: ``complete``, ``partial``, ``no-answer`` (with ``hangup`` or not)."""
    with write_transaction(engine) as connection:
        own = connection.execute(select(_surveys.c.contact_id).where(_surveys.c.id == survey_id)).scalar()
        if own is None:
            return
        started = connection.execute(select(_contacts.c.started_at).where(_contacts.c.id == own)).scalar()
        duration = (now - utc(started)).total_seconds() if started is not None else None
        connection.execute(update(_contacts).where(_contacts.c.id == own)
                           .values(status="final", outcome=outcome, ended_at=now, duration_seconds=duration))


def set_followup(engine: Engine, survey_id: int, followup_id: int) -> None:
    with write_transaction(engine) as connection:
        connection.execute(update(_surveys).where(_surveys.c.id == survey_id).values(followup_id=followup_id))
