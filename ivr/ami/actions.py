"""Typed helpers for the AMI actions ivr uses, over one ``send_action``.

Both a single connection (:class:`~ivr.ami.protocol.AMIProtocol`) and the
reconnecting client (:class:`~ivr.ami.client.AMIClient`) offer them, so code
that only places calls and reads variables need not care which it holds.
Headers are built here and checked by :func:`~ivr.ami.message.build_action`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from twisted.internet import defer

from ivr.ami.message import (
    MAX_HEADER_LINE_BYTES,
    ActionResult,
    Headers,
    HeaderValue,
    OriginateResult,
    originate_result,
    variable_header,
)
from ivr.errors import AMIError, UnsafeHeader

__all__ = ["MAX_MESSAGE_BODY_BYTES", "MAX_ORIGINATE_SECONDS", "ManagerActions", "message_send_headers"]

#: Longest Originate ``Timeout`` accepted, in seconds (a ringing phone, not a day).
MAX_ORIGINATE_SECONDS = 600.0
#: Longest MessageSend body, in UTF-8 bytes: sent as ``Base64Body`` (4 characters per 3 bytes), its
#: line must fit Asterisk's 1024-byte action line (main/message.c decodes it into 1301 bytes).
MAX_MESSAGE_BODY_BYTES = (MAX_HEADER_LINE_BYTES - len("Base64Body: \r\n")) // 4 * 3


class ManagerActions:
    """Typed helpers over ``send_action``, shared by the protocol and the client."""

    def send_action(self, action: str, headers: Headers = (), *, timeout: float | None = None,
                    completion_event: str | None = None) -> defer.Deferred[ActionResult]:
        raise NotImplementedError

    def ping(self) -> defer.Deferred[ActionResult]:
        return self.send_action("Ping")

    def hangup(self, channel: str, cause: int | None = None) -> defer.Deferred[ActionResult]:
        headers: list[tuple[str, HeaderValue]] = [("Channel", channel)]
        if cause is not None:
            headers.append(("Cause", cause))
        return self.send_action("Hangup", headers)

    def setvar(self, variable: str, value: str, channel: str | None = None) -> defer.Deferred[ActionResult]:
        """Set a channel variable (or a global one without ``channel``)."""
        headers: list[tuple[str, HeaderValue]] = [("Variable", variable), ("Value", value)]
        if channel is not None:
            headers.insert(0, ("Channel", channel))
        return self.send_action("Setvar", headers)

    def getvar(self, variable: str, channel: str | None = None) -> defer.Deferred[str | None]:
        """A channel (or global) variable's value; None when Asterisk sends no ``Value``."""
        headers: list[tuple[str, HeaderValue]] = [("Variable", variable)]
        if channel is not None:
            headers.insert(0, ("Channel", channel))
        d = self.send_action("Getvar", headers)
        return d.addCallback(lambda result: result.response.get("Value"))

    def queue_status(self, queue: str | None = None, member: str | None = None
                     ) -> defer.Deferred[ActionResult]:
        """QueueParams/QueueMember/QueueEntry events of one queue (or all), as one result."""
        headers: list[tuple[str, HeaderValue]] = []
        if queue is not None:
            headers.append(("Queue", queue))
        if member is not None:
            headers.append(("Member", member))
        return self.send_action("QueueStatus", headers)

    def message_send(self, destination: str, body: str, from_uri: str | None = None
                     ) -> defer.Deferred[ActionResult]:
        """Send a text message (SIP MESSAGE with ``pjsip:<endpoint>/<uri>``) through Asterisk.

        Succeeds once Asterisk's message technology took it (for PJSIP: the
        MESSAGE request was built and handed to the transport); ``Response:
        Error`` ("Message failed to send.": no such endpoint, bad URI) fails
        with :class:`~ivr.errors.AMIActionError`. The body travels as
        ``Base64Body``, so newlines and any other character arrive intact and
        can never become AMI headers; too long a body, or one with NUL (the C
        string would end there), fails with :class:`~ivr.errors.UnsafeHeader`.
        """
        try:
            headers = message_send_headers(destination, body, from_uri)
        except AMIError as exc:
            return defer.fail(exc)
        return self.send_action("MessageSend", headers)

    def originate(self, channel: str, *, context: str | None = None, exten: str | None = None,
                  priority: int | str = 1, application: str | None = None, data: str | None = None,
                  caller_id: str | None = None, timeout: float = 30.0,
                  variables: Mapping[str, HeaderValue] | None = None, account: str | None = None,
                  channel_id: str | None = None, other_channel_id: str | None = None,
                  early_media: bool = False, answer_margin: float = 15.0
                  ) -> defer.Deferred[OriginateResult]:
        """Place a call on ``channel`` (``Async: true``) and wait for how it ended up.

        When it answers it goes to ``context``/``exten``/``priority`` or runs
        ``application``(``data``). The result comes from the ``OriginateResponse``
        event, so it fires when the channel answers or fails (at most ``timeout``
        seconds of ringing, plus ``answer_margin``). ``Response: Error`` (no
        permission, bad arguments) fails with :class:`~ivr.errors.AMIActionError`.
        Use :func:`~ivr.ami.message.format_caller_id` for ``caller_id`` built from user data.
        """
        try:
            headers = _originate_headers(channel, context, exten, priority, application, data, caller_id,
                                         timeout, variables or {}, account, channel_id, other_channel_id,
                                         early_media)
        except AMIError as exc:
            return defer.fail(exc)
        d = self.send_action("Originate", headers, timeout=timeout + answer_margin,
                             completion_event="OriginateResponse")
        return d.addCallback(_originate_from_result)


