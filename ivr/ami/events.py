"""Subscriptions to AMI events.

Asterisk streams events (``Newchannel``, ``Hangup``, ``AgentCalled`` ...) on
the same connection as the answers to our actions. Events that answer no
action of ours are published here; a subscriber names the event it wants (or
takes them all) and keeps its subscription across reconnections, because the
bus belongs to the client, not to one connection.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, cast

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from ivr.ami.message import AMIMessage

__all__ = ["EventBus", "EventCallback"]

log = Logger(namespace="ivr.ami")

EventCallback = Callable[[AMIMessage], object]


class EventBus:
    """Event subscribers by event name (case-insensitive) or for all events.

    A subscriber that raises, or returns an awaitable that fails, is logged and
    does not stop the others: one broken plugin must not blind the rest.
    """

    def __init__(self) -> None:
        self._by_name: dict[str | None, list[EventCallback]] = {}

    def subscribe(self, callback: EventCallback, event: str | None = None) -> Callable[[], None]:
        """Call ``callback(message)`` for each ``event`` (every event if None); returns an unsubscribe."""
        key = event.lower() if event is not None else None
        self._by_name.setdefault(key, []).append(callback)

        def unsubscribe() -> None:
            callbacks = self._by_name.get(key, [])
            if callback in callbacks:
                callbacks.remove(callback)

        return unsubscribe

    def publish(self, message: AMIMessage) -> None:
        """Hand ``message`` to its event's subscribers, then to those of every event."""
        name = (message.event or "").lower()
        for callback in [*self._by_name.get(name, ()), *self._by_name.get(None, ())]:
            try:
                result = callback(message)
            except Exception:
                log.failure("AMI event subscriber {subscriber!r} failed on {event}",
                            subscriber=callback, event=message.event)
                continue
            if inspect.isawaitable(result):
                d: defer.Deferred[Any] = defer.ensureDeferred(cast(Any, result))
                d.addErrback(self._async_failed, callback, message.event)

    @staticmethod
    def _async_failed(failure: Failure, callback: EventCallback, event: str | None) -> None:
        log.failure("AMI event subscriber {subscriber!r} failed on {event}", failure,
                    subscriber=callback, event=event)
