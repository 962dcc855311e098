"""The AMI client service: one logged-in connection kept up while ivr runs.

Reconnecting is Twisted's :class:`~twisted.application.internet.ClientService`
with a :func:`~twisted.application.internet.backoffPolicy` curve. Three things
sit on top of it, each for a reason measured against Twisted 26.10:

* Login is not ClientService's ``prepareConnection``. When a connection is
  lost while that Deferred is pending (Asterisk refuses the login and hangs
  up, or restarts mid-login) the Deferred fails first, the service moves to
  Waiting, and then its proxy reports the loss: automat raises
  ``NoTransition`` for ``_clientDisconnected`` in Waiting. So the protocol
  logs itself in, as before, and the client tracks ``ready`` on its own.
* ClientService forgets its failure count as soon as a TCP connection is
  made; an Asterisk that accepts and then drops (a crash loop, a refused
  login) would be retried every 0.5 s. The client counts failures itself and
  only forgets them once a login has stayed up ``stable_after`` seconds.
* ``backoffPolicy`` adds its jitter on top of ``maxDelay``; :func:`capped_backoff`
  takes a fraction off instead, so no delay is ever over the cap and many ivr
  instances still do not all knock at once after an Asterisk restart.

Event subscribers belong to the client and outlive reconnections; ActionIDs
stay unique across connections.
"""

from __future__ import annotations

import itertools
import random
import secrets
from collections.abc import Callable

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import (
    IAddress,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ivr.ami.actions import ManagerActions
from ivr.ami.events import EventBus, EventCallback
from ivr.ami.message import ActionResult, Headers, build_action
from ivr.ami.protocol import AMICredentials, AMILimits, AMIProtocol
from ivr.errors import AMIDisconnected, AMIError

__all__ = ["AMIClient", "capped_backoff"]

log = Logger(namespace="ivr.ami")

_DEFAULT_LIMITS = AMILimits()


def capped_backoff(initial: float = 0.5, maximum: float = 60.0, factor: float = 2.0, jitter: float = 0.25,
                   rand: Callable[[], float] = random.random) -> Callable[[int], float]:
    """A ClientService retry policy: ``initial * factor**(n-1)`` capped at ``maximum``, less up to ``jitter``.

    The curve and the cap are :func:`backoffPolicy`'s; the jitter is a fraction
    of the delay taken off (never added), so none is ever over ``maximum``.
    """
    curve = backoffPolicy(initialDelay=initial / factor, maxDelay=maximum, factor=factor, jitter=lambda: 0.0)

    def policy(failures: int) -> float:
        return curve(max(failures, 1)) * (1.0 - jitter * min(max(rand(), 0.0), 1.0))

    return policy


@implementer(IStreamClientEndpoint)
class _WatchedEndpoint:
    """The real endpoint, telling the client why an attempt failed (ClientService keeps that to itself)."""

    def __init__(self, endpoint: IStreamClientEndpoint, failed: Callable[[Failure], None]) -> None:
        self._endpoint = endpoint
        self._failed = failed

    def connect(self, protocolFactory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        connecting: defer.Deferred[IProtocol] = self._endpoint.connect(protocolFactory)
        return connecting.addErrback(self._note)

    def _note(self, failure: Failure) -> Failure:
        self._failed(failure)
        return failure


class _AMIFactory(Factory):
    noisy = False

    def __init__(self, client: AMIClient) -> None:
        self.client = client

    def buildProtocol(self, addr: IAddress) -> AMIProtocol:  # type: ignore[override]
        return self.client._build_protocol()


class AMIClient(Service, ManagerActions):
    """Keeps one logged-in AMI connection up while the service runs.

    Connects through ``endpoint`` (``TCP4ClientEndpoint(reactor, "127.0.0.1", 5038)``)
    and reconnects after any failure or loss, waiting ``retry_policy(failures)``
    seconds (:func:`capped_backoff` by default); the count of failures only
    resets once a connection has stayed logged in for ``stable_after`` seconds,
    so a flapping Asterisk is not hammered. Actions sent while no connection is
    up fail at once with :class:`~ivr.errors.AMIDisconnected` (callers decide
    whether to retry); actions sent while logging in wait for the login.
    Subscribers outlive reconnections.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, clock: IReactorTime, credentials: AMICredentials,
                 *, limits: AMILimits = _DEFAULT_LIMITS, retry_policy: Callable[[int], float] | None = None,
                 stable_after: float = 30.0, id_prefix: str | None = None) -> None:
        build_action("Login", credentials.login_headers())  # a bad secret fails now, not at each connect
        self.endpoint = endpoint
        self.clock = clock
        self.credentials = credentials
        self.limits = limits
        self.retry_policy = retry_policy if retry_policy is not None else capped_backoff()
        self.stable_after = stable_after
        self.events = EventBus()
        prefix = id_prefix or secrets.token_hex(4)
        counter = itertools.count(1)
        self._next_action_id = lambda: f"{prefix}-{next(counter)}"
        self.protocol: AMIProtocol | None = None
        self.failures = 0
        self._down_reason = "not connected"
        self._ready_since: float | None = None
        self._ready_waiters: list[defer.Deferred[None]] = []
        self._connection = ClientService(_WatchedEndpoint(endpoint, self._connect_failed), _AMIFactory(self),
                                         retryPolicy=self._next_delay, clock=clock)

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
        self._connection.startService()

    def stopService(self) -> defer.Deferred[None]:
        """Stop reconnecting; pending actions and ready waiters fail now, the Deferred fires once closed."""
        super().stopService()  # type: ignore[no-untyped-call]
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.errback(AMIDisconnected("AMI client stopped"))
        protocol = self.protocol
        if protocol is not None and not protocol.closed:
            protocol.abort(AMIDisconnected("AMI client stopped"))
        return self._connection.stopService()

    def _build_protocol(self) -> AMIProtocol:
        protocol = AMIProtocol(self.clock, self.credentials, limits=self.limits, events=self.events,
                               next_action_id=self._next_action_id, on_ready=self._protocol_ready,
                               on_closed=self._protocol_closed)
        self.protocol = protocol
        return protocol

    def _connect_failed(self, failure: Failure) -> None:
        if self.running:
            self.protocol = None
            self._down_reason = f"connect failed: {failure.getErrorMessage()}"

    def _protocol_ready(self, protocol: AMIProtocol) -> None:
        self._ready_since = self.clock.seconds()
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _protocol_closed(self, protocol: AMIProtocol, error: AMIError) -> None:
        """Runs before ClientService hears of the loss, so :meth:`_next_delay` sees the reset."""
        if self.protocol is not protocol:
            return
        self.protocol = None
        since, self._ready_since = self._ready_since, None
        if since is not None and self.clock.seconds() - since >= self.stable_after:
            self.failures = 0
        self._down_reason = str(error)

    def _next_delay(self, attempt: int) -> float:
        """ClientService's retry policy, fed our own count of failures instead of its ``attempt``."""
        self.failures += 1
        delay = self.retry_policy(self.failures)
        log.warn("AMI connection down ({reason}); reconnecting in {delay:.1f}s (attempt {failures})",
                 reason=self._down_reason, delay=delay, failures=self.failures)
        return delay
