"""The follow-ups over HTTP: ``POST /api/leads`` and ``/api/followups`` for the agent page.

``POST /api/leads`` (the admin key, ``X-IVR-Admin-Key``): a web lead,
``{"phone": "+8613800138000", "name": "...", "note": "...", "skill": "sales",
"lead_id": "web-123"}``. The customer is found by number or created; a
follow-up of origin ``lead`` is opened (first contact within 2 business hours
by default, owner first). ``lead_id`` makes it idempotent. Answers 201 (200
for a repeat) ``{"followup_id", "customer_id", "due_at", "planned": [...]}``;
400 bad body or number; 401 without the key; 403 a number the dial policy
refuses.

``GET /api/followups`` with the agent page's session: the agent's own open
follow-ups, soonest due first, each with ``overdue`` and what is planned
next; a supervisor may add ``?which=overdue`` or ``?which=escalated`` and
sees every agent's. ``POST /api/followups`` ``{"close": ID}`` (session + ``X-CSRF-Token``)
closes one of the agent's own (a supervisor's: any).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import Engine, Table, insert, select
from twisted.internet import threads
from twisted.web import server

from ivr.callbacks.followup import FollowUp
from ivr.callbacks.service import FollowUpService
from ivr.callbacks.store import Which
from ivr.db.models import Agent, Customer, CustomerPhone
from ivr.db.sql import iso, utc_now, write_transaction
from ivr.dialing.web import ADMIN_KEY_HEADER, header
from ivr.errors import CallbackError, WebRequestError
from ivr.phone import normalise_number
from ivr.plugins.requests import FollowUpOrigin, FollowUpRequest
from ivr.web.auth import key_matches
from ivr.web.resources import JsonResource, read_json_object
from ivr.web.sessions import SessionSigner

__all__ = ["FollowUpsApi", "Leads"]

_MAX_TEXT = 500
_customers = cast(Table, Customer.__table__)
_phones = cast(Table, CustomerPhone.__table__)
_agents = cast(Table, Agent.__table__)


def _text(body: dict[str, Any], name: str, limit: int = _MAX_TEXT) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or len(value) > limit:
        raise WebRequestError(400, f"{name} must be text of at most {limit} characters")
    return value


class Leads(JsonResource):
    """``POST /api/leads``: a web lead becomes a customer (if new) and a follow-up."""

    def __init__(self, service: FollowUpService, admin_key: str, region: str,
                 number_allowed: Callable[[str], bool] | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.service = service
        self.admin_key = admin_key
        self.region = region
        self.number_allowed = number_allowed

    async def handle_POST(self, request: server.Request) -> tuple[int, object]:
        if not key_matches(header(request.requestHeaders, ADMIN_KEY_HEADER), self.admin_key):
            raise WebRequestError(401, "the admin key (X-IVR-Admin-Key) is needed")
        body = read_json_object(request)
        phone, name, note = _text(body, "phone", 64), _text(body, "name", 200), _text(body, "note")
        skill, lead_id = _text(body, "skill", 64), _text(body, "lead_id", 200)
        e164 = normalise_number(phone, self.region)
        if e164 is None:
            raise WebRequestError(400, "phone is not a phone number")
        if self.number_allowed is not None and not self.number_allowed(e164):
            raise WebRequestError(403, "the dial policy does not allow calling that number")
        customer_id = await threads.deferToThread(self._customer, e164, name)
        store = self.service.store
        request_ = FollowUpRequest(e164, FollowUpOrigin.LEAD, reason="web lead", customer_id=customer_id,
                                   skill=skill, text=note, key=f"lead:{lead_id}" if lead_id else None)
        followup, created = await self.service.open(request_)
        return (201 if created else 200), {
            "followup_id": followup.id, "customer_id": customer_id, "due_at": iso(followup.due_at),
            "planned": [{"from": iso(s.start), "due": iso(s.due)} for s in store.planned(followup)]}

    def _customer(self, e164: str, name: str) -> int:
        """The customer with ``e164``, or a new one named ``name`` (blocking)."""
        engine: Engine = self.service.store.engine
        with write_transaction(engine) as connection:
            found = connection.execute(select(_phones.c.customer_id).where(_phones.c.e164 == e164)).scalar()
            if found is not None:
                return int(found)
            now = utc_now()
            created = connection.execute(insert(_customers).values(
                name=name, language="", vip_tier="", preferred_channel="voice", do_not_call=False,
                do_not_call_reason="", created_at=now, updated_at=now)
                .returning(_customers.c.id)).scalar_one()
            connection.execute(insert(_phones).values(customer_id=created, e164=e164))
            return int(created)


def followup_json(followup: FollowUp, now: dt.datetime, planned: list[dict[str, str | None]],
                  owner: str | None) -> dict[str, object]:
    """What the agent page shows of one follow-up."""
    return {"id": followup.id, "origin": followup.origin, "number": followup.e164,
            "customer_id": followup.customer_id, "reason": followup.reason, "text": followup.text,
            "skill": followup.skill, "state": followup.state, "step": followup.step + 1,
            "due_at": iso(followup.due_at), "next_attempt_at": iso(followup.next_attempt_at),
            "overdue": followup.overdue(now), "escalated": followup.escalated_at is not None,
            "dialing": followup.dialing, "attempts": followup.attempts, "last_outcome": followup.last_outcome,
            "owner": owner, "planned": planned}


class FollowUpsApi(JsonResource):
    """``/api/followups``: "my follow-ups" for an agent, every one for a supervisor; closing one."""

    def __init__(self, service: FollowUpService, sessions: SessionSigner) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.service = service
        self.sessions = sessions

    async def _who(self, request: server.Request, post: bool) -> tuple[int, str, bool]:
        """(agent id, code, is a supervisor) of the request's session; 401/403 otherwise."""
        session = self.sessions.of_request(request)
        if session is None:
            raise WebRequestError(401, "log in on the agent page first")
        if post and not self.sessions.csrf_ok(request, session):
            raise WebRequestError(403, "missing or wrong CSRF token")
        row = await threads.deferToThread(self._agent, session.agent)
        if row is None:
            raise WebRequestError(403, "this agent is not active")
        return int(row.id), session.agent, row.role == "supervisor"

    def _agent(self, code: str) -> Any:
        with self.service.store.engine.connect() as connection:
            return connection.execute(select(_agents.c.id, _agents.c.role)
                                      .where(_agents.c.code == code, _agents.c.active)).first()

    async def handle_GET(self, request: server.Request) -> tuple[int, object]:
        agent_id, _code, supervisor = await self._who(request, False)
        args: Any = request.args or {}
        which = (args.get(b"which") or [b"open"])[0].decode("ascii", "replace")
        if which not in ("open", "overdue", "escalated"):
            raise WebRequestError(400, "which must be open, overdue or escalated")
        if which != "open" and not supervisor:
            raise WebRequestError(403, "only supervisors see every agent's follow-ups")
        return 200, await threads.deferToThread(self._list, cast(Which, which),
                                                None if supervisor and which != "open" else agent_id)

    def _list(self, which: Which, owner: int | None) -> dict[str, object]:
        store = self.service.store
        now = store.now()
        followups = store.list_followups(which, 200, owner)
        owners = {followup.owner_agent_id for followup in followups} - {None}
        with store.engine.connect() as connection:
            codes = dict(connection.execute(select(_agents.c.id, _agents.c.code)
                                            .where(_agents.c.id.in_(owners)))
                         .all()) if owners else {}
        return {"now": iso(now), "followups": [
            followup_json(f, now, [{"from": iso(s.start), "due": iso(s.due)} for s in store.planned(f)],
                          codes.get(f.owner_agent_id) if f.owner_agent_id is not None else None)
            for f in followups]}

    async def handle_POST(self, request: server.Request) -> tuple[int, object]:
        agent_id, code, supervisor = await self._who(request, True)
        body = read_json_object(request)
        followup_id = body.get("close")
        if not isinstance(followup_id, int) or isinstance(followup_id, bool):
            raise WebRequestError(400, "close must be a follow-up id")
        store = self.service.store
        followup = await threads.deferToThread(store.get, followup_id)
        if followup is None or (followup.owner_agent_id != agent_id and not supervisor):
            raise WebRequestError(404, "no such follow-up of yours")
        try:
            closed = await threads.deferToThread(store.close, followup_id, "closed")
        except CallbackError as exc:
            raise WebRequestError(409, str(exc)) from None
        return 200, {"closed": closed.id, "by": code}
