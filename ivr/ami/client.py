"""The AMI client service: one logged-in connection kept up while ivr runs.

It reconnects after any failure or loss with capped, jittered backoff, so many
ivr instances do not all knock at once after an Asterisk restart. Event
subscribers belong to the client and outlive reconnections; ActionIDs stay
unique across connections.
"""

from __future__ import annotations

import itertools
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from ivr.ami.actions import ManagerActions
from ivr.ami.events import EventBus, EventCallback
from ivr.ami.message import ActionResult, Headers, build_action
from ivr.ami.protocol import AMICredentials, AMILimits, AMIProtocol
from ivr.errors import AMIDisconnected, AMIError

__all__ = ["AMIClient", "Backoff"]

log = Logger(namespace="ivr.ami")

_DEFAULT_LIMITS = AMILimits()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: ``initial * factor**(n-1)`` capped at ``maximum``, less up to ``jitter`` of it.

    Jitter only shortens a delay, so none is ever over ``maximum`` (60 s by
    default), and many ivr instances do not all knock at once after a restart.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 60.0
    jitter: float = 0.25

    def delay(self, failures: int, rand: float) -> float:
        """Seconds to wait after ``failures`` consecutive failures (>= 1); ``rand`` in [0, 1)."""
        exponent = min(max(failures - 1, 0), 64)
        base = min(self.maximum, self.initial * self.factor ** exponent)
        return base * (1.0 - self.jitter * min(max(rand, 0.0), 1.0))


class _AMIFactory(Factory):
    noisy = False

    def __init__(self, client: AMIClient) -> None:
        self.client = client

    def buildProtocol(self, addr: IAddress) -> AMIProtocol:  # type: ignore[override]
        return self.client._build_protocol()


class AMIClient(Service, ManagerActions):
    """Keeps one logged-in AMI connection up while the service runs.

    Connects through ``endpoint`` (``TCP4ClientEndpoint(reactor, "127.0.0.1", 5038)``)
    and reconnects after any failure or loss with :class:`Backoff` delays; the
    count of failures only resets once a connection has stayed up for
    ``stable_after`` seconds, so a flapping Asterisk is not hammered. Actions
    sent while no connection is up fail at once with
    :class:`~ivr.errors.AMIDisconnected` (callers decide whether to retry);
    actions sent while logging in wait for the login. Subscribers outlive
    reconnections.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, clock: IReactorTime, credentials: AMICredentials,
                 *, limits: AMILimits = _DEFAULT_LIMITS, backoff: Backoff = Backoff(),
                 stable_after: float = 30.0, rand: Callable[[], float] = random.random,
                 id_prefix: str | None = None) -> None:
        build_action("Login", credentials.login_headers())  # a bad secret fails now, not at each connect
        self.endpoint = endpoint
        self.clock = clock
        self.credentials = credentials
        self.limits = limits
        self.backoff = backoff
        self.stable_after = stable_after
        self._rand = rand
        self.events = EventBus()
        prefix = id_prefix or secrets.token_hex(4)
        counter = itertools.count(1)
        self._next_action_id = lambda: f"{prefix}-{next(counter)}"
        self.protocol: AMIProtocol | None = None
        self.failures = 0
        self._connecting: defer.Deferred[Any] | None = None
        self._retry: IDelayedCall | None = None
        self._ready_since: float | None = None
        self._ready_waiters: list[defer.Deferred[None]] = []

    def __repr__(self) -> str:
        return f"<AMIClient user={self.credentials.username!r} ready={self.ready}>"

    @property
    def connected(self) -> bool:
        """A TCP connection to Asterisk is open (it may still be logging in)."""
        return self.protocol is not None and not self.protocol.closed

    @property
    def ready(self) -> bool:
        """Logged in: actions go out at once."""
        return self.protocol is not None and self.protocol.ready

    def when_ready(self) -> defer.Deferred[None]:
        """Fires when logged in (now, or after the next successful login)."""
        if self.ready:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred(canceller=self._forget_waiter)
        self._ready_waiters.append(waiter)
        return waiter

    def _forget_waiter(self, waiter: defer.Deferred[None]) -> None:
        if waiter in self._ready_waiters:
            self._ready_waiters.remove(waiter)

    def subscribe(self, callback: EventCallback, event: str | None = None) -> Callable[[], None]:
        """Call ``callback(message)`` for each ``event`` (all if None); returns an unsubscribe."""
        return self.events.subscribe(callback, event)

    def send_action(self, action: str, headers: Headers = (), *, timeout: float | None = None,
                    completion_event: str | None = None) -> defer.Deferred[ActionResult]:
        protocol = self.protocol
        if protocol is None or protocol.closed or protocol.close_reason is not None:
            return defer.fail(AMIDisconnected("not connected to Asterisk"))
        return protocol.send_action(action, headers, timeout=timeout, completion_event=completion_event)

    # -- service ----------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._connect()

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._connecting is not None:
            self._connecting.cancel()
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.errback(AMIDisconnected("AMI client stopped"))
        protocol = self.protocol
        if protocol is None or protocol.closed:
            return defer.succeed(None)
        closed = protocol.when_closed()
        protocol.abort(AMIDisconnected("AMI client stopped"))
        return closed

    def _connect(self) -> None:
        self._retry = None
        if not self.running:
            return
        connecting = self.endpoint.connect(_AMIFactory(self))
        self._connecting = connecting
        connecting.addCallbacks(self._connected, self._connect_failed)

    def _connected(self, protocol: object) -> None:
        self._connecting = None

    def _connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        if not self.running:
            return
        self.protocol = None
        self._schedule_retry(f"connect failed: {failure.getErrorMessage()}")

    def _build_protocol(self) -> AMIProtocol:
        protocol = AMIProtocol(self.clock, self.credentials, limits=self.limits, events=self.events,
                               next_action_id=self._next_action_id, on_ready=self._protocol_ready,
                               on_closed=self._protocol_closed)
        self.protocol = protocol
        return protocol

    def _protocol_ready(self, protocol: AMIProtocol) -> None:
        self._ready_since = self.clock.seconds()
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _protocol_closed(self, protocol: AMIProtocol, error: AMIError) -> None:
        if self.protocol is not protocol:
            return
        self.protocol = None
        since, self._ready_since = self._ready_since, None
        if since is not None and self.clock.seconds() - since >= self.stable_after:
            self.failures = 0
        if self.running:
            self._schedule_retry(str(error))

    def _schedule_retry(self, reason: str) -> None:
        if self._retry is not None:
            return
        self.failures += 1
        delay = self.backoff.delay(self.failures, self._rand())
        log.warn("AMI connection down ({reason}); reconnecting in {delay:.1f}s (attempt {failures})",
                 reason=reason, delay=delay, failures=self.failures)
        self._retry = self.clock.callLater(delay, self._connect)
