"""AMI client unit tests: the test plays Asterisk over a StringTransport (or iosim) with a fake Clock."""

from __future__ import annotations

import itertools
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from ivr.ami import (
    ActionResult,
    AMIClient,
    AMICredentials,
    AMILimits,
    AMIMessage,
    AMIProtocol,
    OriginateOutcome,
    OriginateResult,
    build_action,
    capped_backoff,
    format_caller_id,
    originate_result,
    variable_header,
)
from ivr.ami.message import MAX_ACTION_HEADERS, MAX_HEADER_LINE_BYTES
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

CREDS = AMICredentials("ivr", "s3cret")
GREETING = b"Asterisk Call Manager/11.0.0\r\n"
QUIET = AMILimits(keepalive_interval=0)


#: Trial's synchronous Deferred assertions: the result a Deferred already fired with,
#: or its Failure (checked to be one of the given types).
_trial = SynchronousTestCase()
successResultOf = _trial.successResultOf
failureResultOf = _trial.failureResultOf


def parse_messages(data: bytes) -> list[AMIMessage]:
    """Split what the client wrote into messages the way Asterisk does (CRLF or LF ends a line)."""
    messages: list[AMIMessage] = []
    headers: list[tuple[str, str]] = []
    for raw in data.split(b"\n"):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line:
            if headers:
                messages.append(AMIMessage(headers))
            headers = []
            continue
        name, _, value = line.decode().partition(": ")
        headers.append((name, value))
    assert not headers, "unterminated message"
    return messages


def wire(*headers: tuple[str, str], **named: str) -> bytes:
    """One message as Asterisk writes it."""
    pairs = [*headers, *named.items()]
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in pairs) + b"\r\n"


