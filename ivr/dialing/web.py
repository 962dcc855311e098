"""``POST /api/calls``: click-to-call. The agent's phone rings first, then the customer's.

Body (JSON): ``{"agent": "1001", "number": "+8613800138000"}`` or
``{"agent": "1001", "customer_id": 42}``, optionally ``"reason"``.

Authentication, one of:

* ``Authorization: Bearer <agent token>``: the token of the agent named in
  ``agent`` (an agent places calls as themselves only);
* ``X-IVR-Admin-Key: <[http] admin_key>``: any agent;
* the agent page's session cookie with its ``X-CSRF-Token``: that agent.

Answers: 202 ``{"contact": uniqueid, "number": e164, "agent": code}`` once
the agent's phone is ringing; 401 without valid credentials; 400 bad body;
404 unknown customer; 409 the customer has an account owner who is not
this agent (``{"error": ..., "owner": "1001"}``: owners work their own
customers; a supervisor, the admin key, or any agent while the owner is
marked away may still call); the dial policy's refusals with its reason
(``{"error": ..., "decision": {...}}``): 422 bad number, 403 not allowed or
do-not-call, 409 another agent is on this customer (named), 429 frequency
cap, 503 a check failed or Asterisk's manager is not connected.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from twisted.internet import threads
from twisted.web import server

from ivr.db.models import Agent, Customer, CustomerPhone
from ivr.dialing.outbound import DialRefused, OutboundDialer, OutboundRequest
from ivr.errors import AMIError, WebRequestError
from ivr.phone import normalise_number
from ivr.web.auth import key_matches, token_matches
from ivr.web.resources import JsonResource, read_json_object
from ivr.web.sessions import SessionSigner

__all__ = ["ADMIN_KEY_HEADER", "ClickToCall", "header"]

ADMIN_KEY_HEADER = b"x-ivr-admin-key"
_MAX_TEXT = 500


class ClickToCall(JsonResource):
    """The click-to-call endpoint."""

    def __init__(self, dialer: OutboundDialer, engine: Engine, admin_key: str,
                 sessions: SessionSigner | None = None, region: str = "ZZ") -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.region = region
        self.dialer = dialer
        self.engine = engine
        self.admin_key = admin_key
        #: The agent page's sessions (cookie + X-CSRF-Token) may place calls as their agent too.
        self.sessions = sessions

    async def handle_POST(self, request: server.Request) -> tuple[int, object]:
        body = read_json_object(request)
        agent = body.get("agent")
        if not isinstance(agent, str) or not agent or len(agent) > 64:
            raise WebRequestError(400, "agent must be an agent code")
        number, customer_id = body.get("number"), body.get("customer_id")
        if (number is None) == (customer_id is None):
            raise WebRequestError(400, "give either number or customer_id")
        reason = body.get("reason", "")
        if not isinstance(reason, str) or len(reason) > _MAX_TEXT:
            raise WebRequestError(400, f"reason must be text of at most {_MAX_TEXT} characters")
        headers: Any = request.requestHeaders
        admin = key_matches(header(headers, ADMIN_KEY_HEADER), self.admin_key)
        bearer = header(headers, b"authorization") or ""
        token = bearer[7:] if bearer[:7].lower() == "bearer " else None
        session = self.sessions.of_request(request) if self.sessions is not None else None
        if session is not None and session.agent == agent and self.sessions is not None \
                and self.sessions.csrf_ok(request, session):
            admin = False
        elif not admin and not await threads.deferToThread(self._agent_token_ok, agent, token):
            raise WebRequestError(401, "an agent token (Authorization: Bearer ...) or the admin key is "
                                       "needed")
        do_not_call = False
        if customer_id is not None:
            if not isinstance(customer_id, int) or isinstance(customer_id, bool):
                raise WebRequestError(400, "customer_id must be a number")
            found = await threads.deferToThread(self._customer_number, customer_id)
            if found is None:
                raise WebRequestError(404, "no such customer with a phone number")
            number, do_not_call = found
        if not isinstance(number, str):
            raise WebRequestError(400, "number must be text")
        if not admin:
            owner = await threads.deferToThread(self._other_owner, agent, number, customer_id)
            if owner is not None:
                return 409, {"error": f"this customer's account owner is agent {owner}: ask them, or a "
                                      "supervisor", "owner": owner}
        try:
            placed = await self.dialer.place(OutboundRequest(
                agent, number, reason=reason, customer_id=customer_id, do_not_call=do_not_call,
                requested_by="admin" if admin else f"agent {agent}"))
        except DialRefused as refused:
            decision = refused.decision
            return decision.http_status, {"error": decision.message, "decision": decision.to_dict()}
        except AMIError:
            raise WebRequestError(503, "Asterisk's manager interface is not connected; try again") from None
        return 202, {"contact": placed.uniqueid, "number": placed.e164, "agent": placed.agent.code}

    def _agent_token_ok(self, code: str, token: str | None) -> bool:
        with Session(self.engine) as session:
            stored = session.scalar(select(Agent.api_token_hash).where(Agent.code == code, Agent.active))
        return token_matches(token, stored)

    def _other_owner(self, agent: str, number: str, customer_id: int | None) -> str | None:
        """The owner's code if the customer is owned by a present agent other than ``agent`` (a
        non-supervisor); None if ``agent`` may call them."""
        with Session(self.engine) as session:
            caller_role = session.scalar(select(Agent.role).where(Agent.code == agent))
            if caller_role == "supervisor":
                return None
            if customer_id is None:
                e164 = normalise_number(number, self.region)
                if e164 is None:
                    return None  # the dial policy refuses it with its own reason
                customer_id = session.scalar(select(CustomerPhone.customer_id)
                                             .where(CustomerPhone.e164 == e164))
            if customer_id is None:
                return None
            owner = session.execute(select(Agent.code, Agent.away, Agent.active).join(
                Customer, Customer.owner_agent_id == Agent.id).where(Customer.id == customer_id)).first()
        if owner is None or owner.code == agent or owner.away or not owner.active:
            return None
        return str(owner.code)

    def _customer_number(self, customer_id: int) -> tuple[str, bool] | None:
        query = (select(CustomerPhone.e164, Customer.do_not_call).join(Customer)
                 .where(Customer.id == customer_id).order_by(CustomerPhone.id).limit(1))
        with Session(self.engine) as session:
            row = session.execute(query).first()
        return (row.e164, bool(row.do_not_call)) if row is not None else None


def header(headers: Any, name: bytes) -> str | None:
    value = headers.getRawHeaders(name)
    if not value:
        return None
    raw: bytes | str = value[0]
    return raw.decode("latin-1") if isinstance(raw, bytes) else raw
