"""Who takes a due follow-up: its owner during the head start, then an agent with the skill.

The practice: a customer's account owner gets their callbacks and follow-ups
first, so one voice serves them; if the owner does not get to it within
``[followups] owner_window`` (busy, not answering) or is away, the skill
pool takes it so nothing waits for one person.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from ivr.callbacks.followup import FollowUp

__all__ = ["Claim", "FreeAgent", "OwnerState", "choose_agent"]


@dataclass(frozen=True, slots=True)
class FreeAgent:
    """An agent free to be rung now: code (what Asterisk knows), skills."""

    code: str
    skills: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OwnerState:
    """The follow-up owner's code, and whether they are away or no longer active."""

    code: str
    away: bool = False
    active: bool = True


@dataclass(frozen=True, slots=True)
class Claim:
    """A follow-up claimed for one attempt, and the agent to ring first."""

    followup: FollowUp
    agent: str


def choose_agent(followup: FollowUp, owner: OwnerState | None, free: Sequence[FreeAgent],
                 now: dt.datetime) -> FreeAgent | None:
    """The free agent to take ``followup`` now, or None to leave it for later.

    While the owner's head start lasts (and they are present): the owner if
    free, else nobody. After it (or with no owner): a free agent with the
    skill, else any; the owner, who had their chance, only if nobody else
    is free.
    """
    head_start = followup.owner_until is not None and now < followup.owner_until
    if owner is not None and owner.active and not owner.away and head_start:
        return next((agent for agent in free if agent.code == owner.code), None)
    others = [agent for agent in free if owner is None or agent.code != owner.code] or list(free)
    if not others:
        return None
    return next((agent for agent in others if followup.skill and followup.skill in agent.skills), others[0])
