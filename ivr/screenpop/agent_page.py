"""The agent's page at ``/agent``: log in, see the card of the call ringing, save a disposition.

* ``GET /agent``: the login form, or the page once logged in.
* ``POST /agent/login`` (form: agent, token, csrf): the agent's API token is
  their password here; the login form is protected by a double-submit
  cookie. ``POST /agent/logout``.
* ``GET /agent/events``: the agent's own cards as Server-Sent Events (a page
  never names the agent: the session decides, so agent A cannot read B's).
* ``POST /agent/ack``, ``POST /agent/disposition``: JSON with the session's
  CSRF token in ``X-CSRF-Token``. A disposition may carry ``follow_up_at``
  (desk time, ``YYYY-MM-DDTHH:MM``); once stored, every plugin hears of it
  (``ivr_contact_disposed``: the follow-up service plans the next contact).
* ``POST /agent/customer``: the customer's preferred channel (voice or sms),
  or do-not-call with the agent's reason.
* ``GET /agent/api/search``, ``GET /agent/api/timeline``: any customer's whole
  timeline, paged (:mod:`ivr.screenpop.timeline_api`); the session is needed.

Everything a caller can influence reaches the page as JSON and is put in the
DOM with ``textContent`` only; the Content-Security-Policy allows only this
page's own script file (no inline script) and media (recordings) from this site.
"""

from __future__ import annotations

import datetime as dt
import html
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from twisted.internet import threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from ivr.db.models import Agent, Contact
from ivr.errors import WebRequestError
from ivr.plugins.requests import Disposition
from ivr.screenpop.customer_edit import CustomerEdit
from ivr.screenpop.hub import PopHub, Stream, sse_event
from ivr.screenpop.timeline_api import TimelineApi
from ivr.web.auth import token_matches
from ivr.web.resources import JsonResource, read_body, read_json_object
from ivr.web.sessions import COOKIE, AgentSession, SessionSigner

__all__ = ["AgentPage", "DISPOSITIONS"]

log = Logger(namespace="ivr.web")

LOGIN_COOKIE = b"ivr_login"
#: What an agent may record as a call's outcome.
DISPOSITIONS = ("resolved", "follow-up", "callback-scheduled", "sale", "complaint", "wrong-number", "other")
_MAX_NOTE = 2000
#: Seconds between keep-alive comments on an idle event stream (proxies drop silent ones).
KEEPALIVE = 15.0


PAGES = Path(__file__).resolve().parent / "pages"
LOGIN = (PAGES / "login.html").read_text(encoding="utf-8")
PAGE = (PAGES / "agent.html").read_text(encoding="utf-8")
SCRIPT = (PAGES / "agent.js").read_bytes()


