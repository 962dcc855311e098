"""``GET /recordings/<contact id>``: a call's recording, for the agent who took it and for supervisors.

Recordings are what customers said to a person: personal data, so every
request is authorised on its own, from the agent page's session cookie
(:class:`~ivr.web.sessions.SessionSigner`) and the database as it is now (a
deactivated agent or a changed role counts at once, however young the
cookie): no session is 401; the agent who answered the call
(``contacts.agent_id``) or an active supervisor (``agents.role``) gets the
file; everyone else 403, whether the contact exists or not, so contact ids
cannot be probed. The file is found by :func:`recording_file` (never by
trusting the stored ref as a path) and sent by twisted.web's ``static.File``,
which answers HTTP Range requests, so a player can seek.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from twisted.internet import threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server, static

from ivr.db.models import Agent, Contact
from ivr.history.recording_files import RefusedRef, recording_file
from ivr.web.resources import write_json
from ivr.web.sessions import SessionSigner

__all__ = ["Access", "Recordings", "may_hear"]

log = Logger(namespace="ivr.history")

#: Contact ids are database integers; anything longer is not one.
_MAX_ID_DIGITS = 18


@dataclass(frozen=True)
class Access:
    """What a request's authorisation needs from the database."""

    #: The session's agent: their id and role, or None if unknown or inactive.
    agent_id: int | None
    role: str
    #: The contact: whether it exists, who answered it, its recording ref.
    contact_found: bool
    contact_agent_id: int | None
    recording_ref: str


def may_hear(access: Access) -> bool:
    """The rule: an active agent who answered the call, or an active supervisor."""
    if access.agent_id is None:
        return False
    if access.role == "supervisor":
        return True
    return access.contact_found and access.contact_agent_id == access.agent_id


class Recordings(resource.Resource):
    """``/recordings``: one child per contact id."""

    def __init__(self, engine: Engine, signer: SessionSigner, folder: Path) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.engine = engine
        self.signer = signer
        self.folder = folder

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        return _Recording(self, path)

    def render_GET(self, request: server.Request) -> bytes:
        return write_json(request, 404, {"error": "ask for /recordings/<contact id>"})

    def access(self, agent: str, contact_id: int) -> Access:
        """On a worker thread: the agent and the contact, as the database has them now."""
        with Session(self.engine) as session:
            who = session.execute(select(Agent.id, Agent.role)
                                  .where(Agent.code == agent, Agent.active)).first()
            contact = session.execute(select(Contact.agent_id, Contact.recording_ref)
                                      .where(Contact.id == contact_id)).first()
        return Access(who.id if who is not None else None, who.role if who is not None else "",
                      contact is not None, contact.agent_id if contact is not None else None,
                      contact.recording_ref if contact is not None else "")


class _Recording(resource.Resource):
    """``/recordings/<contact id>``."""

    isLeaf = True

    def __init__(self, parent: Recordings, name: bytes) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.parent = parent
        self.name = name

    def render_GET(self, request: server.Request) -> bytes | int:
        session = self.parent.signer.of_request(request)
        if session is None:
            return write_json(request, 401, {"error": "log in first (the agent page)"})
        if request.postpath or not self.name.isdigit() or len(self.name) > _MAX_ID_DIGITS:
            return write_json(request, 404, {"error": "no such recording"})
        contact_id = int(self.name)
        gone: list[Failure] = []
        request.notifyFinish().addErrback(gone.append)
        looked_up = threads.deferToThread(self.parent.access, session.agent, contact_id)

        def answer(access: Access) -> None:
            if not gone:
                self._send(request, session.agent, contact_id, access)

        def failed(failure: Failure) -> None:
            log.failure("looking up recording {contact} failed", failure, contact=contact_id)
            if not gone:
                _finish(request, write_json(request, 500, {"error": "internal error; it has been logged"}))

        looked_up.addCallbacks(answer, failed)
        return server.NOT_DONE_YET

    def _send(self, request: server.Request, agent: str, contact_id: int, access: Access) -> None:
        if not may_hear(access):
            log.info("agent {agent!r} refused recording of contact {contact}", agent=agent[:64],
                     contact=contact_id)
            _finish(request, write_json(request, 403, {"error": "not your call's recording"}))
            return
        if not access.recording_ref:
            _finish(request, write_json(request, 404, {"error": "this contact has no recording"}))
            return
        try:
            path = recording_file(self.parent.folder, access.recording_ref)
        except RefusedRef as refused:
            log.warn("refused recording_ref of contact {contact}: {reason}", contact=contact_id,
                     reason=str(refused))
            _finish(request, write_json(request, 404, {"error": "this contact has no usable recording"}))
            return
        except FileNotFoundError:
            _finish(request, write_json(request, 404, {"error": "the recording file is missing"}))
            return
        untyped: Any = request
        untyped.setHeader(b"cache-control", b"private, no-store")
        untyped.setHeader(b"x-content-type-options", b"nosniff")
        untyped.setHeader(b"content-security-policy", b"default-src 'none'; sandbox")
        untyped.setHeader(b"content-disposition", f'inline; filename="contact-{contact_id}.wav"'.encode())
        file = static.File(str(path), defaultType="audio/wav")
        file.contentTypes = {".wav": "audio/wav"}
        body = file.render_GET(request)  # type: ignore[no-untyped-call]
        if body is not server.NOT_DONE_YET:
            _finish(request, body)


def _finish(request: server.Request, body: bytes) -> None:
    untyped: Any = request
    untyped.write(body)
    untyped.finish()
