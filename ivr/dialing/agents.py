"""The people who take calls: their codes, phones, skills and API tokens, in the agents table.

The dialer rings an agent's phone (``device``, a dial string) first, routing
picks agents by skill, and the agent page and click-to-call API know an
agent by their token. A token is shown once, when it is made: only its hash
is stored, so a lost token is replaced, not recovered. The ``ivr agents``
commands (:mod:`ivr.dialing.cli`) manage agents through these functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ivr.db.models import Agent
from ivr.web.auth import hash_token, new_token

__all__ = ["AGENT_CODE", "ROLES", "SKILL", "issue_token", "list_agents", "save_agent"]

#: What an agent code may be: what the phone system knows them by, e.g. 1001.
AGENT_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
#: A skill name, e.g. after-sales.
SKILL = re.compile(r"[a-z0-9_-]{1,32}\Z")
#: What an agent may be: supervisors also hear every call's recording.
ROLES = ("agent", "supervisor")


def save_agent(engine: Engine, code: str, name: str | None, device: str, skills: Sequence[str],
               active: bool, role: str | None = None) -> Agent:
    """Add the agent ``code`` or update it; ``name`` or ``role`` None, an empty ``device`` or no
    ``skills`` keep what the agent has (a new agent is an ``agent``). Returns the agent as stored
    (detached from its session)."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    with Session(engine, expire_on_commit=False) as session:
        agent = session.scalars(select(Agent).where(Agent.code == code)).first()
        if agent is None:
            agent = Agent(code=code)
            session.add(agent)
        agent.name = name if name is not None else agent.name or ""
        agent.device = device or agent.device or ""
        agent.skills = list(skills) or list(agent.skills or [])
        agent.active = active
        agent.role = role or agent.role or "agent"
        session.commit()
        return agent


def set_away(engine: Engine, code: str, away: bool) -> bool:
    """Mark the agent ``code`` away (their customers' follow-ups and calls go to the pool) or back;
    False if there is no such agent."""
    with Session(engine) as session:
        agent = session.scalars(select(Agent).where(Agent.code == code)).first()
        if agent is None:
            return False
        agent.away = away
        session.commit()
        return True


def issue_token(engine: Engine, code: str) -> str | None:
    """A new API token for the agent ``code`` (replacing any old one), or None if there is no such agent.

    Only the token's hash is stored: the caller shows the token once.
    """
    with Session(engine) as session:
        agent = session.scalars(select(Agent).where(Agent.code == code)).first()
        if agent is None:
            return None
        token = new_token()
        agent.api_token_hash = hash_token(token)
        session.commit()
    return token


def list_agents(engine: Engine) -> list[Agent]:
    """Every agent, by code (detached from its session)."""
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(select(Agent).order_by(Agent.code)).all())
