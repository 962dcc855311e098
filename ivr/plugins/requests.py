"""What one feature asks of another through a hook: plain data, no behaviour.

A survey that hears "very dissatisfied" or a complaint taken in a menu asks
for a follow-up; the agent page tells every plugin an agent closed a call
with a disposition. The feature that answers (follow-ups, complaints) and
the one that asks never import each other: both import these types.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

__all__ = ["Disposition", "FollowUpOrigin", "FollowUpRequest"]


class FollowUpOrigin(enum.StrEnum):
    """Why a follow-up exists; each origin has its own cadence (``[followups.cadence]``)."""

    #: An SMS asked for a call back.
    SMS = "sms"
    #: A caller pressed "call me back" in a menu, or left a long queue for a callback.
    IVR = "ivr"
    #: Someone asked through the HTTP API (``POST /api/callbacks``).
    API = "api"
    #: A web lead (``POST /api/leads``): first contact within 2 business hours.
    LEAD = "lead"
    #: An agent's disposition with a date (follow-up, callback-scheduled).
    DISPOSITION = "disposition"
    #: A survey answer of 4 or 5: win the customer back.
    SURVEY = "survey"
    #: A complaint case: a person with the complaints skill calls back.
    COMPLAINT = "complaint"


@dataclass(frozen=True, slots=True)
class FollowUpRequest:
    """A follow-up one feature asks for (the ``ivr_open_followup`` hook).

    ``e164`` is the number to call; ``customer_id`` the customer if known
    (the follow-up goes to their account owner first). ``due_at`` is when
    the first contact is due; None means the origin's cadence decides (e.g.
    a lead within 2 business hours of ``start_at``).
    ``key`` makes the request idempotent: asking twice with the same key
    gives the first follow-up.
    """

    e164: str
    origin: FollowUpOrigin
    reason: str = ""
    customer_id: int | None = None
    skill: str = ""
    #: Higher goes first; None: the origin's default.
    priority: int | None = None
    due_at: dt.datetime | None = None
    #: Not contacted before this (e.g. the date an agent set), and the cadence counts from it;
    #: None: from now.
    start_at: dt.datetime | None = None
    #: Who should make the contact; None: the customer's account owner, else the skill pool.
    owner_agent_id: int | None = None
    #: The contact this follow-up comes from (the survey's call, the complaint's call).
    contact_id: int | None = None
    #: What the customer wrote or said, literally (shown to the agent).
    text: str = ""
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Disposition:
    """An agent closed a call on their page (the ``ivr_contact_disposed`` hook)."""

    #: Asterisk's uniqueid of the contact, and its row id once stored.
    uniqueid: str
    contact_id: int | None
    #: The agent's code (e.g. 1001).
    agent: str
    #: One of the agent page's outcomes: resolved, follow-up, callback-scheduled, complaint ...
    outcome: str
    note: str = ""
    #: When to contact the customer again (follow-up, callback-scheduled), UTC.
    follow_up_at: dt.datetime | None = None
