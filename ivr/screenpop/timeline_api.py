"""The agent page's timeline API: search customers, read a customer's whole timeline a page at a time.

* ``GET /agent/api/search?q=TEXT``: customers whose number (any format),
  name (any part, any case), external id or ``#id`` matches, and the text as
  an E.164 number when it is one (a number may have contacts and no customer).
* ``GET /agent/api/timeline?customer=ID`` or ``?number=NUMBER``, optionally
  ``&before=CONTACT_ID`` (the ``older`` of the previous page) and ``&limit=N``:
  the subject and its contacts, newest first (:mod:`ivr.history.query`).

The contact history is one shared memory: any logged-in agent may read any
customer's timeline, but every request checks the session (401 without one).
These are reads, so they need no CSRF token; the session cookie is SameSite
strict and the answers are JSON that no other origin can read. Times come in
UTC and, for people, in the service desk's time zone. A recording is a link
(``/recordings/<contact id>``), never the stored file reference: who may
play it is decided where it is served.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session
from twisted.internet import threads
from twisted.web import server

from ivr.db.sql import iso
from ivr.errors import WebRequestError
from ivr.history.query import (
    MAX_PAGE,
    PAGE_SIZE,
    Subject,
    TimelineEntry,
    customer_subject,
    number_subject,
    read_timeline,
    search,
)
from ivr.phone import normalise_number
from ivr.web.resources import JsonResource, NotFound
from ivr.web.sessions import AgentSession, SessionSigner

__all__ = ["RECORDINGS", "TimelineApi", "entry_json"]

#: Where recordings are served, by contact id (with their own authorisation and Range support).
RECORDINGS = "/recordings/"
_MAX_QUERY = 200


def entry_json(entry: TimelineEntry, zone: dt.tzinfo) -> dict[str, Any]:
    """One contact as the page shows it; ``local_time`` is in the desk's zone."""
    return {
        "id": entry.id, "started_at": iso(entry.started_at),
        "local_time": entry.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
        "channel": entry.channel, "kind": entry.kind, "direction": entry.direction, "status": entry.status,
        "outcome": entry.outcome, "outcome_reason": entry.outcome_reason,
        "caller_number": entry.caller_number, "caller_name": entry.caller_name,
        "queue": entry.queue, "queue_outcome": entry.queue_outcome,
        "agent": entry.agent_code, "agent_name": entry.agent_name,
        "wait_seconds": entry.wait_seconds, "talk_seconds": entry.talk_seconds,
        "duration_seconds": entry.duration_seconds, "hangup_by": entry.hangup_by,
        "path": entry.path, "dtmf": entry.dtmf, "transcript": entry.transcript,
        "disposition": entry.disposition, "notes": entry.notes,
        "recording": f"{RECORDINGS}{entry.id}" if entry.recording_ref else None,
        "followup_id": entry.followup_id, "customer_id": entry.customer_id,
        "customer_external_id": entry.customer_external_id,
    }


def _argument(request: server.Request, name: str) -> str | None:
    """The query argument ``name`` as text (400 if it is not UTF-8 or too long), None if absent."""
    values = (request.args or {}).get(name.encode("ascii"))
    if not values:
        return None
    raw: bytes = values[0]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WebRequestError(400, f"{name} is not UTF-8") from None
    if len(text) > _MAX_QUERY:
        raise WebRequestError(400, f"{name} is longer than {_MAX_QUERY} characters")
    return text


def _whole(request: server.Request, name: str, low: int, high: int) -> int | None:
    text = _argument(request, name)
    if text is None:
        return None
    if not text.isdigit() or not low <= int(text) <= high:
        raise WebRequestError(400, f"{name} must be a whole number from {low} to {high}")
    return int(text)


class _Read(JsonResource):
    """A read for any logged-in agent: the session is checked on every request."""

    def __init__(self, signer: SessionSigner, engine: Engine, zone: dt.tzinfo, region: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.signer = signer
        self.engine = engine
        self.zone = zone
        self.region = region

    def session(self, request: server.Request) -> AgentSession:
        session = self.signer.of_request(request)
        if session is None:
            raise WebRequestError(401, "log in first")
        return session


class _Search(_Read):
    async def handle_GET(self, request: server.Request) -> tuple[int, object]:
        self.session(request)
        text = _argument(request, "q") or ""
        if not text.strip():
            raise WebRequestError(400, "type a number or a name to search for")
        return 200, await threads.deferToThread(self._search, text)

    def _search(self, text: str) -> dict[str, Any]:
        with Session(self.engine) as session:
            found = search(session, text, self.region)
        return {"customers": [c.to_json() for c in found.customers], "number": found.number}


class _Timeline(_Read):
    async def handle_GET(self, request: server.Request) -> tuple[int, object]:
        self.session(request)
        customer = _whole(request, "customer", 1, 2**31 - 1)
        number = _argument(request, "number")
        if (customer is None) == (number is None):
            raise WebRequestError(400, "give either customer (an id) or number")
        e164 = normalise_number(number, self.region) if number is not None else None
        if number is not None and e164 is None:
            raise WebRequestError(400, "number is not a phone number")
        before = _whole(request, "before", 1, 2**31 - 1)
        limit = _whole(request, "limit", 1, MAX_PAGE) or PAGE_SIZE
        answer = await threads.deferToThread(self._read, customer, e164, before, limit)
        if answer is None:
            raise WebRequestError(404, "no such customer")
        return 200, answer

    def _read(self, customer: int | None, e164: str | None, before: int | None,
              limit: int) -> dict[str, Any] | None:
        with Session(self.engine) as session:
            subject: Subject | None = (customer_subject(session, customer) if customer is not None
                                       else number_subject(session, e164 or ""))
            if subject is None:
                return None
            page = read_timeline(session, subject, before, limit)
        return {"subject": {"label": subject.label, "number": subject.number,
                            "customer": subject.customer.to_json() if subject.customer else None},
                "total": page.total, "zone": str(self.zone), "older": page.older,
                "contacts": [entry_json(entry, self.zone) for entry in page.entries]}


class TimelineApi(NotFound):
    """``/agent/api``: ``search`` and ``timeline``; anything else is a JSON 404."""

    def __init__(self, signer: SessionSigner, engine: Engine, zone: dt.tzinfo, region: str) -> None:
        super().__init__()
        self.putChild(b"search", _Search(signer, engine, zone, region))
        self.putChild(b"timeline", _Timeline(signer, engine, zone, region))