class Asterisk:
    """An AMIProtocol connected to a StringTransport; the test plays the Asterisk side."""

    def __init__(self, limits: AMILimits = QUIET, credentials: AMICredentials = CREDS) -> None:
        self.clock = Clock()
        counter = itertools.count(1)
        self.events: list[AMIMessage] = []
        self.protocol = AMIProtocol(self.clock, credentials, limits=limits,
                                    next_action_id=lambda: f"t-{next(counter)}")
        self.protocol.events.subscribe(self.events.append)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def feed(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def sent(self) -> list[AMIMessage]:
        value = self.transport.value()
        self.transport.clear()
        return parse_messages(value)

    def login(self) -> None:
        self.feed(GREETING)
        (login,) = self.sent()
        assert login["Action"] == "Login"
        self.feed(wire(Response="Success", ActionID=login["ActionID"], Message="Authentication accepted"))
        assert self.protocol.ready

    def lose(self) -> None:
        self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def disconnecting(self) -> bool:
        return bool(self.transport.disconnecting)


@pytest.fixture
def ami() -> Asterisk:
    peer = Asterisk()
    peer.login()
    return peer


# -- login --------------------------------------------------------------------


def test_login_is_sent_after_the_greeting_and_nothing_before_it() -> None:
    peer = Asterisk()
    assert peer.sent() == []
    peer.feed(GREETING)
    (login,) = peer.sent()
    assert dict(login) == {"action": "Login", "actionid": "t-1", "username": "ivr", "secret": "s3cret",
                           "events": "on"}
    assert peer.protocol.greeting == "Asterisk Call Manager/11.0.0"
    assert not peer.protocol.ready


def test_actions_sent_while_logging_in_wait_for_the_login_and_keep_their_order() -> None:
    peer = Asterisk()
    first = peer.protocol.send_action("Ping")
    peer.feed(GREETING)
    second = peer.protocol.send_action("Getvar", [("Variable", "X")])
    (login,) = peer.sent()  # only the login went out
    assert login["Action"] == "Login"
    ready = peer.protocol.when_ready()
    peer.feed(wire(Response="Success", ActionID=login["ActionID"]))
    assert successResultOf(ready) is None
    ping, getvar = peer.sent()
    assert [ping["Action"], getvar["Action"]] == ["Ping", "Getvar"]
    peer.feed(wire(Response="Success", ActionID=getvar["ActionID"], Variable="X", Value="1"))
    peer.feed(wire(Response="Success", ActionID=ping["ActionID"], Ping="Pong"))
    assert successResultOf(first).response["Ping"] == "Pong"
    assert successResultOf(second).response["Value"] == "1"


def test_a_refused_login_fails_queued_actions_and_closes() -> None:
    peer = Asterisk()
    queued = peer.protocol.send_action("Ping")
    ready = peer.protocol.when_ready()
    peer.feed(GREETING)
    (login,) = peer.sent()
    with capturedLogs() as logs:
        peer.feed(wire(Response="Error", ActionID=login["ActionID"], Message="Authentication failed"))
    assert isinstance(peer.protocol.close_reason, AMILoginFailed)
    assert "Authentication failed" in str(peer.protocol.close_reason)
    failureResultOf(queued, AMIDisconnected)
    assert peer.disconnecting and peer.sent() == []
    assert any(e["log_level"] == LogLevel.error for e in logs)
    assert all("s3cret" not in repr(e) for e in logs)
    peer.lose()
    failureResultOf(ready, AMIDisconnected)


def test_a_peer_that_is_not_asterisk_is_dropped() -> None:
    peer = Asterisk()
    pending = peer.protocol.send_action("Ping")
    peer.feed(b"SSH-2.0-OpenSSH_9.2\r\n")
    assert isinstance(peer.protocol.close_reason, AMIProtocolError)
    failureResultOf(pending, AMIDisconnected)
    assert peer.disconnecting


def test_no_greeting_within_the_login_timeout_closes() -> None:
    peer = Asterisk(AMILimits(login_timeout=5, keepalive_interval=0))
    peer.clock.advance(4.9)
    assert not peer.disconnecting
    peer.clock.advance(0.2)
    assert isinstance(peer.protocol.close_reason, AMITimeout)
    assert peer.disconnecting


def test_credentials_with_a_newline_are_refused_before_connecting_and_not_echoed() -> None:
    with pytest.raises(UnsafeHeader) as caught:
        AMIClient(cast(IStreamClientEndpoint, object()), Clock(),
                  AMICredentials("ivr", "pw\r\nAction: Originate"))
    assert "Originate" not in str(caught.value) and "pw" not in str(caught.value)
    assert "s3cret" not in repr(CREDS)


# -- correlation ---------------------------------------------------------------


def test_responses_find_their_actions_in_any_order_between_events(ami: Asterisk) -> None:
    ping = ami.protocol.ping()
    getvar = ami.protocol.getvar("CONTACT_ID", channel="PJSIP/1001-01")
    ping_id, getvar_id = (m["ActionID"] for m in ami.sent())
    assert ping_id != getvar_id
    ami.feed(wire(Event="Newchannel", Channel="PJSIP/2000-02"))
    ami.feed(wire(Response="Success", ActionID=getvar_id, Variable="CONTACT_ID", Value="c-42"))
    ami.feed(wire(Event="Hangup", Channel="PJSIP/2000-02", Cause="16"))
    assert not ping.called
    ami.feed(wire(Response="Success", ActionID=ping_id, Ping="Pong"))
    assert successResultOf(getvar) == "c-42"
    assert successResultOf(ping).response["Ping"] == "Pong"
    assert [e.event for e in ami.events] == ["Newchannel", "Hangup"]


def test_action_ids_are_unique(ami: Asterisk) -> None:
    for _ in range(50):
        ami.protocol.ping()
    ids = [m["ActionID"] for m in ami.sent()]
    assert len(set(ids)) == 50


def test_response_error_fails_with_the_message(ami: Asterisk) -> None:
    d = ami.protocol.hangup("PJSIP/nobody-01")
    (sent,) = ami.sent()
    ami.feed(wire(Response="Error", ActionID=sent["ActionID"], Message="No such channel"))
    error = failureResultOf(d, AMIActionError).value
    assert error.message == "No such channel"
    assert error.action == "Hangup"


def test_unknown_and_duplicate_responses_are_dropped(ami: Asterisk) -> None:
    with capturedLogs() as logs:
        ami.feed(wire(Response="Success", ActionID="someone-else-1"))
    assert ami.events == [] and ami.protocol.ready
    assert any("unknown ActionID" in e["log_format"] for e in logs)


def test_an_event_list_collects_its_events_until_complete(ami: Asterisk) -> None:
    d = ami.protocol.queue_status("sales")
    (sent,) = ami.sent()
    assert (sent["Action"], sent["Queue"]) == ("QueueStatus", "sales")
    aid = sent["ActionID"]
    ami.feed(wire(Response="Success", ActionID=aid, EventList="start", Message="Queue status will follow"))
    ami.feed(wire(Event="QueueParams", Queue="sales", ActionID=aid))
    ami.feed(wire(Event="VarSet", Variable="X"))  # unrelated, interleaved
    ami.feed(wire(Event="QueueMember", Queue="sales", Name="Agent 1001", ActionID=aid))
    assert not d.called
    ami.feed(wire(Event="QueueStatusComplete", ActionID=aid, EventList="Complete", ListItems="2"))
    result = successResultOf(d)
    assert isinstance(result, ActionResult)
    assert [e.event for e in result.events] == ["QueueParams", "QueueMember"]
    assert result.complete is not None and result.complete["ListItems"] == "2"
    assert [e.event for e in ami.events] == ["VarSet"]  # list members are not published


def test_list_events_that_overtake_their_response_are_kept(ami: Asterisk) -> None:
    d = ami.protocol.send_action("CoreShowChannels")
    aid = ami.sent()[0]["ActionID"]
    ami.feed(wire(Event="CoreShowChannel", ActionID=aid, Channel="A")
             + wire(Response="Success", ActionID=aid, EventList="start")
             + wire(Event="CoreShowChannel", ActionID=aid, Channel="B")
             + wire(Event="CoreShowChannelsComplete", ActionID=aid, EventList="Complete"))
    assert [e["Channel"] for e in successResultOf(d).events] == ["A", "B"]


def test_an_error_to_a_list_action_fails_it(ami: Asterisk) -> None:
    d = ami.protocol.queue_status("nosuch")
    aid = ami.sent()[0]["ActionID"]
    ami.feed(wire(Response="Error", ActionID=aid, Message="Permission denied"))
    failureResultOf(d, AMIActionError)


def test_a_too_long_event_list_fails_that_action_only(ami: Asterisk) -> None:
    peer = Asterisk(AMILimits(max_list_events=3, keepalive_interval=0))
    peer.login()
    d = peer.protocol.queue_status()
    aid = peer.sent()[0]["ActionID"]
    peer.feed(wire(Response="Success", ActionID=aid, EventList="start"))
    peer.feed(b"".join(wire(Event="QueueMember", ActionID=aid, N=str(n)) for n in range(10)))
    failureResultOf(d, AMILimitExceeded)
    peer.feed(wire(Event="QueueStatusComplete", ActionID=aid, EventList="Complete"))
    assert peer.events == [] and peer.protocol.ready  # the rest is dropped, the connection stays


def test_repeated_keys_are_all_kept_and_lookup_ignores_case(ami: Asterisk) -> None:
    d = ami.protocol.send_action("Command", [("Command", "core show uptime")])
    aid = ami.sent()[0]["ActionID"]
    ami.feed(wire(("Response", "Success"), ("ActionId", aid), ("Output", "System uptime: 1 hour"),
                  ("Output", "Last reload: 5 minutes")))
    response = successResultOf(d).response
    assert response.get_all("output") == ["System uptime: 1 hour", "Last reload: 5 minutes"]
    assert response["OUTPUT"] == "System uptime: 1 hour"


# -- originate -------------------------------------------------------------------


def test_originate_headers_are_async_with_escaped_variables(ami: Asterisk) -> None:
    ami.protocol.originate("PJSIP/1001", context="click-to-call", exten="s", priority=1,
                           caller_id=format_caller_id("Zhang Wei", "+8613800138000"), timeout=25,
                           variables={"IVR_CONTACT_ID": "c-1", "__CUSTOMER": "a,b=c\"d\\e(f)[g]"},
                           channel_id="ivr-c-1")
    (sent,) = ami.sent()
    assert sent["Action"] == "Originate"
    assert (sent["Channel"], sent["Context"], sent["Exten"], sent["Priority"]) == \
        ("PJSIP/1001", "click-to-call", "s", "1")
    assert sent["Timeout"] == "25000" and sent["Async"] == "true"
    assert sent["CallerID"] == '"Zhang Wei" <+8613800138000>'
    assert sent["ChannelId"] == "ivr-c-1"
    variables = sent.get_all("Variable")
    assert [asterisk_variables(v) for v in variables] == [
        [("IVR_CONTACT_ID", "c-1")], [("__CUSTOMER", "a,b=c\"d\\e(f)[g]")]]


@pytest.mark.parametrize(("response", "reason", "outcome"), [
    ("Success", "4", OriginateOutcome.ANSWERED),
    ("Failure", "0", OriginateOutcome.FAILED),
    ("Failure", "1", OriginateOutcome.NO_ANSWER),
    ("Failure", "3", OriginateOutcome.NO_ANSWER),
    ("Failure", "5", OriginateOutcome.BUSY),
    ("Failure", "8", OriginateOutcome.CONGESTION),
    ("Failure", "2", OriginateOutcome.FAILED),
    ("Failure", "4", OriginateOutcome.FAILED),
    ("Failure", "", OriginateOutcome.FAILED),
    ("Failure", "99999999999", OriginateOutcome.FAILED),
])
def test_originate_result_comes_from_originate_response(ami: Asterisk, response: str, reason: str,
                                                        outcome: OriginateOutcome) -> None:
    d = ami.protocol.originate("PJSIP/1001", application="Wait", data="1", timeout=20)
    aid = ami.sent()[0]["ActionID"]
    ami.feed(wire(Response="Success", ActionID=aid, Message="Originate successfully queued"))
    assert not d.called
    ami.feed(wire(Event="Newchannel", Channel="PJSIP/1001-0001"))
    ami.feed(wire(Event="OriginateResponse", ActionID=aid, Response=response, Channel="PJSIP/1001-0001",
                  Reason=reason, Uniqueid="1700000000.1"))
    result = successResultOf(d)
    assert isinstance(result, OriginateResult)
    assert result.outcome is outcome
    assert result.channel == "PJSIP/1001-0001" and result.uniqueid == "1700000000.1"
    assert result.answered == (outcome is OriginateOutcome.ANSWERED)


def test_originate_response_before_the_ack_still_completes(ami: Asterisk) -> None:
    d = ami.protocol.originate("PJSIP/1001", application="Wait", data="1")
    aid = ami.sent()[0]["ActionID"]
    ami.feed(wire(Event="OriginateResponse", ActionID=aid, Response="Failure", Reason="5"))
    assert not d.called
    ami.feed(wire(Response="Success", ActionID=aid))
    assert successResultOf(d).outcome is OriginateOutcome.BUSY


def test_originate_refused_by_asterisk_is_an_action_error(ami: Asterisk) -> None:
    d = ami.protocol.originate("PJSIP/1001", context="nosuch", exten="s")
    aid = ami.sent()[0]["ActionID"]
    ami.feed(wire(Response="Error", ActionID=aid, Message="Extension does not exist."))
    failureResultOf(d, AMIActionError)


def test_originate_waits_for_the_ringing_time_then_times_out(ami: Asterisk) -> None:
    d = ami.protocol.originate("PJSIP/1001", application="Wait", data="1", timeout=30, answer_margin=15)
    aid = ami.sent()[0]["ActionID"]
    ami.feed(wire(Response="Success", ActionID=aid))
    ami.clock.advance(44.9)
    assert not d.called
    ami.clock.advance(0.2)
    failureResultOf(d, AMITimeout)
    ami.feed(wire(Event="OriginateResponse", ActionID=aid, Response="Success", Reason="4"))
    assert ami.events == []  # a late answer to an abandoned action is dropped


@pytest.mark.parametrize("kwargs", [
    {"channel": "PJSIP/1001"},  # neither target
    {"channel": "PJSIP/1001", "exten": "s", "application": "Wait"},  # both
    {"channel": "PJSIP/1001", "exten": "s"},  # no context
    {"channel": "", "application": "Wait"},
    {"channel": "PJSIP/1001", "application": "Wait", "timeout": 0},
    {"channel": "PJSIP/1001", "application": "Wait", "timeout": 86400},
    {"channel": "PJSIP/1001", "application": "Wait", "variables": {"SHELL(rm -rf /)": "x"}},
    {"channel": "PJSIP/1001", "application": "Wait", "variables": {"X": "a\r\nAction: Hangup"}},
    {"channel": "PJSIP/1001\r\nChannel: DAHDI/1", "application": "Wait"},
])
def test_bad_originate_arguments_fail_without_sending(ami: Asterisk, kwargs: dict[str, Any]) -> None:
    channel = kwargs.pop("channel")
    d = ami.protocol.originate(channel, **kwargs)
    failureResultOf(d, UnsafeHeader)
    assert ami.sent() == []


# -- header safety ------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "a\r\nAction: Originate", "a\nb", "a\rb", "nul\x00", "tab\there", "del\x7f", "nel\x85",
    "ls\u2028", "ps\u2029", "\x1b[31m", "\ud800",
])
def test_control_characters_in_values_are_refused_not_stripped(ami: Asterisk, value: str) -> None:
    d = ami.protocol.setvar("CALLER_NAME", value, channel="PJSIP/1001-01")
    failureResultOf(d, UnsafeHeader)
    assert ami.sent() == [] and ami.protocol.ready
    with pytest.raises(UnsafeHeader):
        build_action("Setvar", [("Value", value)])


