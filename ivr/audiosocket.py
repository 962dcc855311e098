"""Asterisk's AudioSocket protocol: the audio side of a speech menu.

A FastAGI session runs ``EXEC AudioSocket <uuid>,<host>:<port>``; Asterisk
then connects here, sends the UUID, and streams the caller's audio and DTMF
while playing whatever audio we send back. A hangup frame from us ends the
application and the AGI session carries on.

Every frame is a 1-byte kind, a 2-byte big-endian payload length and the
payload. What Asterisk 22 (22.10 checked) sends:

* ``0x01`` the UUID (16 bytes), once, first;
* ``0x10`` signed linear 16-bit little-endian mono audio at 8 kHz, 320 bytes
  per 20 ms. The dialplan application ``AudioSocket()`` (which an AGI EXECs)
  always sets the channel to ``slin``, so this is all a speech menu receives;
* ``0x11``-``0x18`` the same at 12, 16, 24, 32, 44.1, 48, 96, 192 kHz: only the
  channel driver (``Dial(AudioSocket/...)``) sends these, for a channel whose
  codec is wideband. ``0x12`` (slin16) is accepted here when enabled in
  :class:`AudioSocketLimits`; the others close the connection;
* ``0x03`` one DTMF digit (ASCII);
* ``0x00`` hangup, and ``0xff`` an error (optional 1-byte code).

Asterisk reads only audio and hangup frames from us; anything else, or an
empty audio frame, makes it end the application, so this module sends nothing
else. It writes our frames to the channel as soon as they arrive, so pacing
the prompt in real time is our job (:meth:`AudioSocketSession.play`).

Everything from the peer is bounded: a frame over the limit, an unknown kind,
a wrong-sized UUID or DTMF, a second UUID, audio before the UUID or at a rate
that changes, an unknown UUID, or no UUID in time closes that one connection
with a logged reason; what was received before it is still delivered.
"""

from __future__ import annotations

import enum
import struct
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from ivr.agi.peers import PeerGatedFactory, PeerPolicy
from ivr.errors import (
    AGIError,
    AudioSocketError,
    AudioSocketTimeout,
    CallHangup,
    LimitExceeded,
    ProtocolError,
)

__all__ = [
    "AUDIO_KINDS",
    "FRAME_SECONDS",
    "AudioSocketFactory",
    "AudioSocketLimits",
    "AudioSocketSession",
    "Kind",
    "encode_frame",
    "frame_bytes",
]

log = Logger(namespace="ivr.audiosocket")

_HEADER = struct.Struct(">BH")
#: Seconds of audio in one frame we send (Asterisk's own framing for slin).
FRAME_SECONDS = 0.020
_DTMF = frozenset("0123456789*#ABCD")


class Kind(enum.IntEnum):
    """AudioSocket frame kinds (Asterisk's ``enum ast_audiosocket_msg_kind``)."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10  # slin, 8 kHz
    AUDIO_SLIN12 = 0x11
    AUDIO_SLIN16 = 0x12
    AUDIO_SLIN24 = 0x13
    AUDIO_SLIN32 = 0x14
    AUDIO_SLIN44 = 0x15
    AUDIO_SLIN48 = 0x16
    AUDIO_SLIN96 = 0x17
    AUDIO_SLIN192 = 0x18
    ERROR = 0xFF


#: Audio kinds and their sample rates.
AUDIO_KINDS: dict[int, int] = {
    Kind.AUDIO: 8000, Kind.AUDIO_SLIN12: 12000, Kind.AUDIO_SLIN16: 16000, Kind.AUDIO_SLIN24: 24000,
    Kind.AUDIO_SLIN32: 32000, Kind.AUDIO_SLIN44: 44100, Kind.AUDIO_SLIN48: 48000,
    Kind.AUDIO_SLIN96: 96000, Kind.AUDIO_SLIN192: 192000,
}
_KIND_FOR_RATE = {rate: kind for kind, rate in AUDIO_KINDS.items()}


def frame_bytes(rate: int) -> int:
    """Bytes of 16-bit mono audio in one 20 ms frame at ``rate`` Hz (320 at 8 kHz)."""
    return int(rate * FRAME_SECONDS) * 2


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """One frame on the wire. Raises ValueError for a payload that cannot be framed."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"AudioSocket payload of {len(payload)} bytes is over 65535")
    return _HEADER.pack(kind, len(payload)) + payload


