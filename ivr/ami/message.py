"""AMI messages: what Asterisk sends, and the actions we write, checked header by header.

An AMI message is ``Key: Value`` lines ending in CRLF and an empty line ending
the message. Asterisk's manager.c reads an action line into a 1025-byte buffer
and keeps 128 headers of it; a CR or LF in a value would end the line and let
user data (a caller name, a number) write headers or whole actions of its own.
So every header we send is checked, and a bad one is refused, never stripped.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ivr.errors import UnsafeHeader

__all__ = [
    "MAX_ACTION_HEADERS",
    "MAX_HEADER_LINE_BYTES",
    "AMIMessage",
    "ActionResult",
    "HeaderValue",
    "Headers",
    "OriginateOutcome",
    "OriginateResult",
    "build_action",
    "format_caller_id",
    "originate_result",
    "variable_header",
]

#: Asterisk reads one action line into a 1025-byte buffer (manager.c ``inbuf``) and
#: discards the whole action when a line does not fit, so longer lines are refused here.
MAX_HEADER_LINE_BYTES = 1024
#: Asterisk keeps 128 headers of an action and silently drops the rest.
MAX_ACTION_HEADERS = 128

#: Header names are plain words: no ':' (it would end the name), no spaces.
_HEADER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
#: Channel variable names: optional ``_``/``__`` inheritance prefix, then a word.
#: No parentheses, so a "variable" can never be a dialplan function such as SHELL().
_VARIABLE_NAME = re.compile(r"_{0,2}[A-Za-z][A-Za-z0-9_]{0,79}\Z")
#: C0 and C1 control characters, DEL, and the Unicode line/paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: Asterisk splits a ``Variable:`` value with ast_app_separate_args(): ',' separates
#: name=value items, '"' toggles quoting and '\\' escapes; brackets nest. Each of these
#: is sent escaped so a value arrives as exactly one item, unchanged.
_VARIABLE_ESCAPES = str.maketrans({c: "\\" + c for c in '\\",()[]'})
#: A caller ID number: what phones dial and display, nothing Asterisk parses.
_CALLER_NUMBER = re.compile(r"\+?[0-9*#]{0,32}\Z")
#: Characters that change how Asterisk splits ``"name" <number>``.
_CALLER_NAME_SPECIALS = frozenset('"<>\\')

HeaderValue = str | int
Headers = Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]]


# -- messages ---------------------------------------------------------------


class AMIMessage(Mapping[str, str]):
    """One message from Asterisk: its headers in order.

    Lookup is case-insensitive and gives the first value of a key (Asterisk
    spells ``ActionID`` and ``Uniqueid`` differently across versions);
    :meth:`get_all` gives every value of a repeated key such as ``Output``.
    """

    __slots__ = ("headers", "_first")

    def __init__(self, headers: Iterable[tuple[str, str]]) -> None:
        self.headers: tuple[tuple[str, str], ...] = tuple(headers)
        first: dict[str, str] = {}
        for key, value in self.headers:
            first.setdefault(key.lower(), value)
        self._first = first

    def __getitem__(self, key: str) -> str:
        return self._first[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)

    def __repr__(self) -> str:
        return f"AMIMessage({list(self.headers)!r})"

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key``, in order."""
        wanted = key.lower()
        return [value for name, value in self.headers if name.lower() == wanted]

    @property
    def event(self) -> str | None:
        return self._first.get("event")

    @property
    def response(self) -> str | None:
        return self._first.get("response")

    @property
    def action_id(self) -> str | None:
        return self._first.get("actionid")


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an action got: its response and, for a list action, the events in between.

    ``complete`` is the event that closed a list (``...Complete``, with its
    ``ListItems``) or the follow-up event an Originate waits for.
    """

    response: AMIMessage
    events: tuple[AMIMessage, ...] = ()
    complete: AMIMessage | None = None


# -- originate results ------------------------------------------------------


class OriginateOutcome(enum.Enum):
    """How an originated call ended up, from ``OriginateResponse``."""

    ANSWERED = "answered"
    NO_ANSWER = "no-answer"
    BUSY = "busy"
    CONGESTION = "congestion"
    FAILED = "failed"


#: OriginateResponse ``Reason`` is the last control frame Asterisk read from the
#: new channel (AST_CONTROL_* in frame.h), 0 when it could not even be placed.
_ORIGINATE_REASONS: dict[int, OriginateOutcome] = {
    0: OriginateOutcome.FAILED,  # no such channel/extension, unreachable
    1: OriginateOutcome.NO_ANSWER,  # AST_CONTROL_HANGUP: hung up / declined before answering
    3: OriginateOutcome.NO_ANSWER,  # AST_CONTROL_RINGING: rang until the timeout
    4: OriginateOutcome.ANSWERED,  # AST_CONTROL_ANSWER
    5: OriginateOutcome.BUSY,  # AST_CONTROL_BUSY
    8: OriginateOutcome.CONGESTION,  # AST_CONTROL_CONGESTION (circuits busy, no route)
}


@dataclass(frozen=True, slots=True)
class OriginateResult:
    """The outcome of an async Originate; ``reason_code`` is Asterisk's raw ``Reason``."""

    outcome: OriginateOutcome
    reason_code: int | None
    channel: str
    uniqueid: str
    event: AMIMessage

    @property
    def answered(self) -> bool:
        return self.outcome is OriginateOutcome.ANSWERED