@pytest.mark.parametrize("name", ["Bad:Name", "Two Words", "", "Value\r\n", "Ünïcode", "-dash", "a" * 65])
def test_header_names_must_be_plain_words(name: str) -> None:
    with pytest.raises(UnsafeHeader):
        build_action("Ping", [(name, "x")])


@pytest.mark.parametrize("name", ["ActionID", "actionid", "Action", "ACTION"])
def test_callers_cannot_set_action_or_action_id(name: str) -> None:
    with pytest.raises(UnsafeHeader):
        build_action("Ping", {name: "x"})


def test_a_line_longer_than_asterisk_reads_is_refused() -> None:
    fits = "x" * (MAX_HEADER_LINE_BYTES - len("Value: \r\n"))
    assert len(build_action("Setvar", [("Value", fits)]).split(b"\r\n")[1]) + 2 == MAX_HEADER_LINE_BYTES
    with pytest.raises(UnsafeHeader):
        build_action("Setvar", [("Value", fits + "x")])
    with pytest.raises(UnsafeHeader):  # counted in bytes, not characters
        build_action("Setvar", [("Value", "é" * (MAX_HEADER_LINE_BYTES // 2))])


def test_more_headers_than_asterisk_keeps_are_refused() -> None:
    build_action("Originate", [("Variable", f"V{n}=1") for n in range(MAX_ACTION_HEADERS - 1)])
    with pytest.raises(UnsafeHeader):
        build_action("Originate", [("Variable", f"V{n}=1") for n in range(MAX_ACTION_HEADERS)])


@pytest.mark.parametrize("value", [True, None, 1.5, b"bytes", ["x"]])
def test_only_str_and_int_values_are_sent(value: Any) -> None:
    with pytest.raises(UnsafeHeader):
        build_action("Ping", [("X", value)])


HEADER_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,20}", fullmatch=True)


@given(st.lists(st.tuples(HEADER_NAMES, st.text(max_size=60)), max_size=8))
@settings(max_examples=400, deadline=None)
def test_any_value_is_either_refused_or_arrives_as_exactly_one_header(headers: list[tuple[str, str]]) -> None:
    headers = [(k, v) for k, v in headers if k.lower() not in ("action", "actionid")]
    try:
        data = build_action("Setvar", headers, "id-1")
    except UnsafeHeader:
        return
    (message,) = parse_messages(data)
    assert message.headers == (("Action", "Setvar"), ("ActionID", "id-1"), *headers)


def asterisk_separate_args(buf: str) -> list[str]:
    """A model of __ast_app_separate_args(buf, ',', remove_chars=1) from Asterisk's main/app.c."""
    args: list[str] = []
    current: list[str] = []
    paren = bracket = 0
    quote = False
    index = 0
    while index < len(buf):
        ch = buf[index]
        if ch == "(":
            paren += 1
            current.append(ch)
        elif ch == ")":
            paren = max(paren - 1, 0)
            current.append(ch)
        elif ch == "[":
            bracket += 1
            current.append(ch)
        elif ch == "]":
            bracket = max(bracket - 1, 0)
            current.append(ch)
        elif ch == '"':
            quote = not quote  # removed
        elif ch == "\\":
            index += 1  # the backslash is removed and the next character taken literally
            if index < len(buf):
                current.append(buf[index])
        elif ch == "," and not paren and not quote and not bracket:
            args.append("".join(current))
            current = []
        else:
            current.append(ch)
        index += 1
    args.append("".join(current))
    return args


def asterisk_variables(header_value: str) -> list[tuple[str, str]]:
    """What man_do_variable_value() in manager.c makes of one ``Variable:`` header value."""
    found = []
    for item in asterisk_separate_args(header_value.lstrip(" \t")):
        name, sep, value = item.partition("=")
        if sep and name:
            found.append((name, value))
    return found


def test_the_model_splits_an_unescaped_comma_like_asterisk() -> None:
    assert asterisk_variables("A=1,INJECTED=2") == [("A", "1"), ("INJECTED", "2")]


@given(st.text(max_size=80))
@settings(max_examples=1000, deadline=None)
def test_a_variable_value_sets_exactly_that_one_variable(value: str) -> None:
    name, header = variable_header("__IVR_CUSTOMER_NAME", value)
    try:
        build_action("Originate", [(name, header)])
    except UnsafeHeader:
        return
    assert asterisk_variables(header) == [("__IVR_CUSTOMER_NAME", value)]


@pytest.mark.parametrize("name", ["CALLERID(name)", "SHELL(id)", "A B", "1ABC", "___X", "X=Y", ""])
def test_variable_names_are_plain_names_never_functions(name: str) -> None:
    with pytest.raises(UnsafeHeader):
        variable_header(name, "1")


@pytest.mark.parametrize(("name", "number"), [
    ('Evil" <+19005550100>', "+8613800138000"), ("a<b", "1"), ("x\\", "1"), ("ok", "123&SIP/x"),
    ("ok", "+86 138"), ("new\nline", "1"), ("n" * 81, "1"),
])
def test_caller_id_refuses_what_would_change_its_parsing(name: str, number: str) -> None:
    with pytest.raises(UnsafeHeader):
        format_caller_id(name, number)


def test_caller_id_without_a_name() -> None:
    assert format_caller_id("", "1001") == "<1001>"


# -- limits, timeouts, disconnects ----------------------------------------------------------


def test_a_line_over_the_limit_closes_and_fails_pending_actions() -> None:
    peer = Asterisk(AMILimits(max_line_bytes=100, keepalive_interval=0))
    peer.login()
    d = peer.protocol.ping()
    with capturedLogs() as logs:
        peer.feed(b"Event: Foo\r\nData: " + b"x" * 200)
    assert isinstance(peer.protocol.close_reason, AMIProtocolError)
    failureResultOf(d, AMIDisconnected)
    assert peer.disconnecting
    assert any("over 100 bytes" in e["log_format"].format(**e) for e in logs)


def test_a_message_with_too_many_headers_closes() -> None:
    peer = Asterisk(AMILimits(max_headers=10, keepalive_interval=0))
    peer.login()
    peer.feed(b"Event: Foo\r\n" + b"".join(b"H%d: v\r\n" % n for n in range(20)))
    assert isinstance(peer.protocol.close_reason, AMIProtocolError)
    assert peer.events == []


def test_a_message_with_too_many_bytes_closes() -> None:
    peer = Asterisk(AMILimits(max_message_bytes=1000, keepalive_interval=0))
    peer.login()
    peer.feed(b"Event: Foo\r\n" + b"".join(b"H: %s\r\n" % (b"v" * 90) for n in range(20)))
    assert isinstance(peer.protocol.close_reason, AMIProtocolError)


def test_too_many_actions_in_flight_are_refused_and_the_connection_stays() -> None:
    peer = Asterisk(AMILimits(max_pending=3, keepalive_interval=0))
    peer.login()
    sent = [peer.protocol.ping() for _ in range(3)]
    extra = peer.protocol.ping()
    failureResultOf(extra, AMILimitExceeded)
    assert len(peer.sent()) == 3 and peer.protocol.ready and not any(d.called for d in sent)


def test_an_unanswered_action_times_out_and_its_late_answer_is_dropped(ami: Asterisk) -> None:
    d = ami.protocol.send_action("Ping", timeout=3)
    aid = ami.sent()[0]["ActionID"]
    ami.clock.advance(3)
    failureResultOf(d, AMITimeout)
    with capturedLogs() as logs:
        ami.feed(wire(Response="Success", ActionID=aid))
    assert not any("unknown ActionID" in e["log_format"] for e in logs)
    assert ami.protocol.ready


def test_a_cancelled_action_is_forgotten(ami: Asterisk) -> None:
    d = ami.protocol.queue_status()
    aid = ami.sent()[0]["ActionID"]
    d.cancel()
    failureResultOf(d, defer.CancelledError)
    ami.feed(wire(Response="Success", ActionID=aid, EventList="start")
             + wire(Event="QueueMember", ActionID=aid))
    assert ami.events == []


def test_pending_actions_fail_fast_when_the_connection_is_lost(ami: Asterisk) -> None:
    pending = [ami.protocol.ping(), ami.protocol.queue_status(),
               ami.protocol.originate("PJSIP/1", application="Wait", timeout=60)]
    ami.lose()
    for d in pending:
        failureResultOf(d, AMIDisconnected)
    failureResultOf(ami.protocol.ping(), AMIDisconnected)
    assert ami.clock.getDelayedCalls() == []


def test_keepalive_pings_and_drops_a_silent_connection() -> None:
    peer = Asterisk(AMILimits(keepalive_interval=20, keepalive_timeout=5))
    peer.login()
    peer.clock.advance(20)
    (ping,) = peer.sent()
    assert ping["Action"] == "Ping"
    peer.feed(wire(Response="Success", ActionID=ping["ActionID"], Ping="Pong"))
    peer.clock.advance(20)
    (ping,) = peer.sent()
    waiting = peer.protocol.send_action("Getvar", [("Variable", "X")], timeout=0)
    peer.clock.advance(5)
    assert isinstance(peer.protocol.close_reason, AMITimeout)
    failureResultOf(waiting, AMIDisconnected)
    assert peer.disconnecting


# -- reads split anywhere ------------------------------------------------------------


# The Ping is t-1 and the QueueStatus t-2 (both sent before the greeting); the Login is t-3.
CONVERSATION = (GREETING
                + wire(Response="Success", ActionID="t-3", Message="Authentication accepted")
                + wire(Event="FullyBooted", Status="Fully Booted")
                + wire(Response="Success", ActionID="t-2", EventList="start")
                + wire(Event="QueueMember", ActionID="t-2", Name="A")
                + wire(Response="Success", ActionID="t-1", Ping="Pong")
                + wire(Event="QueueStatusComplete", ActionID="t-2", EventList="Complete"))


def run_conversation(chunks: list[bytes]) -> tuple[Any, Any, list[str | None]]:
    peer = Asterisk()
    ping = peer.protocol.ping()
    status = peer.protocol.queue_status()
    for chunk in chunks:
        peer.feed(chunk)
    return successResultOf(ping).response["Ping"], [e["Name"] for e in successResultOf(status).events], \
        [e.event for e in peer.events]


def test_reads_split_at_every_byte_or_coalesced_give_the_same_result() -> None:
    whole = run_conversation([CONVERSATION])
    assert whole == ("Pong", ["A"], ["FullyBooted"])
    assert run_conversation([CONVERSATION[i:i + 1] for i in range(len(CONVERSATION))]) == whole


@given(st.lists(st.integers(min_value=0, max_value=len(CONVERSATION)), max_size=12))
@settings(max_examples=200, deadline=None)
def test_reads_split_anywhere_give_the_same_result(cuts: list[int]) -> None:
    edges = [0, *sorted(cuts), len(CONVERSATION)]
    chunks = [CONVERSATION[a:b] for a, b in itertools.pairwise(edges)]
    assert run_conversation(chunks) == ("Pong", ["A"], ["FullyBooted"])


def test_bare_lf_line_ends_are_accepted() -> None:
    assert run_conversation([CONVERSATION.replace(b"\r\n", b"\n")]) == ("Pong", ["A"], ["FullyBooted"])


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_garbage_never_raises(garbage: bytes) -> None:
    peer = Asterisk(AMILimits(max_line_bytes=128, keepalive_interval=0))
    d = peer.protocol.ping()
    peer.feed(GREETING + garbage)
    peer.lose()
    failureResultOf(d, AMIError)


# -- subscribers -------------------------------------------------------------------------


def test_subscribers_by_name_and_for_all_and_failures_are_isolated(ami: Asterisk) -> None:
    bus = ami.protocol.events
    hangups: list[str] = []
    everything: list[str | None] = []

    def broken(message: AMIMessage) -> None:
        raise RuntimeError("plugin bug")

    async def broken_async(message: AMIMessage) -> None:
        raise RuntimeError("async plugin bug")

    bus.subscribe(broken, "hangup")
    bus.subscribe(broken_async, "Hangup")
    bus.subscribe(lambda m: hangups.append(m["Channel"]), "HANGUP")
    unsubscribe = bus.subscribe(lambda m: everything.append(m.event))
    with capturedLogs() as logs:
        ami.feed(wire(Event="Hangup", Channel="PJSIP/1-01") + wire(Event="Newchannel", Channel="x"))
    assert hangups == ["PJSIP/1-01"]
    assert everything == ["Hangup", "Newchannel"]
    failures = [e for e in logs if "log_failure" in e]
    assert {str(e["log_failure"].value) for e in failures} == {"plugin bug", "async plugin bug"}
    unsubscribe()
    ami.feed(wire(Event="Newchannel"))
    assert everything == ["Hangup", "Newchannel"]


# -- the client service ----------------------------------------------------------------------


class FakeEndpoint:
    """Records connection attempts; the test decides how each one ends."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Any, defer.Deferred[Any]]] = []

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.attempts.append((factory, d))
        return d

    def refuse(self) -> None:
        self.attempts[-1][1].errback(ConnectionRefusedError())

    def accept(self) -> tuple[Any, StringTransport]:
        """Connect the pending attempt; returns ClientService's proxy around the AMIProtocol."""
        factory, d = self.attempts[-1]
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        d.callback(protocol)
        return protocol, transport


class Client:
    def __init__(self, rand: float = 0.0, **kwargs: Any) -> None:
        self.clock = Clock()
        self.endpoint = FakeEndpoint()
        self.client = AMIClient(cast(IStreamClientEndpoint, self.endpoint), self.clock, CREDS,
                                limits=QUIET, retry_policy=capped_backoff(rand=lambda: rand), id_prefix="c",
                                **kwargs)

    def next_delay(self) -> float:
        (call,) = self.clock.getDelayedCalls()
        return round(call.getTime() - self.clock.seconds(), 6)

    def fail_once(self) -> float:
        """Refuse the pending attempt; return the delay before the next one and let it pass."""
        self.endpoint.refuse()
        delay = self.next_delay()
        attempts = len(self.endpoint.attempts)
        self.clock.advance(delay)
        assert len(self.endpoint.attempts) == attempts + 1
        return delay

    def connect_and_login(self) -> tuple[Any, StringTransport]:
        protocol, transport = self.endpoint.accept()
        protocol.dataReceived(GREETING)
        (login,) = parse_messages(transport.value())
        transport.clear()
        protocol.dataReceived(wire(Response="Success", ActionID=login["ActionID"]))
        return protocol, transport


def test_client_connects_logs_in_and_is_ready() -> None:
    c = Client()
    ready = c.client.when_ready()
    c.client.startService()
    assert len(c.endpoint.attempts) == 1 and not c.client.connected
    protocol, transport = c.endpoint.accept()
    assert c.client.connected and not c.client.ready
    queued = c.client.ping()  # waits for the login
    protocol.dataReceived(GREETING)
    (login,) = parse_messages(transport.value())
    transport.clear()
    assert not ready.called
    protocol.dataReceived(wire(Response="Success", ActionID=login["ActionID"]))
    assert successResultOf(ready) is None and c.client.ready
    (ping,) = parse_messages(transport.value())
    protocol.dataReceived(wire(Response="Success", ActionID=ping["ActionID"]))
    assert isinstance(successResultOf(queued), ActionResult)


def test_actions_fail_at_once_while_not_connected() -> None:
    c = Client()
    failureResultOf(c.client.ping(), AMIDisconnected)
    c.client.startService()
    failureResultOf(c.client.ping(), AMIDisconnected)


def test_reconnect_backoff_doubles_and_is_capped_at_60_seconds() -> None:
    c = Client()
    c.client.startService()
    delays = [c.fail_once() for _ in range(12)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60]


def test_jitter_only_shortens_the_delay() -> None:
    c = Client(rand=0.999)
    c.client.startService()
    delays = [c.fail_once() for _ in range(12)]
    assert all(d <= 60 for d in delays) and delays[-1] >= 45
    assert delays == sorted(delays)


@given(st.integers(min_value=1, max_value=10**6), st.floats(min_value=0, max_value=1))
def test_no_backoff_delay_is_ever_over_60_seconds(failures: int, rand: float) -> None:
    delay = capped_backoff(rand=lambda: rand)(failures)
    assert 0 < delay <= 60


def test_a_stable_connection_resets_the_backoff_and_a_flapping_one_does_not() -> None:
    c = Client(stable_after=30)
    c.client.startService()
    for _ in range(4):
        c.fail_once()
    protocol, _ = c.connect_and_login()
    protocol.connectionLost(Failure(ConnectionDone()))  # flapped at once: keep backing off
    assert c.next_delay() == 8
    c.clock.advance(8)
    protocol, _ = c.connect_and_login()
    c.clock.advance(31)
    protocol.connectionLost(Failure(ConnectionDone()))  # was up for a while: start over
    assert c.next_delay() == 0.5


def test_client_pending_actions_fail_fast_and_subscribers_survive_reconnects() -> None:
    c = Client()
    seen: list[str | None] = []
    c.client.subscribe(lambda m: seen.append(m["Channel"]), "Hangup")
    c.client.startService()
    protocol, _ = c.connect_and_login()
    waiting = c.client.originate("PJSIP/1001", application="Wait", timeout=30)
    lost = c.client.when_ready()
    assert successResultOf(lost) is None
    protocol.dataReceived(wire(Event="Hangup", Channel="one"))
    protocol.connectionLost(Failure(ConnectionDone()))
    failureResultOf(waiting, AMIDisconnected)
    assert not c.client.ready and not c.client.connected
    again = c.client.when_ready()
    c.clock.advance(c.next_delay())
    protocol, _ = c.connect_and_login()
    assert successResultOf(again) is None
    protocol.dataReceived(wire(Event="Hangup", Channel="two"))
    assert seen == ["one", "two"]


def test_action_ids_stay_unique_across_reconnections() -> None:
    c = Client()
    c.client.startService()
    ids = []
    for _ in range(3):
        protocol, transport = c.connect_and_login()
        c.client.ping()
        ids += [m["ActionID"] for m in parse_messages(transport.value())]
        protocol.connectionLost(Failure(ConnectionDone()))
        c.clock.advance(c.next_delay())
    assert len(set(ids)) == 3


def test_a_refused_login_is_retried_with_backoff() -> None:
    c = Client()
    c.client.startService()
    protocol, transport = c.endpoint.accept()
    protocol.dataReceived(GREETING)
    (login,) = parse_messages(transport.value())
    with capturedLogs():
        protocol.dataReceived(wire(Response="Error", ActionID=login["ActionID"],
                                   Message="Authentication failed"))
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone()))
    assert c.next_delay() == 0.5


def test_stopping_closes_the_connection_and_stops_retrying() -> None:
    c = Client()
    c.client.startService()
    protocol, transport = c.connect_and_login()
    pending = c.client.ping()
    stopped = c.client.stopService()
    assert transport.disconnecting
    failureResultOf(pending, AMIDisconnected)
    assert not stopped.called
    protocol.connectionLost(Failure(ConnectionDone()))
    assert successResultOf(stopped) is None
    assert c.clock.getDelayedCalls() == []
    assert len(c.endpoint.attempts) == 1


def test_stopping_while_waiting_to_retry_cancels_the_retry_and_ready_waiters() -> None:
    c = Client()
    c.client.startService()
    c.endpoint.refuse()
    waiter = c.client.when_ready()
    assert len(c.clock.getDelayedCalls()) == 1
    assert successResultOf(c.client.stopService()) is None
    assert c.clock.getDelayedCalls() == []
    failureResultOf(waiter, AMIDisconnected)


class FakeAsterisk(LineOnlyReceiver):
    """Just enough of manager.c to serve over iosim: greets, then answers every action with Success."""

    delimiter = b"\r\n"

    def __init__(self, actions: list[str]) -> None:
        self.actions = actions
        self.headers: list[tuple[str, str]] = []

    def connectionMade(self) -> None:
        self.transport.write(GREETING)  # type: ignore[union-attr]

    def lineReceived(self, line: bytes) -> None:
        if line:
            name, _, value = line.decode().partition(": ")
            self.headers.append((name, value))
            return
        action, self.headers = AMIMessage(self.headers), []
        self.actions.append(action["Action"])
        self.send(Response="Success", ActionID=action["ActionID"])

    def send(self, **headers: str) -> None:
        self.transport.write(wire(**headers))  # type: ignore[union-attr]


def test_client_service_reconnects_after_the_policy_delay_logs_in_again_and_keeps_subscribers() -> None:
    reactor = MemoryReactorClock()
    actions: list[str] = []
    reactor.listenTCP(5038, Factory.forProtocol(lambda: FakeAsterisk(actions)))
    completer = iosim.ConnectionCompleter(reactor)
    client = AMIClient(TCP4ClientEndpoint(reactor, "127.0.0.1", 5038), reactor, CREDS, limits=QUIET,
                       retry_policy=capped_backoff(initial=2, rand=lambda: 0.0))
    seen: list[str] = []
    client.subscribe(lambda m: seen.append(m["Channel"]), "Hangup")
    client.startService()
    pump = completer.succeedOnce()
    assert pump is not None and client.ready and actions == ["Login"]
    pump.server.send(Event="Hangup", Channel="one")
    pump.flush()

    pump.server.transport.loseConnection()  # Asterisk restarts
    pump.flush()
    assert not client.connected and reactor.tcpClients == []
    failureResultOf(client.ping(), AMIDisconnected)
    reactor.advance(1.99)
    assert reactor.tcpClients == []
    reactor.advance(0.01)  # the policy's first delay
    assert len(reactor.tcpClients) == 1
    pump = completer.succeedOnce()
    assert pump is not None and client.ready and actions == ["Login", "Login"]
    pump.server.send(Event="Hangup", Channel="two")
    ping = client.ping()
    pump.flush()
    assert isinstance(successResultOf(ping), ActionResult)
    assert seen == ["one", "two"]

    stopped = client.stopService()
    pump.flush()
    assert successResultOf(stopped) is None
    assert reactor.getDelayedCalls() == [] and reactor.tcpClients == []


def test_originate_result_reads_a_bare_event() -> None:
    event = AMIMessage([("Event", "OriginateResponse"), ("Response", "Failure"), ("Reason", "5")])
    assert originate_result(event).outcome is OriginateOutcome.BUSY
