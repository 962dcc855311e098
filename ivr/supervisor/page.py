"""The supervisor's pages at ``/supervisor``: the live wallboard, charts, and acting on queues.

* ``GET /supervisor``: the login form, or the wallboard (403 for an agent's session).
* ``POST /supervisor/login`` (form: supervisor, token, csrf): the same API token,
  double-submit login cookie and signed session cookie as the agent page
  (:mod:`ivr.web.sessions`); only an active agent whose role is ``supervisor``.
* ``GET /supervisor/events``: the wallboard as Server-Sent Events, from the one
  shared computation (:class:`~ivr.supervisor.board.Wallboard`).
* ``GET /supervisor/api/charts?range=today|7d|30d[&queue=Q|&agent=A]``: chart series,
  its four reads at once on worker threads, cached for a few seconds so many open
  pages share one answer.
* ``POST /supervisor/api/act``: pause/unpause/add/remove (JSON, ``X-CSRF-Token``).
* ``/supervisor/app.js``, ``/supervisor/static/echarts.min.js``: the page's own
  scripts (Apache ECharts vendored, see scripts/update-echarts).

Every request checks the session and the role (a database read on a worker
thread). The Content-Security-Policy allows scripts from this site only
(no inline script, no CDN); every value reaches the DOM with ``textContent``.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import secrets
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs

from sqlalchemy import Engine, select
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server

from ivr.db.models import Agent
from ivr.errors import WebRequestError
from ivr.supervisor.actions import ActionRequest, QueueActions
from ivr.supervisor.board import Wallboard
from ivr.supervisor.figures import CHART_PARTS, RANGES, ChartRequest
from ivr.web.auth import token_matches
from ivr.web.resources import JsonResource, read_body, read_json_object
from ivr.web.sessions import COOKIE, AgentSession, SessionSigner

__all__ = ["SupervisorPage"]

log = Logger(namespace="ivr.web")

HERE = Path(__file__).resolve().parent
LOGIN_COOKIE = b"ivr_supervisor_login"
#: Seconds a chart answer is reused for the same range and filter.
CHART_CACHE_SECONDS = 10.0
CSP = (b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
       b"img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _headers(request: server.Request, content_type: bytes) -> None:
    untyped: Any = request
    untyped.setHeader(b"content-security-policy", CSP)
    untyped.setHeader(b"x-content-type-options", b"nosniff")
    untyped.setHeader(b"referrer-policy", b"same-origin")
    untyped.setHeader(b"cache-control", b"no-store")
    untyped.setHeader(b"content-type", content_type)


class Gate:
    """Who may see the supervisor's pages: a genuine session of an active supervisor."""

    def __init__(self, signer: SessionSigner, engine: Engine) -> None:
        self.signer = signer
        self.engine = engine

    def role(self, code: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.scalar(select(Agent.role).where(Agent.code == code, Agent.active))

    async def supervisor(self, request: server.Request, csrf: bool = False) -> AgentSession:
        session = self.signer.of_request(request)
        if session is None:
            raise WebRequestError(401, "log in first")
        if csrf and not self.signer.csrf_ok(request, session):
            raise WebRequestError(403, "missing or wrong CSRF token")
        if await threads.deferToThread(self.role, session.agent) != "supervisor":
            raise WebRequestError(403, "supervisors only")
        return session


class SupervisorPage(resource.Resource):
    """``/supervisor`` and its children; ``zone`` is the desk's time zone name (``[hours] timezone``)."""

    def __init__(self, board: Wallboard, actions: QueueActions, signer: SessionSigner, engine: Engine,
                 clock: IReactorTime, zone: dt.tzinfo, zone_name: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.gate = Gate(signer, engine)
        self.signer = signer
        self.zone_name = zone_name
        self.putChild(b"", self)
        self.putChild(b"app.js", _File(HERE / "pages" / "supervisor.js", b"text/javascript; charset=utf-8"))
        self.putChild(b"style.css", _File(HERE / "pages" / "supervisor.css", b"text/css; charset=utf-8"))
        static = resource.Resource()  # type: ignore[no-untyped-call]
        static.putChild(b"echarts.min.js", _File(HERE / "static" / "echarts.min.js",
                                                 b"text/javascript; charset=utf-8"))
        self.putChild(b"static", static)
        self.putChild(b"login", _Login(self))
        self.putChild(b"logout", _Logout(signer))
        self.putChild(b"events", _Events(board, self.gate))
        api = resource.Resource()  # type: ignore[no-untyped-call]
        api.putChild(b"charts", _Charts(self.gate, engine, clock, zone, board.service_level))
        api.putChild(b"act", _Act(self.gate, actions, board))
        self.putChild(b"api", api)

    def render_GET(self, request: server.Request) -> bytes | int:
        _headers(request, b"text/html; charset=utf-8")
        session = self.signer.of_request(request)
        if session is None:
            return self.login_form(request, "")
        untyped: Any = request
        checked = threads.deferToThread(self.gate.role, session.agent)

        def answer(role: str | None) -> None:
            if role != "supervisor":
                untyped.setResponseCode(403)
                untyped.write(_page("forbidden.html", {}))
            else:
                untyped.write(_page("supervisor.html", {"supervisor": session.agent, "csrf": session.csrf,
                                                        "zone": self.zone_name}))
            untyped.finish()

        checked.addCallback(answer).addErrback(lambda failure: _fail(request, failure))
        return server.NOT_DONE_YET

    def login_form(self, request: server.Request, error: str) -> bytes:
        token = secrets.token_urlsafe(24)
        cast(Any, request).addCookie(LOGIN_COOKIE, token.encode("ascii"), path=b"/supervisor", httpOnly=True,
                                     sameSite=b"strict")
        return _page("login.html", {"csrf": token, "error": error})


def _page(name: str, values: dict[str, str]) -> bytes:
    text = (HERE / "pages" / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{" + key + "}", html.escape(value))
    return text.encode("utf-8")


def _fail(request: server.Request, failure: Failure) -> None:
    log.failure("the supervisor page failed", failure)
    untyped: Any = request
    untyped.setResponseCode(500)
    untyped.finish()


class _File(resource.Resource):
    """One file of the package, read once."""

    isLeaf = True

    def __init__(self, path: Path, content_type: bytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.body = path.read_bytes()
        self.content_type = content_type

    def render_GET(self, request: server.Request) -> bytes:
        _headers(request, self.content_type)
        cast(Any, request).setHeader(b"cache-control", b"private, max-age=3600")
        return self.body


class _Login(resource.Resource):
    isLeaf = True

    def __init__(self, page: SupervisorPage) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.page = page

    def render_POST(self, request: server.Request) -> bytes | int:
        untyped: Any = request
        try:  # the site leaves POST bodies alone: parse it here, bounded
            form = parse_qs(read_body(request).decode("utf-8"), max_num_fields=10)
        except (UnicodeDecodeError, ValueError, WebRequestError):
            form = {}
        fields = {key: values[0] for key, values in form.items() if values}
        cookie = untyped.getCookie(LOGIN_COOKIE) or b""
        _headers(request, b"text/html; charset=utf-8")
        if not cookie or not secrets.compare_digest(cookie, fields.get("csrf", "").encode("utf-8")):
            untyped.setResponseCode(403)
            return self.page.login_form(request, "The form expired; please log in again.")
        code, token = fields.get("supervisor", "")[:64], fields.get("token", "")[:200]
        checked = threads.deferToThread(self._check, code, token)

        def answer(verdict: str) -> None:
            if verdict == "ok":
                value, _ = self.page.signer.make(code)
                untyped.addCookie(COOKIE, value.encode("ascii"), path=b"/", httpOnly=True, sameSite=b"strict")
                untyped.setResponseCode(303)
                untyped.setHeader(b"location", b"/supervisor")
            else:
                untyped.setResponseCode(403 if verdict == "not-supervisor" else 401)
                untyped.write(self.page.login_form(request, "This account is not a supervisor."
                                                   if verdict == "not-supervisor"
                                                   else "Unknown supervisor or wrong token."))
            untyped.finish()

        checked.addCallback(answer).addErrback(lambda failure: _fail(request, failure))
        return server.NOT_DONE_YET

    def _check(self, code: str, token: str) -> str:
        with self.page.gate.engine.connect() as connection:
            row = connection.execute(select(Agent.api_token_hash, Agent.role)
                                     .where(Agent.code == code, Agent.active)).first()
        if not token_matches(token, row.api_token_hash if row is not None else None):
            return "wrong"
        return "ok" if row is not None and row.role == "supervisor" else "not-supervisor"


class _Logout(resource.Resource):
    isLeaf = True

    def __init__(self, signer: SessionSigner) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.signer = signer

    def render_POST(self, request: server.Request) -> bytes:
        untyped: Any = request
        session = self.signer.of_request(request)
        if session is not None and self.signer.csrf_ok(request, session):
            untyped.addCookie(COOKIE, b"", path=b"/", httpOnly=True, sameSite=b"strict", max_age=0)
        untyped.setResponseCode(204)
        return b""


class _Events(resource.Resource):
    """The wallboard's stream: checked once, then fed by the shared computation."""

    isLeaf = True

    def __init__(self, board: Wallboard, gate: Gate) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.board = board
        self.gate = gate

    def render_GET(self, request: server.Request) -> int:
        untyped: Any = request
        checked: defer.Deferred[AgentSession] = defer.Deferred.fromCoroutine(self.gate.supervisor(request))
        ended: list[object] = []
        request.notifyFinish().addBoth(ended.append)

        def listen(_: AgentSession) -> None:
            if ended:
                return
            untyped.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
            untyped.setHeader(b"cache-control", b"no-store")
            untyped.setHeader(b"x-accel-buffering", b"no")
            untyped.write(b"retry: 2000\n\n")
            write = untyped.write
            request.notifyFinish().addBoth(lambda _: self.board.disconnect(write))
            self.board.connect(write)

        def refuse(failure: Failure) -> None:
            if not isinstance(failure.value, WebRequestError):
                _fail(request, failure)
                return
            refused = failure.value
            untyped.setResponseCode(refused.status)
            untyped.setHeader(b"content-type", b"application/json; charset=utf-8")
            untyped.write(json.dumps({"error": refused.message}).encode("utf-8"))
            untyped.finish()

        checked.addCallbacks(listen, refuse)
        return server.NOT_DONE_YET


class _Charts(JsonResource):
    def __init__(self, gate: Gate, engine: Engine, clock: IReactorTime, zone: dt.tzinfo,
                 service_level: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.gate = gate
        self.engine = engine
        self.clock = clock
        self.zone = zone
        self.service_level = service_level
        self._cache: dict[ChartRequest, tuple[float, dict[str, Any]]] = {}

    async def handle_GET(self, request: server.Request) -> tuple[int, object]:
        await self.gate.supervisor(request)
        args = cast(dict[bytes, list[bytes]], request.args or {})

        def arg(name: bytes) -> str | None:
            values = args.get(name)
            return values[0].decode("utf-8", "replace")[:100] if values and values[0] else None

        wanted = ChartRequest(arg(b"range") or "today", arg(b"queue"), arg(b"agent"))
        if wanted.range not in RANGES:
            raise WebRequestError(400, "range must be one of " + ", ".join(RANGES))
        now = self.clock.seconds()
        cached = self._cache.get(wanted)
        if cached is not None and now - cached[0] < CHART_CACHE_SECONDS:
            return 200, cached[1]
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        parts = await defer.gatherResults(
            [threads.deferToThread(part, self.engine, wanted, moment, self.zone, self.service_level)
             for part in CHART_PARTS], consumeErrors=True)
        data: dict[str, Any] = {}
        for part in parts:
            data.update(part)
        if len(self._cache) > 200:
            self._cache.clear()
        self._cache[wanted] = (now, data)
        return 200, data


class _Act(JsonResource):
    def __init__(self, gate: Gate, actions: QueueActions, board: Wallboard) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.gate = gate
        self.actions = actions
        self.board = board

    async def handle_POST(self, request: server.Request) -> tuple[int, object]:
        session = await self.gate.supervisor(request, csrf=True)
        wanted = ActionRequest.parse(read_json_object(request), self.actions.queues)
        done = await self.actions.act(session.agent, wanted)
        self.board.figures_changed()
        return 200, done

