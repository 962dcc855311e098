"""The HTTP site: one twisted.web resource tree under ``/``, endpoints under ``/api/``.

Infrastructure only: features add their resources with :meth:`WebSite.add`
(``/api/sms``, ``/api/calls``, ``/agent``), wired by the composition root.
It listens only when ``[http] enabled`` is true, on ``[http] host``
(loopback by default).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.logger import Logger
from twisted.web import resource, server

from ivr.config import HTTPSettings, Settings
from ivr.errors import ConfigError
from ivr.web.resources import NotFound, bounded_request

__all__ = ["MIN_SECRET_CHARS", "WebSite", "check_secrets"]

log = Logger(namespace="ivr.web")

MIN_SECRET_CHARS = 16
#: Seconds an idle HTTP connection is kept open.
IDLE_TIMEOUT = 60


class WebSite:
    """The resource tree, the twisted.web Site serving it, and its listening port once started."""

    def __init__(self, settings: HTTPSettings, reactor: Any) -> None:
        self.settings = settings
        self.reactor = reactor
        self.root = NotFound()
        self.api = NotFound()
        self.root.putChild(b"api", self.api)
        self.site = server.Site(  # type: ignore[no-untyped-call]
            self.root, requestFactory=bounded_request(settings.max_body_bytes),
            parsePOSTFormSubmission=False, timeout=IDLE_TIMEOUT)
        self.site.displayTracebacks = False
        self.port: IListeningPort | None = None

    def add(self, path: str, child: resource.Resource) -> None:
        """Serve ``child`` at ``path`` (``"/api/calls"``, ``"/agent"``); a path may be taken only once."""
        segments = [part.encode("ascii") for part in path.strip("/").split("/")]
        if not all(segments):
            raise ValueError(f"{path!r} is not a path such as /api/calls")
        parent: resource.Resource = self.root
        for segment in segments[:-1]:
            existing = parent.children.get(segment)
            if existing is None:
                existing = NotFound()
                parent.putChild(segment, existing)
            parent = existing
        if segments[-1] in parent.children:
            raise ValueError(f"{path} is already served")
        parent.putChild(segments[-1], child)

    def listen(self) -> IListeningPort | None:
        """Start listening if ``[http] enabled``; the port, or None when off."""
        http = self.settings
        if not http.enabled:
            log.info("HTTP API off ([http] enabled = false)")
            return None
        self.port = cast(IReactorTCP, self.reactor).listenTCP(http.port, self.site,  # type: ignore[arg-type]
                                                              interface=http.host)
        address = self.port.getHost()
        log.info("HTTP API listening on {host}:{port}", host=getattr(address, "host", http.host),
                 port=getattr(address, "port", http.port))
        if not http.sms_secret:
            log.warn("/api/sms answers 503 until [http] sms_secret (IVR_HTTP_SMS_SECRET) is set")
        return self.port


def check_secrets(settings: Settings) -> None:
    """Refuse secrets too short to be secret (each is optional: empty turns its feature off)."""
    http = settings.http
    _check_secret(settings, "http.sms_secret", http.sms_secret)
    _check_secret(settings, "http.admin_key", http.admin_key)
    _check_secret(settings, "http.session_secret", http.session_secret)


def _check_secret(settings: Settings, key: str, value: str) -> None:
    if value and len(value) < MIN_SECRET_CHARS:
        variable = "IVR_" + key.upper().replace(".", "_")
        raise ConfigError(f"{settings.source} or {variable}", key,
                          f"shorter than {MIN_SECRET_CHARS} characters (not shown)",
                          "use a long random value, e.g. the output of "
                          "`python -c 'import secrets; print(secrets.token_hex(32))'`")
