"""FastAGI protocol unit tests over StringTransport with a fake Clock."""

from __future__ import annotations

import pytest
from conftest import Session
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from ivr.agi.fastagi import AGILimits, FastAGIFactory
from ivr.agi.peers import PeerPolicy
from ivr.agi.replies import AGIReply
from ivr.errors import (
    CallHangup,
    CommandTimeout,
    DeadChannel,
    InvalidCommand,
    LimitExceeded,
    MalformedReply,
    UnsafeArgument,
    UsageError,
)

#: Twisted's own checks that a Deferred has fired (and how), for plain pytest functions.
_trial = SynchronousTestCase()
success_of = _trial.successResultOf


def failure_of(d: defer.Deferred[AGIReply]) -> BaseException:
    """The exception ``d`` has already failed with."""
    return _trial.failureResultOf(d).value


def test_environment_is_read_up_to_the_blank_line(session: Session) -> None:
    session.feed(b"agi_network: yes\nagi_network_script: hotline/extra?x=1\n"
                 b"agi_request: agi://127.0.0.1/hotline\nagi_callerid: 1001\n")
    assert session.ready == []
    session.feed(b"agi_arg_1: first\nagi_arg_2: sec ond\nagi_arg_4: gap\n\n")
    assert session.ready == [session.protocol]
    env = session.protocol.environment
    assert env["callerid"] == "1001"
    assert env.args == ("first", "sec ond")
    assert env.network_script == "hotline/extra"


def test_crlf_environment_lines_are_accepted(session: Session) -> None:
    session.feed(b"agi_request: agi://x/y\r\nagi_callerid: 42\r\n\r\n")
    assert session.protocol.environment["callerid"] == "42"


def test_commands_in_flight_complete_in_order(session: Session) -> None:
    session.start()
    first = session.protocol.send_command("ANSWER")
    second = session.protocol.send_command("GET VARIABLE", "X")
    third = session.protocol.send_command("STREAM FILE", "beep", "")
    assert session.sent() == [b"ANSWER\n", b'GET VARIABLE "X"\n', b'STREAM FILE "beep" ""\n']
    session.feed(b"200 result=0\n200 result=1 (a (nested) value)\n200 result=0 endpos=1600\n")
    assert success_of(first) == AGIReply("0")
    assert success_of(second).data == "a (nested) value"
    assert success_of(third).endpos == 1600


def test_reply_data_and_endpos_are_parsed(session: Session) -> None:
    session.start()
    d = session.protocol.send_command("RECORD FILE", "x", "wav", "#", 1000)
    session.feed(b"200 result=0 (timeout) endpos=8000\n")
    reply = success_of(d)
    assert isinstance(reply, AGIReply)
    assert (reply.result, reply.data, reply.endpos) == (0, "timeout", 8000)


def test_510_is_invalid_command(session: Session) -> None:
    session.start()
    d = session.protocol.send_command("ANSWER")
    session.feed(b"510 Invalid or unknown command\n")
    assert isinstance(failure_of(d), InvalidCommand)


def test_511_is_a_dead_channel_and_a_hangup(session: Session) -> None:
    session.start()
    d = session.protocol.send_command("ANSWER")
    session.feed(b"511 Command Not Permitted on a dead channel or intercept routine\n")
    error = failure_of(d)
    assert isinstance(error, DeadChannel) and isinstance(error, CallHangup)
    assert session.protocol.hungup


def test_520_multiline_usage_reply_is_one_error_with_the_usage(session: Session) -> None:
    session.start()
    d = session.protocol.send_command("STREAM FILE", "x", "")
    after = session.protocol.send_command("ANSWER")
    session.feed(b"520-Invalid command syntax.  Proper usage follows:\n"
                 b" Usage: STREAM FILE <filename> <escape digits> [sample offset]\n"
                 b"200 result=5 looks like a reply but is usage text\n"
                 b"520 End of proper usage.\n"
                 b"200 result=0\n")
    error = failure_of(d)
    assert isinstance(error, UsageError)
    assert "Usage: STREAM FILE" in error.usage
    assert "200 result=5" in error.usage
    assert success_of(after) == AGIReply("0")


