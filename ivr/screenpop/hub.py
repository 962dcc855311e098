"""Delivering cards to agents' pages: one stream per connected page, acknowledged delivery.

Every card (and each change of its state) is an event with a number. A page
acknowledges the cards it has shown (``POST /agent/ack``); an unacknowledged
card is sent again every ``retry_interval`` seconds, and after ``max_tries``
it is logged as undelivered and counted. A page that reconnects gets the
agent's current card at once, so a network drop never loses the call in
front of the agent. Streams are per agent: a page only ever receives its own
agent's cards.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ivr.screenpop.cards import Card

__all__ = ["PopHub", "Stream"]

log = Logger(namespace="ivr.screenpop")


@dataclass
class Stream:
    """One connected page: ``send`` writes an event to it."""

    agent: str
    send: Callable[[int, str, dict[str, Any]], None]


@dataclass
class _Pending:
    card: Card
    event_id: int
    tries: int = 0
    timer: IDelayedCall | None = None
    acked: bool = False
    sent_at: list[float] = field(default_factory=list)


class PopHub:
    """Cards by agent, the pages listening, and what is still unacknowledged."""

    def __init__(self, clock: IReactorTime, retry_interval: float = 2.0, max_tries: int = 5) -> None:
        self.clock = clock
        self.retry_interval = retry_interval
        self.max_tries = max_tries
        self.streams: dict[str, list[Stream]] = {}
        self.current: dict[str, _Pending] = {}
        #: The calls each agent had on screen lately (what they may record a disposition for).
        self._seen: dict[str, deque[str]] = {}
        self._next_id = 0
        self.delivered = 0
        self.undelivered = 0
        #: Other instances' hubs (PostgreSQL NOTIFY): see :meth:`forward_to`.
        self._forward: Callable[[Card], None] | None = None

    def forward_to(self, publish: Callable[[Card], None]) -> None:
        """Also send every card popped here to ``publish`` (the bridge to other instances), and
        leave delivery of cards for agents with no page here to the instance that has it."""
        self._forward = publish

    # -- pages --------------------------------------------------------------

    def connect(self, stream: Stream) -> None:
        self.streams.setdefault(stream.agent, []).append(stream)
        pending = self.current.get(stream.agent)
        if pending is None:
            return
        if pending.acked or (pending.timer is not None and pending.timer.active()):
            self._write(stream, pending)  # a page that (re)connects sees the call in front of the agent
        else:
            self._deliver(pending)  # never delivered yet (the page was away): send and retry until acked

    def disconnect(self, stream: Stream) -> None:
        streams = self.streams.get(stream.agent, [])
        if stream in streams:
            streams.remove(stream)

    def ack(self, agent: str, uniqueid: str, state: str) -> bool:
        """A page showed ``uniqueid`` in ``state``; True if that is the agent's current card."""
        pending = self.current.get(agent)
        if pending is None or pending.card.uniqueid != uniqueid or pending.card.state != state:
            return False
        if not pending.acked:
            pending.acked = True
            self.delivered += 1
            if pending.timer is not None and pending.timer.active():
                pending.timer.cancel()
            if pending.sent_at:
                log.debug("card {uniqueid} ({state}) acknowledged by agent {agent} in {ms:.0f} ms",
                          uniqueid=uniqueid, state=state, agent=agent,
                          ms=(self.clock.seconds() - pending.sent_at[0]) * 1000)
        return True

    # -- cards --------------------------------------------------------------

    def pop(self, card: Card, forward: bool = True) -> None:
        """Show ``card`` to its agent now (replacing their current one), here and on other instances."""
        old = self.current.get(card.agent)
        if old is not None and old.timer is not None and old.timer.active():
            old.timer.cancel()
        self._next_id += 1
        pending = _Pending(card, self._next_id)
        self.current[card.agent] = pending
        seen = self._seen.setdefault(card.agent, deque(maxlen=50))
        if card.uniqueid not in seen:
            seen.append(card.uniqueid)
        self._deliver(pending)
        if forward and self._forward is not None:
            self._forward(card)

    def state(self, agent: str, uniqueid: str, state: str) -> None:
        """The call on ``agent``'s card is now ``state`` (answered, ended)."""
        pending = self.current.get(agent)
        if pending is None or pending.card.uniqueid != uniqueid or pending.card.state == state:
            return
        pending.card.state = state
        self.pop(pending.card)

    def cards_seen(self, agent: str) -> Collection[str]:
        return self._seen.get(agent, ())

    def card_of(self, agent: str) -> Card | None:
        pending = self.current.get(agent)
        return pending.card if pending is not None else None

    def _deliver(self, pending: _Pending) -> None:
        if pending.acked or self.current.get(pending.card.agent) is not pending:
            return
        streams = list(self.streams.get(pending.card.agent, []))
        if not streams and self._forward is not None:
            return  # the agent's page may be on another instance: that one delivers and retries
        if pending.tries >= self.max_tries:
            self.undelivered += 1
            log.warn("card {uniqueid} ({state}) for agent {agent} was not acknowledged after {tries} "
                     "tries: undelivered", uniqueid=pending.card.uniqueid, state=pending.card.state,
                     agent=pending.card.agent, tries=pending.tries)
            return
        pending.tries += 1
        pending.sent_at.append(self.clock.seconds())
        for stream in streams:
            self._write(stream, pending)
        pending.timer = self.clock.callLater(self.retry_interval, self._deliver, pending)

    def _write(self, stream: Stream, pending: _Pending) -> None:
        try:
            stream.send(pending.event_id, "card", pending.card.to_json())
        except Exception:
            log.failure("writing to agent {agent}'s page failed", agent=stream.agent)
            self.disconnect(stream)

    def metrics(self) -> Iterator[Metric]:
        """Cards delivered and not, read when Prometheus scrapes."""
        yield CounterMetricFamily("ivr_screenpop_cards_delivered", "cards acknowledged by agents' pages",
                                  value=self.delivered)
        yield CounterMetricFamily("ivr_screenpop_cards_undelivered",
                                  "cards no page acknowledged after every retry", value=self.undelivered)


def sse_event(event_id: int, name: str, data: dict[str, Any]) -> bytes:
    """One Server-Sent Event; JSON never holds a raw newline, so one data line suffices."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"id: {event_id}\nevent: {name}\ndata: {body}\n\n".encode()
