"""Agent sessions for the agent page: signed cookies, so any ``ivr serve`` sharing the secret accepts them.

A session cookie is ``<agent, base64url>|<expiry>|<csrf token>|<HMAC-SHA256>``
signed with ``[http] session_secret``. Nothing lives in one process's memory,
so a page keeps working when it reconnects to another instance. The CSRF
token travels in the page (a meta tag) and comes back in the
``X-CSRF-Token`` header of every write; it is compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["COOKIE", "CSRF_HEADER", "AgentSession", "SessionSigner"]

COOKIE = b"ivr_agent"
CSRF_HEADER = b"x-csrf-token"


@dataclass(frozen=True)
class AgentSession:
    agent: str
    csrf: str
    expires: int


class SessionSigner:
    """Makes and checks session cookies."""

    def __init__(self, secret: str, lifetime: float = 12 * 3600,
                 now: Callable[[], float] = time.time) -> None:
        self._key = hashlib.sha256(b"ivr agent session:" + secret.encode("utf-8")).digest()
        self.lifetime = lifetime
        self._now = now

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode("ascii"), hashlib.sha256).hexdigest()

    def make(self, agent: str) -> tuple[str, AgentSession]:
        session = AgentSession(agent, secrets.token_urlsafe(24), int(self._now() + self.lifetime))
        name = base64.urlsafe_b64encode(agent.encode("utf-8")).decode("ascii")
        text = f"{name}|{session.expires}|{session.csrf}"
        return f"{text}|{self._sign(text)}", session

    def read(self, cookie: str | None) -> AgentSession | None:
        """The session in ``cookie``, or None if it is missing, forged or expired."""
        if not cookie or len(cookie) > 512:
            return None
        parts = cookie.split("|")
        if len(parts) != 4:
            return None
        name, expires, csrf, signature = parts
        if not hmac.compare_digest(self._sign(f"{name}|{expires}|{csrf}"), signature):
            return None
        try:
            agent = base64.urlsafe_b64decode(name.encode("ascii")).decode("utf-8")
            expiry = int(expires)
        except ValueError:
            return None
        if expiry < self._now():
            return None
        return AgentSession(agent, csrf, expiry)

    def of_request(self, request: Any) -> AgentSession | None:
        raw = request.getCookie(COOKIE)
        return self.read(raw.decode("ascii", "replace") if raw else None)

    @staticmethod
    def csrf_ok(request: Any, session: AgentSession) -> bool:
        sent = request.requestHeaders.getRawHeaders(CSRF_HEADER) or [b""]
        value = sent[0] if isinstance(sent[0], bytes) else sent[0].encode("utf-8")
        return hmac.compare_digest(value, session.csrf.encode("ascii"))
