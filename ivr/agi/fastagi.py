"""The FastAGI protocol: one TCP connection per call, Asterisk on the far side.

Asterisk opens the connection, sends its ``agi_*`` environment ending with a
blank line, then waits for commands. Each command gets exactly one reply, in
order, so commands may be pipelined. ``HANGUP`` may arrive at any moment and
EOF ends the session. This module knows nothing about menus or customers.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, tcp
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ivr.agi.peers import PeerGatedFactory, PeerPolicy
from ivr.agi.quoting import build_command
from ivr.agi.replies import AGIReply, parse_success
from ivr.errors import (
    AGIError,
    CallHangup,
    CommandTimeout,
    DeadChannel,
    InvalidCommand,
    LimitExceeded,
    MalformedReply,
    ProtocolError,
    UsageError,
)

__all__ = [
    "AGIEnvironment",
    "AGILimits",
    "FastAGIFactory",
    "FastAGIProtocol",
]

log = Logger(namespace="ivr.agi")

_ENV_KEY = re.compile(rb"agi_[a-z0-9_]{1,64}\Z")


@dataclass(frozen=True, slots=True)
class AGILimits:
    """Bounds that keep one hostile or broken peer from hurting the server."""

    #: Longest line accepted from Asterisk. AGI_BUF_LEN is 2048; replies such
    #: as GET VARIABLE can carry a long value, so allow generous margin.
    max_line_bytes: int = 8192
    #: Most environment lines (Asterisk sends about 25 plus one per argument).
    max_env_lines: int = 512
    #: Most bytes of environment in all.
    max_env_bytes: int = 65536
    #: Most lines in one ``520-`` usage block.
    max_usage_lines: int = 256
    #: Seconds a peer may take to send its whole environment.
    env_timeout: float = 5.0
    #: Default deadline for one command, in seconds.
    command_timeout: float = 10.0
    #: Commands that may be in flight at once on one session.
    max_pending: int = 64


class AGIEnvironment(Mapping[str, str]):
    """The ``agi_*`` variables Asterisk sent, keys without the ``agi_`` prefix.

    Values are text: invalid UTF-8 is replaced by U+FFFD and NUL is replaced
    too, so nothing from the environment can cut or extend a later command.
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Any:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"AGIEnvironment({self._values!r})"

    @property
    def args(self) -> tuple[str, ...]:
        """``agi_arg_1`` .. ``agi_arg_N`` in order (stops at the first gap)."""
        found = []
        index = 1
        while (value := self._values.get(f"arg_{index}")) is not None:
            found.append(value)
            index += 1
        return tuple(found)

    @property
    def network_script(self) -> str:
        """The path after ``agi://host:port/``, without leading slashes or query."""
        script = self._values.get("network_script", "")
        return script.split("?", 1)[0].strip("/")


