"""Phone numbers and dial strings: what every part of ivr agrees a number is.

Caller IDs, SMS senders and numbers typed by agents all become E.164
(``+8613800138000``) through :func:`normalise_number` (phonenumbers), so a
customer is one customer whichever way their number was written. A dial
string is what Asterisk's ``Dial()`` takes for a device (``PJSIP/1001``).
"""

from __future__ import annotations

import functools
import re

import phonenumbers

__all__ = ["is_dial_string", "normalise_number"]

#: What a device rung directly may look like: PJSIP/1001, Local/1001@agents. No ``&`` (a second
#: device), no ``,`` (Dial options), no spaces or quotes: a value from the database stays one device.
_DIAL_STRING = re.compile(r"[A-Za-z0-9]+/[A-Za-z0-9_.@+-]+\Z")


@functools.lru_cache(maxsize=65536)
def normalise_number(raw: str | None, region: str) -> str | None:
    """``raw`` caller ID as E.164 (``+8613800138000``), or None if it is not a phone number.

    Cached: a call centre hears the same callers again and again, parsing costs
    ~30 us, and both the history and the customer lookup ask for every call.
    """
    if not raw or len(raw) > 32:
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def is_dial_string(text: str) -> bool:
    """True if ``text`` names exactly one device for ``Dial()`` (``PJSIP/1001``)."""
    return _DIAL_STRING.match(text) is not None

