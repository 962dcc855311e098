"""``GET /supervisor/complaints``: the complaint cases, as JSON, for supervisors only.

``?overdue=1`` gives only open cases past their response time; ``?all=1``
includes resolved ones. The agent page's session cookie is required (401
without one) and its agent must be a supervisor (``agents.role``; 403
otherwise), checked against the database on every request, so a demoted
agent loses access at once. A read: no CSRF token (the cookie is SameSite
strict and no other origin can read the JSON). Text is data: pages must show
it with ``textContent``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from twisted.internet import threads
from twisted.web import server

from ivr.complaints.store import list_cases
from ivr.db.models import Agent
from ivr.db.sql import utc_now
from ivr.errors import WebRequestError
from ivr.web.resources import JsonResource
from ivr.web.sessions import SessionSigner

__all__ = ["SupervisorComplaints"]


def _flag(request: server.Request, name: str) -> bool:
    values = (request.args or {}).get(name.encode("ascii")) or [b""]
    return values[0] in (b"1", b"true", b"yes")


class SupervisorComplaints(JsonResource):
    """The supervisors' complaint list (see the module docstring)."""

    def __init__(self, engine: Engine, signer: SessionSigner,
                 now: Callable[[], dt.datetime] = utc_now) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.engine = engine
        self.signer = signer
        self.now = now

    def _is_supervisor(self, agent: str) -> bool:
        with Session(self.engine) as session:
            role = session.scalar(select(Agent.role).where(Agent.code == agent, Agent.active))
        return role == "supervisor"

    async def handle_GET(self, request: server.Request) -> tuple[int, object]:
        session = self.signer.of_request(request)
        if session is None:
            raise WebRequestError(401, "log in first")
        if not await threads.deferToThread(self._is_supervisor, session.agent):
            raise WebRequestError(403, "only supervisors see the complaint cases")
        overdue, everything = _flag(request, "overdue"), _flag(request, "all")
        now = self.now()
        cases = await threads.deferToThread(list_cases, self.engine, now, overdue, everything)
        return 200, {"now": now.isoformat(), "overdue": sum(1 for c in cases if c.overdue),
                     "cases": [case.to_json() for case in cases]}