@dataclass(frozen=True, slots=True)
class AudioSocketLimits:
    """Bounds that keep one broken or hostile peer from hurting the server."""

    #: Largest payload accepted. Asterisk sends 20 ms frames (320 bytes at 8 kHz,
    #: 640 at 16 kHz); this leaves room for 200 ms frames at 16 kHz.
    max_payload: int = 6400
    #: Sample rates accepted from Asterisk (8000 is what AudioSocket() sends; 16000 is slin16).
    rates: frozenset[int] = frozenset({8000, 16000})
    #: Seconds a new connection may take to send its UUID.
    uuid_timeout: float = 5.0
    #: Default seconds :meth:`AudioSocketFactory.expect` waits for Asterisk to connect.
    connect_timeout: float = 5.0
    #: Seconds without any frame before an identified session is closed (Asterisk
    #: sends audio every 20 ms while the channel is up).
    idle_timeout: float = 10.0
    #: DTMF digits kept for a session nobody listens to yet (more are refused: closed).
    max_queued_digits: int = 32
    #: Frames sent ahead of real time when a prompt starts, so the far end never starves.
    lead_frames: int = 2


class _Playback:
    """One prompt being streamed: the PCM, where we are, and who waits for the end."""

    __slots__ = ("pcm", "kind", "size", "offset", "loop", "done")

    def __init__(self, pcm: bytes, rate: int) -> None:
        self.pcm = pcm
        self.kind = _KIND_FOR_RATE[rate]
        self.size = frame_bytes(rate)
        self.offset = 0
        self.loop: LoopingCall | None = None
        self.done: defer.Deferred[bool] = defer.Deferred()

    def next_frame(self) -> bytes | None:
        if self.offset >= len(self.pcm):
            return None
        chunk = self.pcm[self.offset:self.offset + self.size]
        self.offset += self.size
        if len(chunk) < self.size:
            chunk += bytes(self.size - len(chunk))
        return chunk


