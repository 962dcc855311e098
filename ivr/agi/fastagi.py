"""The FastAGI protocol: one TCP connection per call, Asterisk on the far side.

Asterisk opens the connection, sends its ``agi_*`` environment ending with a
blank line, then waits for commands. Each command gets exactly one reply, in
order, so commands may be pipelined. ``HANGUP`` may arrive at any moment and
EOF ends the session. This module knows nothing about menus or customers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import defer, tcp
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from ivr.agi.environment import AGIEnvironment, environment_at_once, environment_entry
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
    "AGILimits",
    "FastAGIFactory",
    "FastAGIProtocol",
]

log = Logger(namespace="ivr.agi")

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


class _Pending:
    """One command sent and not yet answered."""

    __slots__ = ("command", "deferred", "due", "timeout", "digits", "abandoned")

    def __init__(self, command: bytes, digits: bool, due: float, timeout: float) -> None:
        self.command = command
        self.deferred: defer.Deferred[AGIReply] = defer.Deferred(canceller=self.cancel)
        #: When the reply is overdue (clock seconds; 0: never).
        self.due = due
        self.timeout = timeout
        self.digits = digits
        self.abandoned = False

    def cancel(self, _: defer.Deferred[AGIReply]) -> None:
        # Keep the slot so the late reply is matched and dropped; it has no deadline any more.
        self.abandoned = True


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
        #: When the environment is overdue (clock seconds; 0 once it is complete).
        self._env_due = 0.0
        #: One timer per session watches every deadline (the environment's, each command's):
        #: armed for the earliest, it looks again when it fires instead of being re-armed
        #: for each command. Short calls then cost one timer, not one per command.
        self._watch: IDelayedCall | None = None
        self._watch_at = 0.0
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
        self._env_due = self.clock.seconds() + self.limits.env_timeout
        self._watch_until(self._env_due)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed = True
        watch, self._watch = self._watch, None
        if watch is not None and watch.active():
            watch.cancel()
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

    # -- deadlines ----------------------------------------------------------

    def _watch_until(self, due: float) -> None:
        """Make sure the watch looks at the session by ``due`` (clock seconds)."""
        watch = self._watch
        if watch is not None:
            if self._watch_at <= due:
                return
            watch.cancel()  # rare: a deadline sooner than every other (Twisted's reset is linear)
        self._watch_at = due
        self._watch = self.clock.callLater(max(0.0, due - self.clock.seconds()), self._watched)

    def _watched(self) -> None:
        """The watch went off: time out what is overdue, or look again at the next deadline."""
        self._watch = None
        if self.closed:
            return
        now = self.clock.seconds()
        following = 0.0
        if self._env is not None:
            if now >= self._env_due:
                self._env_timed_out()
                return
            following = self._env_due
        for pending in self._pending:
            if pending.abandoned or not pending.due:
                continue
            if now >= pending.due:
                self._command_timed_out(pending)
                return
            if not following or pending.due < following:
                following = pending.due
        if following:
            self._watch_until(following)

    def _env_timed_out(self) -> None:
        log.warn("peer {peer} sent no complete AGI environment in {timeout}s; closing",
                 peer=self.peer_host, timeout=self.limits.env_timeout)
        self.abort(LimitExceeded("environment not received in time"))

    def lineLengthExceeded(self, line: bytes) -> None:
        log.warn("peer {peer} sent a line over {limit} bytes; closing the session",
                 peer=self.peer_host, limit=self.limits.max_line_bytes)
        self.abort(LimitExceeded(f"line longer than {self.limits.max_line_bytes} bytes"))

    # -- incoming ---------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._env is None:
            self._replies(data)
            return
        if not self._env_bytes and self._environment_at_once(data):
            return
        # The environment's ~25 lines usually come in one segment: read them here, in
        # one loop, rather than through a method call or two per line.
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        env = self._env
        limits = self.limits
        for index, line in enumerate(lines):
            if self.transport.disconnecting:  # type: ignore[union-attr]
                return
            if len(line) > self.MAX_LENGTH:
                self.lineLengthExceeded(line)
                return
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                rest, self._buffer = b"\n".join([*lines[index + 1:], self._buffer]), b""
                self._environment_complete(rest)
                return
            self._env_bytes += len(line) + 1
            if len(env) >= limits.max_env_lines or self._env_bytes > limits.max_env_bytes:
                log.warn("peer {peer} sent an oversized AGI environment; closing", peer=self.peer_host)
                self.abort(LimitExceeded("AGI environment too large"))
                return
            entry = environment_entry(line)
            if entry is None:
                log.warn("ignoring malformed AGI environment line {line!r}", line=line[:80])
                continue
            name, value = entry
            if name in env:
                # Asterisk sends each key once, routing keys first; a repeat can only come
                # from a value with an embedded newline (a caller name) trying to override.
                log.warn("ignoring repeated AGI environment key {key}", key=name)
                continue
            env[name] = value
        if len(self._buffer) > self.MAX_LENGTH:
            self.lineLengthExceeded(self._buffer)

    def _replies(self, data: bytes) -> None:
        """Lines after the environment, as LineOnlyReceiver splits them (minus a call a packet)."""
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        transport = self.transport
        for line in lines:
            if transport.disconnecting:  # type: ignore[union-attr]
                return  # told to close by an earlier line: the rest of the packet is disregarded
            if len(line) > self.MAX_LENGTH:
                self.lineLengthExceeded(line)
                return
            self.lineReceived(line)
        if len(self._buffer) > self.MAX_LENGTH:
            self.lineLengthExceeded(self._buffer)

    def _environment_at_once(self, data: bytes) -> bool:
        """The usual case: a whole, well-formed environment in one segment, read in one search
        (:func:`~ivr.agi.environment.environment_at_once`); False leaves it to the line reader."""
        data = self._buffer + data
        limits = self.limits
        found = environment_at_once(data, self.MAX_LENGTH, limits.max_env_lines, limits.max_env_bytes)
        if found is None:
            return False
        self._env, end = found
        self._env_bytes, self._buffer = end + 1, b""
        self._environment_complete(data[end + 2:])
        return True

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
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

    def _environment_complete(self, rest: bytes = b"") -> None:
        """The blank line came; ``rest`` is what followed it in the same segment."""
        assert self._env is not None
        self._env_due = 0.0  # the watch finds nothing more to time out here
        self.environment = AGIEnvironment(self._env)
        self._env = None
        if "request" not in self.environment:
            log.warn("peer {peer} sent an AGI environment without agi_request; closing",
                     peer=self.peer_host)
            self.abort(MalformedReply("AGI environment without agi_request"))
            return
        self._on_ready(self)
        if rest and self.close_reason is None:
            self._replies(rest)  # commands' replies cannot come yet: Asterisk's own lines

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
        delay = self.limits.command_timeout if timeout is None else timeout
        due = self.clock.seconds() + delay if delay > 0 else 0.0
        pending = _Pending(line, verb == "GET DATA", due, delay)
        if due and (self._watch is None or due < self._watch_at):  # usually watched already
            self._watch_until(due)
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

    def _command_timed_out(self, pending: _Pending) -> None:
        delay = pending.timeout
        verb = pending.command.decode("utf-8", "replace").split(" \"", 1)[0].strip()
        log.warn("AGI command {verb} got no reply in {delay}s; closing the session",
                 verb=verb, delay=delay)
        # Replies can no longer be matched to commands: end the session.
        self.abort(CommandTimeout(f"{verb} got no reply within {delay}s"))

    def _complete(self, reply: AGIReply) -> None:
        pending = self._pending.popleft()
        if not pending.abandoned:
            pending.deferred.callback(reply)

    def _complete_error(self, make: Callable[[str], AGIError]) -> None:
        pending = self._pending.popleft()
        if not pending.abandoned:
            verb = pending.command.decode("utf-8", "replace").rstrip("\n")
            pending.deferred.errback(make(verb))

    def _abandon(self, pending: _Pending, error: AGIError) -> None:
        pending.abandoned = True
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