def test_single_line_520(session: Session) -> None:
    session.start()
    d = session.protocol.send_command("ANSWER")
    session.feed(b"520 Invalid command syntax.\n")
    assert isinstance(failure_of(d), UsageError)


@pytest.mark.parametrize("line", [b"200", b"200 result 1", b"200 result= 1", b"200 result=",
                                  b"", b"garbage", b"\xff\xfe\x00", b"200 result=abc",
                                  b"300 result=1", b"200 result=1x"])
def test_malformed_reply_fails_the_command_and_closes(session: Session, line: bytes) -> None:
    session.start()
    d = session.protocol.send_command("ANSWER")
    later = session.protocol.send_command("ANSWER")
    session.feed(line + b"\n")
    assert isinstance(failure_of(d), MalformedReply)
    assert isinstance(failure_of(later), MalformedReply)
    assert session.transport.disconnecting
    assert isinstance(failure_of(session.protocol.send_command("ANSWER")), MalformedReply)


def test_get_data_empty_results_are_valid() -> None:
    for line, expected in [(b"200 result=\n", ""), (b"200 result= (timeout)\n", ""),
                           (b"200 result=12* (timeout)\n", "12*"), (b"200 result=0042\n", "0042")]:
        s = Session()
        s.start()
        d = s.protocol.send_command("GET DATA", "prompt", 5000, 4)
        s.feed(line)
        reply = success_of(d)
        assert isinstance(reply, AGIReply), line
        assert reply.raw_result == expected


def test_hangup_line_fails_the_command_in_flight_and_later_ones(session: Session) -> None:
    session.start()
    waiting = session.protocol.send_command("WAIT FOR DIGIT", 5000)
    session.feed(b"HANGUP\n")
    assert isinstance(failure_of(waiting), CallHangup)
    assert isinstance(failure_of(session.protocol.send_command("ANSWER")), CallHangup)
    # the late reply to the abandoned command is absorbed, not mismatched
    session.feed(b"200 result=-1\n")
    assert not session.transport.disconnecting


def test_eof_fails_pending_commands_with_hangup(session: Session) -> None:
    session.start()
    d = session.protocol.send_command("STREAM FILE", "x", "")
    session.lose()
    assert isinstance(failure_of(d), CallHangup)
    assert session.protocol.closed


def test_command_deadline_closes_the_session(session: Session) -> None:
    session.start()
    d = session.protocol.send_command("ANSWER", timeout=2.0)
    session.clock.advance(1.9)
    assert not d.called
    session.clock.advance(0.2)
    assert isinstance(failure_of(d), CommandTimeout)
    assert session.transport.disconnecting


def test_replies_in_time_cancel_their_deadline(session: Session) -> None:
    session.start()
    d = session.protocol.send_command("ANSWER", timeout=2.0)
    session.feed(b"200 result=0\n")
    assert success_of(d) == AGIReply("0")
    session.clock.advance(AGILimits().command_timeout + 1)  # past every deadline there was
    assert not session.transport.disconnecting
    assert session.clock.getDelayedCalls() == []  # nothing in flight: no timer left behind


def test_one_timer_watches_every_command_of_a_session(session: Session) -> None:
    session.start()
    first = session.protocol.send_command("ANSWER")
    session.feed(b"200 result=0\n")
    later = [session.protocol.send_command("GET VARIABLE", "X") for _ in range(3)]
    assert len(session.clock.getDelayedCalls()) == 1
    session.clock.advance(AGILimits().command_timeout - 0.5)
    session.feed(b"200 result=1 (a)\n200 result=1 (b)\n")
    session.clock.advance(1.0)  # the third is now overdue, though the first two were answered
    assert success_of(first) == AGIReply("0")
    assert [success_of(d).data for d in later[:2]] == ["a", "b"]
    assert isinstance(failure_of(later[2]), CommandTimeout)
    assert session.transport.disconnecting


