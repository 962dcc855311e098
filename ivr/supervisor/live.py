"""What Asterisk says about its queues right now, from one AMI ``QueueStatus``.

``QueueStatus`` answers with a ``QueueParams`` event per queue, a
``QueueMember`` per member and a ``QueueEntry`` per waiting caller
(app_queue.c, ``manager_queues_status``). From them: per queue, the callers
waiting and the longest wait; per member, a state a supervisor reads (free,
ringing, on a call, paused, logged out). A member's ``Status`` is a device
state (``enum ast_device_state`` in include/asterisk/devicestate.h: 0 unknown,
1 not in use, 2 in use, 3 busy, 4 invalid, 5 unavailable, 6 ringing,
7 ring in use, 8 on hold).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ivr.ami import AMIMessage

__all__ = ["AGENT_STATES", "LiveMember", "LiveQueue", "QueuesNow", "member_state", "read_queue_status"]

#: The states the wallboard counts, in the order it shows them.
AGENT_STATES = ("free", "ringing", "on_call", "paused", "logged_out")
#: When one agent is in several queues, the state shown for them is the first of these they are in.
_PRECEDENCE = ("on_call", "ringing", "paused", "free", "logged_out")


def member_state(status: str, paused: bool, in_call: bool) -> str:
    """A supervisor's word for a member: paused wins over free; a call wins over a pause."""
    if status in ("2", "3", "8") or in_call:
        return "on_call"
    if status in ("6", "7"):
        return "ringing"
    if status in ("0", "4", "5"):
        return "logged_out"
    return "paused" if paused else "free"


@dataclass(frozen=True, slots=True)
class LiveMember:
    queue: str
    interface: str
    name: str
    state: str
    paused: bool
    paused_reason: str
    calls_taken: int


@dataclass(slots=True)
class LiveQueue:
    name: str
    waiting: int = 0
    longest_wait: int = 0
    members: list[LiveMember] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counted = dict.fromkeys(AGENT_STATES, 0)
        for member in self.members:
            counted[member.state] += 1
        return counted


@dataclass(frozen=True, slots=True)
class QueuesNow:
    """Every queue Asterisk has, and each interface's overall state (over all its queues)."""

    queues: dict[str, LiveQueue]

    def interfaces(self) -> dict[str, str]:
        """Interface -> its state for the agent list (a call anywhere beats a pause elsewhere)."""
        best: dict[str, str] = {}
        for queue in self.queues.values():
            for member in queue.members:
                old = best.get(member.interface)
                if old is None or _PRECEDENCE.index(member.state) < _PRECEDENCE.index(old):
                    best[member.interface] = member.state
        return best

    def as_json(self) -> list[dict[str, Any]]:
        return [{"queue": q.name, "waiting": q.waiting, "longest_wait": q.longest_wait, "agents": q.counts(),
                 "members": [{"interface": m.interface, "name": m.name, "state": m.state, "paused": m.paused,
                              "reason": m.paused_reason, "calls_taken": m.calls_taken} for m in q.members]}
                for q in sorted(self.queues.values(), key=lambda q: q.name)]


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def read_queue_status(events: Iterable[AMIMessage], only: Iterable[str] | None = None) -> QueuesNow:
    """The queues in a ``QueueStatus`` answer (only those named in ``only``, if given)."""
    wanted = set(only) if only is not None else None
    queues: dict[str, LiveQueue] = {}

    def queue(name: str) -> LiveQueue | None:
        if wanted is not None and name not in wanted:
            return None
        return queues.setdefault(name, LiveQueue(name))

    for event in events:
        kind = (event.event or "").lower()
        found = queue(event.get("Queue", ""))
        if found is None:
            continue
        if kind == "queueentry":
            found.waiting += 1
            found.longest_wait = max(found.longest_wait, _int(event.get("Wait")))
        elif kind == "queuemember":
            paused = event.get("Paused", "0") == "1"
            interface = event.get("Location") or event.get("Interface") or ""
            found.members.append(LiveMember(
                found.name, interface, event.get("Name") or event.get("MemberName") or interface,
                member_state(event.get("Status", "0"), paused, event.get("InCall", "0") == "1"), paused,
                event.get("PausedReason", ""), _int(event.get("CallsTaken"))))
    return QueuesNow(queues)
