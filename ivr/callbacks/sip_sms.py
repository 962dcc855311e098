"""Built-in plugin ``ivr.callbacks.sip_sms``: SMS over SIP MESSAGE through Asterisk, both ways.

Out: :class:`~ivr.callbacks.sms_sender.SipSmsSender` drains the outbox
(filled by ``ivr_send_sms``'s default, :mod:`ivr.callbacks.outbox`) with AMI
``MessageSend``. In: :class:`~ivr.callbacks.sip_inbound.SipSmsInbound` takes
the ``IvrSmsIn`` UserEvents of ``[ivr-sms-in]`` to the SMS desk. It needs no
hook of its own: it works through the outbox and the desk, so it can be
turned off (``[sip_sms] enabled = false``, or ``[plugins] disable``) while a
gateway plugin sends SMS instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import Metric
from sqlalchemy import Engine
from twisted.internet.interfaces import IReactorTime

from ivr.callbacks.outbox_queue import OutboxQueue, RetryPolicy
from ivr.callbacks.sip_inbound import SipSmsInbound
from ivr.callbacks.sms import SmsDesk
from ivr.callbacks.sms_sender import MessageSender, SipSmsSender
from ivr.config import SipSmsSettings

__all__ = ["SipSms", "build_sip_sms"]


class SipSms:
    """The sender and the inbound listener, started and stopped with ``ivr serve``."""

    def __init__(self, sender: SipSmsSender, inbound: SipSmsInbound) -> None:
        self.sender = sender
        self.inbound = inbound
        self._unsubscribe: Callable[[], None] | None = None

    def start(self, ami: Any) -> None:
        """Listen for inbound messages on ``ami`` and start draining the outbox."""
        if self._unsubscribe is None:
            self._unsubscribe = self.inbound.subscribe(ami)
        self.sender.start()

    def stop(self) -> None:
        self.sender.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def metrics(self) -> Iterator[Metric]:
        yield from self.sender.metrics()


def build_sip_sms(settings: SipSmsSettings, engine: Engine, ami: MessageSender, clock: IReactorTime,
                  instance: str, desk: SmsDesk, hooks: Any) -> SipSms:
    """The plugin with its sender (on the shared outbox) and its listener (on the shared desk)."""
    policy = RetryPolicy(settings.max_attempts, settings.retry_delay, settings.retry_factor,
                         settings.retry_max_delay)
    sender = SipSmsSender(OutboxQueue(engine, policy, settings.lock_timeout), ami, clock, instance, settings)
    return SipSms(sender, SipSmsInbound(desk, hooks, clock))
