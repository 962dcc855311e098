"""``ivr serve`` as a real process, with a simulated Asterisk over loopback TCP."""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest
from asterisk_sim import SimulatedAsterisk, key_echo_call
from conftest import TEST_ROUTES, ServeProcess, free_port


def test_defaults_serve_a_key_echo_session(ivr_server: ServeProcess) -> None:
    with SimulatedAsterisk(port=ivr_server.port) as asterisk:
        assert key_echo_call(asterisk) == b""


def test_hostile_values_arrive_as_single_literal_arguments(ivr_server: ServeProcess) -> None:
    sent = ['"; HANGUP', "a\\b\\", "tab\there", "&SIP/666", "中文", "${SHELL(id)}", ""]
    raw = b"agi_network_script: echo\nagi_request: agi://127.0.0.1/echo\n"
    raw += b"agi_calleridname: \"Evil\\\" <x> \xff\x00\n"
    raw += b"".join(f"agi_arg_{i}: {v}\n".encode() for i, v in enumerate(sent, 1))
    raw += b"\n"
    with SimulatedAsterisk(port=ivr_server.port) as asterisk:
        asterisk.send_environment(raw=raw)
        for index, value in enumerate(sent, start=1):
            assert asterisk.expect("SET VARIABLE") == ["SET", "VARIABLE", f"ECHO_{index}", value]
            asterisk.reply("200 result=1")
        assert asterisk.expect("SET VARIABLE") == [
            "SET", "VARIABLE", "ECHO_NAME", '"Evil\\" <x> \ufffd\ufffd']
        asterisk.reply("200 result=1")
        # the handler returned with the channel up: its last word tells the dialplan it finished
        asterisk.expect("SET VARIABLE", "IVR_RESULT", "done")
        assert asterisk.wait_closed() == b""


def test_handler_bug_sends_caller_to_fallback(ivr_server: ServeProcess) -> None:
    with SimulatedAsterisk(port=ivr_server.port) as asterisk:
        asterisk.send_environment("boom", uniqueid="777.1")
        asterisk.expect("ANSWER")
        asterisk.reply("200 result=0")
        assert asterisk.expect("SET VARIABLE")[2:] == ["IVR_FALLBACK_REASON", "handler-error"]
        asterisk.reply("200 result=1")
        asterisk.expect("SET CONTEXT", "ivr-fallback")
        asterisk.reply("200 result=0")
        asterisk.expect("SET EXTENSION", "s")
        asterisk.reply("200 result=0")
        asterisk.expect("SET PRIORITY", "1")
        asterisk.reply("200 result=0")
        assert asterisk.wait_closed() == b""
    deadline = time.monotonic() + 5
    while "777.1" not in ivr_server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "handler for boom failed on call 777.1" in ivr_server.output()


def test_sigterm_drains_live_calls_and_refuses_new_ones() -> None:
    port = free_port()
    server = ServeProcess(port, {"IVR_ROUTING_ROUTES": TEST_ROUTES, "IVR_SERVER_DRAIN_GRACE": "20"})
    try:
        with SimulatedAsterisk(port=port) as asterisk:
            asterisk.send_environment("slow")
            asterisk.expect("ANSWER")
            asterisk.reply("200 result=0")
            asterisk.expect("WAIT FOR DIGIT")
            server.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while "draining 1 live call" not in server.output():
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.05)
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            assert server.process.poll() is None  # still serving the live call
            asterisk.reply("200 result=49")
            asterisk.expect("VERBOSE", "slow route finished")
            asterisk.reply("200 result=1")
            asterisk.expect("SET VARIABLE", "IVR_RESULT", "done")
            assert asterisk.wait_closed() == b""
        assert server.process.wait(15) == 0
    finally:
        server.stop()


def test_sigterm_closes_calls_left_after_the_grace_period() -> None:
    port = free_port()
    server = ServeProcess(port, {"IVR_ROUTING_ROUTES": TEST_ROUTES, "IVR_SERVER_DRAIN_GRACE": "1"})
    try:
        with SimulatedAsterisk(port=port) as asterisk:
            asterisk.send_environment("slow")
            asterisk.expect("ANSWER")
            asterisk.reply("200 result=0")
            asterisk.expect("WAIT FOR DIGIT")
            server.process.send_signal(signal.SIGTERM)
            assert asterisk.wait_closed() == b""
        assert server.process.wait(15) == 0
        assert "still live after 1.0s" in server.output()
    finally:
        server.stop()


def test_json_log_output() -> None:
    port = free_port()
    server = ServeProcess(port, args=("--log-format", "json"))
    try:
        with SimulatedAsterisk(port=port) as asterisk:
            asterisk.send_environment("no-such-route")
            asterisk.expect("SET VARIABLE")
            asterisk.close()
    finally:
        server.stop()
    records = [json.loads(line) for line in server.output().splitlines() if line.strip()]
    assert any(r.get("script") == "no-such-route" for r in records)


def test_peers_outside_the_allow_list_are_refused() -> None:
    port = free_port()
    server = ServeProcess(port, {"IVR_AGI_ALLOWED_PEERS": "127.0.0.2/32"})
    try:
        with SimulatedAsterisk(port=port) as asterisk:
            asterisk.send_environment("hotline")
            assert asterisk.wait_closed() == b""
        assert "not in allowed_peers" in server.output()
    finally:
        server.stop()


def test_connections_per_peer_are_limited() -> None:
    port = free_port()
    server = ServeProcess(port, {"IVR_AGI_MAX_CONNECTIONS_PER_PEER": "2",
                                 "IVR_ROUTING_ROUTES": TEST_ROUTES})
    try:
        first, second = SimulatedAsterisk(port=port), SimulatedAsterisk(port=port)
        for sim in (first, second):
            sim.send_environment("slow")
            sim.expect("ANSWER")
        with SimulatedAsterisk(port=port) as third:
            third.send_environment("slow")
            assert third.wait_closed() == b""
        first.close()
        second.close()
    finally:
        server.stop()