def _headers(request: server.Request) -> None:
    untyped: Any = request
    untyped.setHeader(b"content-security-policy",
                      b"default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
                      b"connect-src 'self'; media-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                      b"base-uri 'none'")
    untyped.setHeader(b"x-content-type-options", b"nosniff")
    untyped.setHeader(b"referrer-policy", b"same-origin")
    untyped.setHeader(b"cache-control", b"no-store")


#: Tells the plugins about a stored disposition (``ivr_contact_disposed``, each within its deadline).
OnDisposed = Callable[[Disposition], Awaitable[None]]


class AgentPage(resource.Resource):
    """``/agent`` and its children. ``zone`` is the service desk's (times on the timeline), ``region``
    reads numbers typed without a country code."""

    def __init__(self, hub: PopHub, signer: SessionSigner, engine: Engine, clock: IReactorTime,
                 zone: dt.tzinfo = dt.UTC, region: str = "CN", on_disposed: OnDisposed | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.hub = hub
        self.signer = signer
        self.engine = engine
        #: The desk's IANA zone name: the page shows follow-up times in it.
        self.zone_name = str(getattr(zone, "key", "UTC"))
        self.putChild(b"", self)
        self.putChild(b"app.js", _Script())  # type: ignore[no-untyped-call]
        self.putChild(b"login", _Login(self))
        self.putChild(b"logout", _Logout(self))
        self.putChild(b"events", _Events(hub, signer, clock))
        self.putChild(b"ack", _Ack(hub, signer))
        self.putChild(b"disposition", _Disposition(hub, signer, engine, zone, on_disposed))
        self.putChild(b"customer", CustomerEdit(signer, engine, zone))
        self.putChild(b"api", TimelineApi(signer, engine, zone, region))

    def render_GET(self, request: server.Request) -> bytes:
        session = self.signer.of_request(request)
        _headers(request)
        cast(Any, request).setHeader(b"content-type", b"text/html; charset=utf-8")
        if session is None:
            return self.login_form(request, "")
        return PAGE.replace("{agent}", html.escape(session.agent)) \
            .replace("{csrf}", html.escape(session.csrf)).replace("{zone}", html.escape(self.zone_name)) \
            .encode("utf-8")

    def login_form(self, request: server.Request, error: str) -> bytes:
        token = secrets.token_urlsafe(24)
        cast(Any, request).addCookie(LOGIN_COOKIE, token.encode("ascii"), path=b"/agent", httpOnly=True,
                                     sameSite=b"strict")
        return LOGIN.replace("{csrf}", token).replace("{error}", html.escape(error)).encode("utf-8")


class _Script(resource.Resource):
    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        _headers(request)
        cast(Any, request).setHeader(b"content-type", b"text/javascript; charset=utf-8")
        return SCRIPT


class _Login(resource.Resource):
    isLeaf = True

    def __init__(self, page: AgentPage) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.page = page

    def render_POST(self, request: server.Request) -> bytes | int:
        untyped: Any = request
        try:  # the site leaves POST bodies alone (parsePOSTFormSubmission=False): parse it here
            form = parse_qs(read_body(request).decode("utf-8"), max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            form = {}
        fields = {key: values[0] for key, values in form.items() if values}
        cookie = untyped.getCookie(LOGIN_COOKIE) or b""
        _headers(request)
        untyped.setHeader(b"content-type", b"text/html; charset=utf-8")
        if not cookie or not secrets.compare_digest(cookie, fields.get("csrf", "").encode("utf-8")):
            untyped.setResponseCode(403)
            return self.page.login_form(request, "The form expired; please log in again.")
        agent, token = fields.get("agent", "")[:64], fields.get("token", "")[:200]
        checked = threads.deferToThread(self._check, agent, token)

        def answer(ok: bool) -> None:
            if ok:
                value, _ = self.page.signer.make(agent)
                untyped.addCookie(COOKIE, value.encode("ascii"), path=b"/", httpOnly=True, sameSite=b"strict")
                untyped.setResponseCode(303)
                untyped.setHeader(b"location", b"/agent")
                untyped.finish()
                return
            untyped.setResponseCode(401)
            untyped.write(self.page.login_form(request, "Unknown agent or wrong token."))
            untyped.finish()

        checked.addCallback(answer)
        checked.addErrback(lambda failure: _fail(request, failure))
        return server.NOT_DONE_YET

    def _check(self, agent: str, token: str) -> bool:
        with Session(self.page.engine) as session:
            stored = session.scalar(select(Agent.api_token_hash).where(Agent.code == agent, Agent.active))
        return token_matches(token, stored)


def _fail(request: server.Request, failure: Failure) -> None:
    log.failure("the agent page failed", failure)
    untyped: Any = request
    untyped.setResponseCode(500)
    untyped.finish()


class _Logout(resource.Resource):
    isLeaf = True

    def __init__(self, page: AgentPage) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.page = page

    def render_POST(self, request: server.Request) -> bytes:
        untyped: Any = request
        session = self.page.signer.of_request(request)
        if session is not None and self.page.signer.csrf_ok(request, session):
            untyped.addCookie(COOKIE, b"", path=b"/", httpOnly=True, sameSite=b"strict", max_age=0)
        untyped.setResponseCode(204)
        return b""


class _Events(resource.Resource):
    """The agent's event stream (Server-Sent Events)."""

    isLeaf = True

    def __init__(self, hub: PopHub, signer: SessionSigner, clock: IReactorTime) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.hub = hub
        self.signer = signer
        self.clock = clock

    def render_GET(self, request: server.Request) -> bytes | int:
        untyped: Any = request
        session = self.signer.of_request(request)
        if session is None:
            untyped.setResponseCode(401)
            untyped.setHeader(b"content-type", b"application/json; charset=utf-8")
            return b'{"error": "log in first"}'
        untyped.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        untyped.setHeader(b"cache-control", b"no-store")
        untyped.setHeader(b"x-accel-buffering", b"no")
        untyped.write(b"retry: 1000\n\n")

        def send(event_id: int, name: str, data: dict[str, Any]) -> None:
            untyped.write(sse_event(event_id, name, data))

        stream = Stream(session.agent, send)
        keepalive = _KeepAlive(self.clock, untyped.write)

        def gone(_: object) -> None:
            self.hub.disconnect(stream)
            keepalive.stop()

        request.notifyFinish().addBoth(gone)
        self.hub.connect(stream)
        return server.NOT_DONE_YET



class _KeepAlive:
    """A comment line every ``KEEPALIVE`` seconds keeps proxies from closing a quiet stream;
    stopped when the request finishes or its connection is lost (``notifyFinish``)."""

    def __init__(self, clock: IReactorTime, write: Callable[[bytes], object]) -> None:
        self.clock = clock
        self.write = write
        self.timer = clock.callLater(KEEPALIVE, self.beat)

    def beat(self) -> None:
        self.write(b": keep-alive\n\n")
        self.timer = self.clock.callLater(KEEPALIVE, self.beat)

    def stop(self) -> None:
        if self.timer.active():
            self.timer.cancel()


class _SessionJson(JsonResource):
    """JSON endpoints that need the session and its CSRF token."""

    def __init__(self, hub: PopHub, signer: SessionSigner) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.hub = hub
        self.signer = signer

    def session(self, request: server.Request) -> AgentSession:
        session = self.signer.of_request(request)
        if session is None:
            raise WebRequestError(401, "log in first")
        if not self.signer.csrf_ok(request, session):
            raise WebRequestError(403, "missing or wrong CSRF token")
        return session


class _Ack(_SessionJson):
    async def handle_POST(self, request: server.Request) -> tuple[int, object]:
        session = self.session(request)
        body = read_json_object(request)
        uniqueid, state = body.get("uniqueid"), body.get("state")
        if not isinstance(uniqueid, str) or not isinstance(state, str):
            raise WebRequestError(400, "uniqueid and state are text")
        return 200, {"current": self.hub.ack(session.agent, uniqueid, state)}


class _Disposition(_SessionJson):
    def __init__(self, hub: PopHub, signer: SessionSigner, engine: Engine, zone: dt.tzinfo,
                 on_disposed: OnDisposed | None) -> None:
        super().__init__(hub, signer)
        self.engine = engine
        self.zone = zone
        self.on_disposed = on_disposed

    async def handle_POST(self, request: server.Request) -> tuple[int, object]:
        session = self.session(request)
        body = read_json_object(request)
        uniqueid, outcome, note = body.get("uniqueid"), body.get("outcome"), body.get("note", "")
        if outcome not in DISPOSITIONS:
            raise WebRequestError(400, "outcome must be one of " + ", ".join(DISPOSITIONS))
        if not isinstance(note, str) or len(note) > _MAX_NOTE:
            raise WebRequestError(400, f"note must be text of at most {_MAX_NOTE} characters")
        follow_up_at = self._when(body.get("follow_up_at"))
        if not isinstance(uniqueid, str) or uniqueid not in self.hub.cards_seen(session.agent):
            raise WebRequestError(403, "that call was not on your screen")
        contact_id = await threads.deferToThread(self._save, uniqueid, str(outcome), note)
        if contact_id is None:
            raise WebRequestError(404, "no such contact (yet): try again in a moment")
        if self.on_disposed is not None:
            await self.on_disposed(Disposition(uniqueid, contact_id, session.agent, str(outcome), note,
                                               follow_up_at))
        return 200, {"saved": True}

    def _when(self, value: object) -> dt.datetime | None:
        """``follow_up_at`` as typed in the page (desk time), in UTC; None if not given."""
        if value is None or value == "":
            return None
        if not isinstance(value, str) or len(value) > 32:
            raise WebRequestError(400, "follow_up_at must be a date and time such as 2026-12-01T10:00")
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise WebRequestError(400,
                                  "follow_up_at must be a date and time such as 2026-12-01T10:00") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.astimezone(dt.UTC)

    def _save(self, uniqueid: str, outcome: str, note: str) -> int | None:
        with Session(self.engine) as session:
            contact_id = session.execute(update(Contact).where(Contact.uniqueid == uniqueid)
                                         .values(disposition=outcome, notes=note)
                                         .returning(Contact.id)).scalar()
            session.commit()
        return int(contact_id) if contact_id is not None else None