def test_a_sooner_deadline_is_watched_for_before_a_later_one(session: Session) -> None:
    session.start()
    slow = session.protocol.send_command("STREAM FILE", "x", "", timeout=60.0)
    quick = session.protocol.send_command("ANSWER", timeout=1.0)
    session.clock.advance(1.1)
    assert isinstance(failure_of(quick), CommandTimeout)
    assert isinstance(failure_of(slow), CommandTimeout)  # the session ends: replies cannot be matched


def test_cancelled_command_keeps_replies_aligned(session: Session) -> None:
    session.start()
    first = session.protocol.send_command("WAIT FOR DIGIT", 5000)
    first.addErrback(lambda f: None)
    first.cancel()
    second = session.protocol.send_command("ANSWER")
    session.feed(b"200 result=49\n200 result=0\n")
    assert success_of(second) == AGIReply("0")


def test_environment_deadline(session: Session) -> None:
    session.feed(b"agi_request: agi://x/y\n")
    session.clock.advance(AGILimits().env_timeout + 0.1)
    assert session.transport.disconnecting
    assert session.ready == []


def test_oversize_line_in_environment_closes_cleanly() -> None:
    s = Session(limits=AGILimits(max_line_bytes=2100))
    s.feed(b"agi_request: agi://x/y\nagi_calleridname: " + b"A" * 3000 + b"\n\n")
    assert s.transport.disconnecting
    assert s.ready == []
    assert isinstance(s.protocol.close_reason, LimitExceeded)


def test_oversize_reply_closes_cleanly(session: Session) -> None:
    session.start()
    d = session.protocol.send_command("GET VARIABLE", "X")
    session.feed(b"200 result=1 (" + b"v" * 10000)
    assert isinstance(failure_of(d), LimitExceeded)
    assert session.transport.disconnecting


def test_too_many_environment_lines_close_the_session() -> None:
    s = Session(limits=AGILimits(max_env_lines=10))
    s.feed(b"".join(b"agi_arg_%d: x\n" % i for i in range(1, 20)))
    assert s.transport.disconnecting


def test_nul_and_invalid_utf8_in_environment_are_replaced(session: Session) -> None:
    session.feed(b"agi_request: agi://x/hotline\nagi_calleridname: A\x00B\xff\xfeC\n"
                 b"not an env line\nagi_UPPER: ignored\n\n")
    env = session.protocol.environment
    assert env["calleridname"] == "A\ufffdB\ufffd\ufffdC"
    assert "UPPER" not in env and len(env) == 2
    assert session.ready


def test_environment_without_request_is_refused(session: Session) -> None:
    session.feed(b"agi_callerid: 1\n\n")
    assert session.ready == []
    assert session.transport.disconnecting


def test_unsolicited_reply_closes(session: Session) -> None:
    session.start()
    session.feed(b"200 result=0\n")
    assert session.transport.disconnecting


def test_unsafe_argument_is_refused_before_sending(session: Session) -> None:
    session.start()
    d = session.protocol.send_command("SET VARIABLE", "X", "line\nEXEC Dial SIP/1")
    assert isinstance(failure_of(d), UnsafeArgument)
    assert session.sent() == []


def test_command_before_environment_is_refused(session: Session) -> None:
    d = session.protocol.send_command("ANSWER")
    assert failure_of(d).__class__.__name__ == "ProtocolError"


def test_peer_allow_list_and_per_peer_limit() -> None:
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    factory = FastAGIFactory(Clock(), lambda p: None,
                             peers=PeerPolicy.from_strings(["127.0.0.1/32"], max_per_peer=2))
    assert factory.buildProtocol(IPv4Address("TCP", "10.1.2.3", 1)) is None
    first = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
    second = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2))
    assert first is not None and second is not None
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 3)) is None
    first.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1)))
    first.connectionLost()
    assert factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 4)) is not None


def test_last_command_is_written_then_the_session_closes(session: Session) -> None:
    session.start()
    session.protocol.send_last_command("SET VARIABLE", "IVR_RESULT", "done")
    assert session.sent() == [b'SET VARIABLE "IVR_RESULT" "done"\n']
    assert session.transport.disconnecting