class AudioSocketSession(Protocol):
    """One AudioSocket connection from Asterisk.

    The factory hands it over (through :meth:`AudioSocketFactory.expect`) once
    its UUID is known. The consumer then calls :meth:`attach` to receive the
    caller's audio and DTMF, :meth:`play` / :meth:`stop_playback` to speak and
    be interrupted, and :meth:`hangup` to give the channel back to the dialplan.
    """

    def __init__(self, clock: IReactorTime, limits: AudioSocketLimits = AudioSocketLimits(),
                 claim: Callable[[AudioSocketSession, uuid.UUID], bool] | None = None, *,
                 peer_host: str = "", on_closed: Callable[[], None] | None = None) -> None:
        self.clock = clock
        self.limits = limits
        self._claim = claim
        self.uuid: uuid.UUID | None = None
        #: Rate of the caller's audio, set by the first audio frame.
        self.sample_rate: int | None = None
        self.peer_host = peer_host
        self.closed = False
        self.close_reason: AGIError | None = None
        self._buffer = bytearray()
        self._timer: IDelayedCall | None = None
        self._on_audio: Callable[[bytes, int], object] | None = None
        self._on_dtmf: Callable[[str], object] | None = None
        self._digits: deque[str] = deque()
        self._playback: _Playback | None = None
        self._close_waiters: list[defer.Deferred[AGIError]] = []
        self._on_closed = on_closed
        self._hangup_sent = False

    # -- connection -------------------------------------------------------

    def connectionMade(self) -> None:
        if not self.peer_host:
            peer: IAddress = self.transport.getPeer()  # type: ignore[union-attr]
            self.peer_host = getattr(peer, "host", "")
        self._timer = self.clock.callLater(self.limits.uuid_timeout, self._timed_out, "no UUID")

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.closed = True
        self._cancel_timer()
        self._stop(False)
        if self.close_reason is None:
            self.close_reason = CallHangup("AudioSocket connection closed by Asterisk")
        hook, self._on_closed = self._on_closed, None
        if hook is not None:
            hook()
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(self.close_reason)

    def when_closed(self) -> defer.Deferred[AGIError]:
        """A new Deferred that fires with the reason once the connection is gone.

        The reason is a :class:`CallHangup` for a normal end (either side hung
        up), or the error that made ivr close it.
        """
        if self.closed:
            assert self.close_reason is not None
            return defer.succeed(self.close_reason)
        waiter: defer.Deferred[AGIError] = defer.Deferred()
        self._close_waiters.append(waiter)
        return waiter

    def abort(self, error: AGIError) -> None:
        """Close the connection because of ``error`` (without a hangup frame)."""
        if self.close_reason is None:
            self.close_reason = error
        self._cancel_timer()
        self._stop(False)
        self._buffer.clear()
        if self.transport is not None and not self.closed:
            self.transport.loseConnection()

    def hangup(self) -> None:
        """End the AudioSocket application: Asterisk's AGI (or dialplan) carries on.

        Stops any prompt, sends the hangup frame and closes. Harmless twice.
        """
        if self.closed or self._hangup_sent:
            return
        self._hangup_sent = True
        self._cancel_timer()
        self._stop(False)
        if self.close_reason is None:
            self.close_reason = CallHangup("AudioSocket ended by ivr")
        self.transport.write(encode_frame(Kind.HANGUP))  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _timed_out(self, what: str) -> None:
        self._timer = None
        log.warn("AudioSocket peer {peer} ({uuid}): {what} in time; closing",
                 peer=self.peer_host, uuid=self.uuid, what=what)
        self.abort(LimitExceeded(f"AudioSocket: {what} in time"))

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _refuse(self, error: AGIError) -> None:
        log.warn("AudioSocket peer {peer} ({uuid}): {error}; closing", peer=self.peer_host,
                 uuid=self.uuid, error=str(error))
        self.abort(error)

    # -- incoming ---------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.close_reason is not None:
            return
        buffer = self._buffer
        buffer += data
        start = 0
        try:
            while len(buffer) - start >= 3:
                kind, length = _HEADER.unpack_from(buffer, start)
                if length > self.limits.max_payload:
                    self._refuse(LimitExceeded(f"frame of {length} bytes is over {self.limits.max_payload}"))
                    return
                end = start + 3 + length
                if len(buffer) < end:
                    break
                payload = bytes(buffer[start + 3:end])
                start = end
                self._frame(kind, payload)
                if self.close_reason is not None:
                    return
        finally:
            if self.close_reason is None:
                del buffer[:start]
            else:
                buffer.clear()
        if self.uuid is not None and self._timer is not None:
            self._timer.reset(self.limits.idle_timeout)

    def _frame(self, kind: int, payload: bytes) -> None:
        if kind == Kind.UUID:
            self._uuid_frame(payload)
        elif self.uuid is None:
            self._refuse(ProtocolError(f"frame of kind 0x{kind:02x} before the UUID"))
        elif kind in AUDIO_KINDS:
            self._audio_frame(kind, payload)
        elif kind == Kind.DTMF:
            self._dtmf_frame(payload)
        elif kind == Kind.HANGUP:
            self.close_reason = CallHangup("Asterisk ended the AudioSocket")
            self._stop(False)
            self.transport.loseConnection()  # type: ignore[union-attr]
        elif kind == Kind.ERROR:
            code = payload[0] if payload else None
            log.warn("AudioSocket peer {peer} ({uuid}) sent error code {code}; closing",
                     peer=self.peer_host, uuid=self.uuid, code=code)
            self.abort(AudioSocketError(code))
        else:
            self._refuse(ProtocolError(f"unknown frame kind 0x{kind:02x}"))

    def _uuid_frame(self, payload: bytes) -> None:
        if self.uuid is not None:
            self._refuse(ProtocolError("a second UUID frame"))
            return
        if len(payload) != 16:
            self._refuse(ProtocolError(f"UUID frame of {len(payload)} bytes, not 16"))
            return
        ident = uuid.UUID(bytes=payload)
        self._cancel_timer()
        # The claim hands the session to its consumer, which may play or hang up at once.
        if self._claim is None or not self._claim(self, ident):
            self._refuse(ProtocolError(f"unknown or unexpected UUID {ident}"))
            return
        self.uuid = ident
        if self.close_reason is None:
            self._timer = self.clock.callLater(self.limits.idle_timeout, self._timed_out, "no frame")

    def _audio_frame(self, kind: int, payload: bytes) -> None:
        rate = AUDIO_KINDS[kind]
        if rate not in self.limits.rates:
            self._refuse(ProtocolError(f"audio at {rate} Hz is not accepted here"))
            return
        if not payload or len(payload) % 2:
            self._refuse(ProtocolError(f"audio frame of {len(payload)} bytes (not whole samples)"))
            return
        if self.sample_rate is None:
            self.sample_rate = rate
        elif rate != self.sample_rate:
            self._refuse(ProtocolError(f"audio rate changed from {self.sample_rate} to {rate} Hz"))
            return
        if self._on_audio is not None:
            self._on_audio(payload, rate)

    def _dtmf_frame(self, payload: bytes) -> None:
        digit = payload.decode("ascii", "replace")
        if len(payload) != 1 or digit not in _DTMF:
            self._refuse(ProtocolError(f"DTMF frame {payload[:8]!r} is not one digit"))
            return
        if self._on_dtmf is not None:
            self._on_dtmf(digit)
        elif len(self._digits) >= self.limits.max_queued_digits:
            self._refuse(LimitExceeded(f"over {self.limits.max_queued_digits} DTMF digits unread"))
        else:
            self._digits.append(digit)

    # -- the consumer's side ----------------------------------------------

    def attach(self, on_audio: Callable[[bytes, int], object] | None,
               on_dtmf: Callable[[str], object] | None) -> None:
        """Receive the caller's audio (PCM bytes, rate) and DTMF digits from now on.

        Digits pressed before anyone listened are delivered now, in order;
        audio before that is dropped (there was nobody to hear it). ``None``
        stops delivery.
        """
        self._on_audio = on_audio
        self._on_dtmf = on_dtmf
        while on_dtmf is not None and self._digits and self._on_dtmf is on_dtmf:
            on_dtmf(self._digits.popleft())

    @property
    def playing(self) -> bool:
        return self._playback is not None

    def play(self, pcm: bytes, rate: int = 8000) -> defer.Deferred[bool]:
        """Stream 16-bit mono ``pcm`` at ``rate`` Hz to the caller in real-time 20 ms frames.

        Fires True when all of it was sent, False when stopped first
        (:meth:`stop_playback`, a newer :meth:`play`, a hangup or a closed
        connection). Frames follow the clock, not the reactor's lateness: a
        late tick sends every frame that fell due, so the pace never drifts.
        """
        self._stop(False)
        if rate not in _KIND_FOR_RATE:
            raise ValueError(f"no AudioSocket audio kind for {rate} Hz")
        if len(pcm) % 2:
            raise ValueError("PCM must be whole 16-bit samples")
        if self.closed or self.close_reason is not None:
            return defer.succeed(False)
        playback = _Playback(pcm, rate)
        self._playback = playback
        lead = self.limits.lead_frames
        for _ in range(lead):
            if not self._send_next(playback):
                return playback.done
        loop = LoopingCall.withCount(lambda count: self._tick(playback, count))
        loop.clock = self.clock
        playback.loop = loop
        loop.start(FRAME_SECONDS, now=lead == 0)
        return playback.done

    def stop_playback(self) -> None:
        """Stop the prompt now (barge-in); frames already sent are already heard."""
        self._stop(False)

    def _tick(self, playback: _Playback, count: int) -> None:
        for _ in range(count):
            if not self._send_next(playback):
                return

    def _send_next(self, playback: _Playback) -> bool:
        if playback is not self._playback or self.closed:
            return False
        chunk = playback.next_frame()
        if chunk is None:
            self._stop(True)
            return False
        self.transport.write(encode_frame(playback.kind, chunk))  # type: ignore[union-attr]
        return True

    def _stop(self, finished: bool) -> None:
        playback, self._playback = self._playback, None
        if playback is None:
            return
        if playback.loop is not None and playback.loop.running:
            playback.loop.stop()
        playback.done.callback(finished)


