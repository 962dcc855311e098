"""The router and the Call API, driven over StringTransport with a fake Clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from asterisk_sim import parse_args
from conftest import Session
from twisted.logger import LogLevel, capturedLogs

from ivr import ALL_DIGITS, Call, ChannelStatus, CommandFailed, Route, Router
from ivr.errors import CallHangup


class Harness:
    def __init__(self, handler: Callable[[Call], Awaitable[None]] | None = None,
                 script: str = "main", deadline: float | None = None, **env: str) -> None:
        self.outcome: list[object] = []
        self.seen: dict[str, object] = {}
        self.session = Session(on_ready=self._ready)
        self.router = Router(self.session.clock,
                             [Route("main", handler, deadline)] if handler else [],
                             call_deadline=60.0)
        self.session.start(script, **env)

    def _ready(self, protocol: object) -> None:
        d = self.router.session_ready(protocol)  # type: ignore[arg-type]
        d.addBoth(self.outcome.append)

    def commands(self) -> list[list[str]]:
        return [parse_args(line.decode().rstrip("\n")) for line in self.session.sent()]

    def reply(self, *lines: str) -> None:
        self.session.feed("".join(line + "\n" for line in lines))


def test_call_api_sends_the_right_commands_and_reads_results() -> None:
    seen: dict[str, object] = {}

    async def handler(call: Call) -> None:
        await call.answer()
        seen["play"] = await call.play("welcome", ALL_DIGITS)
        seen["wait"] = await call.wait_for_digit(2.5)
        seen["data"] = await call.get_data("enter-account", timeout=3, max_digits=6)
        await call.say_digits("0042")
        await call.say_number(17)
        await call.set_variable("IVR_PATH", "main>sales")
        seen["var"] = await call.get_variable("CALLERID(num)")
        seen["unset"] = await call.get_variable("NOPE")
        seen["full"] = await call.get_full_variable("${EXTEN}", "PJSIP/x-1")
        seen["exec"] = await call.exec("Dial", "PJSIP/1001,evil", "30")
        seen["status"] = await call.channel_status()
        await call.verbose("hi", 3)
        seen["rec"] = await call.record_file("/tmp/msg", max_seconds=5, silence_seconds=2)
        await call.hangup()

    h = Harness(handler, callerid="1001", calleridname="unknown", dnid="4000", language="zh")
    assert h.commands() == [["ANSWER"]]
    h.reply("200 result=0")
    assert h.commands() == [["STREAM", "FILE", "welcome", ALL_DIGITS, "0"]]
    h.reply("200 result=0 endpos=16000")
    assert h.commands() == [["WAIT", "FOR", "DIGIT", "2500"]]
    h.reply("200 result=35")
    assert h.commands() == [["GET", "DATA", "enter-account", "3000", "6"]]
    h.reply("200 result=0042 (timeout)")
    assert h.commands() == [["SAY", "DIGITS", "0042", ""]]
    h.reply("200 result=0")
    assert h.commands() == [["SAY", "NUMBER", "17", ""]]
    h.reply("200 result=0")
    assert h.commands() == [["SET", "VARIABLE", "IVR_PATH", "main>sales"]]
    h.reply("200 result=1")
    assert h.commands() == [["GET", "VARIABLE", "CALLERID(num)"]]
    h.reply("200 result=1 (1001)")
    assert h.commands() == [["GET", "VARIABLE", "NOPE"]]
    h.reply("200 result=0")
    assert h.commands() == [["GET", "FULL", "VARIABLE", "${EXTEN}", "PJSIP/x-1"]]
    h.reply("200 result=1 (s)")
    assert h.commands() == [["EXEC", "Dial", "PJSIP/1001\\,evil,30"]]
    h.reply("200 result=0")
    assert h.commands() == [["CHANNEL", "STATUS"]]
    h.reply("200 result=6")
    assert h.commands() == [["VERBOSE", "hi", "3"]]
    h.reply("200 result=1")
    assert h.commands() == [["RECORD", "FILE", "/tmp/msg", "wav", "#", "5000", "BEEP", "s=2"]]
    h.reply("200 result=35 (dtmf) endpos=4000")
    assert h.commands() == [["HANGUP"]]
    h.reply("200 result=1")
    assert h.outcome == [None]
    assert seen["play"] is None and seen["wait"] == "#" and seen["data"] == "0042"
    assert seen["var"] == "1001" and seen["unset"] is None and seen["full"] == "s"
    assert seen["exec"] == 0 and seen["status"] is ChannelStatus.UP
    assert seen["rec"].digit == "#" and seen["rec"].ended_by == "dtmf"  # type: ignore[attr-defined]
    assert h.session.transport.disconnecting


def test_typed_environment_view() -> None:
    calls: list[Call] = []

    async def handler(call: Call) -> None:
        calls.append(call)

    Harness(handler, callerid="+8613800138000", calleridname='Zhang "VIP"', dnid="unknown",
            language="zh", arg_1="a b", arg_2="c")
    call = calls[0]
    assert call.caller_number == "+8613800138000"
    assert call.caller_name == 'Zhang "VIP"'
    assert call.dnid is None
    assert call.language == "zh"
    assert call.args == ("a b", "c")
    assert call.script == "main"
    assert call.uniqueid == "1700000000.1"
    assert call.channel.startswith("PJSIP/")
    assert call.context == "ivr-hotline" and call.extension == "4000" and call.priority == 2


def test_minus_one_on_a_live_channel_is_a_failed_command() -> None:
    errors: list[BaseException] = []

    async def handler(call: Call) -> None:
        try:
            await call.play("missing-file")
        except CommandFailed as exc:
            errors.append(exc)

    h = Harness(handler)
    h.commands()
    h.reply("200 result=-1 endpos=0")
    assert h.commands() == [["CHANNEL", "STATUS"]]
    h.reply("200 result=6")
    assert len(errors) == 1


def test_minus_one_then_hangup_is_a_hangup_logged_at_info() -> None:
    async def handler(call: Call) -> None:
        await call.play("welcome")

    with capturedLogs() as events:
        h = Harness(handler)
        h.commands()
        h.reply("200 result=-1 endpos=100", "HANGUP")
    assert h.outcome == [None]
    levels = [e["log_level"] for e in events]
    assert LogLevel.error not in levels and LogLevel.critical not in levels
    assert any("hung up" in e["log_format"] and e["log_level"] is LogLevel.info for e in events)


def test_hangup_while_waiting_is_a_normal_end() -> None:
    async def handler(call: Call) -> None:
        await call.wait_for_digit(10)

    with capturedLogs() as events:
        h = Harness(handler)
        h.reply("HANGUP")
    assert h.outcome == [None]
    assert all(e["log_level"] < LogLevel.warn for e in events)


def test_unknown_script_goes_to_the_fallback_with_a_warning() -> None:
    with capturedLogs() as events:
        h = Harness(None, script="no-such-menu")
        assert h.commands() == [["SET", "VARIABLE", "IVR_FALLBACK_REASON", "unknown-route"]]
        h.reply("200 result=1")
        assert h.commands() == [["SET", "CONTEXT", "ivr-fallback"]]
        h.reply("200 result=0")
        assert h.commands() == [["SET", "EXTENSION", "s"]]
        h.reply("200 result=0")
        assert h.commands() == [["SET", "PRIORITY", "1"]]
        h.reply("200 result=0")
    assert h.outcome == [None]
    warnings = [e for e in events if e["log_level"] is LogLevel.warn]
    assert warnings and warnings[0]["script"] == "no-such-menu"


def test_handler_exception_is_logged_with_uniqueid_and_caller_goes_to_fallback() -> None:
    async def handler(call: Call) -> None:
        raise KeyError("bug")

    with capturedLogs() as events:
        h = Harness(handler, uniqueid="1234.5")
        assert h.commands()[0] == ["SET", "VARIABLE", "IVR_FALLBACK_REASON", "handler-error"]
    failures = [e for e in events if e["log_level"] is LogLevel.critical]
    assert failures and failures[0]["uniqueid"] == "1234.5"
    assert "log_failure" in failures[0]


def test_call_deadline_hands_the_caller_back_to_the_dialplan() -> None:
    async def handler(call: Call) -> None:
        await call.wait_for_digit(1000)

    with capturedLogs() as events:
        h = Harness(handler, deadline=30.0)
        h.commands()
        h.session.clock.advance(30.1)
    # WAIT FOR DIGIT still runs in Asterisk, so a goto would queue behind it: the
    # session closes and the dialplan (SUCCESS without IVR_RESULT=done) takes the fallback.
    assert h.commands() == []
    assert h.session.transport.disconnecting
    assert any(e.get("log_format", "").startswith("call {uniqueid} on {route} passed its deadline")
               for e in events)
    h.session.lose()
    assert h.outcome == [None]


def test_commands_after_hangup_raise_call_hangup() -> None:
    got: list[BaseException] = []

    async def handler(call: Call) -> None:
        try:
            await call.answer()
        except CallHangup as exc:
            got.append(exc)
            await call.verbose("still here?")

    h = Harness(handler)
    h.reply("HANGUP")
    assert len(got) == 1
    assert h.commands() == [["ANSWER"]]  # nothing sent after the hangup


@pytest.mark.parametrize("name", ['"; EXEC Dial SIP/1', "a,b(c)[d]\\", "${SHELL(id)}"])
def test_user_event_headers_stay_literal(name: str) -> None:
    async def handler(call: Call) -> None:
        await call.user_event("Probe", Name=name)

    h = Harness(handler)
    [argv] = h.commands()
    assert argv[:2] == ["EXEC", "UserEvent"]
    # Asterisk's app-argument parser turns "\x" into "x" and splits on bare commas.
    data = argv[2]
    args, current, escaped = [], "", False
    for ch in data:
        if escaped:
            current, escaped = current + ch, False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            args.append(current)
            current = ""
        else:
            current += ch
    args.append(current)
    assert args == ["Probe", f"Name: {name}"]


def test_transfer_refuses_a_dial_string_with_options() -> None:
    errors: list[BaseException] = []

    async def handler(call: Call) -> None:
        try:
            await call.transfer_to_queue("sales", owner_device="PJSIP/1001&PJSIP/666,30,D(1)")
        except Exception as exc:
            errors.append(exc)

    Harness(handler)
    assert errors and errors[0].__class__.__name__ == "UnsafeArgument"
