"""The contact history's records and their journal lines.

A call's life reaches the history as records: its start, each step, its
end (the IVR part), and the human part as it changes (queue, agent, wait,
talk). Journal lines are JSON arrays of a record's fields in declaration
order, so a field added later must go last (with a default) for old
journals to replay.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, cast

from twisted.logger import Logger

from ivr.routing.router import CallStep

__all__ = ["END_FIELDS", "HUMAN_FIELDS", "START_FIELDS", "ContactEnd", "ContactHumanPart", "ContactStart",
           "ContactStep", "Record", "journal_line", "read_records"]

log = Logger(namespace="ivr.history")


# The records are not frozen: a frozen dataclass sets each field through object.__setattr__,
# which was a tenth of the contact history's cost per call on the reactor thread. Nothing
# changes a record once made.


@dataclass(slots=True)
class ContactStart:
    uniqueid: str
    started_at: float
    handled_by: str
    caller_number: str = ""
    caller_name: str = ""
    caller_e164: str | None = None
    called_number: str = ""
    route: str = ""
    kind: str = "hotline"
    direction: str = "inbound"
    channel: str = "voice"


@dataclass(slots=True)
class ContactStep:
    """A call's step (the router's own :class:`CallStep`), numbered and timed for the history."""

    uniqueid: str
    seq: int
    at: float
    step: CallStep


@dataclass(slots=True)
class ContactEnd:
    uniqueid: str
    ended_at: float
    outcome: str
    reason: str = ""
    ivr_path: list[dict[str, str]] = field(default_factory=list)
    dtmf: str = ""
    queue: str = ""
    duration_seconds: float | None = None
    #: What the caller said in speech menus (turns joined by " | ") and the last turn's confidence.
    transcript: str = ""
    transcript_confidence: float | None = None


@dataclass(slots=True)
class ContactHumanPart:
    """The human part of a call as it stands now (:mod:`ivr.history.human_part`).

    Values are absolute, so applying the same record twice changes nothing.
    Empty strings and None leave the stored value as it is (an outbound call
    has no queue: its ``queue_outcome`` stays empty). ``agent`` is an agent's
    code or device: the writer finds the agent's row by either.
    """

    uniqueid: str
    queue_outcome: str
    queue: str = ""
    agent: str = ""
    wait_seconds: float | None = None
    talk_seconds: float | None = None
    hangup_by: str = ""
    answered_at: float | None = None
    #: The real end of the call (the conversation, not the IVR), and its length from the start.
    ended_at: float | None = None
    duration_seconds: float | None = None


Record = ContactStart | ContactStep | ContactEnd | ContactHumanPart


def _names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


START_FIELDS = _names(ContactStart)
END_FIELDS = _names(ContactEnd)
HUMAN_FIELDS = _names(ContactHumanPart)
_STEP_FIELDS = _names(CallStep)


# -- journal lines ---------------------------------------------------------------

def _journal_encoder() -> Callable[[Any], str]:
    """Compact JSON, ASCII (any str round-trips, a lone surrogate too, so no record can fail to
    journal); the C encoder built once, as JSONEncoder.encode would build it on every call."""
    def unknown(value: object) -> object:
        raise TypeError(f"{type(value).__name__} cannot go into the journal")

    make = getattr(json.encoder, "c_make_encoder", None)  # CPython's C accelerator
    if make is None:
        return json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
    encode = make(None, unknown, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
    return lambda value: "".join(encode(value, 0))


_to_json = _journal_encoder()
#: Each kind's tag and its fields as a tuple (attrgetter: a tenth of dataclasses.astuple's cost).
_LINES: dict[type[Any], tuple[tuple[str], Callable[[Any], tuple[Any, ...]]]] = {
    ContactStart: (("start",), attrgetter(*START_FIELDS)),
    ContactStep: (("step",), attrgetter("uniqueid", "seq", "at", *(f"step.{n}" for n in _STEP_FIELDS))),
    ContactEnd: (("end",), attrgetter(*END_FIELDS)),
    ContactHumanPart: (("human",), attrgetter(*HUMAN_FIELDS)),
}


def journal_line(record: Record) -> bytes:
    """One record as a journal line (ASCII JSON array, newline-terminated)."""
    tag, values = _LINES[type(record)]
    return (_to_json(tag + values(record)) + "\n").encode("ascii")


def _decode(line: str) -> Record:
    data = json.loads(line)
    if isinstance(data, dict):  # written by ivr before the journal held every record
        return _decode_legacy(data)
    tag, *values = data
    if tag == "start":
        return ContactStart(*values)
    if tag == "step":
        return ContactStep(values[0], values[1], values[2], CallStep(*values[3:]))
    if tag == "end":
        return ContactEnd(*values)
    if tag == "human":
        return ContactHumanPart(*values)
    raise ValueError(f"unknown journal record {tag!r}")


def _decode_legacy(data: dict[str, Any]) -> Record:
    op = data.pop("op")
    if op == "step":
        return ContactStep(data.pop("uniqueid"), data.pop("seq"), data.pop("at"), CallStep(**data))
    return cast(Record, {"start": ContactStart, "end": ContactEnd}[op](**data))


def read_records(data: bytes, source: Path) -> list[Record]:
    """Every readable line; a torn one (a crash mid-append, a power loss) is skipped."""
    records = []
    for raw in data.split(b"\n"):  # not str.splitlines: an older ivr's UTF-8 lines may hold U+2028
        if not raw.strip():
            continue
        line = raw.decode("utf-8", "replace")
        try:
            records.append(_decode(line))
        except (ValueError, KeyError, TypeError, IndexError):
            log.warn("skipping an unreadable line of {journal}: {line!r}", journal=str(source),
                     line=line[:200])
    return records
