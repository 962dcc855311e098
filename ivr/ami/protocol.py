"""One AMI connection: greeting, login, then actions and events on the same stream.

Asterisk greets with ``Asterisk Call Manager/x.y.z`` and then both sides send
messages. We log in before anything else. Every action carries a unique
``ActionID`` that Asterisk copies into its response, into the events of a list
(``EventList: start`` .. ``EventList: Complete``) and into an async Originate's
``OriginateResponse``; that is how answers find their questions while
unrelated events stream past to subscribers. A broken or hostile peer is
bounded by :class:`AMILimits`, and a silent one is found by keepalive Pings.
"""

from __future__ import annotations

import itertools
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ivr.ami.actions import ManagerActions
from ivr.ami.events import EventBus
from ivr.ami.message import ActionResult, AMIMessage, Headers, HeaderValue, build_action
from ivr.errors import (
    AMIActionError,
    AMIDisconnected,
    AMIError,
    AMILimitExceeded,
    AMILoginFailed,
    AMIProtocolError,
    AMITimeout,
)

__all__ = ["GREETING_PREFIX", "AMICredentials", "AMILimits", "AMIProtocol"]

log = Logger(namespace="ivr.ami")

GREETING_PREFIX = "Asterisk Call Manager/"


@dataclass(frozen=True, slots=True)
class AMILimits:
    """Bounds that keep a broken or hostile peer from eating memory, and deadlines."""

    #: Longest line accepted from Asterisk (long Variable lists, Command output).
    max_line_bytes: int = 16384
    #: Most headers in one message (CoreShowChannel has about 20).
    max_headers: int = 512
    #: Most bytes in one message.
    max_message_bytes: int = 262144
    #: Actions sent (or queued while logging in) and not yet answered.
    max_pending: int = 512
    #: Most events one list action (QueueStatus, CoreShowChannels ...) may collect.
    max_list_events: int = 20000
    #: Default deadline for one action, in seconds.
    action_timeout: float = 10.0
    #: Seconds from TCP connect to a successful login (greeting included).
    login_timeout: float = 10.0
    #: Seconds between keepalive Pings once logged in (0 turns them off).
    keepalive_interval: float = 20.0
    #: Seconds a keepalive Ping may take before the connection is given up as dead.
    keepalive_timeout: float = 10.0
    #: How many ActionIDs of abandoned (timed-out, cancelled) actions are remembered,
    #: so their late answers are dropped instead of reaching subscribers.
    remember_abandoned: int = 4096


@dataclass(frozen=True)
class AMICredentials:
    """An AMI user from manager.conf. ``events`` is the Login ``Events`` mask."""

    username: str
    secret: str = field(repr=False)
    events: str = "on"

    def login_headers(self) -> list[tuple[str, HeaderValue]]:
        return [("Username", self.username), ("Secret", self.secret), ("Events", self.events)]


class _Pending:
    """One action sent (or queued) and not yet fully answered."""

    __slots__ = ("action", "action_id", "deferred", "timer", "completion_event", "response",
                 "events", "early", "final", "collecting")

    def __init__(self, action: str, action_id: str, completion_event: str | None,
                 canceller: Callable[[_Pending], None]) -> None:
        self.action = action
        self.action_id = action_id
        self.deferred: defer.Deferred[ActionResult] = defer.Deferred(canceller=lambda _: canceller(self))
        self.timer: IDelayedCall | None = None
        self.completion_event = completion_event.lower() if completion_event else None
        self.response: AMIMessage | None = None
        self.events: list[AMIMessage] = []
        #: Events with our ActionID that came before the response (a race Asterisk allows).
        self.early: list[AMIMessage] = []
        self.final: AMIMessage | None = None
        self.collecting = False


