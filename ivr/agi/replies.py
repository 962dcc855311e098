"""Parsing of the reply lines Asterisk sends for each AGI command.

Replies look like ``200 result=1 (data) endpos=1234``. Errors are ``510 ...``
(unknown command), ``511 ...`` (dead channel) and a multi-line ``520-`` usage
block closed by ``520 End of proper usage.``. Anything else is malformed.

``GET DATA`` is the one command whose result is a digit string rather than an
integer: Asterisk sends ``200 result=`` when the caller pressed ``#`` at once
and ``200 result= (timeout)`` when nothing was pressed, so it is parsed in
digits mode, where an empty or ``*``-bearing result is valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ivr.errors import MalformedReply

__all__ = ["AGIReply", "parse_success"]

_SUCCESS = re.compile(r"200 result=([^\s(]*)(?: (.*))?\Z", re.DOTALL)
_INTEGER = re.compile(r"-?\d+\Z")
_DIGITS = re.compile(r"[0-9*#A-Da-d]*\Z")
_ENDPOS = re.compile(r"(?:^| )endpos=(-?\d+)\Z")


@dataclass(frozen=True, slots=True)
class AGIReply:
    """A ``200`` reply: the result as sent, the parenthesised data, endpos."""

    raw_result: str
    data: str | None = None
    endpos: int | None = None
    extra: str = ""

    @property
    def result(self) -> int:
        """The result as an integer; 0 when it is not one (``GET DATA`` digits such as ``*1``)."""
        raw = self.raw_result
        # _INTEGER.match(raw) without the regex: \d is exactly str.isdecimal().
        if (raw[1:] if raw[:1] == "-" else raw).isdecimal():
            return int(raw)
        return 0

    @property
    def digit(self) -> str | None:
        """The result read as a DTMF digit (ASCII code), or None for 0 / -1."""
        value = self.result
        if value <= 0 or value > 0x10FFFF:
            return None
        return chr(value)


#: Replies already parsed, by line: most are one of a few lines ("200 result=0").
#: An AGIReply is immutable, so one instance can serve every equal line.
_PARSED: dict[str, AGIReply] = {}
_PARSED_DIGITS: dict[str, AGIReply] = {}
_PARSED_SIZE = 512
_PARSED_LINE_BYTES = 128


def parse_success(line: str, digits: bool = False) -> AGIReply:
    """Parse a ``200 result=...`` line. Raise :class:`MalformedReply` otherwise."""
    cache = _PARSED_DIGITS if digits else _PARSED
    reply = cache.get(line)
    if reply is None:
        reply = _parse_success(line, digits)
        if len(line) <= _PARSED_LINE_BYTES:
            if len(cache) >= _PARSED_SIZE:
                cache.clear()
            cache[line] = reply
    return reply


def _parse_success(line: str, digits: bool) -> AGIReply:
    match = _SUCCESS.match(line)
    if match is None:
        raise MalformedReply(f"not an AGI reply: {line[:120]!r}")
    raw, rest = match.group(1), match.group(2)
    if digits:
        valid = bool(_DIGITS.match(raw) or raw == "-1") and (
            rest is None or rest.startswith("(") or bool(raw)
        )
    else:
        valid = bool(_INTEGER.match(raw))
    if not valid:
        raise MalformedReply(f"bad result in AGI reply: {line[:120]!r}")
    rest = rest or ""
    endpos: int | None = None
    pos = _ENDPOS.search(rest)
    if pos is not None:
        endpos = int(pos.group(1))
        rest = rest[: pos.start()]
    data: str | None = None
    if rest.startswith("(") and rest.endswith(")"):
        data, rest = rest[1:-1], ""
    return AGIReply(raw_result=raw, data=data, endpos=endpos, extra=rest)
