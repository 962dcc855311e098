"""JSON API building blocks on twisted.web: bounded request bodies, async handlers, JSON errors.

Every API answer is JSON (``{"error": "..."}`` when refused), never HTML, and
never a traceback. A handler is an ``async`` method; the reactor is never held
while it awaits the database (which runs on worker threads).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, resource, server

from ivr.errors import WebRequestError

__all__ = ["NotFound", "BoundedRequest", "JsonResource", "bounded_request", "read_body", "read_json_object",
           "write_json"]

log = Logger(namespace="ivr.web")

#: The largest body any request may carry; a site sets it from ``[http] max_body_bytes``.
DEFAULT_MAX_BODY = 16384


class BoundedRequest(server.Request):
    """A request whose body is kept in memory up to ``max_body`` bytes and never beyond.

    A larger body (by Content-Length, or by counting a chunked one) is read and
    dropped, and the request is marked ``too_large`` so the resource answers 413.
    A site sets the limit on a subclass (:func:`bounded_request`).
    """

    max_body = DEFAULT_MAX_BODY

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.too_large = False
        self._received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body:
            self.too_large = True
        super().gotLength(0 if self.too_large else length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self.max_body:
            self.too_large = True
        if self.too_large:
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]


def bounded_request(max_body: int) -> type[BoundedRequest]:
    """A request class for a site whose bodies may be at most ``max_body`` bytes."""
    return type("BoundedRequest", (BoundedRequest,), {"max_body": max_body})


def read_body(request: server.Request) -> bytes:
    """The whole body; 413 if it was over the limit."""
    if getattr(request, "too_large", False):
        raise WebRequestError(413, f"the body is larger than {getattr(request, 'max_body', '?')} bytes")
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    return bytes(content.read())


def read_json_object(request: server.Request) -> dict[str, Any]:
    """The body as a JSON object; 400 for anything else (413 if too large)."""
    try:
        data = json.loads(read_body(request).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise WebRequestError(400, "the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise WebRequestError(400, "the body must be a JSON object")
    return data


def write_json(request: server.Request, status: int, payload: object) -> bytes:
    """Set the status and JSON headers; the encoded body (for ``render_*`` to return)."""
    untyped: Any = request  # twisted.web's Request is not fully annotated
    untyped.setResponseCode(status)
    untyped.setHeader(b"content-type", b"application/json; charset=utf-8")
    untyped.setHeader(b"cache-control", b"no-store")
    untyped.setHeader(b"x-content-type-options", b"nosniff")
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


class JsonResource(resource.Resource):
    """A leaf resource whose methods are ``async def handle_<METHOD>(request) -> (status, payload)``.

    A :class:`WebRequestError` becomes its status with ``{"error": message}``;
    anything else is logged and becomes a 500 without details.
    """

    isLeaf = True

    def render(self, request: server.Request) -> bytes | int:
        method = (request.method or b"").decode("ascii", "replace").upper()
        handler: Callable[[server.Request], Awaitable[tuple[int, object]]] | None = \
            getattr(self, f"handle_{method}", None)
        if handler is None:
            allowed = sorted(name[len("handle_"):] for name in dir(self) if name.startswith("handle_"))
            cast(Any, request).setHeader(b"allow", ", ".join(allowed).encode("ascii"))
            return write_json(request, 405, {"error": f"use {' or '.join(allowed)}"})
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)
        pending = defer.ensureDeferred(self._run(handler, request))

        def answer(result: tuple[int, bytes]) -> None:
            if gone:
                return  # the client went away; the work itself is done (and idempotent)
            _status, body = result
            untyped: Any = request
            untyped.write(body)
            untyped.finish()

        pending.addCallback(answer)
        pending.addErrback(lambda failure: log.failure("answering an HTTP request failed", failure))
        return server.NOT_DONE_YET

    async def _run(self, handler: Callable[[server.Request], Awaitable[tuple[int, object]]],
                   request: server.Request) -> tuple[int, bytes]:
        try:
            status, payload = await handler(request)
        except WebRequestError as refused:
            status, payload = refused.status, {"error": refused.message}
        except Exception:
            log.failure("HTTP {method} {path} failed", method=request.method, path=request.path)
            status, payload = http.INTERNAL_SERVER_ERROR, {"error": "internal error; it has been logged"}
        return status, write_json(request, status, payload)


class NotFound(resource.Resource):
    """Paths nobody registered, under it: a JSON 404. Registered children (``putChild``) still win."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        return self

    def render(self, request: server.Request) -> bytes:
        return write_json(request, 404, {"error": "no such API endpoint"})