class AMIProtocol(LineOnlyReceiver, ManagerActions):
    """One AMI connection: greeting, login, then actions and events.

    Actions sent before the login completes are queued and written after it
    succeeds. Each action's Deferred fires with an :class:`ActionResult` or
    fails with an :class:`~ivr.errors.AMIError`; when the connection goes,
    every pending action fails at once with :class:`~ivr.errors.AMIDisconnected`.
    """

    delimiter = b"\n"

    def __init__(self, clock: IReactorTime, credentials: AMICredentials, *,
                 limits: AMILimits = AMILimits(), events: EventBus | None = None,
                 next_action_id: Callable[[], str] | None = None,
                 on_ready: Callable[[AMIProtocol], object] | None = None,
                 on_closed: Callable[[AMIProtocol, AMIError], object] | None = None) -> None:
        self.clock = clock
        self.credentials = credentials
        self.limits = limits
        self.MAX_LENGTH = limits.max_line_bytes
        self.events = events if events is not None else EventBus()
        if next_action_id is None:
            prefix, counter = secrets.token_hex(4), itertools.count(1)

            def next_action_id() -> str:
                return f"{prefix}-{next(counter)}"

        self._next_action_id = next_action_id
        self._on_ready = on_ready
        self._on_closed = on_closed
        self.greeting: str | None = None
        self.ready = False
        self.closed = False
        self.close_reason: AMIError | None = None
        self._pending: dict[str, _Pending] = {}
        self._queued: list[tuple[_Pending, bytes]] = []
        self._abandoned: OrderedDict[str, None] = OrderedDict()
        self._headers: list[tuple[str, str]] = []
        self._message_bytes = 0
        self._login_timer: IDelayedCall | None = None
        self._keepalive_timer: IDelayedCall | None = None
        self._ready_waiters: list[defer.Deferred[None]] = []
        self._close_waiters: list[defer.Deferred[None]] = []

    # -- connection -------------------------------------------------------

    def connectionMade(self) -> None:
        self._login_timer = self.clock.callLater(self.limits.login_timeout, self._login_timed_out)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed = True
        self.ready = False
        for timer in (self._login_timer, self._keepalive_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._login_timer = self._keepalive_timer = None
        error = self.close_reason or AMIDisconnected("connection to Asterisk lost")
        self._fail_all(error)
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.errback(error if isinstance(error, AMIDisconnected) else AMIDisconnected(str(error)))
        if self._on_closed is not None:
            self._on_closed(self, error)
        closers, self._close_waiters = self._close_waiters, []
        for closer in closers:
            closer.callback(None)

    def when_ready(self) -> defer.Deferred[None]:
        """Fires once logged in; fails with AMIDisconnected if the connection goes first."""
        if self.ready:
            return defer.succeed(None)
        if self.closed:
            return defer.fail(AMIDisconnected("connection to Asterisk closed"))
        waiter: defer.Deferred[None] = defer.Deferred()
        self._ready_waiters.append(waiter)
        return waiter

    def when_closed(self) -> defer.Deferred[None]:
        if self.closed:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._close_waiters.append(waiter)
        return waiter

    def abort(self, error: AMIError) -> None:
        """Close the connection because of ``error``; pending actions fail now."""
        if self.close_reason is None:
            self.close_reason = error
        self.ready = False
        self._fail_all(error)
        if self.transport is not None and not self.closed:
            self.transport.loseConnection()

    def lineLengthExceeded(self, line: bytes) -> None:
        log.warn("Asterisk sent an AMI line over {limit} bytes; closing the connection",
                 limit=self.limits.max_line_bytes)
        self.abort(AMIProtocolError(f"line longer than {self.limits.max_line_bytes} bytes"))

    # -- incoming ---------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        if self.close_reason is not None:
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        if self.greeting is None:
            self._greeting_line(line)
            return
        if not line:
            if self._headers:
                message = AMIMessage(self._headers)
                self._headers = []
                self._message_bytes = 0
                self._dispatch(message)
            return
        self._message_bytes += len(line) + 2
        limits = self.limits
        if len(self._headers) >= limits.max_headers or self._message_bytes > limits.max_message_bytes:
            log.warn("Asterisk sent an AMI message over {headers} headers or {size} bytes; closing",
                     headers=self.limits.max_headers, size=self.limits.max_message_bytes)
            self.abort(AMIProtocolError("AMI message too large"))
            return
        name, sep, value = line.partition(b":")
        if not sep:
            log.debug("ignoring AMI line without a colon: {line!r}", line=line[:80])
            return
        if value.startswith(b" "):
            value = value[1:]
        self._headers.append((name.decode("utf-8", "replace").strip(), value.decode("utf-8", "replace")))

    def _greeting_line(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        if not text.startswith(GREETING_PREFIX):
            log.warn("peer is not an Asterisk manager (greeting {greeting!r}); closing", greeting=text[:80])
            self.abort(AMIProtocolError(f"not an AMI greeting: {text[:80]!r}"))
            return
        self.greeting = text
        try:
            login = self._submit("Login", self.credentials.login_headers(), timeout=0, before_login=True)
        except AMIError as exc:
            self.abort(exc)
            return
        login.addCallbacks(self._logged_in, self._login_refused)

    def _logged_in(self, result: ActionResult) -> None:
        if self._login_timer is not None and self._login_timer.active():
            self._login_timer.cancel()
        self._login_timer = None
        self.ready = True
        log.info("AMI logged in as {user} ({greeting})", user=self.credentials.username,
                 greeting=self.greeting)
        queued, self._queued = self._queued, []
        for pending, data in queued:
            if pending.action_id in self._pending:  # not timed out or cancelled meanwhile
                self.transport.write(data)  # type: ignore[union-attr]
        self._schedule_keepalive()
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        if self._on_ready is not None and not self.closed:
            self._on_ready(self)

    def _login_refused(self, failure: Failure) -> None:
        error = failure.value
        if isinstance(error, AMIActionError):
            log.error("Asterisk refused the AMI login as {user}: {message}",
                      user=self.credentials.username, message=error.message)
            self.abort(AMILoginFailed("Login", error.message))
        elif isinstance(error, AMIError) and self.close_reason is None:
            self.abort(error)

    def _login_timed_out(self) -> None:
        self._login_timer = None
        log.warn("no AMI greeting and login within {timeout}s; closing", timeout=self.limits.login_timeout)
        self.abort(AMITimeout(f"AMI login not completed within {self.limits.login_timeout}s"))

    def _dispatch(self, message: AMIMessage) -> None:
        # An event can carry a Response header too (OriginateResponse): Event decides.
        if "event" in message:
            self._event(message)
        elif "response" in message:
            self._response(message)
        else:
            log.debug("ignoring AMI message with neither Response nor Event")

    def _response(self, message: AMIMessage) -> None:
        action_id = message.action_id
        pending = self._pending.get(action_id) if action_id is not None else None
        if pending is None:
            if action_id not in self._abandoned:
                log.warn("AMI response for unknown ActionID {action_id!r} dropped",
                         action_id=(action_id or "")[:64])
            return
        if pending.response is not None:
            log.warn("second AMI response for {action} dropped", action=pending.action)
            return
        if (message.response or "").lower() == "error":
            self._fail(pending, AMIActionError(pending.action, message.get("Message", "")))
            return
        pending.response = message
        early, pending.early = pending.early, []
        if (message.get("EventList") or "").lower() == "start":
            pending.collecting = True
            for event in early:
                if pending.action_id in self._pending:
                    self._list_event(pending, event)
                else:
                    self.events.publish(event)
            return
        if pending.completion_event is None or pending.final is not None:
            self._finish(pending)
        for event in early:
            self.events.publish(event)

    def _event(self, message: AMIMessage) -> None:
        action_id = message.action_id
        pending = self._pending.get(action_id) if action_id is not None else None
        if pending is None:
            if action_id is None or action_id not in self._abandoned:
                self.events.publish(message)
            return
        if pending.completion_event is not None and (message.event or "").lower() == pending.completion_event:
            pending.final = message
            if pending.response is not None:
                self._finish(pending)
            self.events.publish(message)
        elif pending.response is None:
            if len(pending.early) >= self.limits.max_list_events:
                self._overflow(pending)
            else:
                pending.early.append(message)
        elif pending.collecting:
            self._list_event(pending, message)
        else:
            self.events.publish(message)

    def _list_event(self, pending: _Pending, message: AMIMessage) -> None:
        marker = (message.get("EventList") or "").lower()
        if marker in ("complete", "cancelled"):
            pending.final = message
            self._finish(pending)
        elif len(pending.events) >= self.limits.max_list_events:
            self._overflow(pending)
        else:
            pending.events.append(message)

    def _overflow(self, pending: _Pending) -> None:
        log.warn("AMI {action} sent more than {limit} events; giving up on it",
                 action=pending.action, limit=self.limits.max_list_events)
        self._abandon(pending)
        pending.deferred.errback(AMILimitExceeded(
            f"{pending.action} returned more than {self.limits.max_list_events} events"))

    # -- actions ----------------------------------------------------------

    def send_action(self, action: str, headers: Headers = (), *, timeout: float | None = None,
                    completion_event: str | None = None) -> defer.Deferred[ActionResult]:
        """Send ``action``; the Deferred fires with its complete answer.

        A list action (``EventList: start``) completes with all its events;
        with ``completion_event`` the action completes with that follow-up
        event (Originate's ``OriginateResponse``). ``timeout`` defaults to
        the limits' action_timeout (0 or less: no deadline).
        """
        if self.closed or self.close_reason is not None:
            return defer.fail(AMIDisconnected("connection to Asterisk closed"))
        try:
            return self._submit(action, headers, timeout=timeout, completion_event=completion_event)
        except AMIError as exc:
            return defer.fail(exc)

    def _submit(self, action: str, headers: Headers, *, timeout: float | None,
                completion_event: str | None = None, before_login: bool = False
                ) -> defer.Deferred[ActionResult]:
        if len(self._pending) >= self.limits.max_pending:
            raise AMILimitExceeded(f"more than {self.limits.max_pending} AMI actions in flight")
        action_id = self._next_action_id()
        data = build_action(action, headers, action_id)
        pending = _Pending(action, action_id, completion_event, self._abandon)
        delay = self.limits.action_timeout if timeout is None else timeout
        if delay > 0:
            pending.timer = self.clock.callLater(delay, self._timed_out, pending, delay)
        self._pending[action_id] = pending
        if self.ready or before_login:
            self.transport.write(data)  # type: ignore[union-attr]
        else:
            self._queued.append((pending, data))
        return pending.deferred

    def _timed_out(self, pending: _Pending, delay: float) -> None:
        pending.timer = None
        log.warn("AMI {action} got no complete answer in {delay}s", action=pending.action, delay=delay)
        self._abandon(pending)
        pending.deferred.errback(AMITimeout(f"AMI {pending.action} got no complete answer within {delay}s"))

    def _abandon(self, pending: _Pending) -> None:
        """Forget ``pending`` but remember its ActionID, so late answers are dropped quietly."""
        self._pending.pop(pending.action_id, None)
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        self._abandoned[pending.action_id] = None
        while len(self._abandoned) > self.limits.remember_abandoned:
            self._abandoned.popitem(last=False)

    def _finish(self, pending: _Pending) -> None:
        self._pending.pop(pending.action_id, None)
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        assert pending.response is not None
        pending.deferred.callback(ActionResult(pending.response, tuple(pending.events), pending.final))

    def _fail(self, pending: _Pending, error: AMIError) -> None:
        self._pending.pop(pending.action_id, None)
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.timer = None
        pending.deferred.errback(error)

    def _fail_all(self, error: AMIError) -> None:
        self._queued = []
        if not self._pending:
            return
        if not isinstance(error, AMIDisconnected):
            error = AMIDisconnected(f"AMI connection closed: {error}")
        for pending in list(self._pending.values()):
            self._fail(pending, error)

    # -- keepalive --------------------------------------------------------

    def _schedule_keepalive(self) -> None:
        if self.limits.keepalive_interval > 0 and not self.closed:
            self._keepalive_timer = self.clock.callLater(self.limits.keepalive_interval, self._keepalive)

    def _keepalive(self) -> None:
        self._keepalive_timer = None
        d = self.send_action("Ping", timeout=self.limits.keepalive_timeout)
        d.addCallbacks(lambda _: self._schedule_keepalive(), self._keepalive_failed)

    def _keepalive_failed(self, failure: Failure) -> None:
        if isinstance(failure.value, AMITimeout):
            log.warn("AMI keepalive Ping got no answer in {timeout}s; dropping the connection",
                     timeout=self.limits.keepalive_timeout)
            self.abort(AMITimeout("keepalive Ping not answered"))
        elif not isinstance(failure.value, AMIDisconnected):
            log.failure("AMI keepalive Ping failed", failure)
            self._schedule_keepalive()
