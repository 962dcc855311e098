"""AudioSocket protocol unit tests over StringTransport with a fake Clock."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from ivr.agi.peers import PeerPolicy
from ivr.audiosocket import (
    AUDIO_KINDS,
    AudioSocketFactory,
    AudioSocketLimits,
    AudioSocketSession,
    Kind,
    encode_frame,
    frame_bytes,
)
from ivr.errors import (
    AudioSocketError,
    AudioSocketTimeout,
    CallHangup,
    LimitExceeded,
    ProtocolError,
)

CALL = uuid.UUID("4f0e5d3c-2b1a-4c9d-8e7f-6a5b4c3d2e1f")
AUDIO = bytes(range(256)) + bytes(64)  # 320 bytes: one 20 ms frame at 8 kHz


class Line:
    """A factory, one connection from Asterisk on a StringTransport, and what reached the consumer."""

    def __init__(self, limits: AudioSocketLimits | None = None, peer: str = "127.0.0.1",
                 expect: uuid.UUID | None = CALL) -> None:
        self.clock = Clock()
        self.factory = AudioSocketFactory(self.clock, limits or AudioSocketLimits())
        self.sessions: list[AudioSocketSession] = []
        self.failures: list[BaseException] = []
        self.audio: list[tuple[bytes, int]] = []
        self.digits: list[str] = []
        if expect is not None:
            waiting = self.factory.expect(expect)
            waiting.addCallbacks(self._handed_over, lambda f: self.failures.append(f.value))
        built = self.factory.buildProtocol(IPv4Address("TCP", peer, 40000))
        assert built is not None
        self.session = built
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        self.session.makeConnection(self.transport)
        self.reasons: list[BaseException] = []
        self.session.when_closed().addCallback(self.reasons.append)

    def _handed_over(self, session: AudioSocketSession) -> None:
        self.sessions.append(session)
        session.attach(lambda pcm, rate: self.audio.append((pcm, rate)), self.digits.append)

    def feed(self, *frames: bytes) -> None:
        self.session.dataReceived(b"".join(frames))

    def lose(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.session.connectionLost(Failure(ConnectionDone()))

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    def close_reason(self) -> BaseException | None:
        return self.session.close_reason

    def sent_frames(self) -> list[tuple[int, bytes]]:
        data = self.transport.value()
        self.transport.clear()
        frames = []
        while data:
            kind, length = data[0], int.from_bytes(data[1:3], "big")
            frames.append((kind, data[3:3 + length]))
            data = data[3 + length:]
        return frames


def uuid_frame(ident: uuid.UUID = CALL) -> bytes:
    return encode_frame(Kind.UUID, ident.bytes)


# -- framing --------------------------------------------------------------


def test_frames_are_kind_big_endian_length_payload() -> None:
    assert encode_frame(Kind.HANGUP) == b"\x00\x00\x00"
    assert encode_frame(Kind.AUDIO, b"ab") == b"\x10\x00\x02ab"
    assert encode_frame(Kind.DTMF, b"5") == b"\x03\x00\x015"
    assert frame_bytes(8000) == 320 and frame_bytes(16000) == 640
    with pytest.raises(ValueError):
        encode_frame(Kind.AUDIO, bytes(70000))


def test_uuid_hands_the_session_over_and_audio_and_dtmf_reach_it() -> None:
    line = Line()
    line.feed(uuid_frame(), encode_frame(Kind.AUDIO, AUDIO), encode_frame(Kind.DTMF, b"7"),
              encode_frame(Kind.DTMF, b"#"))
    assert line.sessions == [line.session]
    assert line.session.uuid == CALL
    assert line.audio == [(AUDIO, 8000)]
    assert line.digits == ["7", "#"]
    assert line.session.sample_rate == 8000
    assert not line.closing
    assert line.factory.expected == 0


def test_frames_split_at_every_byte_arrive_whole() -> None:
    line = Line()
    stream = uuid_frame() + encode_frame(Kind.AUDIO, AUDIO) + encode_frame(Kind.DTMF, b"3")
    for index in range(len(stream)):
        line.feed(stream[index:index + 1])
    assert line.audio == [(AUDIO, 8000)]
    assert line.digits == ["3"]


def test_many_frames_coalesced_in_one_read_arrive_in_order() -> None:
    line = Line()
    frames = [encode_frame(Kind.AUDIO, bytes([n]) * 320) for n in range(50)]
    line.feed(uuid_frame(), *frames, encode_frame(Kind.DTMF, b"1"))
    assert [pcm[0] for pcm, _ in line.audio] == list(range(50))
    assert line.digits == ["1"]


def test_slin16_audio_is_accepted_with_its_rate() -> None:
    line = Line()
    line.feed(uuid_frame(), encode_frame(Kind.AUDIO_SLIN16, bytes(640)))
    assert line.audio == [(bytes(640), 16000)]
    assert line.session.sample_rate == 16000


@pytest.mark.parametrize("kind", [Kind.AUDIO_SLIN12, Kind.AUDIO_SLIN24, Kind.AUDIO_SLIN32, Kind.AUDIO_SLIN44,
                                  Kind.AUDIO_SLIN48, Kind.AUDIO_SLIN96, Kind.AUDIO_SLIN192])
def test_rates_ivr_never_asks_for_are_refused_naming_the_rate(kind: Kind) -> None:
    line = Line()
    line.feed(uuid_frame(), encode_frame(kind, bytes(640)))
    reason = line.close_reason()
    assert line.closing and line.audio == []
    assert isinstance(reason, ProtocolError) and f"{AUDIO_KINDS[kind]} Hz is not accepted" in str(reason)


def test_digits_pressed_before_anyone_listens_are_kept_in_order() -> None:
    line = Line(expect=None)
    sessions: list[AudioSocketSession] = []
    line.factory.expect(CALL).addCallback(sessions.append)
    line.feed(uuid_frame(), encode_frame(Kind.DTMF, b"4"), encode_frame(Kind.AUDIO, AUDIO),
              encode_frame(Kind.DTMF, b"2"))
    digits: list[str] = []
    sessions[0].attach(None, digits.append)
    assert digits == ["4", "2"]
    line.feed(encode_frame(Kind.DTMF, b"9"))
    assert digits == ["4", "2", "9"]


# -- hostile and garbled frames ---------------------------------------------


@pytest.mark.parametrize(("frames", "error", "text"), [
    ([encode_frame(Kind.AUDIO, AUDIO)], ProtocolError, "before the UUID"),
    ([encode_frame(Kind.DTMF, b"1")], ProtocolError, "before the UUID"),
    ([encode_frame(Kind.UUID, bytes(15))], ProtocolError, "not 16"),
    ([encode_frame(Kind.UUID, bytes(17))], ProtocolError, "not 16"),
    ([uuid_frame(), uuid_frame()], ProtocolError, "second UUID"),
    ([uuid_frame(uuid.UUID(int=1))], ProtocolError, "unknown or unexpected UUID"),
    ([uuid_frame(), encode_frame(0x42, b"x")], ProtocolError, "unknown frame kind 0x42"),
    ([uuid_frame(), encode_frame(0x02, b"")], ProtocolError, "unknown frame kind 0x02"),
    ([uuid_frame(), encode_frame(Kind.DTMF, b"12")], ProtocolError, "not one digit"),
    ([uuid_frame(), encode_frame(Kind.DTMF, b"x")], ProtocolError, "not one digit"),
    ([uuid_frame(), encode_frame(Kind.DTMF, b"")], ProtocolError, "not one digit"),
    ([uuid_frame(), encode_frame(Kind.AUDIO, b"")], ProtocolError, "not whole samples"),
    ([uuid_frame(), encode_frame(Kind.AUDIO, b"abc")], ProtocolError, "not whole samples"),
    ([uuid_frame(), encode_frame(Kind.AUDIO_SLIN48, bytes(1920))], ProtocolError, "48000 Hz"),
    ([uuid_frame(), encode_frame(Kind.AUDIO, AUDIO), encode_frame(Kind.AUDIO_SLIN16, bytes(640))],
     ProtocolError, "rate changed"),
    ([uuid_frame(), b"\x10\xff\xff"], LimitExceeded, "over 6400"),
    ([b"\x10\x20\x00"], LimitExceeded, "over 6400"),
])
def test_a_hostile_frame_closes_the_connection_with_a_reason(
        frames: list[bytes], error: type[Exception], text: str) -> None:
    line = Line()
    line.feed(*frames, encode_frame(Kind.DTMF, b"5"))
    assert line.closing
    reason = line.close_reason()
    assert isinstance(reason, error) and text in str(reason)
    assert line.digits == []  # nothing after the bad frame is believed
    line.lose()
    assert line.reasons == [reason]


def test_frames_before_a_bad_one_are_still_delivered() -> None:
    line = Line()
    line.feed(uuid_frame(), encode_frame(Kind.DTMF, b"8"), encode_frame(Kind.AUDIO, AUDIO),
              encode_frame(0x77, b""))
    assert line.digits == ["8"] and len(line.audio) == 1
    assert line.closing


def test_an_oversized_length_is_refused_before_its_payload_arrives() -> None:
    line = Line()
    line.feed(uuid_frame(), b"\x10\xff")
    assert not line.closing
    line.feed(b"\xff")  # the header is complete: 65535 bytes announced
    assert line.closing and isinstance(line.close_reason(), LimitExceeded)


def test_error_frame_closes_with_its_code() -> None:
    line = Line()
    line.feed(uuid_frame(), encode_frame(Kind.ERROR, b"\x02"))
    reason = line.close_reason()
    assert isinstance(reason, AudioSocketError) and reason.code == 2
    assert line.closing


def test_hangup_frame_from_asterisk_is_a_normal_end() -> None:
    line = Line()
    line.feed(uuid_frame(), encode_frame(Kind.HANGUP))
    assert line.closing
    assert isinstance(line.close_reason(), CallHangup)


def test_too_many_unread_digits_close_the_connection() -> None:
    line = Line(limits=AudioSocketLimits(max_queued_digits=3), expect=None)
    line.factory.expect(CALL)
    line.feed(uuid_frame(), *(encode_frame(Kind.DTMF, b"1") for _ in range(4)))
    assert isinstance(line.close_reason(), LimitExceeded)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(1, 50), max_size=20))
def test_garbage_never_raises_and_either_waits_or_closes(garbage: bytes, cuts: list[int]) -> None:
    line = Line()
    stream = uuid_frame() + garbage
    position = 0
    for cut in cuts + [len(stream)]:
        line.feed(stream[position:position + cut])
        position += cut
    if line.closing:
        assert line.close_reason() is not None
    else:
        assert len(line.session._buffer) < 3 + line.session.limits.max_payload


# -- the UUID registry ------------------------------------------------------


def test_unknown_uuid_is_refused_and_the_expected_one_still_waits() -> None:
    line = Line()
    line.feed(uuid_frame(uuid.UUID(int=7)))
    assert line.closing and line.sessions == []
    assert line.factory.expected == 1


def test_expect_times_out_and_a_late_connection_is_refused() -> None:
    line = Line(limits=AudioSocketLimits(connect_timeout=2.0, uuid_timeout=30.0))
    line.clock.advance(2.0)
    assert len(line.failures) == 1 and isinstance(line.failures[0], AudioSocketTimeout)
    assert isinstance(line.failures[0], TimeoutError)
    line.feed(uuid_frame())
    assert line.closing and line.sessions == []


def test_cancelling_an_expectation_forgets_the_uuid() -> None:
    clock = Clock()
    factory = AudioSocketFactory(clock)
    waiting = factory.expect(CALL, timeout=5)
    waiting.addErrback(lambda f: f.trap(defer.CancelledError))
    waiting.cancel()
    assert factory.expected == 0
    assert clock.getDelayedCalls() == []


def test_the_same_uuid_cannot_be_expected_twice() -> None:
    factory = AudioSocketFactory(Clock())
    factory.expect(CALL)
    with pytest.raises(ValueError):
        factory.expect(CALL)


def test_a_connection_that_never_sends_its_uuid_is_closed() -> None:
    line = Line(limits=AudioSocketLimits(uuid_timeout=1.0))
    line.clock.advance(0.9)
    assert not line.closing
    line.clock.advance(0.1)
    assert line.closing and isinstance(line.close_reason(), LimitExceeded)


def test_an_identified_session_that_goes_quiet_is_closed() -> None:
    line = Line(limits=AudioSocketLimits(idle_timeout=3.0))
    line.feed(uuid_frame())
    for _ in range(5):
        line.clock.advance(2.0)
        line.feed(encode_frame(Kind.AUDIO, AUDIO))
    assert not line.closing
    line.clock.advance(3.0)
    assert line.closing


def test_peers_outside_the_allow_list_are_refused() -> None:
    factory = AudioSocketFactory(Clock(), peers=PeerPolicy.from_strings(["127.0.0.1/32"], 1))
    assert factory.buildProtocol(IPv4Address("TCP", "10.1.2.3", 4000)) is None
    first = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4000))
    assert first is not None
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4001)) is None  # over the quota
    first.makeConnection(StringTransport())
    first.connectionLost(None)
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4002)) is not None


# -- playback, barge-in and hangup -------------------------------------------


def pcm_of(frames: int, rate: int = 8000) -> bytes:
    size = frame_bytes(rate)
    return b"".join(bytes([n % 256]) * size for n in range(frames))


def test_prompt_is_paced_in_20ms_frames_after_a_short_lead() -> None:
    line = Line(limits=AudioSocketLimits(lead_frames=2))
    line.feed(uuid_frame())
    done: list[bool] = []
    line.session.play(pcm_of(10)).addCallback(done.append)
    assert [p[0] for _, p in line.sent_frames()] == [0, 1]
    for expected in range(2, 10):
        line.clock.advance(0.020)
        frames = line.sent_frames()
        assert [(k, p[0], len(p)) for k, p in frames] == [(Kind.AUDIO, expected, 320)]
    assert done == []
    line.clock.advance(0.020)
    assert done == [True] and not line.session.playing
    assert line.clock.getDelayedCalls()[0].getTime() > 1  # only the idle timer is left


def test_a_late_reactor_sends_every_frame_that_fell_due() -> None:
    line = Line(limits=AudioSocketLimits(lead_frames=0))
    line.feed(uuid_frame())
    line.session.play(pcm_of(20))
    assert len(line.sent_frames()) == 1
    line.clock.advance(0.100)  # five ticks late at once
    assert [p[0] for _, p in line.sent_frames()] == [1, 2, 3, 4, 5]
    line.clock.advance(0.020)
    assert [p[0] for _, p in line.sent_frames()] == [6]


def test_last_frame_is_padded_and_wideband_uses_slin16() -> None:
    line = Line(limits=AudioSocketLimits(lead_frames=1))
    line.feed(uuid_frame())
    done: list[bool] = []
    line.session.play(bytes(700), rate=16000).addCallback(done.append)
    line.clock.advance(0.020)
    line.clock.advance(0.020)
    frames = line.sent_frames()
    assert [(k, len(p)) for k, p in frames] == [(Kind.AUDIO_SLIN16, 640), (Kind.AUDIO_SLIN16, 640)]
    assert done == [True]


def test_barge_in_stops_the_prompt_at_once() -> None:
    line = Line()
    line.feed(uuid_frame())
    done: list[bool] = []
    line.session.play(pcm_of(100)).addCallback(done.append)
    line.clock.advance(0.2)
    line.sent_frames()
    line.session.stop_playback()
    assert done == [False] and not line.session.playing
    line.clock.advance(1.0)
    assert line.sent_frames() == []


def test_a_new_prompt_replaces_the_one_playing() -> None:
    line = Line()
    line.feed(uuid_frame())
    results: list[tuple[str, bool]] = []
    line.session.play(pcm_of(50)).addCallback(lambda r: results.append(("first", r)))
    line.session.play(pcm_of(3)).addCallback(lambda r: results.append(("second", r)))
    line.clock.pump([0.02] * 5)
    assert results == [("first", False), ("second", True)]


def test_hangup_stops_playback_sends_the_hangup_frame_and_closes() -> None:
    line = Line()
    line.feed(uuid_frame())
    done: list[bool] = []
    line.session.play(pcm_of(100)).addCallback(done.append)
    line.sent_frames()
    line.session.hangup()
    assert line.transport.value().endswith(b"\x00\x00\x00")
    assert line.closing and done == [False]
    line.session.hangup()  # harmless twice
    line.lose()
    assert isinstance(line.reasons[0], CallHangup)
    assert line.clock.getDelayedCalls() == []


def test_asterisk_closing_mid_prompt_ends_playback() -> None:
    line = Line()
    line.feed(uuid_frame())
    done: list[bool] = []
    line.session.play(pcm_of(100)).addCallback(done.append)
    line.lose()
    assert done == [False]
    assert isinstance(line.reasons[0], CallHangup)
    assert line.session.play(pcm_of(1)).result is False  # type: ignore[attr-defined]
    assert line.clock.getDelayedCalls() == []


def test_play_refuses_odd_bytes_and_unknown_rates() -> None:
    line = Line()
    line.feed(uuid_frame())
    with pytest.raises(ValueError):
        line.session.play(b"abc")
    with pytest.raises(ValueError):
        line.session.play(bytes(10), rate=11025)
