"""What happens to an inbound SMS after it is parsed, whichever way it came (webhook or SIP MESSAGE).

The :class:`~ivr.callbacks.sms.SmsDesk` stores it and acts on it on a worker
thread; then, for a first copy that earned one, the reply (``we will call you
by ...``) goes out through ``ivr_send_sms`` with a deadline, and every plugin
hears of a first copy (``ivr_sms_received``: the complaints service looks for
its keywords). A failing or silent plugin is logged: the message itself is
already handled.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.callbacks.sms import InboundSms, SmsDesk, SmsResult
from ivr.history.sms import sms_uniqueid
from ivr.phone import normalise_number
from ivr.plugins.feedback import SmsReceived
from ivr.routing.router import await_hook, notify

__all__ = ["REPLY_DEADLINE", "receive_and_reply", "send_reply"]

log = Logger(namespace="ivr.sms")

#: Seconds the reply hook (ivr_send_sms) may take before the intake carries on anyway.
REPLY_DEADLINE = 10.0


async def receive_and_reply(desk: SmsDesk, message: InboundSms, hooks: Any, clock: IReactorTime,
                            in_thread: Callable[..., defer.Deferred[Any]] = threads.deferToThread
                            ) -> SmsResult:
    """Hand ``message`` to the desk (errors propagate: the caller decides about retrying), then reply."""
    result: SmsResult = await in_thread(desk.receive, message)
    if result.reply_to and result.reply_text and not result.duplicate:
        await send_reply(hooks, clock, result.reply_to, result.reply_text)
    if not result.duplicate:
        await notify(hooks, "ivr_sms_received", clock, REPLY_DEADLINE, message=SmsReceived(
            message.message_id, normalise_number(message.from_number, desk.region), message.text,
            dt.datetime.fromtimestamp(clock.seconds(), dt.UTC), result.action,
            contact_uniqueid=sms_uniqueid("inbound", message.message_id)))
    return result


async def send_reply(hooks: Any, clock: IReactorTime, to: str, text: str) -> None:
    """Send ``text`` to ``to`` through ``ivr_send_sms``; a failing plugin is logged, never raised."""
    try:
        sent = await await_hook(hooks.ivr_send_sms(to=to, text=text), clock, REPLY_DEADLINE)
    except Exception:
        log.failure("the SMS reply to {to} failed", to=to)
        return
    if not sent:
        log.warn("no plugin sent the SMS reply to {to}", to=to)
