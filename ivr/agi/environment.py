"""The AGI environment: the ``agi_*`` lines Asterisk sends before the first command.

:func:`environment_at_once` reads a whole, well-formed environment in one
search (the usual case: Asterisk writes it in one segment);
:func:`environment_entry` reads one line, for the protocol's line-by-line
reader (split segments, malformed or repeated lines), which also warns and
enforces the limits. Both give the same environment (tests/test_fastagi_protocol.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar, overload

__all__ = ["AGIEnvironment", "environment_at_once", "environment_entry"]

_T = TypeVar("_T")

_ENV_KEY = re.compile(rb"agi_[a-z0-9_]{1,64}\Z")
#: A whole environment line as Asterisk writes it (the fast path reads them all in one search).
_ENV_LINE = re.compile(r"^agi_([a-z0-9_]{1,64}): (.*)$", re.MULTILINE)


class AGIEnvironment(Mapping[str, str]):
    """The ``agi_*`` variables Asterisk sent, keys without the ``agi_`` prefix.

    Values are text: invalid UTF-8 is replaced by U+FFFD and NUL is replaced
    too, so nothing from the environment can cut or extend a later command.
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    @overload
    def get(self, key: str, /) -> str | None: ...

    @overload
    def get(self, key: str, /, default: str | _T) -> str | _T: ...

    def get(self, key: str, /, default: object = None) -> object:
        """The dict's own ``get``: Mapping's costs two more calls (a call reads a dozen keys)."""
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Any:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"AGIEnvironment({self._values!r})"

    @property
    def args(self) -> tuple[str, ...]:
        """``agi_arg_1`` .. ``agi_arg_N`` in order (stops at the first gap)."""
        found = []
        index = 1
        while (value := self._values.get(f"arg_{index}")) is not None:
            found.append(value)
            index += 1
        return tuple(found)

    @property
    def network_script(self) -> str:
        """The path after ``agi://host:port/``, without leading slashes or query."""
        script = self._values.get("network_script", "")
        return script.split("?", 1)[0].strip("/")


def environment_entry(line: bytes) -> tuple[str, str] | None:
    """One ``agi_name: value`` line (CR already removed) as (name, value), or None if malformed.

    The value is text: invalid UTF-8 and NUL become U+FFFD.
    """
    key, sep, value = line.partition(b": ")
    if not sep or _ENV_KEY.match(key) is None:
        return None
    return key[4:].decode("ascii"), value.decode("utf-8", "replace").replace("\x00", "\ufffd")


def environment_at_once(data: bytes, max_line: int, max_lines: int,
                        max_bytes: int) -> tuple[dict[str, str], int] | None:
    """The environment in ``data`` and where its blank line starts, if it is all there and plain.

    None for anything the line reader must look at (no blank line yet, a carriage return, a
    malformed or repeated line, a line or the whole over its limit): it warns and closes as
    each case needs.
    """
    end = data.find(b"\n\n")
    if end < 0 or end >= max_line or end >= max_bytes or b"\r" in data[:end]:
        return None
    block = data[:end].decode("utf-8", "replace")
    pairs = _ENV_LINE.findall(block)
    lines = block.count("\n") + 1
    if len(pairs) != lines or lines > max_lines:
        return None
    env = dict(pairs)
    if len(env) != lines:
        return None
    if "\x00" in block:
        env = {key: value.replace("\x00", "\ufffd") for key, value in env.items()}
    return env, end
