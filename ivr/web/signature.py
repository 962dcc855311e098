"""HMAC-SHA256 request signatures for webhooks (the SMS gateway), checked in constant time.

The sender puts the Unix time in ``X-IVR-Timestamp`` and, in
``X-IVR-Signature``, the lowercase hex HMAC-SHA256 under the shared secret of
``<timestamp>.`` followed by the exact body bytes (an optional ``sha256=``
prefix is accepted). Signing the timestamp with the body means a captured
request cannot be replayed after ``tolerance`` seconds, and cannot be altered.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from ivr.errors import WebRequestError

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "verify"]

TIMESTAMP_HEADER = b"x-ivr-timestamp"
SIGNATURE_HEADER = b"x-ivr-signature"

_TIMESTAMP = re.compile(rb"[0-9]{1,12}\Z")
_HEX = re.compile(rb"(?:sha256=)?([0-9a-fA-F]{64})\Z")


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The signature of ``body`` sent at ``timestamp`` (what a gateway computes)."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: bytes | None, signature: bytes | None, body: bytes, now: float,
           tolerance: float) -> None:
    """Return if the request is genuine and fresh; else WebRequestError(403) says which check failed."""
    if not timestamp or not signature:
        raise WebRequestError(403, "missing X-IVR-Timestamp or X-IVR-Signature header")
    if _TIMESTAMP.match(timestamp.strip()) is None:
        raise WebRequestError(403, "X-IVR-Timestamp must be Unix time in whole seconds")
    text = timestamp.strip().decode("ascii")
    sent = int(text)
    if abs(now - sent) > tolerance:
        raise WebRequestError(403, f"X-IVR-Timestamp is more than {tolerance:g} s from the server's time")
    match = _HEX.match(signature.strip())
    expected = sign(secret, text, body).encode("ascii")  # the digits exactly as signed
    # Compared even when malformed, so a bad header costs the same time as a wrong one.
    given = match.group(1).lower() if match is not None else b"0" * 64
    if not hmac.compare_digest(given, expected) or match is None:
        raise WebRequestError(403, "the signature does not match")