def originate_result(event: AMIMessage) -> OriginateResult:
    """Read an ``OriginateResponse`` event."""
    reason = event.get("Reason", "").strip()
    code = int(reason) if reason.isdigit() and len(reason) < 6 else None
    if (event.get("Response") or "").lower() == "success":
        outcome = OriginateOutcome.ANSWERED
    else:
        outcome = _ORIGINATE_REASONS.get(code, OriginateOutcome.FAILED) if code is not None \
            else OriginateOutcome.FAILED
        if outcome is OriginateOutcome.ANSWERED:  # "Failure" with reason 4: the Response wins
            outcome = OriginateOutcome.FAILED
    return OriginateResult(outcome, code, event.get("Channel", ""), event.get("Uniqueid", ""), event)


# -- building actions -------------------------------------------------------


def _header_line(name: str, value: HeaderValue) -> bytes:
    if type(name) is not str or _HEADER_NAME.match(name) is None:
        raise UnsafeHeader(f"AMI header name {str(name)[:40]!r} must be a plain word (letters, digits, _ -)")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UnsafeHeader(f"AMI header {name} must be str or int, not {type(value).__name__}")
    text = str(int(value)) if isinstance(value, int) else str(value)
    bad = _CONTROL.search(text)
    if bad is not None:
        # The value itself is not echoed: it may be a secret, and it is hostile.
        raise UnsafeHeader(f"AMI header {name} refused: its value has a control character "
                           f"(U+{ord(bad.group()):04X}) at position {bad.start()}")
    try:
        line = f"{name}: {text}\r\n".encode()
    except UnicodeEncodeError:
        raise UnsafeHeader(f"AMI header {name} refused: its value is not valid Unicode") from None
    if len(line) > MAX_HEADER_LINE_BYTES:
        raise UnsafeHeader(f"AMI header {name} refused: {len(line)} bytes, Asterisk reads at most "
                           f"{MAX_HEADER_LINE_BYTES} per line and drops the whole action otherwise")
    return line


def build_action(action: str, headers: Headers = (), action_id: str | None = None) -> bytes:
    """One complete action, ready to write; raises :class:`UnsafeHeader` rather than send a bad one.

    ``Action`` and ``ActionID`` are the client's: callers cannot set them in ``headers``.
    """
    lines = [_header_line("Action", action)]
    if action_id is not None:
        lines.append(_header_line("ActionID", action_id))
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if isinstance(name, str) and name.lower() in ("action", "actionid"):
            raise UnsafeHeader(f"AMI header {name} is set by the client, not by callers")
        lines.append(_header_line(name, value))
    if len(lines) > MAX_ACTION_HEADERS:
        raise UnsafeHeader(f"AMI {action} has {len(lines)} headers; Asterisk keeps at most "
                           f"{MAX_ACTION_HEADERS} and would silently drop the rest")
    lines.append(b"\r\n")
    return b"".join(lines)


def variable_header(name: str, value: HeaderValue) -> tuple[str, str]:
    """A ``Variable: NAME=value`` header that sets exactly one channel variable to exactly ``value``.

    The name must be a plain variable name (``_``/``__`` inheritance prefixes
    allowed, no functions); the value is escaped for Asterisk's argument
    splitting, and control characters are refused by :func:`build_action`.
    """
    if type(name) is not str or _VARIABLE_NAME.match(name) is None:
        raise UnsafeHeader(f"channel variable name {str(name)[:40]!r} must be letters, digits and _")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UnsafeHeader(f"channel variable {name} must be str or int, not {type(value).__name__}")
    text = str(int(value)) if isinstance(value, int) else str(value)
    return "Variable", f"{name}={text.translate(_VARIABLE_ESCAPES)}"


def format_caller_id(name: str, number: str) -> str:
    """``"name" <number>`` for Originate's ``CallerID``, refusing what would change its parsing.

    A name with ``"``, ``<``, ``>`` or ``\\`` could smuggle in another number, and
    a number is digits (``+``, ``*``, ``#`` allowed); clean display names before.
    """
    if _CALLER_NUMBER.match(number) is None:
        raise UnsafeHeader("caller ID number must be digits, optionally with a leading +")
    if any(ch in _CALLER_NAME_SPECIALS for ch in name) or _CONTROL.search(name) or len(name) > 80:
        raise UnsafeHeader('caller ID name must be at most 80 characters without " < > \\ or controls')
    return f'"{name}" <{number}>' if name else f"<{number}>"
