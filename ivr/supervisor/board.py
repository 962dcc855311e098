"""The wallboard: ONE computation every few seconds, pushed to every open supervisor page.

Each tick (``[report] wallboard_interval``, at most 2 s) while at least one
page listens: one AMI ``QueueStatus`` (callers waiting, longest wait, every
member's state) and, when a queue event said something changed or 30 s have
passed, one database read of today's figures through the query layer
(:mod:`ivr.supervisor.figures`, on a worker thread). The result is one JSON
snapshot, encoded once and written to every page's event stream. Ten pages
cost what one does: no page ever causes a query of its own.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Engine, select
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ivr.ami import AMIMessage
from ivr.ami.message import ActionResult
from ivr.db.models import Agent
from ivr.errors import AMIError
from ivr.supervisor.figures import today_figures
from ivr.supervisor.live import AGENT_STATES, QueuesNow, read_queue_status

__all__ = ["QUEUE_EVENTS", "AgentEntry", "QueueSource", "Wallboard"]

log = Logger(namespace="ivr.supervisor")

#: AMI events after which today's figures are read again at the next tick.
QUEUE_EVENTS = ("QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon", "AgentConnect", "AgentComplete",
                "QueueMemberPause", "QueueMemberAdded", "QueueMemberRemoved")
#: Seconds today's figures may be reused when no queue event came.
FIGURES_MAX_AGE = 30.0
#: Seconds after a queue event during which each tick reads the figures again: the contact
#: history writes the call's outcome a moment after Asterisk's event (its writer batches).
SETTLE_SECONDS = 5.0
#: Seconds the agent list (the agents table) is reused.
DIRECTORY_MAX_AGE = 60.0


class QueueSource(Protocol):
    """What the wallboard needs of the AMI client."""

    @property
    def ready(self) -> bool: ...

    def queue_status(self, queue: str | None = None, member: str | None = None
                     ) -> defer.Deferred[ActionResult]: ...

    def subscribe(self, callback: Callable[[AMIMessage], object], event: str | None = None
                  ) -> Callable[[], None]: ...


@dataclass(frozen=True, slots=True)
class AgentEntry:
    code: str
    name: str
    device: str


def load_agents(engine: Engine) -> list[AgentEntry]:
    """The active agents with a phone (blocking: call on a worker thread)."""
    with engine.connect() as connection:
        rows = connection.execute(select(Agent.code, Agent.name, Agent.device)
                                  .where(Agent.active, Agent.device != "").order_by(Agent.code)).all()
    return [AgentEntry(code, name or "", device or "") for code, name, device in rows]


class Wallboard:
    """The shared snapshot and the pages listening to it (each a ``write(bytes)``)."""

    def __init__(self, ami: QueueSource | None, engine: Engine, clock: IReactorTime, zone: dt.tzinfo,
                 service_level: float, queues: Sequence[str], interval: float = 2.0) -> None:
        self.ami = ami
        self.engine = engine
        self.clock = clock
        self.zone = zone
        self.service_level = service_level
        self.queues = tuple(queues)
        self.interval = interval
        self.pages: list[Callable[[bytes], object]] = []
        self.snapshot: dict[str, Any] | None = None
        #: Counted for tests and /metrics: AMI QueueStatus actions and database reads made.
        self.queue_reads = 0
        self.figure_reads = 0
        self._event_id = 0
        self._figures: dict[str, Any] | None = None
        self._figures_at = float("-inf")
        self._event_at = float("-inf")
        self._agents: list[AgentEntry] = []
        self._agents_at = float("-inf")
        self._busy = False
        self._loop = LoopingCall(self.tick)
        self._loop.clock = clock
        self._unsubscribe: list[Callable[[], None]] = []

    # -- life -----------------------------------------------------------------

    def start(self) -> None:
        if self.ami is not None:
            self._unsubscribe = [self.ami.subscribe(self._queue_event, name) for name in QUEUE_EVENTS]
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    def _queue_event(self, message: AMIMessage) -> None:
        self._event_at = self.clock.seconds()

    def figures_changed(self) -> None:
        """Something this process did (a supervisor's action) changes what the next tick shows."""
        self._event_at = self.clock.seconds()

    # -- pages ----------------------------------------------------------------

    def connect(self, write: Callable[[bytes], object]) -> None:
        """A page listens: it gets the last snapshot at once (if any), then every new one."""
        self.pages.append(write)
        if self.snapshot is not None:
            write(self._encode(self.snapshot))
        else:
            self.tick()

    def disconnect(self, write: Callable[[bytes], object]) -> None:
        if write in self.pages:
            self.pages.remove(write)

    # -- the one computation ------------------------------------------------------

    def tick(self) -> defer.Deferred[None] | None:
        """Compute and push a snapshot, unless no page listens or the last one is still running."""
        if not self.pages or self._busy:
            return None
        self._busy = True
        running = defer.Deferred.fromCoroutine(self.refresh())

        def done(result: object) -> None:
            self._busy = False
            if isinstance(result, Failure):
                log.failure("the wallboard's refresh failed", result)

        return running.addBoth(done)

    async def refresh(self) -> None:
        now = self.clock.seconds()
        live = await self._live()
        if now - self._event_at <= SETTLE_SECONDS or now - self._figures_at >= FIGURES_MAX_AGE:
            moment = dt.datetime.fromtimestamp(now, dt.UTC)
            self.figure_reads += 1
            self._figures = await threads.deferToThread(today_figures, self.engine, moment, self.zone,
                                                        self.service_level)
            self._figures_at = now
        if now - self._agents_at >= DIRECTORY_MAX_AGE:
            self._agents = await threads.deferToThread(load_agents, self.engine)
            self._agents_at = now
        self.snapshot = self.compose(now, live, self._figures or {}, self._agents)
        encoded = self._encode(self.snapshot)
        for write in list(self.pages):
            try:
                write(encoded)
            except Exception:
                log.failure("writing to a supervisor page failed")
                self.disconnect(write)

    async def _live(self) -> QueuesNow | None:
        if self.ami is None or not self.ami.ready:
            return None
        self.queue_reads += 1
        try:
            result = await self.ami.queue_status()
        except AMIError as exc:
            log.warn("QueueStatus failed: {error}", error=exc)
            return None
        return read_queue_status(result.events, self.queues)

    def compose(self, now: float, live: QueuesNow | None, figures: dict[str, Any],
                agents: Sequence[AgentEntry]) -> dict[str, Any]:
        """The snapshot every page gets: queues now and today, agents by state, today's totals."""
        today_by_queue = figures.get("queues", {})
        queues = live.as_json() if live is not None else []
        named = {q["queue"] for q in queues}
        queues += [{"queue": name, "waiting": None, "longest_wait": None, "agents": None, "members": []}
                   for name in self.queues if name not in named]
        for queue in queues:
            queue["today"] = today_by_queue.get(queue["queue"])
        states = live.interfaces() if live is not None else {}
        listed: list[dict[str, Any]] = []
        for agent in agents:
            state = states.pop(agent.device, "logged_out") if live is not None else None
            listed.append({"agent": agent.code, "name": agent.name, "interface": agent.device,
                           "state": state})
        listed += [{"agent": "", "name": interface, "interface": interface, "state": state}
                   for interface, state in sorted(states.items())]
        counts = dict.fromkeys(AGENT_STATES, 0)
        for entry in listed:
            if entry["state"] is not None:
                counts[entry["state"]] += 1
        return {"at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(), "ami": live is not None,
                "service_level_seconds": self.service_level, "queues": queues, "agents": listed,
                "states": counts, "today": figures.get("total"), "followups": figures.get("followups"),
                "satisfaction": figures.get("satisfaction"),
                "complaints_open": figures.get("complaints_open")}

    def metrics(self) -> Iterator[Metric]:
        """Pages open and the work done for all of them, read when Prometheus scrapes."""
        yield GaugeMetricFamily("ivr_wallboard_pages", "supervisor pages listening to the wallboard",
                                value=len(self.pages))
        yield CounterMetricFamily("ivr_wallboard_queue_reads",
                                  "AMI QueueStatus actions sent by the wallboard", value=self.queue_reads)
        yield CounterMetricFamily("ivr_wallboard_figure_reads",
                                  "reads of today's figures by the wallboard", value=self.figure_reads)

    def _encode(self, snapshot: dict[str, Any]) -> bytes:
        self._event_id += 1
        body = json.dumps(snapshot, ensure_ascii=False, separators=(",", ":"))
        return f"id: {self._event_id}\nevent: board\ndata: {body}\n\n".encode()