class _Pending:
    """One command sent and not yet answered."""

    __slots__ = ("command", "deferred", "timer", "digits", "abandoned")

    def __init__(self, command: bytes, digits: bool) -> None:
        self.command = command
        self.deferred: defer.Deferred[AGIReply] = defer.Deferred(canceller=self.cancel)
        self.timer: IDelayedCall | None = None
        self.digits = digits
        self.abandoned = False

    def cancel(self, _: defer.Deferred[AGIReply]) -> None:
        # Keep the slot so the late reply is matched and dropped.
        self.abandoned = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class FastAGIProtocol(LineOnlyReceiver):
    """One FastAGI session.

    ``on_ready`` is called once with the protocol when the environment is
    complete. Commands go out with :meth:`send_command`; their Deferreds fire
    in order with an :class:`AGIReply` or fail with an :class:`AGIError`.
    :meth:`when_closed` gives a Deferred that fires when the connection is gone.
    """

    delimiter = b"\n"

    def __init__(
        self,
        clock: IReactorTime,
        on_ready: Callable[[FastAGIProtocol], object],
        limits: AGILimits = AGILimits(),
        *,
        peer_host: str = "",
        on_closed: Callable[[], None] | None = None,
    ) -> None:
        self.clock = clock
        self.limits = limits
        self.MAX_LENGTH = limits.max_line_bytes
        self._on_ready = on_ready
        self._env: dict[str, str] | None = {}
        self._env_bytes = 0
        self._env_timer: IDelayedCall | None = None
        self._pending: deque[_Pending] = deque()
        self._usage: list[str] | None = None
        self.environment = AGIEnvironment({})
        self.hungup = False
        self.closed = False
        self.close_reason: AGIError | None = None
        self._close_waiters: list[defer.Deferred[None]] = []
        #: Called by connectionLost before any when_closed() waiter (the factory's bookkeeping).
        self._on_closed = on_closed
        self._tcp: tcp.Connection | None = None
        self.peer_host = peer_host

    # -- connection -------------------------------------------------------

    def connectionMade(self) -> None:
        if not self.peer_host:  # FastAGIFactory sets it from the address it was given
            peer: IAddress = self.transport.getPeer()  # type: ignore[union-attr]
            self.peer_host = getattr(peer, "host", "")
        if isinstance(self.transport, tcp.Connection) and hasattr(self.transport, "_tempDataBuffer"):
            self._tcp = self.transport
        self._env_timer = self.clock.callLater(self.limits.env_timeout, self._env_timed_out)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed = True
        if self._env_timer is not None and self._env_timer.active():
            self._env_timer.cancel()
        self._env_timer = None
        error: AGIError = self.close_reason or CallHangup("connection closed by Asterisk")
        self._fail_pending(error)
        hook, self._on_closed = self._on_closed, None
        if hook is not None:
            hook()
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def when_closed(self) -> defer.Deferred[None]:
        """A new Deferred that fires once the connection is closed."""
        if self.closed:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._close_waiters.append(waiter)
        return waiter

    @property
    def has_pending(self) -> bool:
        """True while any command sent has not been answered (even an abandoned one)."""
        return bool(self._pending)

    def abort_quietly(self) -> None:
        """Close the session on purpose: pending commands fail with CallHangup."""
        self.abort(CallHangup("session closed by ivr"))

    def abort(self, error: AGIError) -> None:
        """Close the session because of ``error``; pending commands fail with it."""
        if self.close_reason is None:
            self.close_reason = error
        self._fail_pending(error)
        if self.transport is not None and not self.closed:
            self.transport.loseConnection()

    def _env_timed_out(self) -> None:
        self._env_timer = None
        log.warn("peer {peer} sent no complete AGI environment in {timeout}s; closing",
                 peer=self.peer_host, timeout=self.limits.env_timeout)
        self.abort(LimitExceeded("environment not received in time"))

    def lineLengthExceeded(self, line: bytes) -> None:
        log.warn("peer {peer} sent a line over {limit} bytes; closing the session",
                 peer=self.peer_host, limit=self.limits.max_line_bytes)
        self.abort(LimitExceeded(f"line longer than {self.limits.max_line_bytes} bytes"))

    # -- incoming ---------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if self._env is not None:
            self._environment_line(line)
            return
        text = line.decode("utf-8", "replace")
        if self._usage is not None:
            self._usage_line(text)
            return
        if text == "HANGUP":
            self._hangup_received()
            return
        if not self._pending:
            log.warn("unexpected line from Asterisk with no command pending: {line!r}",
                     line=text[:120])
            self.abort(MalformedReply(f"unsolicited line {text[:120]!r}"))
            return
        head = text[:4]
        if head.startswith("200"):
            try:
                reply = parse_success(text, digits=self._pending[0].digits)
            except MalformedReply as exc:
                self.abort(exc)
                return
            self._complete(reply)
        elif head == "510 " or text == "510":
            self._complete_error(lambda cmd: InvalidCommand(cmd, text[4:] or "invalid command"))
        elif head == "511 " or text == "511":
            self.hungup = True
            self._complete_error(lambda cmd: DeadChannel(text[4:] or "dead channel"))
        elif head == "520-":
            self._usage = [text[4:]]
        elif head == "520 " or text == "520":
            self._complete_error(lambda cmd: UsageError(cmd, text[4:]))
        else:
            self.abort(MalformedReply(f"not an AGI reply: {text[:120]!r}"))

    def _environment_line(self, line: bytes) -> None:
        assert self._env is not None
        if not line:
            self._environment_complete()
            return
        self._env_bytes += len(line) + 1
        if len(self._env) >= self.limits.max_env_lines or self._env_bytes > self.limits.max_env_bytes:
            log.warn("peer {peer} sent an oversized AGI environment; closing", peer=self.peer_host)
            self.abort(LimitExceeded("AGI environment too large"))
            return
        key, sep, value = line.partition(b": ")
        if not sep or _ENV_KEY.match(key) is None:
            log.warn("ignoring malformed AGI environment line {line!r}", line=line[:80])
            return
        name = key[4:].decode("ascii")
        if name in self._env:
            # Asterisk sends each key once, routing keys first; a repeat can only come
            # from a value with an embedded newline (a caller name) trying to override.
            log.warn("ignoring repeated AGI environment key {key}", key=name)
            return
        self._env[name] = value.decode("utf-8", "replace").replace("\x00", "\ufffd")

    def _environment_complete(self) -> None:
        assert self._env is not None
        if self._env_timer is not None and self._env_timer.active():
            self._env_timer.cancel()
        self._env_timer = None
        self.environment = AGIEnvironment(self._env)
        self._env = None
        if "request" not in self.environment:
            log.warn("peer {peer} sent an AGI environment without agi_request; closing",
                     peer=self.peer_host)
            self.abort(MalformedReply("AGI environment without agi_request"))
            return
        self._on_ready(self)

    def _usage_line(self, text: str) -> None:
        assert self._usage is not None
        if text.startswith("520 ") or text == "520":
            usage = "\n".join(self._usage).strip()
            self._usage = None
            self._complete_error(lambda cmd: UsageError(cmd, usage))
            return
        self._usage.append(text)
        if len(self._usage) > self.limits.max_usage_lines:
            self.abort(LimitExceeded("520 usage reply too long"))

    def _hangup_received(self) -> None:
        if self.hungup:
            return
        self.hungup = True
        # Commands already sent still get a reply from Asterisk; keep their
        # places in the queue so later replies stay matched, but fail them now.
        for pending in self._pending:
            if not pending.abandoned:
                self._abandon(pending, CallHangup("caller hung up"))

    # -- commands ---------------------------------------------------------

    def send_command(
        self, verb: str, *args: str | int, timeout: float | None = None
    ) -> defer.Deferred[AGIReply]:
        """Send one command; the Deferred fires with its reply.

        Fails at once with :class:`CallHangup` after a hangup, and with
        :class:`~ivr.errors.UnsafeArgument` if an argument cannot be sent.
        """
        if self.closed or self.close_reason is not None:
            return defer.fail(self.close_reason or CallHangup("session closed"))
        if self.hungup:
            return defer.fail(CallHangup("caller hung up"))
        if self._env is not None:
            return defer.fail(ProtocolError("command sent before the AGI environment"))
        try:
            line = build_command(verb, *args)
        except AGIError as exc:
            return defer.fail(exc)
        if len(self._pending) >= self.limits.max_pending:
            return defer.fail(LimitExceeded("too many commands in flight"))
        pending = _Pending(line, verb == "GET DATA")
        delay = self.limits.command_timeout if timeout is None else timeout
        if delay > 0:
            pending.timer = self.clock.callLater(delay, self._command_timed_out, pending, delay)
        self._pending.append(pending)
        self._write(line)
        return pending.deferred

    def send_last_command(self, verb: str, *args: str | int) -> None:
        """Send a final command without waiting for its reply, then close the session.

        Asterisk reads and runs every command written before our FIN, so a
        closing ``SET VARIABLE`` takes effect without costing a round trip.
        Does nothing after a hangup; an unsafe argument raises as usual.
        """
        if self.closed or self.close_reason is not None or self.hungup or self._env is not None:
            return
        self._write(build_command(verb, *args))
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _write(self, data: bytes) -> None:
        """``transport.write(data)``, sent at once when nothing is queued before it.

        Twisted's TCP ``write`` only queues: the bytes leave on a later reactor
        turn, after the socket is registered for writability and unregistered
        again (two ``epoll_ctl`` calls and a loop iteration per command). When
        its queue is empty this does now what that ``doWrite`` would do, and
        hands whatever is left (a partial send, an error) to Twisted as before.
        """
        conn = self._tcp
        if (conn is not None and conn.connected and not conn.disconnecting
                and not conn._writeDisconnecting and not conn.TLS
                and not conn.dataBuffer and not conn._tempDataBuffer):
            sent = conn.writeSomeData(data)
            if isinstance(sent, int) and sent > 0:
                if sent >= len(data):
                    return
                data = data[sent:]
        self.transport.write(data)  # type: ignore[union-attr]

    def _command_timed_out(self, pending: _Pending, delay: float) -> None:
        pending.timer = None
        verb = pending.command.decode("utf-8", "replace").split(" \"", 1)[0].strip()
        log.warn("AGI command {verb} got no reply in {delay}s; closing the session",
                 verb=verb, delay=delay)
        # Replies can no longer be matched to commands: end the session.
        self.abort(CommandTimeout(f"{verb} got no reply within {delay}s"))

    def _pop(self) -> _Pending:
        pending = self._pending.popleft()
        if pending.timer is not None:
            if pending.timer.active():
                pending.timer.cancel()
            pending.timer = None
        return pending

    def _complete(self, reply: AGIReply) -> None:
        pending = self._pop()
        if not pending.abandoned:
            pending.deferred.callback(reply)

    def _complete_error(self, make: Callable[[str], AGIError]) -> None:
        pending = self._pop()
        if not pending.abandoned:
            verb = pending.command.decode("utf-8", "replace").rstrip("\n")
            pending.deferred.errback(make(verb))

    def _abandon(self, pending: _Pending, error: AGIError) -> None:
        pending.abandoned = True
        if pending.timer is not None:
            if pending.timer.active():
                pending.timer.cancel()
            pending.timer = None
        pending.deferred.errback(error)

    def _fail_pending(self, error: AGIError) -> None:
        while self._pending:
            pending = self._pending.popleft()
            if not pending.abandoned:
                self._abandon(pending, error)


class FastAGIFactory(PeerGatedFactory[FastAGIProtocol]):
    """Makes a :class:`FastAGIProtocol` per admitted connection.

    Peers outside the allow-list, or over their connection quota, are
    refused before any byte is read (the connection is closed at once).
    """

    service = "FastAGI"

    def __init__(
        self,
        clock: IReactorTime,
        on_ready: Callable[[FastAGIProtocol], object],
        limits: AGILimits = AGILimits(),
        peers: PeerPolicy | None = None,
    ) -> None:
        super().__init__(peers)
        self.clock = clock
        self.on_ready = on_ready
        self.limits = limits

    def build_session(self, host: str, on_closed: Callable[[], None]) -> FastAGIProtocol:
        return FastAGIProtocol(self.clock, self.on_ready, self.limits, peer_host=host, on_closed=on_closed)
