"""Inbound SMS over SIP MESSAGE: AMI ``UserEvent: IvrSmsIn`` from ``[ivr-sms-in]`` to the SMS desk.

Asterisk (res_pjsip_messaging) runs each MESSAGE the trunk sends through
``[ivr-sms-in]`` of extensions_ivr.conf, which raises one UserEvent with the
message's Id (SIP Call-ID and CSeq), From, To and Body, each base64-encoded
because the body is whatever a customer typed. This module decodes and checks
them into an :class:`~ivr.callbacks.sms.InboundSms` and takes the same path
as the HTTP webhook (:func:`~ivr.callbacks.sms_intake.receive_and_reply`):
the desk acts on each Id once, so a carrier's redelivery changes nothing,
and the reply SMS leaves through ``ivr_send_sms`` (the outbox, then Asterisk).

res_pjsip_messaging reads at most 1023 bytes of a body and 511 of a header
(``MAX_BODY_SIZE``, ``MAX_HDR_SIZE``), so an event stays far below the AMI
client's line limit whatever a sender puts in. A longer body is dropped by
Asterisk (``print_body`` fails: the message arrives with no text), and
trailing CR/LF are stripped: such a message is still acted on, as text "".

Only events of Asterisk's message channel (``Channel: Message/...``) count:
a UserEvent sent by an AMI client, or by a call's dialplan, is not an SMS.
Asterisk already answered the carrier (202), so a database outage cannot
be pushed back to it: the message is tried again a few times, then logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from twisted.internet import defer, task, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ivr.ami.message import AMIMessage
from ivr.callbacks.sms import InboundSms, SmsDesk, SmsResult
from ivr.callbacks.sms_intake import receive_and_reply

__all__ = ["EVENT", "SipSmsInbound", "parse_sms_event", "sender_number"]

log = Logger(namespace="ivr.sms")

#: The UserEvent name [ivr-sms-in] raises.
EVENT = "IvrSmsIn"
#: Message ids are namespaced, so they never meet a webhook gateway's ids.
ID_PREFIX = "sip:"
MAX_ID_CHARS = 200
MAX_NUMBER_CHARS = 64
#: Seconds between tries when the desk cannot store a message (the database is down).
RETRY_DELAYS: tuple[float, ...] = (1.0, 5.0, 30.0)


class BadSmsEvent(ValueError):
    """An IvrSmsIn event that cannot be a message (not base64, no sender ...)."""


def _decode(event: AMIMessage, header: str) -> str:
    raw = event.get(header)
    if raw is None:
        raise BadSmsEvent(f"no {header} header")
    try:
        data = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadSmsEvent(f"{header} is not base64") from None
    return data.decode("utf-8", "replace").replace("\x00", "\ufffd")


def _plain(value: str, name: str) -> str:
    value = value.strip()
    if not value:
        raise BadSmsEvent(f"the {name} is empty")
    if len(value) > MAX_NUMBER_CHARS or any(not ch.isprintable() for ch in value):
        raise BadSmsEvent(f"the {name} is not a plain number of at most {MAX_NUMBER_CHARS} characters")
    return value


def sender_number(from_header: str) -> str:
    """The user part of a SIP From (``"Name" <sip:+8613800138000@host;p=1>`` -> ``+8613800138000``)."""
    uri = from_header
    if "<" in uri:  # a display name may hold anything, '<' too: the URI is in the last <...>
        uri = uri[uri.rindex("<") + 1:]
        uri = uri.split(">", 1)[0]
    uri = uri.strip()
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips", "tel"):
        raise BadSmsEvent("From is not a sip:, sips: or tel: URI")
    user = rest.split("@", 1)[0] if scheme.lower() != "tel" else rest
    user = unquote(user.split(";", 1)[0], errors="replace")
    return _plain(user, "sender")


def _message_id(raw: str) -> str:
    value = " ".join(raw.split())  # "<Call-ID> <CSeq number> MESSAGE", whitespace normalised
    if not value:
        raise BadSmsEvent("the message Id is empty")
    if any(not ch.isprintable() for ch in value) or len(ID_PREFIX) + len(value) > MAX_ID_CHARS:
        value = "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
    return ID_PREFIX + value


def parse_sms_event(event: AMIMessage, max_text_chars: int) -> InboundSms:
    """The message an ``IvrSmsIn`` UserEvent carries; :class:`BadSmsEvent` saying why not."""
    message_id = _message_id(_decode(event, "Id"))
    sender = sender_number(_decode(event, "From"))
    recipient = _decode(event, "To").strip()
    recipient = _plain(recipient, "recipient") if recipient else ""
    text = _decode(event, "Body")
    if len(text) > max_text_chars:
        log.warn("SMS {message_id} is {length} characters long; keeping the first {limit}",
                 message_id=message_id, length=len(text), limit=max_text_chars)
        text = text[:max_text_chars]
    return InboundSms(message_id, sender, recipient, text)


def is_sms_event(event: AMIMessage) -> bool:
    """An IvrSmsIn raised by Asterisk's message channel (not by a call, not by an AMI client)."""
    return (event.get("UserEvent") or "") == EVENT and (event.get("Channel") or "").startswith("Message/")


class SipSmsInbound:
    """Hands the SMS Asterisk receives over SIP MESSAGE to the SMS desk."""

    def __init__(self, desk: SmsDesk, hooks: Any, clock: IReactorTime,
                 in_thread: Callable[..., defer.Deferred[Any]] = threads.deferToThread,
                 retry_delays: Sequence[float] = RETRY_DELAYS) -> None:
        self.desk = desk
        self.hooks = hooks
        self.clock = clock
        self.in_thread = in_thread
        self.retry_delays = tuple(retry_delays)
        self.received = 0

    def subscribe(self, ami: Any) -> Callable[[], None]:
        """Listen on ``ami`` (the client's event bus outlives reconnections); returns an unsubscribe."""
        unsubscribe: Callable[[], None] = ami.subscribe(self.on_event, "UserEvent")
        return unsubscribe

    def on_event(self, event: AMIMessage) -> defer.Deferred[SmsResult | None] | None:
        if (event.get("UserEvent") or "") != EVENT:
            return None
        if not is_sms_event(event):
            log.warn("ignored a UserEvent {name} that did not come from Asterisk's message channel "
                     "(channel {channel!r})", name=EVENT, channel=(event.get("Channel") or "")[:80])
            return None
        try:
            message = parse_sms_event(event, self.desk.settings.max_text_chars)
        except BadSmsEvent as exc:
            log.warn("ignored an SMS over SIP: {reason}", reason=str(exc))
            return None
        self.received += 1
        return defer.Deferred.fromCoroutine(self.take(message))

    async def take(self, message: InboundSms) -> SmsResult | None:
        """Act on ``message`` like the webhook does; retried while the database fails."""
        for delay in (*self.retry_delays, None):
            try:
                result = await receive_and_reply(self.desk, message, self.hooks, self.clock, self.in_thread)
            except Exception:
                if delay is None:
                    log.failure("SMS {message_id} from {sender} could not be stored; it is lost",
                                message_id=message.message_id, sender=message.from_number)
                    return None
                log.failure("storing SMS {message_id} failed; trying again in {delay}s",
                            message_id=message.message_id, delay=delay)
                await task.deferLater(self.clock, delay, lambda: None)
                continue
            log.info("SMS over SIP {message_id} from {sender}: {action}{dup}", message_id=message.message_id,
                     sender=message.from_number, action=result.action,
                     dup=" (a copy already handled)" if result.duplicate else "")
            return result
        return None
