"""Log output for ``ivr serve``: twisted.logger, as text or one JSON object a line."""

from __future__ import annotations

import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    jsonFileLogObserver,
    textFileLogObserver,
)

__all__ = ["make_observer", "start_logging"]


def make_observer(fmt: str, level: str, stream: IO[str]) -> ILogObserver:
    """An observer writing ``fmt`` ("text" or "json") at ``level`` and above."""
    base = jsonFileLogObserver(stream, recordSeparator="") if fmt == "json" else textFileLogObserver(stream)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    return FilteringLogObserver(base, [predicate])


def start_logging(fmt: str, level: str, stream: IO[str] | None = None) -> None:
    """Send all log events (including Python warnings) to one observer."""
    observer = make_observer(fmt, level, stream or sys.stdout)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
