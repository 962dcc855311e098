"""The Asterisk Manager Interface (AMI): one TCP connection, many actions and events.

Asterisk greets with ``Asterisk Call Manager/x.y.z`` and then both sides send
messages: ``Key: Value`` lines ending in CRLF, an empty line ending each
message. We log in before anything else. Every action carries a unique
``ActionID`` that Asterisk copies into its response, into the events of a list
(``EventList: start`` .. ``EventList: Complete``) and into an async Originate's
``OriginateResponse``; that is how answers find their questions while
unrelated events stream past to subscribers.

Every header we send is checked: a CR or LF in a value would end the line and
let user data (a caller name, a number) write headers or whole actions of its
own, so such values are refused, never stripped. :class:`AMIClient` keeps one
connection up, reconnecting with capped backoff. This module knows nothing
about agents or customers.
"""

from __future__ import annotations

import enum
import inspect
import itertools
import random
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ivr.errors import (
    AMIActionError,
    AMIDisconnected,
    AMIError,
    AMILimitExceeded,
    AMILoginFailed,
    AMIProtocolError,
    AMITimeout,
    UnsafeHeader,
)

__all__ = [
    "AMIClient",
    "AMICredentials",
    "AMILimits",
    "AMIMessage",
    "AMIProtocol",
    "ActionResult",
    "Backoff",
    "EventBus",
    "OriginateOutcome",
    "OriginateResult",
    "build_action",
    "format_caller_id",
    "originate_result",
    "variable_header",
]

log = Logger(namespace="ivr.ami")

GREETING_PREFIX = "Asterisk Call Manager/"
#: Asterisk reads one action line into a 1025-byte buffer (manager.c ``inbuf``) and
#: discards the whole action when a line does not fit, so longer lines are refused here.
MAX_HEADER_LINE_BYTES = 1024
#: Asterisk keeps 128 headers of an action and silently drops the rest.
MAX_ACTION_HEADERS = 128
#: Longest Originate ``Timeout`` accepted, in seconds (a ringing phone, not a day).
MAX_ORIGINATE_SECONDS = 600.0

#: Header names are plain words: no ':' (it would end the name), no spaces.
_HEADER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
#: Channel variable names: optional ``_``/``__`` inheritance prefix, then a word.
#: No parentheses, so a "variable" can never be a dialplan function such as SHELL().
_VARIABLE_NAME = re.compile(r"_{0,2}[A-Za-z][A-Za-z0-9_]{0,79}\Z")
#: C0 and C1 control characters, DEL, and the Unicode line/paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: Asterisk splits a ``Variable:`` value with ast_app_separate_args(): ',' separates
#: name=value items, '"' toggles quoting and '\\' escapes; brackets nest. Each of these
#: is sent escaped so a value arrives as exactly one item, unchanged.
_VARIABLE_ESCAPES = str.maketrans({c: "\\" + c for c in '\\",()[]'})
#: A caller ID number: what phones dial and display, nothing Asterisk parses.
_CALLER_NUMBER = re.compile(r"\+?[0-9*#]{0,32}\Z")
#: Characters that change how Asterisk splits ``"name" <number>``.
_CALLER_NAME_SPECIALS = frozenset('"<>\\')

HeaderValue = str | int
Headers = Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]]
EventCallback = Callable[["AMIMessage"], object]


# -- messages ---------------------------------------------------------------