def test_last_command_after_a_hangup_sends_nothing(session: Session) -> None:
    session.start()
    session.feed(b"HANGUP\n")
    session.protocol.send_last_command("SET VARIABLE", "IVR_RESULT", "done")
    assert session.sent() == []


def test_a_repeated_environment_key_cannot_override_the_first(session: Session) -> None:
    # e.g. a caller name carrying a newline and "agi_network_script: admin"
    session.feed(b"agi_network_script: hotline\nagi_request: agi://x/hotline\n"
                 b"agi_calleridname: Eve\nagi_network_script: admin\n\n")
    assert session.protocol.environment.network_script == "hotline"


def test_ipv4_peers_of_a_dual_stack_listener_are_admitted() -> None:
    policy = PeerPolicy.from_strings(["127.0.0.0/8"], 10)
    assert policy.admits("::ffff:127.0.0.1")
    assert not policy.admits("::ffff:10.0.0.1")


def test_the_write_fast_path_relies_on_twisteds_tcp_connection_as_it_is() -> None:
    """FastAGIProtocol._write reads tcp.Connection internals (no public API says "nothing queued"):
    pin them, so a Twisted upgrade that changes them fails here, not in production."""
    import socket

    from twisted.internet import tcp
    from twisted.internet.protocol import Protocol
    from twisted.internet.testing import MemoryReactor

    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        conn = tcp.Connection(ours, Protocol(), MemoryReactor())  # type: ignore[no-untyped-call]
        conn.connected = True  # as tcp.Server sets it once a connection is accepted
        assert conn.connected and not conn.disconnecting and not conn._writeDisconnecting and not conn.TLS
        assert conn.dataBuffer == b"" and conn._tempDataBuffer == []  # nothing queued
        assert conn.writeSomeData(b"200 result=0\n") == len(b"200 result=0\n")  # sent at once
        assert theirs.recv(64) == b"200 result=0\n"
        conn.write(b"queued")  # Twisted's write only queues; the fast path must then stand aside
        assert conn._tempDataBuffer == [b"queued"]
    finally:
        ours.close()
        theirs.close()


_KEYS = st.sampled_from(["channel", "callerid", "calleridname", "arg_1", "uniqueid", "x", "a" * 65])
#: An environment as Asterisk writes it (agi_request first, each key once, values with any
#: bytes: CR, NUL, bad UTF-8), now and then with one line that is anything at all.
_ENV = st.tuples(st.binary(max_size=20), st.dictionaries(_KEYS, st.binary(max_size=40)), st.integers(0, 8),
                 st.none() | st.binary(max_size=30)).map(
    lambda t: _lines({"request": t[0], **t[1]}, t[2], t[3]))


def _lines(env: dict[str, bytes], where: int, odd: bytes | None) -> list[bytes]:
    lines = [b"agi_" + key.encode() + b": " + value for key, value in env.items()]
    return lines if odd is None else [*lines[:where], odd, *lines[where:]]


def _read(chunks: list[bytes], limits: AGILimits) -> tuple[dict[str, str] | None, bool, bytes]:
    session = Session(limits=limits)
    for chunk in chunks:
        session.feed(chunk)
    ready = dict(session.protocol.environment) if session.ready else None
    return ready, session.transport.disconnecting, session.transport.value()


@settings(max_examples=300, deadline=None)
@given(_ENV, st.binary(max_size=20),
       st.sampled_from([AGILimits(), AGILimits(max_env_lines=5),
                        AGILimits(max_env_bytes=120, max_line_bytes=60)]))
def test_an_environment_in_one_segment_reads_as_it_does_line_by_line(
        lines: list[bytes], after: bytes, limits: AGILimits) -> None:
    """The one-search fast path and the line-by-line reader agree on every input."""
    lines = [line.replace(b"\n", b" ") for line in lines]
    data = b"".join(line + b"\n" for line in lines) + b"\n" + after
    whole = _read([data], limits)
    bytewise = _read([data[i:i + 1] for i in range(len(data))], limits)
    assert whole == bytewise
