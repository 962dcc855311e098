"""Example plugin: SMS through a carrier's HTTP API instead of SIP MESSAGE.

Copy this file into the plugins folder (``[plugins] folder``, or ``./plugins``)
and set, in ``ivr serve``'s environment::

    SMS_GATEWAY_URL=https://sms.example.com/api/send
    SMS_GATEWAY_TOKEN=<the carrier's API token>
    SMS_GATEWAY_FROM=95555          (optional: the sender number)

Each SMS ivr sends (``ivr_send_sms``: callback replies, confirmations) becomes
one ``POST`` of ``{"to": "+86...", "text": "...", "from": "95555"}`` (JSON,
UTF-8) with ``Authorization: Bearer <token>``; a 2xx answer means the carrier
took it. This plugin answers before the built-in outbox, so nothing is queued
in ``sms_outbox`` while it is configured; without ``SMS_GATEWAY_URL`` it
answers None and the outbox (and ``[sip_sms]``) take over. The text is sent
as a JSON string, never spliced into a URL or a header. Adapt the body and
the success test to your carrier's API.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.logger import Logger
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from ivr.plugins.hookspecs import hookimpl

log = Logger(namespace="ivr.sms.http")

#: Seconds the carrier has to answer one request.
TIMEOUT = 10.0


@implementer(IBodyProducer)
class _Body:
    """A request body written at once (FileBodyProducer would need a running cooperator)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data) if data else UNKNOWN_LENGTH

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class HttpSmsGateway:
    """Posts each SMS to ``url``; ``send`` fires True when the carrier answered 2xx, else False."""

    def __init__(self, agent: IAgent, clock: IReactorTime, url: str, token: str, sender: str = "",
                 timeout: float = TIMEOUT) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("SMS_GATEWAY_URL must be an http(s):// URL")
        if not token or any(not (32 < ord(ch) < 127) for ch in token):
            raise ValueError("SMS_GATEWAY_TOKEN must be printable ASCII without spaces")
        self.agent = agent
        self.clock = clock
        self.url = url.encode("ascii")
        self.headers = {b"Content-Type": [b"application/json; charset=utf-8"],
                        b"Authorization": [b"Bearer " + token.encode("ascii")]}
        self.sender = sender
        self.timeout = timeout

    def send(self, to: str, text: str) -> defer.Deferred[bool]:
        payload = {"to": to, "text": text, **({"from": self.sender} if self.sender else {})}
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        d: defer.Deferred[Any] = self.agent.request(b"POST", self.url, Headers(self.headers), _Body(body))
        d.addTimeout(self.timeout, self.clock)
        d.addCallback(self._answered, to)
        d.addErrback(self._failed, to)
        return d

    async def _read(self, response: IResponse) -> bytes:
        return await readBody(response)

    def _answered(self, response: IResponse, to: str) -> defer.Deferred[bool]:
        reading = defer.Deferred.fromCoroutine(self._read(response))

        def judge(answer: bytes) -> bool:
            if 200 <= response.code < 300:
                log.info("SMS to {to} accepted by the HTTP gateway", to=to)
                return True
            log.warn("the HTTP gateway refused the SMS to {to}: {code} {answer!r}", to=to, code=response.code,
                     answer=answer[:200])
            return False

        return reading.addCallback(judge)

    def _failed(self, failure: Any, to: str) -> bool:
        log.failure("sending the SMS to {to} through the HTTP gateway failed", failure, to=to)
        return False


_gateway: HttpSmsGateway | None = None


def _from_environment() -> HttpSmsGateway | None:
    global _gateway
    url = os.environ.get("SMS_GATEWAY_URL", "")
    if not url:
        return None
    if _gateway is None:
        from twisted.internet import reactor

        _gateway = HttpSmsGateway(Agent(reactor), reactor,  # type: ignore[no-untyped-call]
                                  url, os.environ.get("SMS_GATEWAY_TOKEN", ""),
                                  os.environ.get("SMS_GATEWAY_FROM", ""))
    return _gateway


@hookimpl
def ivr_send_sms(to: str, text: str) -> defer.Deferred[bool] | None:
    gateway = _from_environment()
    return gateway.send(to, text) if gateway is not None else None