class AMIMessage(Mapping[str, str]):
    """One message from Asterisk: its headers in order.

    Lookup is case-insensitive and gives the first value of a key (Asterisk
    spells ``ActionID`` and ``Uniqueid`` differently across versions);
    :meth:`get_all` gives every value of a repeated key such as ``Output``.
    """

    __slots__ = ("headers", "_first")

    def __init__(self, headers: Iterable[tuple[str, str]]) -> None:
        self.headers: tuple[tuple[str, str], ...] = tuple(headers)
        first: dict[str, str] = {}
        for key, value in self.headers:
            first.setdefault(key.lower(), value)
        self._first = first

    def __getitem__(self, key: str) -> str:
        return self._first[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def __repr__(self) -> str:
        return f"AMIMessage({list(self.headers)!r})"

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key``, in order."""
        wanted = key.lower()
        return [value for name, value in self.headers if name.lower() == wanted]

    @property
    def event(self) -> str | None:
        return self._first.get("event")

    @property
    def response(self) -> str | None:
        return self._first.get("response")

    @property
    def action_id(self) -> str | None:
        return self._first.get("actionid")


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an action got: its response and, for a list action, the events in between.

    ``complete`` is the event that closed a list (``...Complete``, with its
    ``ListItems``) or the follow-up event an Originate waits for.
    """

    response: AMIMessage
    events: tuple[AMIMessage, ...] = ()
    complete: AMIMessage | None = None


class OriginateOutcome(enum.Enum):
    """How an originated call ended up, from ``OriginateResponse``."""

    ANSWERED = "answered"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    CONGESTION = "congestion"
    FAILED = "failed"


#: OriginateResponse ``Reason`` is the last control frame Asterisk read from the
#: new channel (AST_CONTROL_* in frame.h), 0 when it could not even be placed.
_ORIGINATE_REASONS: dict[int, OriginateOutcome] = {
    0: OriginateOutcome.FAILED,  # no such channel/extension, unreachable
    1: OriginateOutcome.NO_ANSWER,  # AST_CONTROL_HANGUP: hung up / declined before answering
    3: OriginateOutcome.NO_ANSWER,  # AST_CONTROL_RINGING: rang until the timeout
    4: OriginateOutcome.ANSWERED,  # AST_CONTROL_ANSWER
    5: OriginateOutcome.BUSY,  # AST_CONTROL_BUSY
    8: OriginateOutcome.CONGESTION,  # AST_CONTROL_CONGESTION (circuits busy, no route)
}


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """The outcome of an async Originate; ``reason_code`` is Asterisk's raw ``Reason``."""

    outcome: OriginateOutcome
    reason_code: int | None
    channel: str
    uniqueid: str
    event: AMIMessage

    @property
    def answered(self) -> bool:
        return self.outcome is OriginateOutcome.ANSWERED


def originate_result(event: AMIMessage) -> OriginateResult:
    """Read an ``OriginateResponse`` event."""
    reason = event.get("Reason", "").strip()
    code = int(reason) if reason.isdigit() and len(reason) < 6 else None
    if (event.get("Response") or "").lower() == "success":
        outcome = OriginateOutcome.ANSWERED
    else:
        outcome = _ORIGINATE_REASONS.get(code, OriginateOutcome.FAILED) if code is not None \
            else OriginateOutcome.FAILED
        if outcome is OriginateOutcome.ANSWERED:  # "Failure" with reason 4: the Response wins
            outcome = OriginateOutcome.FAILED
    return OriginateResult(outcome, code, event.get("Channel", ""), event.get("Uniqueid", ""), event)


# -- building actions -------------------------------------------------------


def _header_line(name: str, value: HeaderValue) -> bytes:
    if type(name) is not str or _HEADER_NAME.match(name) is None:
        raise UnsafeHeader(f"AMI header name {str(name)[:40]!r} must be a plain word (letters, digits, _ -)")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UnsafeHeader(f"AMI header {name} must be str or int, not {type(value).__name__}")
    text = str(int(value)) if isinstance(value, int) else str(value)
    bad = _CONTROL.search(text)
    if bad is not None:
        # The value itself is not echoed: it may be a secret, and it is hostile.
        raise UnsafeHeader(f"AMI header {name} refused: its value has a control character "
                           f"(U+{ord(bad.group()):04X}) at position {bad.start()}")
    try:
        line = f"{name}: {text}\r\n".encode()
    except UnicodeEncodeError:
        raise UnsafeHeader(f"AMI header {name} refused: its value is not valid Unicode") from None
    if len(line) > MAX_HEADER_LINE_BYTES:
        raise UnsafeHeader(f"AMI header {name} refused: {len(line)} bytes, Asterisk reads at most "
                           f"{MAX_HEADER_LINE_BYTES} per line and drops the whole action otherwise")
    return line


def build_action(action: str, headers: Headers = (), action_id: str | None = None) -> bytes:
    """One complete action, ready to write; raises :class:`UnsafeHeader` rather than send a bad one.

    ``Action`` and ``ActionID`` are the client's: callers cannot set them in ``headers``.
    """
    lines = [_header_line("Action", action)]
    if action_id is not None:
        lines.append(_header_line("ActionID", action_id))
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if isinstance(name, str) and name.lower() in ("action", "actionid"):
            raise UnsafeHeader(f"AMI header {name} is set by the client, not by callers")
        lines.append(_header_line(name, value))
    if len(lines) > MAX_ACTION_HEADERS:
        raise UnsafeHeader(f"AMI {action} has {len(lines)} headers; Asterisk keeps at most "
                           f"{MAX_ACTION_HEADERS} and would silently drop the rest")
    lines.append(b"\r\n")
    return b"".join(lines)


def variable_header(name: str, value: HeaderValue) -> tuple[str, str]:
    """A ``Variable: NAME=value`` header that sets exactly one channel variable to exactly ``value``.

    The name must be a plain variable name (``_``/``__`` inheritance prefixes
    allowed, no functions); the value is escaped for Asterisk's argument
    splitting, and control characters are refused by :func:`build_action`.
    """
    if type(name) is not str or _VARIABLE_NAME.match(name) is None:
        raise UnsafeHeader(f"channel variable name {str(name)[:40]!r} must be letters, digits and _")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UnsafeHeader(f"channel variable {name} must be str or int, not {type(value).__name__}")
    text = str(int(value)) if isinstance(value, int) else str(value)
    return "Variable", f"{name}={text.translate(_VARIABLE_ESCAPES)}"


def format_caller_id(name: str, number: str) -> str:
    """``"name" <number>`` for Originate's ``CallerID``, refusing what would change its parsing.

    A name with ``"``, ``<``, ``>`` or ``\\`` could smuggle in another number, and
    a number is digits (``+``, ``*``, ``#`` allowed); clean display names before.
    """
    if _CALLER_NUMBER.match(number) is None:
        raise UnsafeHeader("caller ID number must be digits, optionally with a leading +")
    if any(ch in _CALLER_NAME_SPECIALS for ch in name) or _CONTROL.search(name) or len(name) > 80:
        raise UnsafeHeader('caller ID name must be at most 80 characters without " < > \\ or controls')
    return f'"{name}" <{number}>' if name else f"<{number}>"


# -- events -----------------------------------------------------------------


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


# -- the protocol -----------------------------------------------------------


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


class _ManagerActions:
    """Typed helpers over ``send_action``, shared by the protocol and the client."""

    def send_action(self, action: str, headers: Headers = (), *, timeout: float | None = None,
                    completion_event: str | None = None) -> defer.Deferred[ActionResult]:
        raise NotImplementedError

    def ping(self) -> defer.Deferred[ActionResult]:
        return self.send_action("Ping")

    def hangup(self, channel: str, cause: int | None = None) -> defer.Deferred[ActionResult]:
        headers: list[tuple[str, HeaderValue]] = [("Channel", channel)]
        if cause is not None:
            headers.append(("Cause", cause))
        return self.send_action("Hangup", headers)

    def setvar(self, variable: str, value: str, channel: str | None = None) -> defer.Deferred[ActionResult]:
        """Set a channel variable (or a global one without ``channel``)."""
        headers: list[tuple[str, HeaderValue]] = [("Variable", variable), ("Value", value)]
        if channel is not None:
            headers.insert(0, ("Channel", channel))
        return self.send_action("Setvar", headers)

    def getvar(self, variable: str, channel: str | None = None) -> defer.Deferred[str | None]:
        """A channel (or global) variable's value; None when Asterisk sends no ``Value``."""
        headers: list[tuple[str, HeaderValue]] = [("Variable", variable)]
        if channel is not None:
            headers.insert(0, ("Channel", channel))
        d = self.send_action("Getvar", headers)
        return d.addCallback(lambda result: result.response.get("Value"))

    def queue_status(self, queue: str | None = None, member: str | None = None
                     ) -> defer.Deferred[ActionResult]:
        """QueueParams/QueueMember/QueueEntry events of one queue (or all), as one result."""
        headers: list[tuple[str, HeaderValue]] = []
        if queue is not None:
            headers.append(("Queue", queue))
        if member is not None:
            headers.append(("Member", member))
        return self.send_action("QueueStatus", headers)

    def originate(self, channel: str, *, context: str | None = None, exten: str | None = None,
                  priority: int | str = 1, application: str | None = None, data: str | None = None,
                  caller_id: str | None = None, timeout: float = 30.0,
                  variables: Mapping[str, HeaderValue] | None = None, account: str | None = None,
                  channel_id: str | None = None, other_channel_id: str | None = None,
                  early_media: bool = False, answer_margin: float = 15.0
                  ) -> defer.Deferred[OriginateResult]:
        """Place a call on ``channel`` (``Async: true``) and wait for how it ended up.

        When it answers it goes to ``context``/``exten``/``priority`` or runs
        ``application``(``data``). The result comes from the ``OriginateResponse``
        event, so it fires when the channel answers or fails (at most ``timeout``
        seconds of ringing, plus ``answer_margin``). ``Response: Error`` (no
        permission, bad arguments) fails with :class:`~ivr.errors.AMIActionError`.
        Use :func:`format_caller_id` for ``caller_id`` built from user data.
        """
        try:
            headers = _originate_headers(channel, context, exten, priority, application, data, caller_id,
                                         timeout, variables or {}, account, channel_id, other_channel_id,
                                         early_media)
        except AMIError as exc:
            return defer.fail(exc)
        d = self.send_action("Originate", headers, timeout=timeout + answer_margin,
                             completion_event="OriginateResponse")
        return d.addCallback(_originate_from_result)


def _originate_from_result(result: ActionResult) -> OriginateResult:
    assert result.complete is not None
    return originate_result(result.complete)


def _originate_headers(channel: str, context: str | None, exten: str | None, priority: int | str,
                       application: str | None, data: str | None, caller_id: str | None, timeout: float,
                       variables: Mapping[str, HeaderValue], account: str | None, channel_id: str | None,
                       other_channel_id: str | None, early_media: bool) -> list[tuple[str, HeaderValue]]:
    if not channel:
        raise UnsafeHeader("Originate needs a channel such as PJSIP/1001")
    if (application is None) == (exten is None):
        raise UnsafeHeader("Originate needs either context/exten/priority or application/data")
    if not 0 < timeout <= MAX_ORIGINATE_SECONDS:
        raise UnsafeHeader(f"Originate timeout must be over 0 and at most {MAX_ORIGINATE_SECONDS:.0f}s")
    headers: list[tuple[str, HeaderValue]] = [("Channel", channel)]
    if application is not None:
        headers.append(("Application", application))
        if data is not None:
            headers.append(("Data", data))
    else:
        assert exten is not None
        if context is None:
            raise UnsafeHeader("Originate to an extension needs its context")
        headers += [("Context", context), ("Exten", exten), ("Priority", priority)]
    headers.append(("Timeout", int(timeout * 1000)))
    if caller_id is not None:
        headers.append(("CallerID", caller_id))
    if account is not None:
        headers.append(("Account", account))
    if channel_id is not None:
        headers.append(("ChannelId", channel_id))
    if other_channel_id is not None:
        headers.append(("OtherChannelId", other_channel_id))
    if early_media:
        headers.append(("EarlyMedia", "true"))
    headers.append(("Async", "true"))
    headers += [variable_header(name, value) for name, value in variables.items()]
    return headers


class AMIProtocol(LineOnlyReceiver, _ManagerActions):
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


# -- the client service ------------------------------------------------------


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


class AMIClient(Service, _ManagerActions):
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
                 *, limits: AMILimits = AMILimits(), backoff: Backoff = Backoff(),
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
