# mypy: disable-error-code="no-untyped-call"
# (twisted.test.iosim, MemoryReactorClock, Site and Agent have no type hints)
"""The HTTP SMS gateway example plugin against a local twisted.web server (over iosim, with a Clock).

The server is a real twisted.web Site; the plugin's real Agent talks HTTP to it
through a memory reactor, so the request on the wire is what a carrier gets.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_ami import successResultOf
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim
from twisted.web import resource, server
from twisted.web.client import Agent

from ivr.plugins.manager import load_plugins

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "plugins"
TOKEN = "carrier-token-0123456789"


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("http_sms_gateway_example", EXAMPLE / "http_sms_gateway.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Carrier(resource.Resource):
    """A carrier's SMS API: records each request, answers with ``code``."""

    isLeaf = True

    def __init__(self, code: int = 200) -> None:
        super().__init__()
        self.code = code
        self.requests: list[tuple[bytes, dict[str, Any], Any]] = []

    def render_POST(self, request: server.Request) -> bytes:
        headers = {key.decode(): [v.decode() for v in values]
                   for key, values in request.requestHeaders.getAllRawHeaders()}
        assert request.content is not None
        self.requests.append((request.uri, headers, json.loads(request.content.read())))
        request.setResponseCode(self.code)
        return b'{"status": "queued"}'


def gateway_and_carrier(code: int = 200, answer: bool = True) -> tuple[Any, Carrier, MemoryReactorClock,
                                                                        iosim.ConnectionCompleter]:
    reactor = MemoryReactorClock()
    carrier = Carrier(code)
    reactor.listenTCP(80, server.Site(carrier))
    module = example()
    gateway = module.HttpSmsGateway(Agent(reactor), reactor, "http://sms.example.com/api/send", TOKEN,
                                    sender="95555")
    return gateway, carrier, reactor, iosim.ConnectionCompleter(reactor)


def test_an_sms_is_posted_as_json_with_the_token_and_its_text_intact() -> None:
    gateway, carrier, _, completer = gateway_and_carrier()
    text = '谢谢，我们会在 11:00 前回电。\nReply "STOP" & opt out'
    sent = gateway.send("+8613800138000", text)
    pump = completer.succeedOnce()
    assert pump is not None
    pump.flush()
    assert successResultOf(sent) is True
    ((uri, headers, body),) = carrier.requests
    assert uri == b"/api/send"
    assert headers["Authorization"] == [f"Bearer {TOKEN}"]
    assert headers["Content-Type"] == ["application/json; charset=utf-8"]
    assert body == {"to": "+8613800138000", "text": text, "from": "95555"}


def test_a_refusing_carrier_means_not_sent() -> None:
    gateway, carrier, _, completer = gateway_and_carrier(code=503)
    sent = gateway.send("+8613800138000", "hi")
    pump = completer.succeedOnce()
    assert pump is not None
    pump.flush()
    assert successResultOf(sent) is False and len(carrier.requests) == 1


def test_a_carrier_that_never_answers_times_out_as_not_sent() -> None:
    gateway, carrier, reactor, _ = gateway_and_carrier()
    outcome: list[bool] = []
    gateway.send("+8613800138000", "hi").addCallback(outcome.append)  # never connects
    reactor.advance(9.9)
    assert outcome == []
    reactor.advance(0.1)
    assert outcome == [False] and carrier.requests == []


@pytest.mark.parametrize("token", ["", "two words", "line\r\nX-Evil: 1", "令牌"])
def test_a_token_that_could_break_the_header_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="SMS_GATEWAY_TOKEN"):
        reactor = MemoryReactorClock()
        example().HttpSmsGateway(Agent(reactor), reactor, "https://x.example", token)


def test_it_loads_from_the_plugins_folder_as_an_ivr_send_sms_plugin() -> None:
    plugins = load_plugins(EXAMPLE)
    info = {i.name: i for i in plugins.info}
    assert info["http_sms_gateway"].hooks == ["ivr_send_sms"]
