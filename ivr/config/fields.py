"""How a setting is declared and checked: ``_setting(default, check, doc)`` and the checks the sections share.

A check answers None for a good value, or what a good value looks like; the
loader turns that into a :class:`~ivr.errors.ConfigError` naming the key and the fix.
"""

from __future__ import annotations

import ipaddress
from dataclasses import field
from pathlib import Path
from typing import Any

__all__ = ["_absolute", "_choice", "_dialplan_target", "_directory", "_networks", "_not_negative", "_port",
           "_positive", "_routes", "_setting", "_template"]


def _positive(value: float) -> str | None:
    return None if value > 0 else "a number greater than 0"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "a TCP port from 0 to 65535 (0 picks a free one)"


def _networks(value: list[str]) -> str | None:
    if not value:
        return "at least one network (an empty list would refuse every call)"
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"IP networks such as 127.0.0.1/32 (not {item!r})"
    return None


def _choice(*options: str) -> Any:
    def check(value: str) -> str | None:
        return None if value in options else "one of " + ", ".join(repr(o) for o in options)

    return check


def _dialplan_target(value: str) -> str | None:
    parts = value.split(",")
    if len(parts) != 3 or not all(parts) or not parts[2].isdigit():
        return "context,extension,priority such as 'ivr-fallback,s,1'"
    return None


def _routes(value: dict[str, str]) -> str | None:
    for name, target in value.items():
        if ":" not in target or not name:
            return f"route = \"module:function\" pairs (not {name!r} = {target!r})"
    return None


def _directory(value: str) -> str | None:
    if value and not Path(value).is_dir():
        return f"an existing folder ({value!r} is not one), or \"\" for the default"
    return None


def _setting(default: Any, check: Any = None, doc: str = "") -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"check": check, "doc": doc})
    return field(default=default, metadata={"check": check, "doc": doc})


def _template(value: str) -> str | None:
    try:
        value.format(due="2026-11-23 09:00")
    except (KeyError, IndexError, ValueError, AttributeError):
        return "text with at most the placeholder {due}, or \"\" for no reply"
    return None


def _not_negative(value: float) -> str | None:
    return None if value >= 0 else "0 or more"


def _absolute(value: str) -> str | None:
    return None if Path(value).is_absolute() else f"an absolute path (not {value!r})"
