"""A supervisor acting on the queues: pause or unpause an agent, add or remove a queue member.

Only through AMI (``QueuePause``, ``QueueAdd``, ``QueueRemove``: the
``agent`` write right of asterisk-conf/manager_ivr.conf), never a shell. The
page names an agent by code and a queue by name; the interface dialled is
the agent's ``device`` from the agents table and the queue must be one of
``[routing] queues``, so nothing the browser sends becomes an interface or
a queue Asterisk was not meant to touch. Every action is an audit row
(``supervisor_actions``): written before Asterisk is asked, completed with
its answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine, insert, select, update
from twisted.internet import defer, threads

from ivr.ami.message import ActionResult, HeaderValue
from ivr.db.models import Agent, SupervisorAction
from ivr.errors import AMIActionError, AMIError, WebRequestError

__all__ = ["ACTIONS", "ActionRequest", "QueueActions"]

ACTIONS = ("pause", "unpause", "add", "remove")
MAX_REASON = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ActionSender(Protocol):
    def send_action(self, action: str, headers: Sequence[tuple[str, HeaderValue]] = (), *,
                    timeout: float | None = None, completion_event: str | None = None
                    ) -> defer.Deferred[ActionResult]: ...


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """What the page asked, checked: ``queue`` None pauses in every queue."""

    action: str
    agent: str
    queue: str | None
    reason: str

    @classmethod
    def parse(cls, body: dict[str, Any], queues: Sequence[str]) -> ActionRequest:
        action, agent, queue, reason = (body.get("action"), body.get("agent"), body.get("queue"),
                                        body.get("reason", ""))
        if action not in ACTIONS:
            raise WebRequestError(400, "action must be one of " + ", ".join(ACTIONS))
        if not isinstance(agent, str) or not 0 < len(agent) <= 64:
            raise WebRequestError(400, "agent must be an agent code")
        if queue in (None, "") and action in ("pause", "unpause"):
            queue = None
        elif queue not in queues:
            raise WebRequestError(400, "queue must be one of " + ", ".join(queues))
        if not isinstance(reason, str) or len(reason) > MAX_REASON or _CONTROL.search(reason):
            raise WebRequestError(400, f"reason must be one line of at most {MAX_REASON} characters")
        return cls(str(action), agent, queue, reason)


class QueueActions:
    """Sends the checked actions and keeps their audit rows."""

    def __init__(self, ami: ActionSender | None, engine: Engine, queues: Sequence[str]) -> None:
        self.ami = ami
        self.engine = engine
        self.queues = tuple(queues)

    async def act(self, supervisor: str, request: ActionRequest) -> dict[str, Any]:
        if self.ami is None:
            raise WebRequestError(503, "AMI is off ([ami] enabled = false): queues cannot be changed")
        device = await threads.deferToThread(self._device, request.agent)
        if not device:
            raise WebRequestError(404, "no active agent with that code and a phone (device)")
        audit = await threads.deferToThread(self._audit, supervisor, request, device)
        headers = self._headers(request, device)
        name = {"pause": "QueuePause", "unpause": "QueuePause", "add": "QueueAdd",
                "remove": "QueueRemove"}[request.action]
        try:
            await self.ami.send_action(name, headers)
        except AMIActionError as refused:
            await threads.deferToThread(self._finish, audit, "failed", refused.message)
            raise WebRequestError(409, f"Asterisk refused: {refused.message or name + ' failed'}") from None
        except AMIError as exc:
            await threads.deferToThread(self._finish, audit, "failed", str(exc))
            raise WebRequestError(502, "Asterisk did not answer; try again") from None
        await threads.deferToThread(self._finish, audit, "ok", "")
        return {"done": True, "audit": audit}

    @staticmethod
    def _headers(request: ActionRequest, device: str) -> list[tuple[str, HeaderValue]]:
        headers: list[tuple[str, HeaderValue]] = [("Interface", device)]
        if request.action in ("pause", "unpause"):
            headers.append(("Paused", "true" if request.action == "pause" else "false"))
            if request.queue is not None:
                headers.append(("Queue", request.queue))
            if request.reason and request.action == "pause":
                headers.append(("Reason", request.reason))
        elif request.action == "add":
            assert request.queue is not None
            headers += [("Queue", request.queue), ("MemberName", request.agent), ("Paused", "false")]
        else:
            assert request.queue is not None
            headers.append(("Queue", request.queue))
        return headers

    def _device(self, code: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.scalar(select(Agent.device).where(Agent.code == code, Agent.active))

    def _audit(self, supervisor: str, request: ActionRequest, device: str) -> int:
        with self.engine.begin() as connection:
            return int(connection.execute(insert(SupervisorAction).values(
                supervisor=supervisor, action=request.action, queue=request.queue or "", agent=request.agent,
                interface=device, reason=request.reason, result="pending", detail="")
                .returning(SupervisorAction.id)).scalar_one())

    def _finish(self, audit: int, result: str, detail: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(SupervisorAction).where(SupervisorAction.id == audit)
                               .values(result=result, detail=detail[:500]))
