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

    The owner if free; while the owner's head start lasts (and they are
    present), nobody else; after it, a free agent with the skill, else any.
    """
    if owner is not None:
        mine = next((agent for agent in free if agent.code == owner.code), None)
        if mine is not None:
            return mine
        present = owner.active and not owner.away
        if present and followup.owner_until is not None and now < followup.owner_until:
            return None
    if not free:
        return None
    return next((agent for agent in free if followup.skill and followup.skill in agent.skills), free[0])
