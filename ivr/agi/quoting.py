"""Quoting of AGI command arguments.

Asterisk splits a command line with ``parse_args`` in res_agi.c: whitespace
separates words, ``"`` toggles quoting, and ``\\`` makes the next character
literal. Every argument ivr sends is wrapped in double quotes with ``"`` and
``\\`` escaped, so any value arrives as exactly one argument, unchanged.

Two things cannot be represented at all: NUL (Asterisk handles C strings) and
LF (it ends the command). And Asterisk reads a command into a buffer of
``AGI_BUF_LEN`` (2048) bytes: anything past it would be read as a *second*
command. Those cases raise :class:`~ivr.errors.UnsafeArgument` instead.
"""

from __future__ import annotations

from ivr.errors import UnsafeArgument

__all__ = ["AGI_BUF_LEN", "MAX_COMMAND_BYTES", "build_command", "quote_argument"]

#: Size of the buffer Asterisk reads one AGI command into (res_agi.c).
AGI_BUF_LEN = 2048
#: Longest command line, newline included, that Asterisk reads in one piece.
MAX_COMMAND_BYTES = AGI_BUF_LEN - 1

_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})
#: Verbs already found to be plain words (ivr's own constants, so few).
_CHECKED_VERBS: set[str] = set()
_CHECKED_VERBS_SIZE = 256


def quote_argument(value: str) -> str:
    """Return ``value`` as one double-quoted AGI argument.

    Raises :class:`UnsafeArgument` for NUL or LF, which no quoting can carry.
    """
    if "\x00" in value or "\n" in value:
        raise UnsafeArgument(
            f"argument {value[:40]!r} contains NUL or LF, which AGI cannot carry"
        )
    return '"' + value.translate(_ESCAPES) + '"'


def build_command(verb: str, *args: str | int) -> bytes:
    """Build one complete command line (with its LF) ready to write.

    ``verb`` is ivr's own constant (``"STREAM FILE"``) and is checked to be
    plain words; every argument is quoted. Integers are sent bare.
    """
    if type(verb) is not str or verb not in _CHECKED_VERBS:
        if not verb or not all(word.isalpha() for word in verb.split(" ")):
            raise UnsafeArgument(f"AGI verb {verb!r} must be plain words")
        if type(verb) is str and len(_CHECKED_VERBS) < _CHECKED_VERBS_SIZE:
            _CHECKED_VERBS.add(verb)
    parts = [verb]
    for arg in args:
        if type(arg) is str:  # quote_argument(), inline for the common case
            if "\x00" in arg or "\n" in arg:
                quote_argument(arg)  # raises UnsafeArgument
            if '"' in arg or "\\" in arg:
                arg = arg.translate(_ESCAPES)
            parts.append('"' + arg + '"')
        elif type(arg) is int:
            parts.append(str(arg))
        elif isinstance(arg, bool) or not isinstance(arg, (int, str)):
            raise UnsafeArgument(f"AGI argument {arg!r} must be str or int")
        else:  # subclasses of str or int
            parts.append(str(arg) if isinstance(arg, int) else quote_argument(arg))
    try:
        line = (" ".join(parts) + "\n").encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnsafeArgument(f"{verb} argument is not valid Unicode: {exc}") from None
    if len(line) > MAX_COMMAND_BYTES:
        raise UnsafeArgument(
            f"{verb} command is {len(line)} bytes; Asterisk reads at most "
            f"{MAX_COMMAND_BYTES}, and the rest would become a second command"
        )
    return line