def _originate_from_result(result: ActionResult) -> OriginateResult:
    assert result.complete is not None
    return originate_result(result.complete)


def _originate_headers(channel: str, context: str | None, exten: str | None, priority: int | str,
                       application: str | None, data: str | None, caller_id: str | None, timeout: float,
                       variables: Mapping[str, HeaderValue], account: str | None, channel_id: str | None,
                       other_channel_id: str | None, early_media: bool) -> list[tuple[str, HeaderValue]]:
    if not channel:
        raise UnsafeHeader("Originate needs a channel such as PJSIP/1001")
    if (application is None) == (exten is None):
        raise UnsafeHeader("Originate needs either context/exten/priority or application/data")
    if not 0 < timeout <= MAX_ORIGINATE_SECONDS:
        raise UnsafeHeader(f"Originate timeout must be over 0 and at most {MAX_ORIGINATE_SECONDS:.0f}s")
    headers: list[tuple[str, HeaderValue]] = [("Channel", channel)]
    if application is not None:
        headers.append(("Application", application))
        if data is not None:
            headers.append(("Data", data))
    else:
        assert exten is not None
        if context is None:
            raise UnsafeHeader("Originate to an extension needs its context")
        headers += [("Context", context), ("Exten", exten), ("Priority", priority)]
    headers.append(("Timeout", int(timeout * 1000)))
    if caller_id is not None:
        headers.append(("CallerID", caller_id))
    if account is not None:
        headers.append(("Account", account))
    if channel_id is not None:
        headers.append(("ChannelId", channel_id))
    if other_channel_id is not None:
        headers.append(("OtherChannelId", other_channel_id))
    if early_media:
        headers.append(("EarlyMedia", "true"))
    headers.append(("Async", "true"))
    headers += [variable_header(name, value) for name, value in variables.items()]
    return headers


def message_send_headers(destination: str, body: str, from_uri: str | None = None
                         ) -> list[tuple[str, HeaderValue]]:
    """The headers of a ``MessageSend`` action (see :meth:`ManagerActions.message_send`)."""
    if not destination:
        raise UnsafeHeader("MessageSend needs a destination such as pjsip:trunk/sip:123@host")
    if "\x00" in body:
        raise UnsafeHeader("a message body with NUL cannot be sent (Asterisk would cut it there)")
    try:
        data = body.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeHeader("a message body must be valid Unicode") from None
    if len(data) > MAX_MESSAGE_BODY_BYTES:
        raise UnsafeHeader(f"a message body is {len(data)} bytes in UTF-8; MessageSend carries at most "
                           f"{MAX_MESSAGE_BODY_BYTES}")
    headers: list[tuple[str, HeaderValue]] = [("Destination", destination)]
    if from_uri:
        headers.append(("From", from_uri))
    headers.append(("Base64Body", base64.b64encode(data).decode("ascii")))
    return headers