class _Expected:
    __slots__ = ("deferred", "timer")

    def __init__(self, deferred: defer.Deferred[AudioSocketSession], timer: IDelayedCall | None) -> None:
        self.deferred = deferred
        self.timer = timer


class AudioSocketFactory(PeerGatedFactory[AudioSocketSession]):
    """Accepts AudioSocket connections and hands each to whoever expects its UUID.

    A FastAGI call picks a fresh UUID, calls :meth:`expect`, then EXECs
    ``AudioSocket(<uuid>,<host>:<port>)``. Connections from peers outside the
    allow-list, and UUIDs nobody expects (or that already timed out), are refused.
    """

    service = "AudioSocket"

    def __init__(self, clock: IReactorTime, limits: AudioSocketLimits = AudioSocketLimits(),
                 peers: PeerPolicy | None = None) -> None:
        super().__init__(peers)
        self.clock = clock
        self.limits = limits
        self._expected: dict[uuid.UUID, _Expected] = {}

    def expect(self, ident: uuid.UUID, timeout: float | None = None) -> defer.Deferred[AudioSocketSession]:
        """A Deferred that fires with the session once Asterisk connects with ``ident``.

        Fails with :class:`AudioSocketTimeout` after ``timeout`` seconds
        (default ``limits.connect_timeout``); cancelling it forgets ``ident``.
        """
        if ident in self._expected:
            raise ValueError(f"AudioSocket UUID {ident} is already expected")

        def cancel(_: defer.Deferred[AudioSocketSession]) -> None:
            self._forget(ident)

        deferred: defer.Deferred[AudioSocketSession] = defer.Deferred(canceller=cancel)
        delay = self.limits.connect_timeout if timeout is None else timeout
        timer = self.clock.callLater(delay, self._expired, ident, delay) if delay > 0 else None
        self._expected[ident] = _Expected(deferred, timer)
        return deferred

    @property
    def expected(self) -> int:
        """How many UUIDs are waiting for their connection."""
        return len(self._expected)

    def _forget(self, ident: uuid.UUID) -> _Expected | None:
        entry = self._expected.pop(ident, None)
        if entry is not None and entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        return entry

    def _expired(self, ident: uuid.UUID, delay: float) -> None:
        entry = self._expected.pop(ident, None)
        if entry is not None:
            log.warn("Asterisk did not open AudioSocket {uuid} within {delay}s", uuid=ident, delay=delay)
            entry.deferred.errback(AudioSocketTimeout(f"AudioSocket {ident} not connected within {delay}s"))

    def _claim(self, session: AudioSocketSession, ident: uuid.UUID) -> bool:
        entry = self._forget(ident)
        if entry is None:
            return False
        session.uuid = ident
        entry.deferred.callback(session)
        return True

    def build_session(self, host: str, on_closed: Callable[[], None]) -> AudioSocketSession:
        return AudioSocketSession(self.clock, self.limits, self._claim, peer_host=host, on_closed=on_closed)
