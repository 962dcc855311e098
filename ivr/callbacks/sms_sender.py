"""The SMS sender: drains the outbox through Asterisk, AMI ``MessageSend`` to a SIP SMS trunk.

Every ``poll_interval`` seconds, while AMI is logged in, it claims due
messages (:class:`~ivr.callbacks.outbox_queue.OutboxQueue`, locked so two
``ivr serve`` never send one twice) and sends each as a SIP MESSAGE to
``[sip_sms] destination`` with the number filled in. Asterisk's answer
decides: accepted is sent; ``Response: Error`` (no such endpoint, a URI it
cannot use), a timeout or a lost connection is retried with backoff until
``max_attempts``, then failed. A number that is not one, or a text MessageSend
cannot carry, fails at once: no retry can help. The number is checked before
it goes into a SIP URI, so a hostile "number" can never pick the destination.

Accepted means Asterisk sent the request: res_pjsip_messaging does not report
the far end's final answer to AMI, so a carrier's later 4xx is not seen here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, Metric
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ivr.ami.message import ActionResult
from ivr.callbacks.outbox_queue import OutboxQueue, OutgoingSms
from ivr.config import SipSmsSettings
from ivr.errors import AMIActionError, AMIError, UnsafeHeader

__all__ = ["MessageSender", "SipSmsSender", "destination_for"]

log = Logger(namespace="ivr.sms")

#: What may be put into a SIP URI as a number: digits, with an optional leading +.
_NUMBER = re.compile(r"\+?[0-9]{3,20}\Z")


class MessageSender(Protocol):
    """The part of the AMI client the sender uses (:class:`~ivr.ami.client.AMIClient`)."""

    @property
    def ready(self) -> bool: ...

    def message_send(self, destination: str, body: str, from_uri: str | None = None
                     ) -> defer.Deferred[ActionResult]: ...


def destination_for(template: str, number: str) -> str | None:
    """``template`` with ``{number}`` (+E.164) and ``{digits}`` filled in; None if ``number`` is not one."""
    if _NUMBER.match(number) is None:
        return None
    digits = number.lstrip("+")
    return template.format(number="+" + digits, digits=digits)


class SipSmsSender:
    """Sends queued SMS through Asterisk; one per ``ivr serve`` (several share the outbox safely)."""

    def __init__(self, queue: OutboxQueue, ami: MessageSender, clock: IReactorTime, instance: str,
                 settings: SipSmsSettings,
                 in_thread: Callable[..., defer.Deferred[Any]] = threads.deferToThread) -> None:
        self.queue = queue
        self.ami = ami
        self.clock = clock
        self.instance = instance
        self.settings = settings
        self.in_thread = in_thread
        self.sent = 0
        self.failed_attempts = 0
        self._loop = LoopingCall(lambda: defer.Deferred.fromCoroutine(self.tick()))
        self._loop.clock = clock

    def start(self) -> None:
        self._loop.start(self.settings.poll_interval, now=False).addErrback(
            lambda failure: log.failure("the SMS sender stopped", failure))

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    async def tick(self) -> int:
        """One look: claim due messages and send them, one after the other; how many were tried."""
        if not self.ami.ready:
            return 0  # nothing could be sent: leave them queued, for later or another instance
        try:
            claimed: list[OutgoingSms] = await self.in_thread(self.queue.claim, self.settings.batch,
                                                              self.instance)
        except Exception:
            log.failure("looking for SMS to send failed; trying again in {interval}s",
                        interval=self.settings.poll_interval)
            return 0
        for sms in claimed:
            if self.ami.ready:
                await self._send(sms)
            else:  # the connection went during the batch: the rest wait, no attempt used
                await self._record(self.queue.put_back, sms.id, self.instance)
        return len(claimed)

    async def _send(self, sms: OutgoingSms) -> None:
        destination = destination_for(self.settings.destination, sms.to_number)
        if destination is None:
            await self._failed(sms, "the recipient is not a phone number", retry=False)
            return
        try:
            await self.ami.message_send(destination, sms.text, self.settings.from_uri or None)
        except UnsafeHeader as exc:
            await self._failed(sms, str(exc), retry=False)
        except AMIActionError as exc:
            await self._failed(sms, f"Asterisk refused MessageSend: {exc.message or 'no reason given'}")
        except AMIError as exc:
            await self._failed(sms, f"AMI: {exc}")
        else:
            self.sent += 1
            log.info("SMS {id} to {to} sent through Asterisk (attempt {attempt})", id=sms.id,
                     to=sms.to_number, attempt=sms.attempt)
            await self._record(self.queue.sent, sms.id, self.instance)

    async def _failed(self, sms: OutgoingSms, error: str, retry: bool = True) -> None:
        self.failed_attempts += 1
        status = await self._record(self.queue.failed, sms.id, self.instance, error, retry)
        if status == "failed":
            log.warn("SMS {id} to {to} failed for good after {attempt} attempt(s): {error}", id=sms.id,
                     to=sms.to_number, attempt=sms.attempt, error=error)
        else:
            log.info("SMS {id} to {to}: attempt {attempt} failed ({error}); retrying later", id=sms.id,
                     to=sms.to_number, attempt=sms.attempt, error=error)

    async def _record(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return await self.in_thread(method, *args)
        except Exception:
            log.failure("recording how SMS {id} went failed (it is taken again after the lock timeout)",
                        id=args[0])
            return None

    def metrics(self) -> Iterator[Metric]:
        """SMS sends, read when Prometheus scrapes."""
        yield CounterMetricFamily("ivr_sms_sent", "SMS Asterisk accepted for sending", value=self.sent)
        yield CounterMetricFamily("ivr_sms_send_failures", "failed SMS send attempts",
                                  value=self.failed_attempts)
