"""``POST /api/sms``: the SMS gateway's webhook.

The body is JSON (``application/json``) or a form
(``application/x-www-form-urlencoded``), in UTF-8, with these fields (names
matched case-insensitively; the first name found in each list is used):

=============  ==================================================================
message id     ``message_id``, ``messageId``, ``MessageSid``, ``sms_id``, ``msg_id``, ``id``
from           ``from``, ``sender``, ``msisdn``, ``from_number``, ``phone``
to             ``to``, ``recipient``, ``to_number`` (optional)
text           ``text``, ``body``, ``message``, ``content``
=============  ==================================================================

It must be signed (:mod:`ivr.web.signature`). Answers: 200 with what was done
(``{"status": "ok", "action": "callback", "callback_id": 7, "due_at": ...,
"duplicate": false}``); 400 bad input; 403 bad signature; 413 too large; 415
another content type; 503 when ``[http] sms_secret`` is not set or the
database is unavailable (the gateway should retry: it is idempotent).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import server

from ivr.callbacks.sms import InboundSms, SmsDesk, SmsResult
from ivr.errors import WebRequestError
from ivr.history.sms import sms_uniqueid
from ivr.phone import normalise_number
from ivr.plugins.feedback import SmsReceived
from ivr.routing.router import await_hook, notify
from ivr.web.resources import JsonResource, read_body
from ivr.web.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

__all__ = ["FIELD_NAMES", "SmsWebhook", "parse_sms"]

log = Logger(namespace="ivr.web")

#: Accepted field names, lower-case, in order of preference.
FIELD_NAMES: dict[str, tuple[str, ...]] = {
    "message_id": ("message_id", "messageid", "messagesid", "sms_id", "msg_id", "id"),
    "from": ("from", "sender", "msisdn", "from_number", "phone"),
    "to": ("to", "recipient", "to_number"),
    "text": ("text", "body", "message", "content"),
}
MAX_ID_CHARS = 200
MAX_NUMBER_CHARS = 64
#: Seconds the reply hook (ivr_send_sms) may take before the webhook answers anyway.
REPLY_DEADLINE = 10.0


def _duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key.lower() for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise WebRequestError(400, "a field appears twice")
    return dict(pairs)


def _fields_from(body: bytes, content_type: str) -> Mapping[str, object]:
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebRequestError(400, "the body is not UTF-8") from None
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            data = json.loads(decoded, object_pairs_hook=_duplicate_keys)
        except (ValueError, RecursionError):
            raise WebRequestError(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise WebRequestError(400, "the JSON body must be an object")
        return data
    if content_type == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(decoded, keep_blank_values=True, max_num_fields=50, errors="strict")
        except UnicodeDecodeError:
            raise WebRequestError(400, "a form field is not UTF-8 once percent-decoded") from None
        except ValueError:
            raise WebRequestError(400, "the form has too many fields") from None
        if any(len(values) > 1 for values in form.values()) or len({k.lower() for k in form}) != len(form):
            raise WebRequestError(400, "a field appears twice")
        return {key: values[0] for key, values in form.items()}
    raise WebRequestError(415, "send application/json or application/x-www-form-urlencoded")


def _field(fields: Mapping[str, object], name: str, required: bool = True, numbers_ok: bool = True) -> str:
    lowered: dict[str, object] = {}
    for key, value in fields.items():
        lowered.setdefault(key.lower(), value)
    for alias in FIELD_NAMES[name]:
        if alias in lowered:
            value = lowered[alias]
            if isinstance(value, bool) or not isinstance(value, (str, int) if numbers_ok else str):
                raise WebRequestError(400, f"field {alias!r} must be a string")
            return str(value)
    if required:
        raise WebRequestError(400, f"no {name} field (send one of: {', '.join(FIELD_NAMES[name])})")
    return ""


def _clean_text(value: str) -> str:
    """The text literally, except what no database can store: NUL and lone surrogates become U+FFFD."""
    return "".join("\ufffd" if ch == "\x00" or "\ud800" <= ch <= "\udfff" else ch for ch in value)


def _plain(value: str, name: str, limit: int, allow_empty: bool = False) -> str:
    """An identifier or number: no control characters, at most ``limit`` characters."""
    value = value.strip()
    if not value and not allow_empty:
        raise WebRequestError(400, f"the {name} is empty")
    if len(value) > limit:
        raise WebRequestError(400, f"the {name} is longer than {limit} characters")
    if any(not ch.isprintable() or "\ud800" <= ch <= "\udfff" for ch in value):
        raise WebRequestError(400, f"the {name} contains control characters")
    return value


def parse_sms(body: bytes, content_type: bytes | None, max_text_chars: int) -> InboundSms:
    """The message in a webhook body; WebRequestError(400/415) with a clear reason otherwise."""
    media = (content_type or b"").split(b";", 1)[0].strip().lower().decode("latin-1")
    fields = _fields_from(body, media)
    message_id = _plain(_field(fields, "message_id"), "message id", MAX_ID_CHARS)
    sender = _plain(_field(fields, "from"), "from number", MAX_NUMBER_CHARS)
    recipient = _plain(_field(fields, "to", required=False), "to number", MAX_NUMBER_CHARS, allow_empty=True)
    text = _field(fields, "text", numbers_ok=False)
    if len(text) > max_text_chars:
        raise WebRequestError(400, f"the text is longer than {max_text_chars} characters")
    return InboundSms(message_id, sender, recipient, _clean_text(text))


class SmsWebhook(JsonResource):
    """The webhook resource. ``desk`` is None while ``[http] sms_secret`` is unset: then it answers 503."""

    def __init__(self, desk: SmsDesk | None, secret: str, hooks: Any, clock: IReactorTime,
                 tolerance: float = 300.0,
                 in_thread: Callable[..., defer.Deferred[Any]] = threads.deferToThread,
                 now: Callable[[], float] = time.time) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.desk = desk
        self.secret = secret
        self.hooks = hooks
        self.clock = clock
        self.tolerance = tolerance
        self.in_thread = in_thread
        self.now = now

    async def handle_POST(self, request: server.Request) -> tuple[int, object]:
        if self.desk is None or not self.secret:
            raise WebRequestError(503, "SMS webhook disabled: set [http] sms_secret (IVR_HTTP_SMS_SECRET)")
        body = read_body(request)
        verify(self.secret, request.getHeader(TIMESTAMP_HEADER), request.getHeader(SIGNATURE_HEADER), body,
               self.now(), self.tolerance)
        message = parse_sms(body, request.getHeader(b"content-type"), self.desk.settings.max_text_chars)
        try:
            result: SmsResult = await self.in_thread(self.desk.receive, message)
        except Exception:
            log.failure("storing SMS {message_id} failed", message_id=message.message_id)
            raise WebRequestError(503, "the message could not be stored; retry later") from None
        if result.reply_to and result.reply_text and not result.duplicate:
            await self._reply(result.reply_to, result.reply_text)
        if not result.duplicate:  # e.g. the complaints service looks for its keywords
            await notify(self.hooks, "ivr_sms_received", self.clock, REPLY_DEADLINE, message=SmsReceived(
                message.message_id, normalise_number(message.from_number, self.desk.region), message.text,
                dt.datetime.fromtimestamp(self.now(), dt.UTC), result.action,
                contact_uniqueid=sms_uniqueid("inbound", message.message_id)))
        return 200, result.to_dict()

    async def _reply(self, to: str, text: str) -> None:
        """Send the reply through ``ivr_send_sms``; a failing plugin is logged, the request still succeeds."""
        try:
            sent = await await_hook(self.hooks.ivr_send_sms(to=to, text=text), self.clock, REPLY_DEADLINE)
        except Exception:
            log.failure("the SMS reply to {to} failed", to=to)
            return
        if not sent:
            log.warn("no plugin sent the SMS reply to {to}", to=to)
